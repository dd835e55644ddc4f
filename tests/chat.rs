//! `listen --chat`: a class chat over real sockets.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

/// A student: the connection and a line reader on it.
struct Student {
    out: TcpStream,
    lines: BufReader<TcpStream>,
}

impl Student {
    fn join(addr: &str) -> Student {
        let out = TcpStream::connect(addr).unwrap();
        out.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut s = Student {
            lines: BufReader::new(out.try_clone().unwrap()),
            out,
        };
        let welcome = s.line();
        assert!(welcome.starts_with("* welcome, you are C"), "{welcome}");
        s
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.lines
            .read_line(&mut line)
            .expect("a line within the time limit");
        line
    }

    /// The next `n` chat lines, skipping announcements ("* …").
    fn chat_lines(&mut self, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        while got.len() < n {
            let line = self.line();
            assert!(!line.is_empty(), "the server closed early; got {got:?}");
            if !line.starts_with('*') {
                got.push(line.trim_end().to_string());
            }
        }
        got
    }
}

/// Every line reaches every other student exactly once, in the order its
/// sender sent it, and never comes back to its sender.
#[test]
fn every_line_reaches_every_other_student_once_in_order() {
    let (server, addr) = json_server(&["--chat", "--packets", "off"]);
    let mut students: Vec<Student> = (0..3).map(|_| Student::join(&addr)).collect();
    // Each student sends five lines, all at once, from its own thread.
    let writers: Vec<_> = students
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut out = s.out.try_clone().unwrap();
            std::thread::spawn(move || {
                for j in 1..=5 {
                    out.write_all(format!("line {j} from student {i}\n").as_bytes())
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    for (me, student) in students.iter_mut().enumerate() {
        let got = student.chat_lines(10);
        for other in (0..3).filter(|o| *o != me) {
            let label = format!("C{}", other + 1);
            let theirs: Vec<&String> = got
                .iter()
                .filter(|l| l.starts_with(&format!("{label}: ")))
                .collect();
            let expected: Vec<String> = (1..=5)
                .map(|j| format!("{label}: line {j} from student {other}"))
                .collect();
            assert_eq!(
                theirs,
                expected.iter().collect::<Vec<_>>(),
                "student {me} got {got:?}"
            );
        }
        assert!(
            !got.iter()
                .any(|l| l.contains(&format!("from student {me}"))),
            "no echo to the sender"
        );
    }
    drop(students);
    let (_, lines, _) = server.terminate();
    let events = parse_lines(&lines.join("\n"));
    assert_eq!(
        events.iter().filter(|e| e["topic"] == "chat").count(),
        15,
        "the teacher sees every line"
    );
    assert_eq!(
        events.iter().filter(|e| e["topic"] == "chat-join").count(),
        3
    );
}

/// A student who floods is slowed down, told so, and the others get only
/// what the limit lets through.
#[test]
fn a_flood_is_rate_limited_and_the_student_is_told() {
    let (mut server, addr) = json_server(&["--chat", "--packets", "off"]);
    let mut quiet = Student::join(&addr);
    let mut loud = Student::join(&addr);
    let flood: String = (1..=40).map(|j| format!("spam {j}\n")).collect();
    loud.out.write_all(flood.as_bytes()).unwrap();
    let warning = loop {
        let line = loud.line();
        if line.contains("slow down") {
            break line;
        }
        assert!(!line.is_empty(), "the loud student was told to slow down");
    };
    assert!(warning.starts_with('*'));
    server.wait_event("the rate-limit note", |e| e["topic"] == "rate-limit");
    // The loud student leaves. Its thread handles the whole flood before it
    // reads the end of the stream, so "* C2 left" comes after every line
    // the limit let through.
    drop(loud);
    let mut passed = Vec::new();
    loop {
        let line = quiet.line();
        assert!(!line.is_empty(), "the quiet student saw C2 leave");
        if line.starts_with("C2: spam") {
            passed.push(line.trim_end().to_string());
        }
        if line.starts_with("* C2 left") {
            break;
        }
    }
    let expected: Vec<String> = (1..=passed.len())
        .map(|j| format!("C2: spam {j}"))
        .collect();
    assert_eq!(passed, expected, "the first lines pass, in order");
    let passed = passed.len();
    assert!((10..40).contains(&passed), "{passed} of 40 lines passed");
}

/// Escape sequences from one student reach the others escaped.
#[test]
fn escape_sequences_are_passed_on_escaped() {
    let (server, addr) = json_server(&["--chat", "--packets", "off"]);
    let mut a = Student::join(&addr);
    let mut b = Student::join(&addr);
    b.out.write_all(b"\x1b[2Jboo\x07\n").unwrap();
    let got = a.chat_lines(1);
    assert_eq!(got, ["C2: \\x1b[2Jboo\\x07"]);
    drop(server);
}

// The chat never waits for the slowest, keeps joins and leaves within the
// rate limit, and relays lines that cannot pass for anything else.

use std::io::Read;
use std::sync::mpsc;
#[cfg(target_os = "linux")]
use std::time::Duration;
use std::time::Instant;

/// The limits in src/engine/server/chat.rs, as a student meets them.
const BURST: usize = 10;
const PER_SECOND: f64 = 5.0;
const MAX_SHOWN: usize = 160;
/// The widest row of a relayed line; the next rows start "C2… ".
const ROW: usize = 72;
#[cfg(target_os = "linux")]
const SLOW_READER: Duration = Duration::from_secs(10);

impl Student {
    /// Joins and learns its label from the welcome ("you are C3; …").
    fn join_labelled(addr: &str) -> (Student, String) {
        let out = TcpStream::connect(addr).unwrap();
        out.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut s = Student {
            lines: BufReader::new(out.try_clone().unwrap()),
            out,
        };
        let welcome = s.line();
        (s, label_in_welcome(&welcome))
    }

    /// From now on its lines arrive through a channel, each with the time
    /// it was read; the channel ends at the server's FIN (or an error).
    fn listen(self) -> (TcpStream, mpsc::Receiver<(String, Instant)>) {
        let Student { out, mut lines } = self;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || loop {
            let mut line = String::new();
            match lines.read_line(&mut line) {
                Ok(n) if n > 0 => {
                    if tx.send((line, Instant::now())).is_err() {
                        return;
                    }
                }
                _ => return,
            }
        });
        (out, rx)
    }
}

/// A relayed line's next row ("C2… more"), not a line of its own.
#[cfg(target_os = "linux")]
fn is_continuation(row: &str) -> bool {
    row.strip_prefix('C')
        .map(|rest| rest.trim_start_matches(|c: char| c.is_ascii_digit()))
        .is_some_and(|rest| rest.starts_with("… "))
}

fn label_in_welcome(welcome: &str) -> String {
    welcome
        .strip_prefix("* welcome, you are ")
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("not a welcome: {welcome:?}"))
        .to_string()
}

/// Lines from a listening student until one satisfies `last` (included),
/// each wait bounded by PATIENCE.
fn lines_until(
    rx: &mpsc::Receiver<(String, Instant)>,
    what: &str,
    mut last: impl FnMut(&str) -> bool,
) -> Vec<(String, Instant)> {
    let mut got = Vec::new();
    loop {
        match rx.recv_timeout(PATIENCE) {
            Ok((line, at)) => {
                let done = last(&line);
                got.push((line, at));
                if done {
                    return got;
                }
            }
            Err(e) => panic!(
                "{what}: {e}; got {} lines, the last: {:?}",
                got.len(),
                got.last()
            ),
        }
    }
}

/// "* you missed N lines: you were not reading" → N.
#[cfg(target_os = "linux")]
fn missed(line: &str) -> Option<u64> {
    line.trim_end()
        .strip_prefix("* you missed ")?
        .strip_suffix(" lines: you were not reading")?
        .parse()
        .ok()
}

/// A student who joins and then reads nothing. Its receive buffer is
/// small and its segments short (TCP_MAXSEG), as over a slow link, so the
/// server's socket for it fills after a few tens of kilobytes, not
/// megabytes: its writer then waits in send().
#[cfg(target_os = "linux")]
fn slow_reader(addr: &str) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    use std::os::fd::AsRawFd;
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(1024).unwrap();
    let mss: libc::c_int = 536;
    // SAFETY: setsockopt reads one c_int from a live local.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MAXSEG,
            (&mss as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "TCP_MAXSEG: {}", std::io::Error::last_os_error());
    sock.connect(&addr.into()).unwrap();
    let stream: TcpStream = sock.into();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Reads everything up to the server's FIN; panics on a reset or a wait
/// longer than PATIENCE.
fn read_to_fin(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut all = Vec::new();
    stream
        .read_to_end(&mut all)
        .expect("everything up to the server's FIN");
    all
}

/// Three students read nothing while others flood the room far beyond
/// what their sockets hold. An honest student's line still reaches another
/// at once. When the slow students read at last, each is told how many
/// lines it missed, and what it got plus what it missed is exactly what
/// everyone else got, in the same order. Nobody is disconnected.
#[cfg(target_os = "linux")]
#[test]
fn slow_readers_do_not_hold_up_the_others() {
    let (mut server, addr) = json_server(&["--chat", "--packets", "off"]);
    let (listener, _) = Student::join_labelled(&addr);
    let (_listener_out, heard) = listener.listen();
    let (speaker, speaker_label) = Student::join_labelled(&addr);
    let (mut speaker_out, _speaker_heard) = speaker.listen();
    let mut slow: Vec<(TcpStream, String)> = Vec::new();
    for _ in 0..3 {
        let stream = slow_reader(&addr);
        let me = stream.local_addr().unwrap().to_string();
        let label = server.wait_event("a slow reader joins", |e| {
            e["topic"] == "chat-join" && e["remote"] == me.as_str()
        })["conn"]
            .as_str()
            .unwrap()
            .to_string();
        slow.push((stream, label));
    }

    // The flood: 60 students, four at a time, 10 lines each, all within
    // the rate limit's burst. Every line is 160 characters of four bytes:
    // 600 lines of about 600 bytes, some 360 kB for each slow reader, whose
    // socket takes some tens of kB. The next four flood once the listener
    // has the last four's lines (at most 56 lines with their joins and
    // leaves, less than an outbox holds), so the listener, who reads, is
    // never behind however the threads are scheduled.
    const FLOODERS: usize = 60;
    const AT_ONCE: usize = 4;
    let flood_started = Instant::now();
    let mut before_pings = Vec::new();
    for group in (0..FLOODERS).step_by(AT_ONCE) {
        let mut flooders: Vec<TcpStream> = (group..group + AT_ONCE)
            .map(|f| {
                let mut s = TcpStream::connect(&addr).unwrap();
                let lines: String = (0..BURST)
                    .map(|j| format!("flood {f:03} {j} {}\n", "𝔸".repeat(148)))
                    .collect();
                s.write_all(lines.as_bytes()).unwrap();
                s.shutdown(std::net::Shutdown::Write).unwrap();
                s
            })
            .collect();
        // The server's FIN: these students' lines and leaves are done.
        for s in &mut flooders {
            read_to_fin(s);
        }
        let mut last: Vec<String> = (group..group + AT_ONCE)
            .map(|f| format!(": flood {f:03} {}", BURST - 1))
            .collect();
        before_pings.extend(lines_until(&heard, "the flooders' lines", |l| {
            last.retain(|m| !l.contains(m.as_str()));
            last.is_empty()
        }));
    }
    // The honest listener got every line of the flood, and missed nothing.
    let flood_seen = before_pings
        .iter()
        .filter(|(l, _)| l.contains(": flood "))
        .count();
    assert_eq!(flood_seen, FLOODERS * BURST);
    assert!(
        !before_pings.iter().any(|(l, _)| missed(l).is_some()),
        "the honest listener missed lines"
    );

    // While the slow readers' writers wait: the speaker's line reaches the
    // listener within a bounded wait, five times.
    let mut latencies = Vec::new();
    let mut after_pings = Vec::new();
    for i in 0..5 {
        let sent = Instant::now();
        speaker_out
            .write_all(format!("ping {i}\n").as_bytes())
            .unwrap();
        let want = format!("{speaker_label}: ping {i}");
        let got = lines_until(&heard, "the speaker's ping", |l| l.trim_end() == want);
        latencies.push(got.last().unwrap().1 - sent);
        after_pings.extend(got);
    }
    let worst = *latencies.iter().max().unwrap();
    eprintln!(
        "flood of {} lines took {:?}; ping latencies {latencies:?}, worst {worst:?}",
        FLOODERS * BURST,
        flood_started.elapsed()
    );
    assert!(
        worst < Duration::from_secs(2),
        "an honest line waited {worst:?} behind slow readers"
    );

    // The slow readers read now (well within SLOW_READER), until the
    // speaker's last line; so does the listener.
    speaker_out.write_all(b"last call\n").unwrap();
    let want = format!("{speaker_label}: last call");
    before_pings.extend(after_pings);
    before_pings.extend(lines_until(&heard, "the last call", |l| {
        l.trim_end() == want
    }));
    let everyone: Vec<String> = before_pings.into_iter().map(|(l, _)| l).collect();
    for (stream, label) in slow {
        let waited = flood_started.elapsed();
        let mut reader = Student {
            lines: BufReader::new(stream.try_clone().unwrap()),
            out: stream,
        };
        let welcome = reader.line();
        assert_eq!(label_in_welcome(&welcome), label);
        let mut got = Vec::new();
        let mut told = Vec::new();
        loop {
            let line = reader.line();
            assert!(!line.is_empty(), "{label} was disconnected; got {got:?}");
            match missed(&line) {
                Some(n) => told.push(n),
                // Lines are counted, not the rows a long one is sent in.
                None if is_continuation(&line) => {}
                None => got.push(line.clone()),
            }
            if line.trim_end() == want {
                break;
            }
        }
        // What everyone else got after this student's join.
        let joined = format!("* {label} joined\n");
        let start = everyone
            .iter()
            .position(|l| *l == joined)
            .expect("the listener saw the slow reader join");
        let theirs: Vec<&String> = everyone[start + 1..]
            .iter()
            .filter(|l| !is_continuation(l))
            .collect();
        let missed_total: u64 = told.iter().sum();
        eprintln!(
            "{label} read after {waited:?}: {} lines, told it missed {told:?} of {}",
            got.len(),
            theirs.len()
        );
        assert!(missed_total > 0, "{label} was never behind: {got:?}");
        assert_eq!(
            got.len() as u64 + missed_total,
            theirs.len() as u64,
            "{label}: what it got and what it missed add up to what the others got"
        );
        let mut rest = theirs.iter();
        for line in &got {
            assert!(
                rest.any(|l| *l == line),
                "{label} got {line:?} out of order, or a line others did not get"
            );
        }
    }

    // Everyone leaves before the stop, so the stop has nobody to wait for.
    drop((_listener_out, speaker_out));
    let (_, lines, _) = server.terminate();
    let not_reading: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("\"not-reading\""))
        .collect();
    assert!(
        not_reading.is_empty(),
        "nobody was disconnected: {not_reading:?}"
    );
}

