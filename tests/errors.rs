//! Failures are lessons: every way a socket call can fail ends in a short
//! explanation of what happened on the network and what to do, with exit
//! status 1 (2 for a command line that cannot be understood), never a panic.
//!
//! Each failure is produced for real, with the real binary: a port nobody
//! listens on, a port that is taken, a privileged port, a name that does not
//! resolve, a full accept queue, a peer that resets. Traffic stays on
//! loopback, or inside a network namespace the test creates (and the kernel
//! removes when its last process exits), where nothing can leave the machine.
#![cfg(unix)]

mod common;
use common::*;

use serde_json::Value;
use socket2::SockRef;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

// ── What every failure must look like ──────────────────────────────────────

/// A crash is never an explanation.
fn assert_no_crash(what: &str, out: &Output) {
    for crash in ["panicked", "RUST_BACKTRACE", "internal error"] {
        assert!(
            !out.stderr.contains(crash),
            "{what}: stderr shows a crash ({crash:?}):\n{}",
            out.stderr
        );
    }
}

fn missing<'a>(text: &str, words: &[&'a str]) -> Vec<&'a str> {
    let text = text.to_lowercase();
    words
        .iter()
        .copied()
        .filter(|w| !text.contains(&w.to_lowercase()))
        .collect()
}

/// The words a failure must be explained with (compared without regard to case).
struct Lesson<'a> {
    /// The JSON error's stable `code`.
    code: &'a str,
    /// In the one-line summary: the call, the address, the error.
    summary: &'a [&'a str],
    /// In the explanation: what happened on the network.
    explanation: &'a [&'a str],
    /// After "What to do": what to do about it.
    advice: &'a [&'a str],
}

/// What follows "What to do" (empty if there is no advice).
fn advice_in(text: &str) -> &str {
    text.split_once("What to do")
        .map_or("", |(_, advice)| advice)
}

/// Checks one failed run: exit status 1, no crash, and the lesson on
/// stderr (human form) and, with `--json`, as the last event on stdout.
fn assert_lesson(what: &str, json: bool, out: &Output, lesson: &Lesson) {
    let form = if json { "--json" } else { "human" };
    let context = format!(
        "{what} ({form})\n--- stdout:\n{}\n--- stderr:\n{}",
        out.stdout, out.stderr
    );
    assert_eq!(out.status.code(), Some(1), "exit status: {context}");
    assert_no_crash(what, out);

    // stderr carries the lesson in both forms: a person may read either.
    let first = out.stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("sockdemo: "), "first line: {context}");
    let lost = missing(first, lesson.summary);
    assert!(lost.is_empty(), "summary lacks {lost:?}: {context}");
    let lost = missing(&out.stderr, lesson.explanation);
    assert!(lost.is_empty(), "stderr lacks {lost:?}: {context}");
    let lost = missing(advice_in(&out.stderr), lesson.advice);
    assert!(lost.is_empty(), "advice lacks {lost:?}: {context}");
    let lines = out.stderr.lines().count();
    assert!(
        lines <= 8,
        "a short explanation, not {lines} lines: {context}"
    );

    if json {
        // Every line of stdout is JSON, and the failure is the last event.
        let events = out.events();
        let errors = of_kind(&events, "error");
        assert_eq!(errors.len(), 1, "one error event: {context}");
        let error = events.last().expect("events");
        assert_eq!(error["kind"], "error", "the error comes last: {context}");
        assert_eq!(error["code"], lesson.code, "stable code: {context}");
        let summary = error["error"].as_str().unwrap_or_default();
        let lost = missing(summary, lesson.summary);
        assert!(lost.is_empty(), "JSON error lacks {lost:?}: {context}");
        let text = error["text"].as_str().unwrap_or_default();
        let lost = missing(text, lesson.explanation);
        assert!(lost.is_empty(), "JSON text lacks {lost:?}: {context}");
        let lost = missing(advice_in(text), lesson.advice);
        assert!(lost.is_empty(), "JSON advice lacks {lost:?}: {context}");
    }
}

/// `args`, plus `--json` when asked.
fn with_json<'a>(args: &[&'a str], json: bool) -> Vec<&'a str> {
    let mut all = args.to_vec();
    if json {
        all.push("--json");
    }
    all
}

