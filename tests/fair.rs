//! Fair sharing of a classroom server, attacked with the real release
//! binary: a client that says nothing (`--idle-timeout`), a line or frame
//! left half-sent (`--partial-timeout`), one address that opens too many
//! connections (`--max-per-host`, across a veth pair between two network
//! namespaces the test makes and removes), and a crowd of refused clients
//! that trickle bytes forever (`--max-clients`), which must cost the server
//! no thread and no descriptor. Meanwhile an honest client is timed: its
//! round trips are printed (a benchmark, not a test), and it must be served.
//!
//! Traffic stays on loopback, or inside the namespaces this file creates.
//! Packet capture is off: these are tests of the limits, not of the wire.
#![cfg(target_os = "linux")]

mod common;
use common::*;

use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

// ── Helpers ────────────────────────────────────────────────────────────────

/// Waits for a stop signal at most `pace`: a client that acts at its own
/// pace (an honest talker, an attacker's trickle) waits for the event that
/// ends it, and goes on when the pace has passed. True once told to stop
/// (or when the sender is gone).
fn stopped_within(stop: &Receiver<()>, pace: Duration) -> bool {
    !matches!(stop.recv_timeout(pace), Err(RecvTimeoutError::Timeout))
}

/// A server event that may already have gone by (it is then in `seen`).
fn seen_or_next(server: &mut Running, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    let earlier = server
        .seen
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| wanted(v));
    match earlier {
        Some(v) => v,
        None => server.wait_event(what, &wanted),
    }
}

/// The server's label (C1, C2…) for the client whose own address is `client`.
fn label_of(server: &mut Running, client: &TcpStream) -> String {
    let remote = client.local_addr().unwrap().to_string();
    let ev = seen_or_next(server, &format!("the tuple note of {remote}"), |v| {
        v["topic"] == "tuple" && v["remote"] == remote.as_str()
    });
    ev["conn"]
        .as_str()
        .expect("tuple note has conn")
        .to_string()
}

/// The server's close() of one client: from then on its place is free.
fn wait_closed(server: &mut Running, conn: &str) {
    seen_or_next(server, &format!("the server's close() of {conn}"), |v| {
        v["kind"] == "syscall" && v["call"] == "close" && v["conn"] == conn
    });
}

/// Waits until `n` events satisfying `wanted` have been printed in all.
fn wait_count(server: &mut Running, what: &str, n: usize, wanted: impl Fn(&Value) -> bool) {
    let mut have = server
        .seen
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| wanted(v))
        .count();
    // Each wait is bounded by PATIENCE, and there are at most `n` of them.
    while have < n {
        server.wait_event(&format!("{what} ({have} of {n} so far)"), &wanted);
        have += 1;
    }
}

fn connect(addr: &str) -> TcpStream {
    let addr: SocketAddr = addr.parse().expect("server address");
    let s = TcpStream::connect_timeout(&addr, PATIENCE).expect("connect to the server");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Sends `msg` and reads back exactly as many bytes; they must be `echo`.
/// Returns the round trip.
fn round_trip(s: &mut TcpStream, msg: &[u8], echo: &[u8]) -> Duration {
    let start = Instant::now();
    s.write_all(msg).expect("send to the server");
    let mut back = vec![0u8; echo.len()];
    s.read_exact(&mut back).expect("the echo");
    let took = start.elapsed();
    assert_eq!(
        String::from_utf8_lossy(&back),
        String::from_utf8_lossy(echo),
        "the echo is byte-exact"
    );
    took
}

/// Reads until the server's FIN (read() = 0), bounded by PATIENCE. Err if
/// the connection was reset instead, or nothing came in time.
fn read_to_fin(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    s.set_read_timeout(Some(PATIENCE))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Stops the server with SIGTERM; its events, and its summary note.
fn stop(server: Running) -> (Vec<Value>, Value) {
    let (status, lines, stderr) = server.terminate();
    assert!(status.success(), "a clean stop: {:?}\n{stderr}", status.0);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let events = parse_lines(&lines.join("\n"));
    let summary = events
        .iter()
        .find(|e| e["topic"] == "summary")
        .cloned()
        .expect("a summary note");
    (events, summary)
}

fn notes_about<'a>(events: &'a [Value], topic: &str, conn: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["kind"] == "note" && e["topic"] == topic && e["conn"] == conn)
        .collect()
}

