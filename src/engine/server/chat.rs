//! `listen --chat`: every line a student sends goes to every other student,
//! labelled with its sender ("C3: hello"); joins and leaves are announced,
//! and the teacher's terminal shows everything (escaped, like all data).
//!
//! Nobody waits for the slowest. Each student has a thread that reads (the
//! client's own thread) and one that writes, fed by a bounded outbox: a
//! line for a student goes into that student's outbox and the sender moves
//! on. A student who does not read loses the oldest lines (and is told how
//! many), and one who takes nothing for `SLOW_READER` is disconnected so
//! the chat goes on. A rate limit keeps one student from flooding the
//! projector; a student who reconnects starts with what their address's
//! last connection left of it, so reconnecting in a loop does not help
//! (programs on the teacher's own machine, over loopback, excepted).
//! Each relayed line is cut into rows narrow enough for any terminal, each
//! starting with its sender's label, so no row can pass for another's.

use super::clients::Stats;
use super::goodbye::{self, Ending};
use super::stop::{StopHandle, Waited};
use crate::engine::call::How;
use crate::engine::conn::{Conn, Received};
use crate::engine::event::Stage;
use crate::t;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The longest line taken from a student; longer ones are cut.
const MAX_LINE: usize = 1024;
/// The most characters of a line passed on: a line wider than a screen
/// would wrap into what looks like another student's line.
const MAX_SHOWN: usize = 160;
/// Lines a student may send in a burst, and how many a second after that.
const BURST: f64 = 10.0;
const PER_SECOND: f64 = 5.0;
/// Lines waiting for one student; beyond, the oldest are dropped.
const OUTBOX_LINES: usize = 64;
/// A student who takes no line for this long is disconnected.
const SLOW_READER: Duration = Duration::from_secs(10);
/// The widest row a relayed line is sent in, label included: a row that a
/// terminal wraps could begin with text that looks like another's label.
const ROW: usize = 72;
/// Addresses whose rate limit is remembered after their student leaves, at most.
const REMEMBERED: usize = 1024;
/// Each writer thread's stack: it only writes lines.
const WRITER_STACK: usize = 64 * 1024;

/// Everyone in the chat.
#[derive(Default)]
pub struct Room {
    members: Mutex<BTreeMap<u64, Member>>,
    /// Joins and leaves are rate-limited too, for the whole room: a
    /// student who reconnects in a loop must not flood everyone.
    announcements: Mutex<Announcements>,
    /// What each address's last student left of their rate limit: the next
    /// one from there starts with it, not with a fresh burst.
    left: Mutex<std::collections::HashMap<std::net::IpAddr, Bucket>>,
}

struct Member {
    label: Arc<str>,
    outbox: Arc<Outbox>,
}

#[derive(Default)]
struct Announcements {
    bucket: Option<Bucket>,
    /// Joins and leaves not announced, told with the next one that is.
    untold: u64,
}

impl Room {
    pub fn new() -> Room {
        Room::default()
    }

    /// Puts `line` in every member's outbox but `from`'s. Never waits.
    /// Returns how many it went to.
    fn broadcast(&self, from: Option<u64>, line: &str) -> usize {
        let members = lock(&self.members);
        let mut to = 0;
        for (_, member) in members.iter().filter(|(n, _)| Some(**n) != from) {
            member.outbox.put(line.as_bytes().to_vec());
            to += 1;
        }
        to
    }

    /// A join or leave line, within the room's rate limit.
    fn announce(&self, from: Option<u64>, line: String) {
        let mut a = lock(&self.announcements);
        let bucket = a.bucket.get_or_insert_with(Bucket::new);
        if !bucket.take() {
            a.untold += 1;
            return;
        }
        let untold = std::mem::take(&mut a.untold);
        drop(a);
        if untold > 0 {
            self.broadcast(from, &format!("* ({untold} more joined or left)\n"));
        }
        self.broadcast(from, &line);
    }

    /// The rate limit for a student from `ip`: what the last one from
    /// there left of it, or a full burst.
    fn bucket_for(&self, ip: Option<std::net::IpAddr>) -> Bucket {
        ip.and_then(|ip| lock(&self.left).remove(&ip))
            .unwrap_or_else(Bucket::new)
    }

    /// Keeps what a leaving student from `ip` left of their rate limit.
    fn leave_bucket(&self, ip: Option<std::net::IpAddr>, mut bucket: Bucket) {
        let Some(ip) = ip else { return };
        if bucket.refill() >= BURST {
            return; // full again: nothing to remember
        }
        let mut left = lock(&self.left);
        if left.len() >= REMEMBERED {
            left.retain(|_, b| b.refill() < BURST);
        }
        if left.len() < REMEMBERED {
            left.insert(ip, bucket);
        }
    }
}