// ── Helpers for the test's own sockets ─────────────────────────────────────

/// Reads until a newline (or the end of the stream); every read is bounded.
fn read_line(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.contains(&b'\n') {
        assert!(Instant::now() < deadline, "no line within {PATIENCE:?}");
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading a line: {e}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Reads exactly `len` bytes; every read is bounded.
fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut got = vec![0u8; len];
    stream
        .read_exact(&mut got)
        .unwrap_or_else(|e| panic!("reading {len} bytes: {e}"));
    got
}

/// Connects, sends `word` as a line and waits for its echo.
fn echo_client(addr: &str, word: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect to the server");
    stream.write_all(format!("{word}\n").as_bytes()).unwrap();
    assert_eq!(
        read_line(&mut stream),
        format!("{word}\n"),
        "echo of {word}"
    );
    stream
}

/// A server event that may already have gone by (it is then in `seen`).
fn event_seen_or_next(server: &mut Running, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
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

/// The server's name (C1, C2…) for the client whose address is `client`.
fn conn_id(server: &mut Running, client: SocketAddr) -> String {
    let remote = client.to_string();
    let ev = event_seen_or_next(server, &format!("the tuple of {remote}"), |v| {
        v["topic"] == "tuple" && v["remote"] == remote.as_str()
    });
    ev["conn"]
        .as_str()
        .expect("tuple note has conn")
        .to_string()
}

/// The server's close() of one client: its descriptor is freed.
fn wait_closed(server: &mut Running, conn: &str) -> Value {
    event_seen_or_next(server, &format!("the server's close() of {conn}"), |v| {
        v["kind"] == "syscall" && v["call"] == "close" && v["conn"] == conn
    })
}

// ── 1. Connection refused ──────────────────────────────────────────────────

/// Nothing listens on the port: the SYN is answered with a reset, and the
/// student is told to start the server first.
#[test]
fn connection_refused_is_explained() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
        // Dropped here: the port is closed again.
    };
    let target = format!("127.0.0.1:{port}");
    for json in [false, true] {
        let out = run(
            sockdemo(&with_json(&["connect", &target, "--send", "hi"], json)),
            b"",
        );
        assert_lesson(
            "connect to a closed port",
            json,
            &out,
            &Lesson {
                code: "refused",
                summary: &["connect", &target, "refused"],
                explanation: &["nothing is listening", "reset", "RST", "LISTEN"],
                advice: &[&format!("sockdemo listen --port {port}")],
            },
        );
    }
}

// ── 2. Address already in use ──────────────────────────────────────────────

/// Another socket listens on the port: bind() fails, and the explanation
/// says why SO_REUSEADDR (which sockdemo sets) does not help.
#[test]
fn address_in_use_is_explained() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    for json in [false, true] {
        let out = run(
            sockdemo(&with_json(&["listen", "--port", &port], json)),
            b"",
        );
        assert_lesson(
            "listen on a taken port",
            json,
            &out,
            &Lesson {
                code: "addr-in-use",
                summary: &["bind", &port, "EADDRINUSE"],
                explanation: &["another socket", "SO_REUSEADDR"],
                advice: &["stop the other server", "--port 0"],
            },
        );
    }
    drop(taken);
}

// ── 7. Usage errors ────────────────────────────────────────────────────────