/// How many threads and open descriptors process `pid` has now.
fn threads_and_fds(pid: u32) -> (usize, usize) {
    let count = |dir: String| {
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .count()
    };
    (
        count(format!("/proc/{pid}/task")),
        count(format!("/proc/{pid}/fd")),
    )
}

// ── 1. --idle-timeout ──────────────────────────────────────────────────────

/// Silent clients are closed with a FIN after a second of silence, each
/// with an "idle" note; an honest client that keeps talking is echoed
/// byte-exact before, while and after, and its round trips are printed.
#[test]
fn idle_clients_are_closed_and_the_honest_one_is_served() {
    const SILENT: usize = 8;
    let (mut server, addr) = json_server_ready(&["--idle-timeout", "1", "--packets", "off"]);

    // The honest client talks every 100 ms until told to stop (and at
    // least 3 more times after the silent ones were closed).
    let mut honest = connect(&addr);
    let honest_label = label_of(&mut server, &honest);
    let (silenced, silenced_rx) = channel::<()>();
    let talker = {
        thread::spawn(move || {
            let mut times = Vec::new();
            let mut after = 0;
            let mut told = false;
            // Bounded: at most 150 rounds (15 s); the silent ones go in about 1 s.
            for i in 0..150 {
                let msg = format!("honest {i}\n");
                times.push(round_trip(&mut honest, msg.as_bytes(), msg.as_bytes()));
                if told {
                    after += 1;
                    if after >= 3 {
                        break;
                    }
                } else {
                    // Until the silent ones are gone: a line every 100 ms.
                    told = stopped_within(&silenced_rx, Duration::from_millis(100));
                }
            }
            // Leaves politely (FIN), before its own second of silence.
            honest.shutdown(Shutdown::Write).unwrap();
            let rest = read_to_fin(&mut honest).expect("the server's FIN for the honest client");
            (times, after, rest)
        })
    };

    let mut silent = Vec::new();
    for _ in 0..SILENT {
        // Its silence is counted from before connect(): the server's clock
        // for it cannot start sooner.
        let since = Instant::now();
        let s = connect(&addr);
        let label = label_of(&mut server, &s);
        silent.push((s, label, since));
    }
    for (s, label, since) in &mut silent {
        let got = read_to_fin(s)
            .unwrap_or_else(|e| panic!("{label}: a FIN (read() = 0) expected, got {e}"));
        let waited = since.elapsed();
        assert!(got.is_empty(), "{label} sent nothing and got {got:?}");
        assert!(
            waited >= Duration::from_secs(1),
            "{label} closed after {waited:?}, before its second of silence"
        );
        assert!(
            waited < Duration::from_secs(10),
            "{label} closed only after {waited:?}"
        );
    }
    let _ = silenced.send(());
    let (mut times, after, rest) = talker.join().expect("the honest client");
    assert!(
        after >= 3,
        "the honest client was echoed after the silent ones left"
    );
    assert!(
        rest.is_empty(),
        "nothing more for the honest client: {rest:?}"
    );
    wait_closed(&mut server, &honest_label);
    let rounds = times.len();
    let (mid, max) = (median(&mut times), times[rounds - 1]);
    eprintln!(
        "idle attack ({SILENT} silent clients): honest round trip median {:.3} ms, max {:.3} ms over {rounds} rounds",
        ms(mid),
        ms(max)
    );

    let (events, summary) = stop(server);
    for (_, label, _) in &silent {
        let idle = notes_about(&events, "idle", label);
        assert_eq!(idle.len(), 1, "one idle note for {label}: {idle:?}");
        let note = idle[0];
        assert_eq!(note["seconds"].as_f64(), Some(1.0), "{note}");
        let text = note["text"].as_str().unwrap();
        assert!(
            text.contains("for 1 s") && text.contains("--idle-timeout"),
            "{note}"
        );
        assert!(notes_about(&events, "partial", label).is_empty());
    }
    assert!(
        notes_about(&events, "idle", &honest_label).is_empty(),
        "the honest client is not called idle"
    );
    assert_eq!(summary["silenced"], SILENT as u64, "{summary}");
    assert_eq!(summary["clients"], 1 + SILENT as u64, "{summary}");
    assert_eq!(summary["refused"], 0, "{summary}");
    assert_eq!(summary["cut"], 0, "{summary}");
}