/// A student who never reads is disconnected SLOW_READER after its socket
/// stopped taking lines, and the chat goes on for the others.
#[cfg(target_os = "linux")]
#[test]
fn a_student_who_never_reads_is_disconnected() {
    let (mut server, addr) = json_server(&["--chat", "--packets", "off"]);
    let (listener, _) = Student::join_labelled(&addr);
    let (_listener_out, heard) = listener.listen();
    let mut silent = slow_reader(&addr);
    let me = silent.local_addr().unwrap().to_string();
    let label = server.wait_event("the silent student joins", |e| {
        e["topic"] == "chat-join" && e["remote"] == me.as_str()
    })["conn"]
        .as_str()
        .unwrap()
        .to_string();
    // 200 lines of about 600 bytes: far more than its socket takes.
    for f in 0..20 {
        let mut s = TcpStream::connect(&addr).unwrap();
        let lines: String = (0..BURST)
            .map(|j| format!("flood {f:03} {j} {}\n", "𝔸".repeat(148)))
            .collect();
        s.write_all(lines.as_bytes()).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        read_to_fin(&mut s);
    }
    let flooded = Instant::now();
    let note = server.wait_event("the silent student is disconnected", |e| {
        e["topic"] == "not-reading"
    });
    let after = flooded.elapsed();
    eprintln!("{label} disconnected {after:?} after the flood");
    assert_eq!(note["conn"], label.as_str(), "{note}");
    assert!(
        after < SLOW_READER + Duration::from_secs(5),
        "disconnected {after:?} after its socket filled; SLOW_READER is {SLOW_READER:?}"
    );
    // What was on its way still arrives, then the server's FIN.
    let rest = read_to_fin(&mut silent);
    assert!(rest.starts_with(b"* welcome, you are "));
    // The listener saw it leave, and the room goes on.
    let left = format!("* {label} left");
    lines_until(&heard, "the silent student leaves", |l| {
        l.starts_with(&left)
    });
}