/// A command line that cannot be understood exits with 2 and says what was
/// expected, before any socket is made (so nothing on stdout).
#[test]
fn usage_errors_say_what_is_expected() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["listen", "--port", "70000"], &["70000", "65535"]),
        (&["connect", "127.0.0.1:70000"], &["70000", "1 to 65535"]),
        (&["connect", "::1:8888"], &["brackets", "[::1]:8888"]),
        (&["connect", "127.0.0.1"], &["no port", "HOST:PORT"]),
        (
            &["listen", "--host", "not-an-ip"],
            &["not-an-ip", "127.0.0.1", "0.0.0.0"],
        ),
        (
            &["connect", "--timeout", "-1"],
            &["'-1'", "seconds above 0"],
        ),
        (&["connect", "--timeout=-1"], &["'-1'", "seconds above 0"]),
        (&["connect", "--wait", "-1"], &["'-1'", "seconds above 0"]),
        (&["connect", "--timeout", "0"], &["seconds above 0"]),
        (
            &["connect", "--timeout", "soon"],
            &["soon", "not a number of seconds"],
        ),
        (
            &["frobnicate"],
            &["frobnicate", "listen", "connect", "tour"],
        ),
        (&["lisen"], &["lisen", "similar", "listen"]),
        (&["--json", "connect", "::1:8888"], &["brackets"]),
    ];
    for (args, words) in cases {
        let out = run(sockdemo(args), b"");
        let context = format!("sockdemo {}\n--- stderr:\n{}", args.join(" "), out.stderr);
        assert_eq!(out.status.code(), Some(2), "exit status: {context}");
        assert_no_crash(&args.join(" "), &out);
        let lost = missing(&out.stderr, words);
        assert!(lost.is_empty(), "stderr lacks {lost:?}: {context}");
        if args.contains(&"--json") {
            // With --json the usage error is also one JSON line, for graders.
            let events = out.events();
            assert_eq!(events.len(), 1, "{context}");
            assert_eq!(events[0]["kind"], "error");
            assert_eq!(events[0]["code"], "usage");
            assert!(
                missing(events[0]["text"].as_str().unwrap(), words).is_empty(),
                "{context}"
            );
        } else {
            assert!(out.stdout.is_empty(), "stdout: {}\n{context}", out.stdout);
        }
    }
}

// ── 5. Connect timeout ─────────────────────────────────────────────────────

/// The server's accept queue is full, so Linux drops further SYNs: no
/// SYN-ACK and no reset come back, and connect() gives up after --timeout.
#[cfg(target_os = "linux")]
#[test]
fn connect_timeout_is_explained() {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    use std::io;

    // listen(0): the accept queue holds (about) one finished handshake, and
    // this test never calls accept().
    let listener = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    listener
        .bind(&SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 0))))
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();

    // Fill the queue: connect until a connect of our own gets no answer.
    // Two silent attempts in a row, so one slow moment is not taken for a full queue.
    let mut queued = Vec::new();
    let mut silent_in_a_row = 0;
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => {
                queued.push(stream);
                silent_in_a_row = 0;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                silent_in_a_row += 1;
                if silent_in_a_row == 2 {
                    break;
                }
            }
            Err(e) => panic!("filling the accept queue: {e}"),
        }
    }
    assert_eq!(
        silent_in_a_row,
        2,
        "the accept queue never filled ({} connections queued)",
        queued.len()
    );

    let target = addr.to_string();
    for json in [false, true] {
        let started = Instant::now();
        let out = run(
            sockdemo(&with_json(
                &["connect", &target, "--timeout", "1", "--send", "hi"],
                json,
            )),
            b"",
        );
        let took = started.elapsed();
        assert_lesson(
            "connect to a full accept queue",
            json,
            &out,
            &Lesson {
                code: "timeout",
                summary: &["connect", &target, "timed out"],
                explanation: &["SYN", "no SYN-ACK", "accept queue is full"],
                advice: &["--timeout"],
            },
        );
        assert!(
            took >= Duration::from_millis(900),
            "gave up after {took:?}, before its --timeout of 1 s"
        );
    }
    drop(queued);
}

// ── 6. Connection reset by peer ────────────────────────────────────────────

/// The peer closes with SO_LINGER 0 while sockdemo waits for its echo: a
/// reset (RST) arrives instead of data, and recv() fails.
#[test]
fn reset_by_peer_is_explained() {
    for json in [false, true] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // accept() gives up too (SO_RCVTIMEO), should sockdemo never connect.
        SockRef::from(&listener)
            .set_read_timeout(Some(PATIENCE))
            .unwrap();
        let target = listener.local_addr().unwrap().to_string();
        let peer = thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("sockdemo connects");
            // Read its line: it now waits for the echo that never comes.
            let line = read_line(&mut stream);
            // SO_LINGER 0: close() sends RST and discards the connection at once.
            SockRef::from(&stream)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(stream);
            line
        });
        let out = run(
            sockdemo(&with_json(&["connect", &target, "--send", "hi"], json)),
            b"",
        );
        let line = peer.join().unwrap_or_else(|_| {
            panic!(
                "the peer never got sockdemo's line; sockdemo said:\n{}",
                out.stderr
            )
        });
        assert_eq!(line, "hi\n", "what the peer read");
        assert_lesson(
            "a peer that resets",
            json,
            &out,
            &Lesson {
                code: "reset",
                summary: &["recv", "ECONNRESET"],
                explanation: &["reset", "RST", "SO_LINGER"],
                advice: &["connect again"],
            },
        );
    }
}