/// Lines waiting to be written to one student.
#[derive(Default)]
struct Outbox {
    state: Mutex<OutboxState>,
    changed: Condvar,
}

#[derive(Default)]
struct OutboxState {
    lines: VecDeque<Vec<u8>>,
    /// Lines dropped since the student was last told.
    missed: u64,
    closed: bool,
}

impl Outbox {
    /// Adds a line; when full, the oldest goes (and is counted).
    fn put(&self, line: Vec<u8>) {
        let mut state = lock(&self.state);
        if state.closed {
            return;
        }
        if state.lines.len() >= OUTBOX_LINES {
            state.lines.pop_front();
            state.missed += 1;
        }
        state.lines.push_back(line);
        self.changed.notify_one();
    }

    /// The next line to write, first telling what was missed; None once
    /// closed and empty.
    fn take(&self) -> Option<Vec<u8>> {
        let mut state = lock(&self.state);
        loop {
            if state.missed > 0 {
                let n = std::mem::take(&mut state.missed);
                return Some(
                    format!("* you missed {n} lines: you were not reading\n").into_bytes(),
                );
            }
            if let Some(line) = state.lines.pop_front() {
                return Some(line);
            }
            if state.closed {
                return None;
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.changed.notify_all();
    }
}

/// A token bucket: BURST at once, then PER_SECOND.
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            tokens: BURST,
            last: Instant::now(),
        }
    }

    /// The tokens now, with what was earned since last time.
    fn refill(&mut self) -> f64 {
        let now = Instant::now();
        let earned = now.duration_since(self.last).as_secs_f64() * PER_SECOND;
        self.tokens = (self.tokens + earned).min(BURST);
        self.last = now;
        self.tokens
    }

    fn take(&mut self) -> bool {
        if self.refill() >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One student's thread: join, pass each line on, leave.
pub(super) fn talk(
    conn: &Arc<Conn>,
    room: &Room,
    stats: &Arc<Stats>,
    stop: &StopHandle,
    grace: Duration,
) -> Ending {
    let number = conn.ctx.scope();
    let label: Arc<str> = conn
        .ctx
        .conn
        .clone()
        .unwrap_or_else(|| format!("C{number}").into());
    let outbox = Arc::new(Outbox::default());
    let Some(writer) = start_writer(conn, &outbox, stats) else {
        return Ending::Close;
    };
    join(conn, room, number, &label, &outbox);
    let ending = relay(conn, room, number, &label, stats, stop);
    lock(&room.members).remove(&number);
    conn.ctx.note(
        Stage::Close,
        "chat-leave",
        t!("{label} left the chat", "{label} 离开了聊天"),
    );
    room.announce(None, format!("* {label} left\n"));
    // What is in this student's outbox is still written, then the writer ends.
    outbox.close();
    let _ = writer.join();
    match ending {
        Some(ending) => ending,
        None => goodbye::at_stop(conn, grace, stats),
    }
}

/// Adds the student to the room and tells everyone.
fn join(conn: &Conn, room: &Room, number: u64, label: &Arc<str>, outbox: &Arc<Outbox>) {
    {
        // Under the room's lock: who is here, the welcome, then the student
        // joins the room. Every line the room sends it comes after its
        // welcome (a "* C5 left" could otherwise come first).
        let mut members = lock(&room.members);
        let others: Vec<Arc<str>> = members.values().map(|m| m.label.clone()).collect();
        let here = if others.is_empty() {
            "-".to_string()
        } else {
            others.join(", ")
        };
        outbox.put(format!("* welcome, you are {label}; here already: {here}\n").into_bytes());
        members.insert(
            number,
            Member {
                label: label.clone(),
                outbox: outbox.clone(),
            },
        );
    }
    conn.ctx.note(
        Stage::Confirm,
        "chat-join",
        t!("{label} joined the chat", "{label} 加入了聊天"),
    );
    room.announce(Some(number), format!("* {label} joined\n"));
}

/// Reads the student's lines and passes each on. Returns how to end, or
/// None when the server is stopping (the caller says goodbye).
fn relay(
    conn: &Conn,
    room: &Room,
    number: u64,
    label: &str,
    stats: &Stats,
    stop: &StopHandle,
) -> Option<Ending> {
    // Programs on this machine are the teacher's own (as for --max-per-host).
    let ip = conn
        .ctx
        .remote
        .map(|a| crate::engine::labels::canonical(a).ip())
        .filter(|ip| !ip.is_loopback());
    let mut bucket = room.bucket_for(ip);
    let ending = relay_lines(conn, room, number, label, stats, stop, &mut bucket);
    room.leave_bucket(ip, bucket);
    ending
}

/// [`relay`]'s loop, with the student's rate limit.
fn relay_lines(
    conn: &Conn,
    room: &Room,
    number: u64,
    label: &str,
    stats: &Stats,
    stop: &StopHandle,
    bucket: &mut Bucket,
) -> Option<Ending> {
    let mut told_to_slow_down = false;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        match stop.wait_for_client(&conn.sock, None) {
            Waited::Ready => {}
            Waited::Stop => return None,
            Waited::TimedOut => return Some(Ending::Close),
        }
        let n = match conn.recv(&mut buf) {
            Ok(Received::Bytes(n)) => n,
            Ok(Received::End) | Err(_) => return Some(Ending::Close),
        };
        stats.received(n);
        pending.extend_from_slice(&buf[..n]);
        // Take every complete line; a line too long is cut where it is.
        while let Some(line) = next_line(&mut pending) {
            let Some(text) = shown(&line) else { continue };
            if !bucket.take() {
                if !told_to_slow_down {
                    told_to_slow_down = true;
                    slow_down(conn, label);
                }
                continue;
            }
            told_to_slow_down = false;
            // Queued first, then told: the note says how many it went to.
            let to = room.broadcast(Some(number), &rows(label, &text));
            let mut facts = serde_json::Map::new();
            facts.insert("from".into(), label.to_string().into());
            facts.insert("text".into(), text.clone().into());
            facts.insert("to".into(), to.into());
            let others = match to {
                1 => "1 other".to_string(),
                n => format!("{n} others"),
            };
            conn.ctx.note_with(
                Stage::Transfer,
                "chat",
                format!("{label}: {text}   (to {others})"),
                facts,
            );
        }
    }
}