/// 200 students join and leave at once while an observer watches: the
/// observer gets no more join and leave lines than the rate limit allows
/// (BURST, then PER_SECOND), the rest summed up in "(N more joined or
/// left)" lines, and the lines plus the N add up to every join and leave.
#[test]
fn joins_and_leaves_are_rate_limited_and_summed_up() {
    const STORM: usize = 200;
    let (server, addr) = json_server(&["--chat", "--packets", "off"]);
    let started = Instant::now();
    let (observer, _) = Student::join_labelled(&addr);
    let (observer_out, heard) = observer.listen();
    // Four threads, 50 students each: join, close the sending side at
    // once, read to the server's FIN (by then its join and leave are told).
    let storm: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                for _ in 0..STORM / 4 {
                    let mut s = TcpStream::connect(&addr).unwrap();
                    s.shutdown(std::net::Shutdown::Write).unwrap();
                    let got = read_to_fin(&mut s);
                    assert!(
                        got.starts_with(b"* welcome, you are C"),
                        "a storm student got {:?}",
                        String::from_utf8_lossy(&got)
                    );
                }
            })
        })
        .collect();
    for s in storm {
        s.join().expect("a storm thread");
    }
    let storm_took = started.elapsed();

    // The last joins and leaves may still be untold: students come and go
    // one at a time, each saying a line of its own (its own burst lets it
    // through), until the observer is told of one of them. The observer
    // then has heard of every join and leave before that one.
    let mut seen: Vec<String> = Vec::new();
    let mut flushers: Vec<String> = Vec::new();
    let flush_deadline = Instant::now() + PATIENCE;
    let told_of = loop {
        assert!(
            Instant::now() < flush_deadline && flushers.len() < 2000,
            "no join or leave was told after {} more students",
            flushers.len()
        );
        let (mut s, label) = Student::join_labelled(&addr);
        let mark = format!("{label}: mark {}", flushers.len());
        s.out
            .write_all(format!("mark {}\n", flushers.len()).as_bytes())
            .unwrap();
        s.out.shutdown(std::net::Shutdown::Write).unwrap();
        read_to_fin(&mut s.out);
        flushers.push(label);
        let got = lines_until(&heard, "the mark", |l| l.trim_end() == mark);
        seen.extend(got.into_iter().map(|(l, _)| l.trim_end().to_string()));
        // The last join or leave told, if it was one of these students'.
        let told = seen.iter().rev().find_map(|l| {
            let who = l
                .strip_prefix("* ")?
                .strip_suffix(" joined")
                .or_else(|| l.strip_prefix("* ")?.strip_suffix(" left"))?;
            let k = flushers.iter().position(|f| f == who)?;
            Some((k, l.ends_with(" joined")))
        });
        if let Some(told) = told {
            break told;
        }
    };
    let elapsed = started.elapsed();

    let announced: Vec<&String> = seen
        .iter()
        .filter(|l| l.starts_with("* C") && (l.ends_with(" joined") || l.ends_with(" left")))
        .collect();
    let sums: Vec<u64> = seen
        .iter()
        .filter_map(|l| {
            l.strip_prefix("* (")?
                .strip_suffix(" more joined or left)")?
                .parse()
                .ok()
        })
        .collect();
    let others =
        seen.iter().filter(|l| !l.contains(": mark ")).count() - announced.len() - sums.len();
    // Every join and leave up to the one told: the storm's, then two per
    // student who came and went after it (the last one's join, or both).
    let (k, joined) = told_of;
    let events = (2 * STORM + 2 * k + if joined { 1 } else { 2 }) as u64;
    let allowed = BURST as f64 + PER_SECOND * elapsed.as_secs_f64();
    eprintln!(
        "{STORM} joined and left in {storm_took:?}; {} more came and went; in {elapsed:?} \
         the observer got {} join/leave lines (limit {allowed:.1}) and {} sums {sums:?} \
         (total {}), for {events} joins and leaves",
        flushers.len(),
        announced.len(),
        sums.len(),
        sums.iter().sum::<u64>()
    );
    assert_eq!(others, 0, "only joins, leaves, sums and marks: {seen:?}");
    assert!(
        announced.len() as f64 <= allowed,
        "{} join/leave lines in {elapsed:?}: {announced:?}",
        announced.len()
    );
    assert!(!sums.is_empty(), "the storm was summed up: {seen:?}");
    assert_eq!(
        announced.len() as u64 + sums.iter().sum::<u64>(),
        events,
        "every join and leave is told, one by one or in a sum: {seen:?}"
    );
    drop(observer_out);
    drop(server);
}