// ── 8. Garbage does not stop a server ──────────────────────────────────────

/// Escape sequences and invalid UTF-8, a megabyte without a newline, and a
/// client that resets halfway: the server shows the bytes escaped, reports
/// the reset, and goes on serving.
#[test]
fn server_survives_garbage_and_resets() {
    let (mut server, addr) = json_server(&[]);

    // Escape sequences (clear the screen, bell), invalid UTF-8, a NUL.
    let garbage: &[u8] = b"\x1b[2J\xff\xfe\x00\x07";
    let mut dirty = TcpStream::connect(&addr).unwrap();
    dirty.write_all(garbage).unwrap();
    assert_eq!(
        read_exactly(&mut dirty, garbage.len()),
        garbage,
        "echo of the garbage"
    );
    let dirty_conn = conn_id(&mut server, dirty.local_addr().unwrap());

    // One mebibyte, no newline. Its echo is read at the same time: otherwise
    // both sides' buffers fill and both wait for ever.
    const MIB: usize = 1 << 20;
    let mut big = TcpStream::connect(&addr).unwrap();
    big.set_write_timeout(Some(PATIENCE)).unwrap();
    let mut big_reader = big.try_clone().unwrap();
    let echo = thread::spawn(move || {
        big_reader.set_read_timeout(Some(PATIENCE)).unwrap();
        let deadline = Instant::now() + PATIENCE;
        let mut total = 0usize;
        let mut other = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        while total < MIB && Instant::now() < deadline {
            match big_reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    other += buf[..n].iter().filter(|&&b| b != b'x').count();
                    total += n;
                }
            }
        }
        (total, other)
    });
    big.write_all(&vec![b'x'; MIB]).expect("send 1 MiB");
    let (echoed, unexpected) = echo.join().expect("the echo reader");
    assert_eq!(echoed, MIB, "the whole mebibyte came back");
    assert_eq!(unexpected, 0, "and only what was sent");

    // Half a message, then a reset (SO_LINGER 0) instead of the rest.
    let rude = TcpStream::connect(&addr).unwrap();
    let rude_addr = rude.local_addr().unwrap();
    (&rude).write_all(b"half a mess").unwrap();
    SockRef::from(&rude)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(rude);
    let rude_conn = conn_id(&mut server, rude_addr);
    wait_closed(&mut server, &rude_conn);

    // After all that, a new client is served as usual.
    let out = run(
        sockdemo(&["connect", &addr, "--send", "after", "--json"]),
        b"",
    );
    assert_eq!(
        out.code(),
        0,
        "a new client after the garbage: {}",
        out.stderr
    );
    assert_no_crash("connect after garbage", &out);
    let echoed: Vec<Value> = of_kind(&out.events(), "data")
        .into_iter()
        .filter(|e| e["dir"] == "in")
        .cloned()
        .collect();
    assert_eq!(
        echoed.first().map(|e| e["text"].clone()),
        Some("after\\n".into())
    );

    drop(dirty);
    drop(big);
    let (status, lines, stderr) = server.terminate();
    assert!(status.success(), "server exit {status:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Never a raw ESC from the network in the server's output: escaped, as \x1b.
    for line in &lines {
        assert!(
            !line.contains('\u{1b}'),
            "raw ESC in the server's output: {line:?}"
        );
    }
    let events = parse_lines(&lines.join("\n"));
    for e in &events {
        let text = e["text"].as_str().unwrap_or_default();
        assert!(!text.contains('\u{1b}'), "ESC in an event's text: {e}");
    }
    let dirty_in: String = events
        .iter()
        .filter(|e| e["kind"] == "data" && e["dir"] == "in" && e["conn"] == dirty_conn.as_str())
        .map(|e| e["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        dirty_in, "\\x1b[2J\\xff\\xfe\\0\\x07",
        "the garbage, escaped"
    );

    // The reset was reported as such, and for that client only.
    let rude_errors: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "error" && e["conn"] == rude_conn.as_str())
        .collect();
    assert!(
        rude_errors.iter().any(|e| {
            let all = format!("{} {}", e["error"], e["text"]);
            all.contains("ECONNRESET") && all.contains("other clients")
        }),
        "the reset is reported for {rude_conn}: {rude_errors:?}"
    );

    let summary = events
        .iter()
        .find(|e| e["topic"] == "summary")
        .expect("a summary");
    let bytes_in = summary["bytes_in"].as_u64().expect("bytes_in");
    let at_least = (MIB + garbage.len() + "after\n".len()) as u64;
    assert!(
        bytes_in >= at_least,
        "bytes_in {bytes_in} counts at least the {at_least} bytes that arrived"
    );
    assert!(summary["clients"].as_u64() >= Some(4), "{summary}");
}

// ── 9. --max-clients ───────────────────────────────────────────────────────

/// Two clients are served; a third is told "server full" and closed; once
/// one of the two leaves, a new client is served again.
#[test]
fn max_clients_refuses_then_serves_again() {
    let (mut server, addr) = json_server(&["--max-clients", "2"]);
    let first = echo_client(&addr, "one");
    let first_conn = conn_id(&mut server, first.local_addr().unwrap());
    let second = echo_client(&addr, "two");

    let mut third = TcpStream::connect(&addr).unwrap();
    let told = read_line(&mut third);
    assert!(
        told.contains("server full"),
        "the third client was told {told:?}"
    );
    assert!(told.contains('2'), "and the limit: {told:?}");
    let refused = event_seen_or_next(&mut server, "a refused note", |v| {
        v["kind"] == "note" && v["topic"] == "refused"
    });
    assert!(
        refused["text"]
            .as_str()
            .unwrap_or_default()
            .contains("--max-clients"),
        "{refused}"
    );
    // The refused client then gets the end of the stream.
    let mut rest = Vec::new();
    third.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = third.read_to_end(&mut rest);
    assert!(rest.is_empty(), "after 'server full': {rest:?}");

    // One of the two leaves; the server frees its place.
    first.shutdown(Shutdown::Both).unwrap();
    drop(first);
    wait_closed(&mut server, &first_conn);

    let mut fourth = echo_client(&addr, "four");
    fourth.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    fourth.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = fourth.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "the fourth client was served, then closed: {rest:?}"
    );

    drop(second);
    drop(third);
    let (status, lines, _) = server.terminate();
    assert!(status.success());
    let events = parse_lines(&lines.join("\n"));
    let summary = events
        .iter()
        .find(|e| e["topic"] == "summary")
        .expect("a summary");
    assert_eq!(summary["refused"], 1, "{summary}");
    assert_eq!(summary["peak"], 2, "{summary}");
    assert_eq!(summary["clients"], 4, "{summary}");
}