// ── 2. --partial-timeout ───────────────────────────────────────────────────

/// The "partial" note of `label`, which must say the limit.
fn assert_partial_note(events: &[Value], label: &str) {
    let partial = notes_about(events, "partial", label);
    assert_eq!(
        partial.len(),
        1,
        "one partial note for {label}: {partial:?}"
    );
    let note = partial[0];
    assert_eq!(note["seconds"].as_f64(), Some(1.0), "{note}");
    let text = note["text"].as_str().unwrap();
    assert!(
        text.contains("half-sent for 1 s") && text.contains("--partial-timeout"),
        "{note}"
    );
    assert!(notes_about(events, "idle", label).is_empty());
}

/// Sends `bytes` and expects the server's FIN a second or more later.
fn half_sent_is_closed(s: &mut TcpStream, label: &str, bytes: &[u8]) {
    // From before send(): on loopback the server may read the bytes before it returns.
    let since = Instant::now();
    s.write_all(bytes).unwrap();
    let got =
        read_to_fin(s).unwrap_or_else(|e| panic!("{label}: a FIN (read() = 0) expected, got {e}"));
    let waited = since.elapsed();
    assert!(
        got.is_empty(),
        "{label}: nothing of a half message is echoed: {got:?}"
    );
    assert!(
        waited >= Duration::from_secs(1),
        "{label} closed {waited:?} after its half message, before the limit"
    );
    assert!(
        waited < Duration::from_secs(10),
        "{label} closed only after {waited:?}"
    );
}

/// Line framing: `abc` without its newline is closed after a second; a
/// client that sends a whole line every 200 ms for 2 s is not, and neither
/// is a silent one (`--idle-timeout 0` is off).
#[test]
fn a_half_line_is_closed_whole_lines_are_not() {
    let (mut server, addr) = json_server_ready(&[
        "--framing",
        "line",
        "--partial-timeout",
        "1",
        "--idle-timeout",
        "0",
        "--packets",
        "off",
    ]);
    let mut quiet = connect(&addr);
    let quiet_label = label_of(&mut server, &quiet);
    let mut talker = connect(&addr);
    let talker_label = label_of(&mut server, &talker);
    let (enough, enough_rx) = channel::<()>();
    let lines = thread::spawn(move || {
        let start = Instant::now();
        let mut sent = 0;
        // A line every 200 ms while the half-sent clients are closed (each
        // after at least the 1 s partial limit), at most 40 (8 s).
        while sent < 40 {
            let line = format!("line {sent}\n");
            round_trip(&mut talker, line.as_bytes(), line.as_bytes());
            sent += 1;
            if stopped_within(&enough_rx, Duration::from_millis(200)) {
                break;
            }
        }
        (talker, sent, start.elapsed())
    });

    let mut half = connect(&addr);
    let half_label = label_of(&mut server, &half);
    half_sent_is_closed(&mut half, &half_label, b"abc");

    // A slow line: a byte every 300 ms, never idle, never finished. (A
    // byte may reach the server just as it closes: then its kernel answers
    // with a reset instead of FIN, as it must with unread data, so either
    // ends the slow client here. The pace keeps that rare.)
    let mut slow = connect(&addr);
    let slow_label = label_of(&mut server, &slow);
    slow.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let since = Instant::now();
    let mut closed = None;
    for _ in 0..50 {
        if let Err(e) = slow.write_all(b"z") {
            closed = Some(format!("send: {e}"));
            break;
        }
        // Waits up to 300 ms for the server's FIN: the slow client's pace.
        match slow.read(&mut [0u8; 64]) {
            Ok(0) => closed = Some("FIN".to_string()),
            Ok(n) => panic!("{n} bytes echoed of a line never finished"),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => closed = Some(e.to_string()),
            Err(e) => panic!("{slow_label}: a FIN expected, got {e}"),
        }
        break;
    }
    let waited = since.elapsed();
    let closed = closed.unwrap_or_else(|| panic!("{slow_label} was never closed"));
    eprintln!("the slow line was closed after {waited:?} ({closed})");
    assert!(
        (Duration::from_secs(1)..Duration::from_secs(10)).contains(&waited),
        "{slow_label}, a byte every 300 ms, was closed after {waited:?}"
    );

    let _ = enough.send(());
    let (mut talker, sent, talked) = lines.join().expect("the line client");
    assert!(
        sent >= 5 && talked >= Duration::from_secs(1),
        "the line client sent {sent} lines in {talked:?}: longer than the partial limit"
    );
    // Still served, seconds on: one more line, and the silent client too.
    round_trip(&mut talker, b"still here\n", b"still here\n");
    quiet.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    match quiet.read(&mut byte) {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the silent client was closed with --idle-timeout 0: {other:?}"),
    }
    quiet.set_nonblocking(false).unwrap();
    round_trip(&mut quiet, b"late\n", b"late\n");
    for (s, label) in [(&mut talker, &talker_label), (&mut quiet, &quiet_label)] {
        s.shutdown(Shutdown::Write).unwrap();
        read_to_fin(s).expect("the server's FIN");
        wait_closed(&mut server, label);
    }

    let (events, summary) = stop(server);
    assert_partial_note(&events, &half_label);
    assert_partial_note(&events, &slow_label);
    for label in [&talker_label, &quiet_label] {
        assert!(notes_about(&events, "partial", label).is_empty(), "{label}");
        assert!(notes_about(&events, "idle", label).is_empty(), "{label}");
    }
    assert_eq!(summary["silenced"], 2, "{summary}");
}

