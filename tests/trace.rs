//! `sockdemo trace`: real programs (Python, C, Java, in tests/programs)
//! run under the tracer, and what it tells about them checked against the
//! programs themselves, against strace, and against the packets.
//!
//! Every run is bounded in time, and every test that starts programs
//! checks that none of them (nor their children) is left when it ends.
//! Servers get a free port on their command line (see [`free_port`]) and
//! their clients start with `--wait-listen`, once the server listens.
#![cfg(target_os = "linux")]

mod common;
mod trace_support;

use common::*;
use serde_json::Value;
use trace_support::packets::{assert_states_follow_packets, first_fin_side};
use trace_support::strace_log::{from_timeline, strace_pair};
use trace_support::*;

/// The message of the echo tests (14 bytes).
const MESSAGE: &str = "hello, sockets";

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// The Python echo server and client, copied into `scratch`.
fn python_echo(scratch: &Scratch, port: u16, message: &str) -> (Vec<String>, Vec<String>) {
    let (server, client) = (
        scratch.python("echo_server.py"),
        scratch.python("echo_client.py"),
    );
    let port = port.to_string();
    (
        strings(&["python3", "-u", &server, &port]),
        strings(&["python3", "-u", &client, &port, message]),
    )
}

/// The socket calls of each program of a pair, as the trace tells them:
/// (server's, client's).
fn calls_of_pair(run: &Traced) -> (Vec<String>, Vec<String>) {
    (
        from_timeline(&run.events, run.pid("S")),
        from_timeline(&run.events, run.pid("C1")),
    )
}

/// Fails unless the lists are equal, showing both in full.
/// The calls of `python_echo`'s server and client, as the programs make them.
fn assert_python_echo_calls(s_calls: &[String], c_calls: &[String]) {
    let expected_server = python_server_calls(MESSAGE.len());
    let expected_client = python_client_calls(MESSAGE.len());
    assert_same_calls("server", s_calls, &expected_server, "the program's");
    assert_same_calls("client", c_calls, &expected_client, "the program's");
}

/// The same pair run again under `strace -f` makes the same socket calls,
/// with the same results, as the trace showed; and nothing is left behind.
fn assert_strace_sees_the_same(
    scratch: &Scratch,
    (server, client): (&[String], &[String]),
    (s_calls, c_calls): (&[String], &[String]),
) {
    let (strace_server, strace_client) = strace_pair(scratch, server, client);
    assert_same_calls("server", s_calls, &strace_server, "strace");
    assert_same_calls("client", c_calls, &strace_client, "strace");
    assert_no_leftovers(scratch.marker(), &[]);
}

fn assert_same_calls(what: &str, traced: &[String], expected: &[String], by: &str) {
    assert_eq!(
        traced,
        expected,
        "{what}: the trace's calls differ from {by}'s\ntrace:\n  {}\n{by}:\n  {}",
        traced.join("\n  "),
        expected.join("\n  ")
    );
}

/// The echo pair's server calls, in Python.
fn python_server_calls(len: usize) -> Vec<String> {
    strings(&[
        "socket(AF_INET, SOCK_STREAM) = s1",
        "setsockopt(s1, SO_REUSEADDR) = 0",
        "bind(s1) = 0",
        "listen(s1) = 0",
        "accept4(s1) = s2",
        &format!("recvfrom(s2) = {len}"),
        &format!("sendto(s2) = {len}"),
        "recvfrom(s2) = 0",
        "close(s2) = 0",
        "close(s1) = 0",
    ])
}

/// The echo pair's client calls, in Python.
fn python_client_calls(len: usize) -> Vec<String> {
    strings(&[
        "socket(AF_INET, SOCK_STREAM) = s1",
        "connect(s1) = 0",
        &format!("sendto(s1) = {len}"),
        &format!("recvfrom(s1) = {len}"),
        "close(s1) = 0",
    ])
}

/// The one syscall event of `pid` named `call` (the first, if several).
fn call_of<'a>(run: &'a Traced, pid: u64, call: &str) -> &'a Value {
    run.calls_of(pid)
        .into_iter()
        .find(|e| e["call"] == call)
        .unwrap_or_else(|| panic!("no {call} of process {pid}:\n{}", run.out.stdout))
}