// ── 3 and 4: in a network namespace of our own ─────────────────────────────

#[cfg(target_os = "linux")]
mod namespaced {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// The uid and gid of `nobody`.
    const NOBODY: &str = "65534";

    /// Runs `bin args…` in a fresh network namespace whose only interface
    /// is `lo`: nothing sent there can leave the machine. `prelude` is shell
    /// run first; `exec_prefix` goes before the binary (such as setpriv).
    fn in_fresh_netns(prelude: &str, exec_prefix: &str, bin: &Path, args: &[&str]) -> Command {
        let script =
            format!("ip link set lo up || exit 96\n{prelude}\nexec {exec_prefix} \"$0\" \"$@\"");
        let mut cmd = Command::new("unshare");
        cmd.args(["--net", "--", "sh", "-c", &script])
            .arg(bin)
            .args(args)
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE")
            .env("TERM", "xterm-256color");
        cmd
    }

    fn skip_unless_root(test: &str) -> bool {
        if is_root() {
            return false;
        }
        eprintln!("{test}: skipped: needs root (to create a network namespace)");
        true
    }

    fn setpriv_nobody() -> String {
        format!("setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups")
    }

    /// Can `nobody` run this binary? (Every directory above it must let others in.)
    fn nobody_can_run(bin: &Path) -> bool {
        let mut cmd = Command::new("setpriv");
        cmd.args(setpriv_nobody().split(' ').skip(1))
            .arg(bin)
            .arg("--version");
        run(cmd, b"").status.success()
    }