/// writeUTF framing: a header that promises 100 bytes followed by only 10
/// is closed after a second; a whole frame is echoed byte-exact.
#[test]
fn a_half_frame_is_closed() {
    let (mut server, addr) = json_server_ready(&[
        "--framing",
        "utf",
        "--partial-timeout",
        "1",
        "--idle-timeout",
        "0",
        "--packets",
        "off",
    ]);
    let mut whole = connect(&addr);
    let whole_label = label_of(&mut server, &whole);
    round_trip(&mut whole, b"\x00\x05hello", b"\x00\x05hello");

    let mut half = connect(&addr);
    let half_label = label_of(&mut server, &half);
    half_sent_is_closed(&mut half, &half_label, b"\x00\x640123456789");

    // The whole-frame client, a second and more later, is still served.
    round_trip(&mut whole, b"\x00\x02ok", b"\x00\x02ok");
    whole.shutdown(Shutdown::Write).unwrap();
    read_to_fin(&mut whole).expect("the server's FIN");
    wait_closed(&mut server, &whole_label);

    let (events, summary) = stop(server);
    assert_partial_note(&events, &half_label);
    assert!(notes_about(&events, "partial", &whole_label).is_empty());
    assert_eq!(summary["silenced"], 1, "{summary}");
}

// ── 3. --max-per-host, across a veth pair ──────────────────────────────────

/// Two network namespaces joined by a veth pair: the server's (10.231.0.1)
/// and the clients' (10.231.0.2 and 10.231.0.3). Removed when dropped,
/// also on a panic.
struct Classroom {
    server_ns: String,
    client_ns: String,
    veth: String,
}

impl Classroom {
    const SERVER_IP: &'static str = "10.231.0.1";
    const STUDENT_A: &'static str = "10.231.0.2";
    const STUDENT_B: &'static str = "10.231.0.3";

    /// The namespaces, or None (and a line saying why) without root or `ip netns`.
    fn if_possible() -> Option<Classroom> {
        if !is_root() {
            eprintln!("skipped: network namespaces need root");
            return None;
        }
        let ip = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output();
        if !ip.is_ok_and(|out| out.status.success()) {
            eprintln!("skipped: `ip netns` is not available");
            return None;
        }
        Some(Classroom::new())
    }