/// A Python echo server and client, traced together: each program's socket
/// calls are on the timeline in order, with their real results and
/// arguments (socket, SO_REUSEADDR, bind, listen, accept4, recvfrom,
/// sendto, recvfrom = 0 at the client's FIN, close; and socket, connect,
/// sendto, recvfrom, close), the client starts only once the server
/// listens, and strace, running the same programs without sockdemo, sees
/// the same socket calls in the same order with the same results.
#[test]
fn python_echo_calls_are_the_calls_strace_sees() {
    let scratch = Scratch::new("python-echo");
    let port = free_port();
    let (server, client) = python_echo(&scratch, port, MESSAGE);
    let run = trace_pair(&server, &client, &[]);
    run.assert_exit(0);
    assert_no_leftovers(scratch.marker(), &run.pids());

    let (s_calls, c_calls) = calls_of_pair(&run);
    assert_python_echo_calls(&s_calls, &c_calls);

    // The arguments and addresses, as the programs gave them.
    let (s, c) = (run.pid("S"), run.pid("C1"));
    let addr = format!("127.0.0.1:{port}");
    assert_eq!(call_of(&run, s, "bind")["args"], addr.as_str());
    assert_eq!(call_of(&run, s, "listen")["args"], "backlog=8");
    assert_eq!(
        call_of(&run, s, "setsockopt")["args"],
        "SOL_SOCKET, SO_REUSEADDR, 1"
    );
    assert_eq!(call_of(&run, c, "connect")["args"], addr.as_str());
    let accepted = call_of(&run, s, "accept4");
    let connected = call_of(&run, c, "connect");
    assert_eq!(accepted["local"], addr.as_str(), "{accepted}");
    assert_eq!(
        accepted["remote"], connected["local"],
        "the two ends disagree"
    );
    assert_eq!(accepted["conn"], "C1");
    for e in run.calls_of(s) {
        assert_eq!(e["side"], "server", "{e}");
    }
    for e in run.calls_of(c) {
        assert_eq!(e["side"], "client", "{e}");
    }
    let sent = run
        .events
        .iter()
        .find(|e| e["kind"] == "data" && e["pid"] == c && e["dir"] == "out")
        .expect("the client's data");
    assert_eq!(sent["text"], MESSAGE);
    assert_eq!(run.output("C1", "stdout"), [format!("reply: {MESSAGE}")]);

    // --wait-listen: the client started after the server's listen().
    let at = |wanted: &dyn Fn(&Value) -> bool| run.events.iter().position(wanted).unwrap();
    let listened = at(&|e| e["kind"] == "syscall" && e["call"] == "listen");
    let client_started = at(&|e| e["topic"] == "started" && e["program"] == "C1");
    assert!(listened < client_started, "C1 started before S listened");

    assert_strace_sees_the_same(&scratch, (&server, &client), (&s_calls, &c_calls));
}

/// The same echo in C over IPv6 ([::1]), with accept(), read() and write():
/// the calls match strace's one for one, and the states that packets moved
/// follow the packets.
#[test]
fn c_echo_over_ipv6_calls_are_the_calls_strace_sees() {
    let scratch = Scratch::new("c-echo");
    let (server, client) = (
        scratch.c_program("echo_server"),
        scratch.c_program("echo_client"),
    );
    let port = free_port().to_string();
    let server = strings(&[&server, &port]);
    let client = strings(&[&client, &port, MESSAGE]);
    let run = trace_pair(&server, &client, &[]);
    run.assert_exit(0);
    assert_no_leftovers(scratch.marker(), &run.pids());

    let len = MESSAGE.len();
    let (s_calls, c_calls) = calls_of_pair(&run);
    let expected_server = strings(&[
        "socket(AF_INET6, SOCK_STREAM) = s1",
        "setsockopt(s1, SO_REUSEADDR) = 0",
        "bind(s1) = 0",
        "listen(s1) = 0",
        "accept(s1) = s2",
        &format!("read(s2) = {len}"),
        &format!("write(s2) = {len}"),
        "read(s2) = 0",
        "close(s2) = 0",
        "close(s1) = 0",
    ]);
    let expected_client = strings(&[
        "socket(AF_INET6, SOCK_STREAM) = s1",
        "connect(s1) = 0",
        &format!("write(s1) = {len}"),
        &format!("read(s1) = {len}"),
        "close(s1) = 0",
    ]);
    assert_same_calls("server", &s_calls, &expected_server, "the program's");
    assert_same_calls("client", &c_calls, &expected_client, "the program's");
    assert_eq!(
        call_of(&run, run.pid("C1"), "connect")["args"],
        format!("[::1]:{port}")
    );
    if capture_allowed() {
        assert!(assert_states_follow_packets(&run.events, "C over IPv6") > 0);
    }

    assert_strace_sees_the_same(&scratch, (&server, &client), (&s_calls, &c_calls));
}

