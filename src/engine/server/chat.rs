//! `listen --chat`: every line a student sends goes to every other student,
//! labelled with its sender ("C3: hello"); joins and leaves are announced,
//! and the teacher's terminal shows everything (escaped, like all data).
//!
//! Each student's thread reads that student's lines and writes them to the
//! others. A per-recipient lock keeps lines whole when two students write
//! at once, so every line reaches every other student exactly once, in the
//! order its sender sent it. A rate limit keeps one student from flooding
//! the projector, and tells that student so.

use super::clients::Stats;
use crate::engine::conn::{Conn, Received};
use crate::engine::event::Stage;
use crate::sanitize;
use crate::t;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest line passed on; longer ones are cut (memory stays bounded).
const MAX_LINE: usize = 1024;
/// Lines a student may send in a burst, and how many a second after that.
const BURST: f64 = 10.0;
const PER_SECOND: f64 = 5.0;
/// A student who does not read for this long misses lines (the others go on).
const WRITE_PATIENCE: Duration = Duration::from_secs(2);

/// Everyone in the chat.
#[derive(Default)]
pub struct Room {
    members: Mutex<BTreeMap<u64, Member>>,
}

struct Member {
    label: Arc<str>,
    conn: Arc<Conn>,
    /// Held while a line is written to this member, so lines never interleave.
    writing: Arc<Mutex<()>>,
}

impl Room {
    pub fn new() -> Room {
        Room::default()
    }

    /// Writes `line` to every member but `from` (or to all, with None).
    fn broadcast(&self, from: Option<u64>, line: &[u8], stats: &Stats) {
        // Copy the recipients out, so no one waits on the room while writing.
        let recipients: Vec<(Arc<Conn>, Arc<Mutex<()>>)> = {
            let members = self.members.lock().unwrap_or_else(|p| p.into_inner());
            members
                .iter()
                .filter(|(n, _)| Some(**n) != from)
                .map(|(_, m)| (m.conn.clone(), m.writing.clone()))
                .collect()
        };
        for (conn, writing) in recipients {
            let _turn = writing.lock().unwrap_or_else(|p| p.into_inner());
            if conn.send_all(line).is_ok() {
                stats.sent(line.len());
            }
        }
    }

    fn names(&self) -> Vec<Arc<str>> {
        let members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        members.values().map(|m| m.label.clone()).collect()
    }
}

/// A token bucket: BURST lines at once, then PER_SECOND.
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

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * PER_SECOND).min(BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One student's thread: join, pass each line on, leave.
pub(super) fn talk(conn: &Arc<Conn>, room: &Room, stats: &Stats) {
    let number = conn.ctx.scope();
    let label: Arc<str> = conn
        .ctx
        .conn
        .clone()
        .unwrap_or_else(|| format!("C{number}").into());
    // A student who stops reading must not stall the others for long.
    let _ = conn.set_send_timeout(Some(WRITE_PATIENCE));
    let others = room.names();
    room.members
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            number,
            Member {
                label: label.clone(),
                conn: conn.clone(),
                writing: Arc::new(Mutex::new(())),
            },
        );
    let here = if others.is_empty() {
        "-".to_string()
    } else {
        others.join(", ")
    };
    conn.ctx.note(
        Stage::Confirm,
        "chat-join",
        t!("{label} joined the chat", "{label} 加入了聊天"),
    );
    let welcome = format!("* welcome, you are {label}; here already: {here}\n");
    let _ = conn.send_all(welcome.as_bytes());
    room.broadcast(
        Some(number),
        format!("* {label} joined\n").as_bytes(),
        stats,
    );

    let mut bucket = Bucket::new();
    let mut told_to_slow_down = false;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 4096];
    while let Ok(Received::Bytes(n)) = conn.recv(&mut buf) {
        stats.received(n);
        pending.extend_from_slice(&buf[..n]);
        // Take every complete line; a line too long is cut where it is.
        loop {
            let cut = match pending.iter().position(|b| *b == b'\n') {
                Some(end) => end + 1,
                None if pending.len() >= MAX_LINE => MAX_LINE,
                None => break,
            };
            let line: Vec<u8> = pending.drain(..cut).collect();
            let text = sanitize::escape(line.strip_suffix(b"\n").unwrap_or(&line));
            let text = text.strip_suffix("\\r").unwrap_or(&text).to_string();
            if text.is_empty() {
                continue;
            }
            if !bucket.take() {
                if !told_to_slow_down {
                    told_to_slow_down = true;
                    conn.ctx.note(
                        Stage::Transfer,
                        "rate-limit",
                        t!(
                            "{label} sends too fast: lines beyond {PER_SECOND} a second are not passed on, and {label} is told so",
                            "{label} 发得太快：每秒超过 {PER_SECOND} 行的部分不会转发，并会告诉 {label}"
                        ),
                    );
                    let warning = format!("* slow down: at most {PER_SECOND} lines a second; your lines are not passed on until then\n");
                    let _ = conn.send_all(warning.as_bytes());
                }
                continue;
            }
            told_to_slow_down = false;
            // Control characters are passed on escaped, so no student can
            // send escape sequences to another student's terminal.
            let mut facts = serde_json::Map::new();
            facts.insert("from".into(), label.to_string().into());
            facts.insert("text".into(), text.clone().into());
            conn.ctx
                .note_with(Stage::Transfer, "chat", format!("{label}: {text}"), facts);
            room.broadcast(Some(number), format!("{label}: {text}\n").as_bytes(), stats);
        }
    }
    room.members
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&number);
    conn.ctx.note(
        Stage::Close,
        "chat-leave",
        t!("{label} left the chat", "{label} 离开了聊天"),
    );
    room.broadcast(None, format!("* {label} left\n").as_bytes(), stats);
}