    fn new() -> Classroom {
        // Unique per test: the tests of one binary run at the same time.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let id = (std::process::id() % 10_000) * 10 + NEXT.fetch_add(1, Ordering::Relaxed);
        let room = Classroom {
            server_ns: format!("sdfairS{id}"),
            client_ns: format!("sdfairC{id}"),
            veth: format!("vfS{id}"),
        };
        let (vs, vc) = (format!("vfS{id}"), format!("vfC{id}"));
        let (s, c) = (room.server_ns.as_str(), room.client_ns.as_str());
        let server_cidr = format!("{}/24", Self::SERVER_IP);
        let a_cidr = format!("{}/24", Self::STUDENT_A);
        let b_cidr = format!("{}/24", Self::STUDENT_B);
        for ns in [s, c] {
            let status = std::process::Command::new("ip")
                .args(["netns", "add", ns])
                .status()
                .expect("run ip");
            // On failure `room` is dropped here, and removes what was made.
            assert!(status.success(), "ip netns add {ns}");
        }
        join_namespaces(s, &vs, &[&server_cidr], c, &vc, &[&a_cidr, &b_cidr]);
        room
    }

    /// `sockdemo ARGS` inside the server's namespace.
    fn server(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.server_ns, bin()])
            .args(args);
        cmd
    }

    /// A connection from `from` (an address of the clients' namespace) to `to`.
    fn connect(&self, from: &str, to: &str) -> TcpStream {
        connect_in(&self.client_ns, from, to)
    }
}

/// A connection from `from` to `to`, made by a thread that enters network
/// namespace `ns`. The socket belongs to that namespace for good; the
/// thread ends.
fn connect_in(ns: &str, from: &str, to: &str) -> TcpStream {
    use std::os::fd::AsRawFd;
    let path = format!("/run/netns/{ns}");
    let from: SocketAddr = format!("{from}:0").parse().unwrap();
    let to: SocketAddr = to.parse().unwrap();
    let s = thread::spawn(move || -> std::io::Result<TcpStream> {
        let ns = std::fs::File::open(&path)?;
        // SAFETY: setns on a descriptor we own, for this thread only.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(to),
            socket2::Type::STREAM,
            None,
        )?;
        sock.bind(&from.into())?;
        sock.connect_timeout(&to.into(), PATIENCE)?;
        Ok(sock.into())
    })
    .join()
    .expect("the namespace thread")
    .unwrap_or_else(|e| panic!("connect from {from} to {to}: {e}"));
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