/// A line padded with spaces to wrap into what looks like another
/// student's line reaches the others as one line, labelled with its
/// sender, its whitespace collapsed, no wider than MAX_SHOWN characters
/// (and the mark that says how many were cut), with nothing in it that
/// starts a new line.
#[test]
fn a_padded_line_cannot_pass_for_another_students_line() {
    let (server, addr) = json_server(&["--chat", "--packets", "off"]);
    let (_impersonated, victim) = Student::join_labelled(&addr);
    let (mut sender, from) = Student::join_labelled(&addr);
    let (mut observer, _) = Student::join_labelled(&addr);
    let fake = format!("{victim}: I am {victim}");
    let cases: Vec<(String, Option<String>)> = vec![
        // Spaces: the line as the issue showed it.
        (
            format!("hello{}{fake}", " ".repeat(300)),
            Some(format!("{from}: hello {fake}")),
        ),
        // Other whitespace: no-break, ideographic, vertical tab, form
        // feed, carriage return and tab (the last four are shown escaped).
        (
            format!("hello{}{fake}", "\u{a0}\u{3000} ".repeat(100)),
            Some(format!("{from}: hello {fake}")),
        ),
        (
            format!("hello \x0b\x0c\r\t{fake}"),
            Some(format!("{from}: hello \\x0b\\x0c\\r\\t{fake}")),
        ),
        // Longer than MAX_SHOWN once collapsed: cut, and said so.
        (
            format!("{}{}{fake}", "x".repeat(150), " ".repeat(300)),
            None,
        ),
    ];
    for (line, _) in &cases {
        sender.out.write_all(line.as_bytes()).unwrap();
        sender.out.write_all(b"\n").unwrap();
    }
    sender.out.write_all(b"done\n").unwrap();
    // Each relayed line: its rows, the first "C2: …", the next "C2… …".
    let mut got: Vec<Vec<String>> = Vec::new();
    loop {
        let mut raw = Vec::new();
        observer
            .lines
            .read_until(b'\n', &mut raw)
            .expect("a line within the time limit");
        assert!(raw.ends_with(b"\n"), "the server closed early: {raw:?}");
        let row = String::from_utf8(raw).expect("UTF-8");
        let row = row.strip_suffix('\n').unwrap().to_string();
        if row == format!("{from}: done") {
            break;
        }
        if row.starts_with('*') {
            continue;
        }
        assert!(
            row.chars().count() <= ROW,
            "a row wider than {ROW}: {row:?}"
        );
        assert!(
            !row.contains(|c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}'),
            "nothing starts a new line: {row:?}"
        );
        let chars: Vec<char> = row.chars().collect();
        assert!(
            !chars
                .windows(2)
                .any(|w| w[0].is_whitespace() && w[1].is_whitespace()),
            "whitespace collapsed: {row:?}"
        );
        if let Some(more) = row.strip_prefix(&format!("{from}… ")) {
            got.last_mut()
                .expect("a continuation follows a first row")
                .push(more.to_string());
        } else {
            let text = row
                .strip_prefix(&format!("{from}: "))
                .unwrap_or_else(|| panic!("not labelled with its sender: {row:?}"));
            got.push(vec![text.to_string()]);
        }
    }
    assert_eq!(got.len(), cases.len(), "one line each: {got:?}");
    for (rows, (sent, expected)) in got.iter().zip(&cases) {
        match expected {
            Some(expected) => {
                assert_eq!(rows.len(), 1, "{rows:?}");
                assert_eq!(format!("{from}: {}", rows[0]), *expected);
            }
            None => {
                // Rows break at spaces (or inside a word too long for a
                // row): the text is the same but for those spaces.
                let text = rows.join(" ");
                let collapsed = sent.split_whitespace().collect::<Vec<_>>().join(" ");
                let over = collapsed.chars().count() - MAX_SHOWN;
                let mark = format!("… [+{over} characters not passed on]");
                let kept = text
                    .strip_suffix(&mark)
                    .unwrap_or_else(|| panic!("cut and marked {mark:?}: {rows:?}"));
                let bare = |t: &str| t.replace(' ', "");
                let first: String = collapsed.chars().take(MAX_SHOWN).collect();
                assert_eq!(bare(kept), bare(&first), "{rows:?}");
            }
        }
    }
    drop(server);
}