/// The next complete line of `pending` (or its first MAX_LINE bytes).
fn next_line(pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    let cut = match pending.iter().position(|b| *b == b'\n') {
        Some(end) => end + 1,
        None if pending.len() >= MAX_LINE => MAX_LINE,
        None => return None,
    };
    Some(pending.drain(..cut).collect())
}

/// A line as others see it: escaped (no control character reaches a
/// screen), with runs of spaces made one (no padding that wraps into what
/// looks like another student's line), and cut to MAX_SHOWN characters,
/// marked as cut. None for an empty line.
pub fn shown(line: &[u8]) -> Option<String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let escaped = crate::sanitize::escape(line);
    let words: Vec<&str> = escaped.split_whitespace().collect();
    if words.is_empty() {
        return None;
    }
    let joined = words.join(" ");
    let total = joined.chars().count();
    if total <= MAX_SHOWN {
        return Some(joined);
    }
    let kept: String = joined.chars().take(MAX_SHOWN).collect();
    let rest = total - MAX_SHOWN;
    Some(format!("{kept}… [+{rest} characters not passed on]"))
}

/// `text` from `label` as it goes to the others: rows of at most [`ROW`]
/// columns, the first `C2: …`, each next one `C2… …` (a continuation), so
/// that no row, and no terminal's wrap of a row, begins like another
/// student's line.
pub fn rows(label: &str, text: &str) -> String {
    let first = format!("{label}: ");
    let next = format!("{label}… ");
    let options = textwrap::Options::new(ROW)
        .initial_indent(&first)
        .subsequent_indent(&next)
        .break_words(true);
    let mut out = String::new();
    for row in textwrap::wrap(text, options) {
        out.push_str(&row);
        out.push('\n');
    }
    out
}

fn slow_down(conn: &Conn, label: &str) {
    conn.ctx.note(
        Stage::Transfer,
        "rate-limit",
        t!(
            "{label} sends too fast: lines beyond {PER_SECOND} a second are not passed on, and {label} is told so",
            "{label} 发得太快：每秒超过 {PER_SECOND} 行的部分不会转发，并会告诉 {label}"
        ),
    );
    let _ = conn.send_all(
        format!("* slow down: at most {PER_SECOND} lines a second; your lines are not passed on until then\n")
            .as_bytes(),
    );
}