impl Drop for Classroom {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and so the pair.
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
        // A pair that never reached its namespace (a setup that failed half-way).
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.veth])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// One address gets 3 places: its 4th connection is told why and closed;
/// another address is still served; when one of the 3 leaves, the first
/// address may connect again.
#[test]
fn one_host_cannot_take_every_place() {
    let Some(room) = Classroom::if_possible() else {
        return;
    };
    let mut server = Running::start(room.server(&[
        "listen",
        "--host",
        Classroom::SERVER_IP,
        "--port",
        "0",
        "--json",
        "--packets",
        "off",
        "--max-per-host",
        "3",
    ]));
    let addr = server.listening_addr();
    server.wait_event("the ready note", |e| e["topic"] == "ready");
    assert!(addr.starts_with(Classroom::SERVER_IP), "{addr}");

    let a = Classroom::STUDENT_A;
    let mut served = Vec::new();
    for i in 0..3 {
        let mut s = room.connect(a, &addr);
        let msg = format!("place {i}\n");
        round_trip(&mut s, msg.as_bytes(), msg.as_bytes());
        let label = label_of(&mut server, &s);
        served.push((s, label));
    }

    // The 4th from the same address: one line saying why, then a FIN.
    let mut fourth = room.connect(a, &addr);
    let fourth_label = label_of(&mut server, &fourth);
    let told = read_to_fin(&mut fourth).expect("the refusal, then a FIN");
    assert_eq!(
        String::from_utf8_lossy(&told),
        format!("sockdemo: too many connections from {a} (3); close one and try again\n")
    );
    let refused = seen_or_next(&mut server, "the refused note", |e| {
        e["topic"] == "refused" && e["conn"] == fourth_label.as_str()
    });
    assert_eq!(
        refused["remote"],
        fourth.local_addr().unwrap().to_string().as_str(),
        "{refused}"
    );
    let text = refused["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("3 connections from {a}")) && text.contains("--max-per-host"),
        "{refused}"
    );

    // Another address of the class is still served.
    let mut other = room.connect(Classroom::STUDENT_B, &addr);
    round_trip(&mut other, b"other host\n", b"other host\n");

    // One of the three leaves: the first address may connect again.
    let (first, first_label) = served.remove(0);
    first.shutdown(Shutdown::Both).unwrap();
    drop(first);
    wait_closed(&mut server, &first_label);
    let mut again = room.connect(a, &addr);
    round_trip(&mut again, b"again\n", b"again\n");
    for (s, _) in &mut served {
        round_trip(s, b"still\n", b"still\n");
    }

    drop((served, other, again, fourth));
    let (events, summary) = stop(server);
    let refusals: Vec<_> = events.iter().filter(|e| e["topic"] == "refused").collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(summary["refused"], 1, "{summary}");
    assert_eq!(summary["clients"], 6, "{summary}");
    assert_eq!(summary["peak"], 4, "{summary}");
    drop(room);
}

// ── 4. --max-clients: refused clients cost no thread ───────────────────────