/// Terminal controls from one student reach the others as visible
/// escapes, never as the bytes a terminal would obey: clear screen (ESC
/// [2J), bell, a clipboard write (OSC 52), the one-byte CSI (U+009B, and
/// a bare 0x9b), a right-to-left override, a carriage return.
#[test]
fn control_bytes_are_passed_on_escaped_never_raw() {
    let (mut server, addr) = json_server(&["--chat", "--packets", "off"]);
    let (mut observer, _) = Student::join_labelled(&addr);
    let (mut sender, from) = Student::join_labelled(&addr);
    let attack: &[u8] =
        b"\x1b[2J\x07ring \x1b]52;c;aGk=\x07 \xc2\x9b31m \x9b \xe2\x80\xaeevil\rC1: fake\n";
    sender.out.write_all(attack).unwrap();
    sender.out.write_all(b"done\n").unwrap();
    // The line's rows, until the next line.
    let mut rows: Vec<String> = Vec::new();
    loop {
        let mut raw = Vec::new();
        observer
            .lines
            .read_until(b'\n', &mut raw)
            .expect("a line within the time limit");
        assert!(raw.ends_with(b"\n"), "the server closed early: {raw:?}");
        if raw.starts_with(b"*") {
            continue;
        }
        let body = &raw[..raw.len() - 1];
        assert!(
            !body.iter().any(|b| *b < 0x20 || *b == 0x7f),
            "a raw control byte: {raw:?}"
        );
        let row = std::str::from_utf8(body).expect("UTF-8").to_string();
        assert!(
            !row.contains(|c: char| c.is_control() || c == '\u{202e}'),
            "a raw control character: {row:?}"
        );
        if row == format!("{from}: done") {
            break;
        }
        rows.push(row);
    }
    let text: Vec<&str> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let prefix = if i == 0 {
                format!("{from}: ")
            } else {
                format!("{from}… ")
            };
            row.strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("row {i} not labelled {prefix:?}: {rows:?}"))
        })
        .collect();
    // Rows break at spaces or between escapes: the same text, but for those.
    assert_eq!(
        text.concat().replace(' ', ""),
        "\\x1b[2J\\x07ring \\x1b]52;c;aGk=\\x07 \\u{009b}31m \\x9b \\u{202e}evil\\rC1: fake"
            .replace(' ', ""),
        "{rows:?}"
    );
    // The teacher's screen shows the same text, escaped.
    let note = server.wait_event("the chat note", |e| e["topic"] == "chat");
    // "C1: text   (to 1 other)": the text, then how many it went to.
    let shown = note["text"].as_str().unwrap();
    assert_eq!(note["to"], 1, "{note}");
    let shown = shown.rsplit_once("   (to ").map_or(shown, |(text, _)| text);
    assert!(
        !shown.contains(|c: char| c.is_control() || c == '\u{202e}'),
        "{shown:?}"
    );
    assert_eq!(shown.replace(' ', ""), text.concat().replace(' ', ""));
}