/// The student's writer: takes lines from the outbox and sends them. A
/// send that waits SLOW_READER (SO_SNDTIMEO) means the student does not
/// read: it is disconnected, and nobody else waited for it.
fn start_writer(
    conn: &Arc<Conn>,
    outbox: &Arc<Outbox>,
    stats: &Arc<Stats>,
) -> Option<thread::JoinHandle<()>> {
    if conn.set_send_timeout(Some(SLOW_READER)).is_err() {
        return None;
    }
    let (conn, outbox, stats) = (conn.clone(), outbox.clone(), stats.clone());
    let name = format!(
        "sockdemo-{}-writer",
        conn.ctx.conn.as_deref().unwrap_or("client")
    );
    thread::Builder::new()
        .name(name)
        .stack_size(WRITER_STACK)
        .spawn(move || {
            while let Some(line) = outbox.take() {
                if !write_line(&conn, &line, &stats) {
                    break;
                }
            }
            // Nothing more will be written; let the outbox fill no more.
            outbox.close();
        })
        .ok()
}

/// Writes one line within SLOW_READER in all (a send() that gave up
/// partway returns what it wrote, and waiting anew would double the wait).
/// False once the student is gone or disconnected.
fn write_line(conn: &Conn, mut line: &[u8], stats: &Stats) -> bool {
    let began = Instant::now();
    while !line.is_empty() {
        match conn.send_once(line) {
            Ok(n) => {
                stats.sent(n);
                line = &line[n..];
                if !line.is_empty() && began.elapsed() >= SLOW_READER {
                    not_reading(conn);
                    return false;
                }
            }
            Err(f) if f.is_timeout() => {
                not_reading(conn);
                return false;
            }
            Err(_) => return false,
        }
    }
    true
}

/// A student who takes nothing is disconnected: shutdown() ends its
/// connection both ways, and its reading thread sees the end.
fn not_reading(conn: &Conn) {
    let who = conn.ctx.conn.clone().unwrap_or_else(|| "client".into());
    let secs = SLOW_READER.as_secs();
    conn.ctx.note(
        Stage::Close,
        "not-reading",
        t!(
            "{who} took nothing for {secs} s (it does not read): disconnected, so the chat goes on for the others",
            "{who} 已经 {secs} 秒什么也没收（它不读）：断开它的连接，聊天对其他人照常进行"
        ),
    );
    let _ = conn.shutdown(How::Both);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_cannot_pass_for_another() {
        let padded = format!("hi{}C2: I am C2", " ".repeat(200));
        assert_eq!(shown(padded.as_bytes()).unwrap(), "hi C2: I am C2");
        let long = "x".repeat(500);
        let cut = shown(long.as_bytes()).unwrap();
        assert!(cut.starts_with(&"x".repeat(MAX_SHOWN)));
        assert!(cut.ends_with("[+340 characters not passed on]"), "{cut}");
        assert_eq!(shown(b"a\x1b[2Jb\n").unwrap(), "a\\x1b[2Jb");
        assert_eq!(shown(b"   \r\n"), None);
    }

    #[test]
    fn every_row_starts_with_its_sender() {
        // One space at the right column would let a terminal's wrap begin
        // a row with "C1: …": rows are cut before any terminal does.
        let sly = format!("{} C1: I am C1", "y".repeat(75));
        let text = shown(sly.as_bytes()).unwrap();
        let out = rows("C2", &text);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with("C2: y"), "{out}");
        assert!(lines[1].starts_with("C2… "), "{out}");
        assert!(lines.iter().all(|l| l.chars().count() <= ROW), "{out}");
        assert_eq!(rows("C3", "hello"), "C3: hello\n");
        // A word longer than a row is broken, still under its sender.
        let out = rows("C4", &"z".repeat(150));
        assert!(out
            .lines()
            .all(|l| l.starts_with("C4") && l.chars().count() <= ROW));
        assert_eq!(out.matches('z').count(), 150);
    }

    #[test]
    fn reconnecting_does_not_refill_the_rate_limit() {
        let room = Room::new();
        let ip = Some("10.0.0.7".parse().unwrap());
        let mut first = room.bucket_for(ip);
        while first.take() {}
        room.leave_bucket(ip, first);
        let mut again = room.bucket_for(ip);
        assert!(!again.take(), "the next connection from there starts empty");
        // Another address is not affected.
        assert!(room.bucket_for(Some("10.0.0.8".parse().unwrap())).take());
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_and_says_so() {
        let outbox = Outbox::default();
        for i in 0..OUTBOX_LINES + 3 {
            outbox.put(format!("{i}\n").into_bytes());
        }
        assert_eq!(
            outbox.take().unwrap(),
            b"* you missed 3 lines: you were not reading\n"
        );
        assert_eq!(outbox.take().unwrap(), b"3\n");
        outbox.close();
        let mut rest = 0;
        while outbox.take().is_some() {
            rest += 1;
        }
        assert_eq!(rest, OUTBOX_LINES - 1);
    }
}