/// 5 clients hold every place; then 200 more connect and each trickles a
/// byte every 100 ms, never reading, never closing. The server's threads
/// and descriptors stay those of its 5 clients (plus a small constant); an
/// honest client among the 5 is timed meanwhile; and when one of the 5
/// leaves, a new client is served while the trickle goes on.
#[test]
fn refused_clients_cost_no_thread() {
    const MAX: usize = 5;
    const ATTACKERS: usize = 200;
    /// Threads or descriptors the server may have beyond its baseline and
    /// one per client (a lesson's sockets come and go; nothing scales).
    const SLACK: usize = 4;
    let (mut server, addr) = json_server_ready(&["--max-clients", "5", "--packets", "off"]);
    let pid = server.child.id();
    let (base_threads, base_fds) = threads_and_fds(pid);

    let mut held: Vec<(TcpStream, String)> = (0..MAX)
        .map(|i| {
            let mut s = connect(&addr);
            let msg = format!("held {i}\n");
            round_trip(&mut s, msg.as_bytes(), msg.as_bytes());
            let label = label_of(&mut server, &s);
            (s, label)
        })
        .collect();
    let (held_threads, held_fds) = threads_and_fds(pid);
    let mut quiet_times: Vec<Duration> = (0..20)
        .map(|i| {
            let msg = format!("before {i:02}\n");
            round_trip(&mut held[0].0, msg.as_bytes(), msg.as_bytes())
        })
        .collect();

    // One refused client that reads: it is told the server is full.
    let mut reader = connect(&addr);
    let told = read_to_fin(&mut reader).expect("the refusal, then a FIN");
    assert_eq!(
        String::from_utf8_lossy(&told),
        "sockdemo: server full (5 clients); try again later\n"
    );

    // The crowd: connected one after another, then trickling from one thread.
    let crowd: Vec<TcpStream> = (0..ATTACKERS)
        .map(|_| {
            let s = connect(&addr);
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let (stop_trickle, trickling) = channel::<()>();
    let (round_done, rounds_done) = channel::<u64>();
    let trickle = {
        thread::spawn(move || {
            let (mut taken, mut failed, mut rounds) = (0u64, 0u64, 0u64);
            // Bounded: 200 rounds (20 s) at most; the test stops it sooner.
            while rounds < 200 {
                for mut s in &crowd {
                    match s.write(b".") {
                        Ok(n) => taken += n as u64,
                        Err(_) => failed += 1,
                    }
                }
                rounds += 1;
                let _ = round_done.send(rounds);
                // A byte from each every 100 ms, until the test stops it.
                if stopped_within(&trickling, Duration::from_millis(100)) {
                    break;
                }
            }
            (crowd, taken, failed, rounds)
        })
    };
    wait_count(&mut server, "the crowd's refusals", ATTACKERS + 1, |e| {
        e["topic"] == "refused"
    });

    // While they trickle: the honest client's round trips, and the
    // server's threads and descriptors, a few times.
    let mut samples = Vec::new();
    let mut attack_times = Vec::new();
    for i in 0..40 {
        let msg = format!("during {i:02}\n");
        attack_times.push(round_trip(&mut held[0].0, msg.as_bytes(), msg.as_bytes()));
        if i % 8 == 0 {
            samples.push(threads_and_fds(pid));
            // The next sample after another round of the trickle.
            while rounds_done.try_recv().is_ok() {}
            rounds_done
                .recv_timeout(PATIENCE)
                .expect("the trickle goes on");
        }
    }

    // One of the five leaves; a newcomer is served, the trickle still on.
    let (leaver, leaver_label) = held.pop().unwrap();
    leaver.shutdown(Shutdown::Both).unwrap();
    drop(leaver);
    wait_closed(&mut server, &leaver_label);
    let mut newcomer = connect(&addr);
    round_trip(&mut newcomer, b"my turn\n", b"my turn\n");
    samples.push(threads_and_fds(pid));
    assert!(!trickle.is_finished(), "the trickle was still on");
    let _ = stop_trickle.send(());
    let (crowd, taken, failed, rounds) = trickle.join().expect("the trickle");

    eprintln!(
        "max-clients {MAX}: server threads/fds at start {base_threads}/{base_fds}, \
         with {MAX} clients {held_threads}/{held_fds}, \
         while {ATTACKERS} refused clients trickled: {}",
        samples
            .iter()
            .map(|(t, f)| format!("{t}/{f}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!(
        "the trickle: {rounds} rounds, {taken} bytes taken by the kernel, {failed} sends failed (reset by the server's kernel after the refusal)"
    );
    let (before, during) = (median(&mut quiet_times), median(&mut attack_times));
    eprintln!(
        "refused-crowd attack: honest round trip median {:.3} ms before, {:.3} ms during (max {:.3} ms, {} rounds)",
        ms(before),
        ms(during),
        ms(*attack_times.last().unwrap()),
        attack_times.len()
    );
    for (threads, fds) in &samples {
        assert!(
            *threads <= base_threads + MAX + SLACK,
            "{threads} threads with {MAX} clients served and {ATTACKERS} refused (baseline {base_threads})"
        );
        assert!(
            *fds <= base_fds + MAX + SLACK,
            "{fds} descriptors with {MAX} clients served and {ATTACKERS} refused (baseline {base_fds})"
        );
    }

    drop((crowd, held, newcomer, reader));
    let (_, summary) = stop(server);
    assert_eq!(summary["refused"], 1 + ATTACKERS as u64, "{summary}");
    assert_eq!(
        summary["clients"],
        (MAX + 1 + ATTACKERS + 1) as u64,
        "{summary}"
    );
    assert_eq!(summary["peak"], MAX as u64, "{summary}");
}

// ── Known server bugs (ignored until fixed; see each reason) ───────────────

/// A server whose events arrive through a channel, for a wait that may
/// time out without printing the whole (long) narration.
struct Narrated {
    child: std::process::Child,
    events: std::sync::mpsc::Receiver<Value>,
}

impl Narrated {
    fn start(extra: &[&str]) -> (Narrated, String) {
        use std::io::BufRead;
        let mut args = vec!["listen", "--port", "0", "--json"];
        args.extend_from_slice(extra);
        let mut child = sockdemo(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn sockdemo");
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let (tx, events) = std::sync::mpsc::channel();
        thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        let mut server = Narrated { child, events };
        let ready = server
            .within(PATIENCE, |e| e["topic"] == "ready")
            .expect("the ready note");
        let addr = ready["addr"].as_str().unwrap().to_string();
        (server, addr)
    }

    /// The first event from now on that satisfies `wanted`, if one comes within `limit`.
    fn within(&mut self, limit: Duration, wanted: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.events.recv_timeout(left) {
                Ok(v) if wanted(&v) => return Some(v),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

impl Drop for Narrated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that sends and never reads: once the buffers are full the
/// echo's send() waits, and the client sends nothing more. It is as silent
/// as an idle client, so `--idle-timeout 1` closes it and frees its place.
#[test]
fn a_client_that_never_reads_is_closed_too() {
    let (mut server, addr) = Narrated::start(&[
        "--idle-timeout",
        "1",
        "--max-clients",
        "1",
        "--packets",
        "off",
    ]);
    let mut hog = connect(&addr);
    let hog_addr = hog.local_addr().unwrap().to_string();
    let hog_label = server
        .within(PATIENCE, |e| {
            e["topic"] == "tuple" && e["remote"] == hog_addr.as_str()
        })
        .expect("the hog's tuple note")["conn"]
        .as_str()
        .unwrap()
        .to_string();
    hog.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0usize;
    // Until no buffer takes more (half a second without progress); at most
    // 64 MiB. The server may give up first and reset the connection (its
    // send() waited the idle timeout while this was still writing).
    for _ in 0..1024 {
        match hog.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the hog's send: {e}"),
        }
    }
    eprintln!("the client that never reads sent {sent} bytes, and now sends nothing");
    // The server says why: the echo could not go out for the idle timeout
    // ("not-reading"); or, when the two sockets' buffers took the whole
    // echo (a loaded machine makes the client stop writing sooner), the
    // server waited in recv() and the client sent nothing for it ("idle").
    let why = server.within(Duration::from_secs(10), |e| {
        (e["topic"] == "not-reading" || e["topic"] == "idle") && e["conn"] == hog_label.as_str()
    });
    let why = why.unwrap_or_else(|| {
        panic!("{hog_label} sent nothing for 10 s with --idle-timeout 1, and is still served")
    });
    assert_eq!(why["seconds"], 1.0, "{why}");
    let closed = server.within(Duration::from_secs(10), |e| {
        e["kind"] == "syscall" && e["call"] == "close" && e["conn"] == hog_label.as_str()
    });
    assert!(closed.is_some(), "{hog_label} is closed after the note");
    let mut next = connect(&addr);
    round_trip(&mut next, b"my turn\n", b"my turn\n");
    drop(hog);
}

/// "Loopback (this machine's own programs) is not limited": on a
/// dual-stack listener (`--host ::`) an IPv4 loopback client's address is
/// ::ffff:127.0.0.1, which Rust's `Ipv6Addr::is_loopback` does not call
/// loopback, so the limit applies to it. Run inside a namespace of our own
/// (a `::` listener there reaches no real network).
#[test]
fn loopback_is_not_limited_on_a_dual_stack_server() {
    let Some(room) = Classroom::if_possible() else {
        return;
    };
    let mut server = Running::start(room.server(&[
        "listen",
        "--host",
        "::",
        "--port",
        "0",
        "--json",
        "--packets",
        "off",
        "--max-per-host",
        "1",
    ]));
    let port = port_number(&server.listening_addr());
    let mut held = Vec::new();
    for i in 0..3 {
        let mut s = connect_in(&room.server_ns, "127.0.0.1", &format!("127.0.0.1:{port}"));
        let msg = format!("local {i}\n");
        s.write_all(msg.as_bytes()).unwrap();
        // The echo, or the refusal: each one line.
        let mut answer = Vec::new();
        std::io::BufRead::read_until(&mut std::io::BufReader::new(&s), b'\n', &mut answer)
            .expect("an answer");
        assert_eq!(
            String::from_utf8_lossy(&answer),
            msg,
            "IPv4 loopback client {} of a --max-per-host 1 server",
            i + 1
        );
        held.push(s);
    }
    drop(held);
    let (_, summary) = stop(server);
    assert_eq!(summary["refused"], 0, "{summary}");
    drop(room);
}