/// A Java echo server and client (ServerSocket, Socket, writeUTF/readUTF).
/// A JVM runs a score of threads and opens probe sockets at start-up; the
/// trace still follows the main thread's calls as strace sees them (readUTF
/// reads the length in two 1-byte reads), ends with both programs' status
/// 0, and leaves no JVM behind.
#[test]
fn java_echo_calls_are_the_calls_strace_sees() {
    let scratch = Scratch::new("java-echo");
    let classes = scratch.java_classes();
    let port = free_port().to_string();
    let server = strings(&["java", "-cp", &classes, "EchoServer", &port]);
    let client = strings(&["java", "-cp", &classes, "EchoClient", &port, MESSAGE]);
    let run = trace_pair(&server, &client, &[]);
    run.assert_exit(0);
    assert_eq!(run.exited("S")["status"], 0);
    assert_eq!(run.exited("C1")["status"], 0);
    assert_eq!(
        run.summary()["status"],
        serde_json::json!({"S": 0, "C1": 0})
    );
    assert_no_leftovers(scratch.marker(), &run.pids());
    // The JVM runs `main` in a thread of its own, not the process's
    // first: the calls the trace follows are that thread's.
    for e in run.events.iter().filter(|e| e["kind"] == "syscall") {
        assert_ne!(e["tid"], e["pid"], "{e}");
    }

    let (s_calls, c_calls) = calls_of_pair(&run);
    // Where the server's echo is: after its accept(), the length (two
    // 1-byte reads) and the text, then the echo in one write.
    let accept = s_calls
        .iter()
        .position(|c| c.starts_with("accept("))
        .expect("accept");
    let after = &s_calls[accept + 1..accept + 5];
    let conn = s_calls[accept].rsplit(' ').next().unwrap();
    assert_eq!(
        after,
        [
            format!("read({conn}) = 1"),
            format!("read({conn}) = 1"),
            format!("read({conn}) = {}", MESSAGE.len()),
            format!("write({conn}) = {}", MESSAGE.len() + 2),
        ],
        "server calls:\n  {}",
        s_calls.join("\n  ")
    );
    assert_eq!(run.output("C1", "stdout"), [format!("reply: {MESSAGE}")]);

    assert_strace_sees_the_same(&scratch, (&server, &client), (&s_calls, &c_calls));
}