/// The teacher's screen holds a chat: one line per message (who, what, to
/// how many), not the relay's every recv() and send(); --verbose shows them.
#[test]
fn the_projector_shows_one_line_per_chat_message() {
    for verbose in [false, true] {
        let mut args = vec![
            "listen",
            "--port",
            "0",
            "--chat",
            "--color",
            "never",
            "--packets",
            "off",
        ];
        if verbose {
            args.push("--verbose");
        }
        let mut server = Running::start(sockdemo(&args));
        let ready = server.wait_line("the ready line", |l| l.contains("listening on "));
        let addr = ready
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split(". ").next())
            .expect("the address")
            .to_string();
        let students: Vec<std::net::TcpStream> = (0..3)
            .map(|_| std::net::TcpStream::connect(&addr).expect("a student"))
            .collect();
        // The three threads announce their students in any order.
        for _ in 1..=3 {
            server.wait_line("a join", |l| l.contains(" joined the chat"));
        }
        use std::io::Write;
        (&students[0]).write_all(b"hello everyone\n").unwrap();
        server.wait_line("the message", |l| {
            l.contains("C1: hello everyone   (to 2 others)")
        });
        drop(students);
        let (stopped, lines, _) = server.terminate();
        assert!(stopped.success());
        let relay = lines
            .iter()
            .filter(|l| {
                // A call line names its bytes ("recv(12, up to 4096 bytes)").
                let call = (l.contains(" send(") || l.contains(" recv(")) && l.contains(" bytes)");
                call || l.contains("▶ out") || l.contains("◀ in")
            })
            .filter(|l| !l.contains("= -1"))
            .count();
        if verbose {
            assert!(relay >= 3, "--verbose shows the relay: {lines:#?}");
        } else {
            assert_eq!(relay, 0, "one line per message: {lines:#?}");
        }
    }
}