    /// The binary, where `nobody` can run it: in place, or copied to a
    /// directory of its own (removed on drop).
    struct BinForNobody {
        path: PathBuf,
        copy_dir: Option<PathBuf>,
    }

    impl BinForNobody {
        fn new() -> BinForNobody {
            let built = PathBuf::from(bin());
            if nobody_can_run(&built) {
                return BinForNobody {
                    path: built,
                    copy_dir: None,
                };
            }
            let dir = std::env::temp_dir().join(format!("sockdemo-errors-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            let path = dir.join("sockdemo");
            std::fs::copy(&built, &path).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            assert!(
                nobody_can_run(&path),
                "user nobody can run neither {} nor its copy {}",
                built.display(),
                path.display()
            );
            BinForNobody {
                path,
                copy_dir: Some(dir),
            }
        }
    }

    impl Drop for BinForNobody {
        fn drop(&mut self) {
            if let Some(dir) = &self.copy_dir {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    // ── 3. Permission denied for a port below 1024 ─────────────────────────

    /// An ordinary user may not bind port 80: bind() fails with EACCES, and
    /// the explanation says why ports below 1024 are privileged.
    #[test]
    fn privileged_port_is_explained() {
        if skip_unless_root("privileged_port_is_explained") {
            return;
        }
        let bin = BinForNobody::new();
        // The namespace is ours, so its sysctl is too: make sure 80 is privileged there.
        let prelude = "sysctl -qw net.ipv4.ip_unprivileged_port_start=1024 2>/dev/null\n\
             [ \"$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start)\" -gt 80 ] || \
             { echo 'setup: port 80 is not privileged in the namespace' >&2; exit 97; }";
        for json in [false, true] {
            let out = run(
                in_fresh_netns(
                    prelude,
                    &setpriv_nobody(),
                    &bin.path,
                    &with_json(&["listen", "--port", "80"], json),
                ),
                b"",
            );
            assert_lesson(
                "listen on port 80 as nobody",
                json,
                &out,
                &Lesson {
                    code: "permission",
                    summary: &["bind", "127.0.0.1:80", "EACCES"],
                    explanation: &["below 1024", "privileged", "CAP_NET_BIND_SERVICE"],
                    advice: &["1024 or above", "--port 8888"],
                },
            );
        }
    }

    // ── 4. A name that does not resolve ────────────────────────────────────

    /// getaddrinfo() fails before any socket is made: the explanation names
    /// the name and suggests typing an IP address. In the namespace, the DNS
    /// query has no route off the machine.
    #[test]
    fn unresolvable_name_is_explained() {
        if skip_unless_root("unresolvable_name_is_explained") {
            return;
        }
        let host = "no-such-host.invalid";
        let target = format!("{host}:8888");
        for json in [false, true] {
            let out = run(
                in_fresh_netns(
                    "",
                    "",
                    Path::new(bin()),
                    &with_json(&["connect", &target, "--send", "hi"], json),
                ),
                b"",
            );
            assert_lesson(
                "connect to a name that does not resolve",
                json,
                &out,
                &Lesson {
                    code: "resolve",
                    summary: &["getaddrinfo", host],
                    explanation: &[&format!("\"{host}\""), "IP address", "DNS"],
                    advice: &["spelling", "127.0.0.1"],
                },
            );
            if json {
                // No socket was made: the lookup came first and failed.
                let events = out.events();
                let calls: Vec<&str> = of_kind(&events, "syscall")
                    .iter()
                    .map(|e| e["call"].as_str().unwrap_or_default())
                    .collect();
                assert_eq!(calls, ["getaddrinfo"], "{}", out.stdout);
            }
        }
    }
}