/// States against packets, on one Python connection: every state change
/// the timeline says a packet caused comes after that packet, sent by the
/// right end with the right flags (SYN-SENT after the client's SYN,
/// ESTABLISHED after the SYN,ACK, CLOSE-WAIT after the peer's FIN,
/// FIN-WAIT-2 after the ACK of our FIN…); the client, which closes first,
/// ends in TIME-WAIT and the server goes CLOSE-WAIT, LAST-ACK, CLOSED.
#[test]
fn states_moved_by_packets_follow_the_packets() {
    if !capture_allowed() {
        return;
    }
    let scratch = Scratch::new("states");
    let (server, client) = python_echo(&scratch, free_port(), MESSAGE);
    let run = trace_pair(&server, &client, &["--packets", "on"]);
    run.assert_exit(0);
    assert_truthful(&run.events, true, "traced echo");

    let checked = assert_states_follow_packets(&run.events, "traced echo");
    assert!(checked >= 8, "only {checked} states were moved by packets");

    let connect = call_of(&run, run.pid("C1"), "connect");
    let (client_end, server_end) = (
        connect["local"].as_str().unwrap(),
        connect["remote"].as_str().unwrap(),
    );
    assert_eq!(
        first_fin_side(&run.events, client_end, server_end).as_deref(),
        Some("client"),
        "the client closes first"
    );
    let entered = |side: &str| -> Vec<String> {
        run.events
            .iter()
            .filter(|e| e["kind"] == "state" && e["side"] == side && e["remote"].is_string())
            .map(|e| e["to"].as_str().unwrap().to_string())
            .collect()
    };
    let (client_states, server_states) = (entered("client"), entered("server"));
    assert!(
        client_states.ends_with(&strings(&["FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT"])),
        "client: {client_states:?}"
    );
    assert!(
        server_states.ends_with(&strings(&["CLOSE-WAIT", "LAST-ACK", "CLOSED"])),
        "server: {server_states:?}"
    );
    assert!(!server_states.contains(&"TIME-WAIT".to_string()));
    let ended = &run.summary()["ended"];
    assert_eq!(ended["C1"], "TIME-WAIT", "{ended}");
    assert_eq!(ended["C1 (server side)"], "CLOSED", "{ended}");
}

/// Every state event of a traced connection carries the connection's
/// label, as its packets do (and as `sockdemo connect` does): a reader who
/// follows "C1" sees its whole life, the handshake included.
#[test]
fn every_state_of_a_traced_connection_carries_its_label() {
    if !capture_allowed() {
        return;
    }
    let scratch = Scratch::new("labels");
    let (server, client) = python_echo(&scratch, free_port(), MESSAGE);
    let run = trace_pair(&server, &client, &[]);
    run.assert_exit(0);
    let unlabelled: Vec<&Value> = run
        .events
        .iter()
        .filter(|e| e["kind"] == "state" && e["remote"].is_string() && !e["conn"].is_string())
        .collect();
    assert!(
        unlabelled.is_empty(),
        "state events without conn:\n{}",
        unlabelled
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A program that exits with status 3 makes sockdemo exit 3; its "exited"
/// note says 3, and the socket it left open is closed by the kernel (an
/// "exit-close" note).
#[test]
fn the_programs_exit_status_is_sockdemos() {
    let scratch = Scratch::new("exit");
    let program = scratch.python("ending.py");
    let run = trace(&["--", "python3", &program, "exit", "3"]);
    run.assert_exit(3);
    let exited = run.exited("P");
    assert_eq!(exited["status"], 3, "{exited}");
    assert!(exited["signal"].is_null(), "{exited}");
    assert_eq!(run.summary()["status"]["P"], 3);
    assert!(
        run.events.iter().any(|e| e["topic"] == "exit-close"),
        "no note that the kernel closed the open socket:\n{}",
        run.out.stdout
    );
}

/// A program killed by a signal (SIGKILL, SIGSEGV) makes sockdemo exit
/// 128 + the signal's number (137, 139), and its "exited" note names the
/// signal.
#[test]
fn a_program_killed_by_a_signal_gives_128_plus_its_number() {
    let scratch = Scratch::new("signal");
    let program = scratch.python("ending.py");
    for (signal, status) in [("SIGKILL", 137), ("SIGSEGV", 139)] {
        let run = trace(&["--", "python3", &program, "signal", signal]);
        run.assert_exit(status);
        let exited = run.exited("P");
        assert_eq!(exited["status"], status, "{exited}");
        assert_eq!(exited["signal"], signal, "{exited}");
        assert_no_leftovers(scratch.marker(), &run.pids());
    }
}

/// With several programs, sockdemo exits with the status of the one that
/// failed: a server that exits 0 and a client that exits 5 give 5, and the
/// summary has each program's status.
#[test]
fn with_several_programs_the_failing_ones_status_is_sockdemos() {
    let scratch = Scratch::new("several");
    let program = scratch.python("ending.py");
    let server = strings(&["python3", &program, "exit", "0"]);
    let client = strings(&["python3", &program, "exit", "5"]);
    let run = trace(&[
        "--run",
        &command_line(&server),
        "--run",
        &command_line(&client),
    ]);
    run.assert_exit(5);
    assert_eq!(
        run.summary()["status"],
        serde_json::json!({"S": 0, "C1": 5})
    );
}

/// A program that does not exist is a usage error: exit status 2, a
/// message on stderr that names it, no panic, and no program started.
#[test]
fn a_program_that_does_not_exist_is_a_usage_error() {
    let run = trace(&["--", "/nonexistent/program"]);
    run.assert_exit(2);
    assert!(
        run.out.stderr.contains("/nonexistent/program") && run.out.stderr.contains("cannot"),
        "stderr: {}",
        run.out.stderr
    );
    assert!(!run.events.iter().any(|e| e["topic"] == "started"));
}

/// A program that is found but cannot be run (a script whose `#!`
/// interpreter is missing: exec fails with ENOENT) ends the trace at once
/// with a message that names it, as a program that does not exist does:
/// a non-zero status, no panic, nothing left behind.
#[test]
fn a_program_whose_exec_fails_ends_the_trace() {
    let scratch = Scratch::new("bad-interpreter");
    let script = scratch.path("script");
    std::fs::write(&script, "#!/nonexistent/interpreter\necho hi\n").unwrap();
    let mut permissions = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&script, permissions).unwrap();
    let (out, _) = run_to_end(sockdemo(&["trace", "--", &script]), PATIENCE);
    assert_ne!(out.code(), 0, "stderr: {}", out.stderr);
    assert!(out.stderr.contains(&script), "stderr: {}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert_no_leftovers(scratch.marker(), &[]);
}

/// A program that forks 100 children, each of which makes a socket and
/// exits: the trace follows every child (100 socket() and 100 close()
/// calls, each by another process), ends with status 0, and leaves none
/// of them behind.
#[test]
fn a_hundred_forked_children_are_followed() {
    let scratch = Scratch::new("fork");
    let program = scratch.python("fork_sockets.py");
    let run = trace(&["--", "python3", "-u", &program, "100"]);
    run.assert_exit(0);
    assert_no_leftovers(scratch.marker(), &run.pids());
    let parent = run.pid("P");
    let sockets = run.calls_named("socket");
    let closes = run.calls_named("close");
    assert_eq!(sockets.len(), 100);
    assert_eq!(closes.len(), 100);
    let mut children: Vec<u64> = sockets.iter().map(|e| e["pid"].as_u64().unwrap()).collect();
    children.sort_unstable();
    children.dedup();
    assert_eq!(children.len(), 100, "each child made its own socket");
    assert!(!children.contains(&parent));
    for close in closes {
        assert!(close["ok"] == true && close["ret"] == 0, "{close}");
    }
    assert_eq!(run.summary()["sockets"], 100);
    assert_eq!(run.output("P", "stdout"), ["children: 100, failed: 0"]);
}

/// 200 Python threads in one process each connect to the process's own
/// server: 200 connect() calls from 200 threads, 200 accepts, every call
/// succeeds, the program ends with status 0 and nothing is left behind.
#[test]
fn two_hundred_threads_each_connect() {
    let scratch = Scratch::new("threads");
    let program = scratch.python("thread_clients.py");
    let run = trace(&["--", "python3", "-u", &program, "200"]);
    run.assert_exit(0);
    assert_no_leftovers(scratch.marker(), &run.pids());
    let connects = run.calls_named("connect");
    assert_eq!(connects.len(), 200);
    let mut threads: Vec<u64> = connects
        .iter()
        .map(|e| e["tid"].as_u64().unwrap())
        .collect();
    threads.sort_unstable();
    threads.dedup();
    assert_eq!(
        threads.len(),
        200,
        "each connect() came from its own thread"
    );
    assert_eq!(run.calls_named("accept4").len(), 200);
    let failed: Vec<&Value> = run
        .events
        .iter()
        .filter(|e| e["kind"] == "syscall" && e["ok"] != true)
        .collect();
    assert!(failed.is_empty(), "failed calls: {failed:?}");
    assert_eq!(run.output("P", "stdout"), ["threads: 200, replies: 200"]);
    assert_eq!(run.summary()["connections"], 400);
}

/// Starts `sockdemo trace --json -- python3 -u blocked_accept.py` and
/// returns it once the program is blocked in accept(), with its pid.
fn blocked_in_accept(scratch: &Scratch) -> (Running, u32) {
    let program = scratch.python("blocked_accept.py");
    let mut run = Running::start(sockdemo(&[
        "trace", "--json", "--", "python3", "-u", &program,
    ]));
    let started = run.wait_event("the started note", |e| e["topic"] == "started");
    let pid = started["pid"].as_u64().unwrap() as u32;
    run.wait_event("listen()", |e| e["call"] == "listen" && e["ok"] == true);
    wait_in_syscall(pid, libc::SYS_accept4, "accept4()");
    (run, pid)
}

/// A program killed (SIGKILL) while it waits in accept(): the trace ends,
/// with status 137 and an "exited" note naming SIGKILL, and the program is
/// gone.
#[test]
fn a_program_killed_in_accept_ends_the_trace() {
    let scratch = Scratch::new("killed");
    let (run, pid) = blocked_in_accept(&scratch);
    // SAFETY: kill(2) with the traced program's pid.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    let (status, lines, stderr) = run.finish();
    assert_eq!(status.code(), Some(137), "stderr: {stderr}");
    let events = events_of_lines(&lines);
    let exited = events
        .iter()
        .find(|e| e["topic"] == "exited")
        .expect("an exited note");
    assert_eq!(exited["signal"], "SIGKILL", "{exited}");
    assert_eq!(events.last().unwrap()["topic"], "summary");
    assert_no_leftovers(scratch.marker(), &[pid]);
}

/// SIGTERM sent to sockdemo is passed on to the program it traces (here
/// waiting in accept()): the program ends by it, the trace ends with
/// status 143, and nothing is left behind.
#[test]
fn sigterm_to_sockdemo_is_passed_on_to_the_program() {
    let scratch = Scratch::new("sigterm");
    let (run, pid) = blocked_in_accept(&scratch);
    let (stopped, lines, stderr) = run.terminate();
    assert_eq!(stopped.0.code(), Some(143), "stderr: {stderr}");
    let events = events_of_lines(&lines);
    let exited = events
        .iter()
        .find(|e| e["topic"] == "exited")
        .expect("an exited note");
    assert_eq!(exited["signal"], "SIGTERM", "{exited}");
    assert_eq!(exited["status"], 143, "{exited}");
    assert_no_leftovers(scratch.marker(), &[pid]);
}

/// The trace changes nothing of the programs' data: 1 MiB of random bytes
/// sent by a traced client to a traced echo server comes back byte for
/// byte, and the timeline counts every byte each way.
#[test]
fn a_megabyte_echo_is_byte_exact() {
    const SIZE: usize = 1 << 20;
    let scratch = Scratch::new("megabyte");
    let mut payload = vec![0u8; SIZE];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").unwrap(),
        &mut payload,
    )
    .unwrap();
    let (input, echo) = (scratch.path("payload"), scratch.path("echo"));
    std::fs::write(&input, &payload).unwrap();
    let port = free_port().to_string();
    let server = strings(&[
        "python3",
        "-u",
        &scratch.python("echo_server.py"),
        &port,
        &SIZE.to_string(),
    ]);
    let client = strings(&[
        "python3",
        "-u",
        &scratch.python("echo_client.py"),
        &port,
        "--file",
        &input,
        &echo,
    ]);
    let run = trace_pair(&server, &client, &[]);
    run.assert_exit(0);
    let came_back = std::fs::read(&echo).expect("the echo file");
    assert_eq!(came_back.len(), SIZE);
    assert!(came_back == payload, "the echo differs from what was sent");
    for tag in ["S", "C1"] {
        let pid = run.pid(tag);
        for dir in ["in", "out"] {
            let bytes: u64 = run
                .events
                .iter()
                .filter(|e| e["kind"] == "data" && e["pid"] == pid && e["dir"] == dir)
                .map(|e| e["bytes"].as_u64().unwrap())
                .sum();
            // Under load the timeline may leave out some bytes-moving
            // calls (and says so); the summary counts every byte anyway.
            if run.dropped_any() {
                assert!(bytes <= SIZE as u64, "{tag} {dir}");
            } else {
                assert_eq!(bytes, SIZE as u64, "{tag} {dir}");
            }
        }
    }
    let summary = run.summary();
    assert_eq!(summary["bytes_out"], 2 * SIZE as u64);
    assert_eq!(summary["bytes_in"], 2 * SIZE as u64);
    assert_no_leftovers(scratch.marker(), &run.pids());
}

/// Is `text` free of control characters (C0 but newline, DEL, C1)? (A
/// byte that is not UTF-8 is shown as U+FFFD, which is printable.)
fn printable(text: &str) -> bool {
    !text
        .chars()
        .any(|c| (c.is_control() && c != '\n') || ('\u{80}'..='\u{9f}').contains(&c))
}

/// The program's output, on the timeline: each stdout line is an "output"
/// note, in order; stderr's lines are marked as stderr; a last line
/// without a newline is shown too; and the control codes the program
/// prints (clear screen, set title, bell, CR, backspace, a C1 CSI, NUL)
/// are shown escaped, never raw, in the JSON and in the human timeline.
#[test]
fn output_lines_come_in_order_and_escaped() {
    let scratch = Scratch::new("output");
    let program = scratch.python("output_lines.py");
    let run = trace(&["--", "python3", &program, "200"]);
    run.assert_exit(0);
    let lines = run.output("P", "stdout");
    assert_eq!(lines.len(), 202, "{lines:#?}");
    for (n, line) in lines.iter().take(200).enumerate() {
        assert_eq!(line, &format!("line {n}"));
    }
    let controls = &lines[200];
    assert!(
        controls.starts_with("\\x1b[2Jclear \\x1b]0;title\\x07 bell"),
        "{controls}"
    );
    assert_eq!(lines[201], "the end");
    let errors = run.output("P", "stderr");
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("to stderr \\x1b[31mred"),
        "{errors:?}"
    );
    for line in lines.iter().chain(&errors) {
        assert!(printable(line), "a control character in {line:?}");
    }
    assert!(std::str::from_utf8(&run.raw).is_ok());
    assert!(printable(&run.out.stdout), "raw bytes in the JSON output");

    let mut human = sockdemo(&["trace", "--color", "never", "--"]);
    human.args(["python3", &program, "3"]);
    let (out, raw) = run_to_end(human, EXIT_PATIENCE);
    assert_eq!(out.code(), 0, "stderr: {}", out.stderr);
    assert!(out.stdout.contains("\\x1b[2Jclear"), "{}", out.stdout);
    assert!(
        std::str::from_utf8(&raw).is_ok(),
        "bytes that are not UTF-8"
    );
    assert!(
        printable(&out.stdout),
        "raw control codes:\n{:?}",
        out.stdout
    );
}

/// With `--packets off` there is no packet event and no state moved by a
/// packet, and the calls are all still there, the same as with packets.
#[test]
fn packets_off_still_shows_every_call() {
    let scratch = Scratch::new("packets-off");
    let (server, client) = python_echo(&scratch, free_port(), MESSAGE);
    let run = trace_pair(&server, &client, &["--packets", "off"]);
    run.assert_exit(0);
    assert_truthful(&run.events, false, "--packets off");
    let (s_calls, c_calls) = calls_of_pair(&run);
    assert_python_echo_calls(&s_calls, &c_calls);
    assert!(
        run.events
            .iter()
            .any(|e| e["kind"] == "state" && e["source"] == "kernel"),
        "without packets, the kernel still tells the states"
    );
    assert_no_leftovers(scratch.marker(), &run.pids());
}
