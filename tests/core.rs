//! The core promises of `listen`, `connect` and `tour`, checked with the real
//! binary on loopback, port 0.

mod common;
use common::*;

/// A client sends a line; the server echoes it; the client prints it; both
/// say which calls they made.
#[test]
fn round_trip_json() {
    let (server, addr) = json_server(&[]);
    let out = run(
        sockdemo(&["connect", &addr, "--send", "hello", "--json"]),
        b"",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let events = out.events();
    let calls: Vec<&str> = of_kind(&events, "syscall")
        .iter()
        .map(|e| e["call"].as_str().unwrap())
        .collect();
    assert_eq!(calls.first(), Some(&"socket"));
    assert!(
        calls.contains(&"connect") && calls.contains(&"send") && calls.contains(&"shutdown"),
        "{calls:?}"
    );
    assert_eq!(calls.last(), Some(&"close"));
    let echoed: Vec<_> = of_kind(&events, "data")
        .into_iter()
        .filter(|e| e["dir"] == "in")
        .collect();
    assert_eq!(echoed[0]["text"], "hello\\n");
    assert_eq!(echoed[0]["bytes"], 6);
    // Every event but a packet (which carries its sender's side) is the client's.
    for e in events.iter().filter(|e| e["kind"] != "packet") {
        assert_eq!(e["side"], "client");
        assert_eq!(e["proto"], "tcp");
        assert!(e["t"].is_number());
        assert!(["listen", "request", "confirm", "transfer", "close"]
            .contains(&e["stage"].as_str().unwrap()));
    }
    let (status, lines, _) = server.terminate();
    assert!(status.success());
    let server_events = parse_lines(&lines.join("\n"));
    let summary = server_events
        .iter()
        .find(|e| e["topic"] == "summary")
        .expect("summary");
    assert_eq!(summary["clients"], 1);
    assert_eq!(summary["bytes_in"], 6);
    assert_eq!(summary["bytes_out"], 6);
}

/// Three clients of one server port: the server tells them apart by their
/// 5-tuples, which differ only in the client's ephemeral port.
#[test]
fn three_clients_have_distinct_five_tuples() {
    let (server, addr) = json_server(&[]);
    let mut client_locals = Vec::new();
    for i in 1..=3 {
        let out = run(
            sockdemo(&["connect", &addr, "--send", &format!("hi {i}"), "--json"]),
            b"",
        );
        assert_eq!(out.code(), 0, "{}", out.stderr);
        let tuple = out
            .events()
            .into_iter()
            .find(|e| e["topic"] == "tuple")
            .expect("client tuple note");
        client_locals.push(tuple["local"].as_str().unwrap().to_string());
    }
    let (_, lines, _) = server.terminate();
    let events = parse_lines(&lines.join("\n"));
    let accepts: Vec<_> = events
        .iter()
        .filter(|e| e["call"] == "accept" && e["ok"] == true)
        .collect();
    assert_eq!(accepts.len(), 3);
    let conns: Vec<_> = accepts
        .iter()
        .map(|e| e["conn"].as_str().unwrap())
        .collect();
    assert_eq!(conns, ["C1", "C2", "C3"]);
    for e in &accepts {
        assert_eq!(
            e["local"],
            addr.as_str(),
            "every connection reaches the same server port"
        );
    }
    let mut remotes: Vec<_> = accepts
        .iter()
        .map(|e| e["remote"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        remotes, client_locals,
        "the server sees each client's own address"
    );
    remotes.dedup();
    assert_eq!(remotes.len(), 3, "three different 5-tuples");
    let threads: Vec<_> = events
        .iter()
        .filter(|e| e["topic"] == "thread")
        .map(|e| e["thread"].as_u64().unwrap())
        .collect();
    let mut distinct = threads.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        3,
        "each accepted socket gets a thread of its own: {threads:?}"
    );
}

/// The close sequence as the kernel reports it: the client that closes
/// first passes FIN-WAIT and ends in TIME-WAIT; the server sees CLOSE-WAIT
/// when it reads end-of-file. States that cannot be observed are marked inferred.
#[test]
fn close_sequence_comes_from_the_kernel() {
    // Without packets, so that the short states are the inferred ones
    // (tests/packets.rs checks them seen in the packets).
    let (server, addr) = json_server(&["--packets", "off"]);
    let out = run(
        sockdemo(&[
            "connect",
            &addr,
            "--send",
            "bye",
            "--json",
            "--packets",
            "off",
        ]),
        b"",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let client = states(&out.events(), "client", Some("C1"));
    let kernel = |to: &str| client.iter().any(|(_, t, s)| t == to && s == "kernel");
    assert!(
        client.contains(&("CLOSED".into(), "SYN-SENT".into(), "inferred".into())),
        "{client:?}"
    );
    assert!(kernel("ESTABLISHED"), "{client:?}");
    // The half-close passes FIN-WAIT. Usually the kernel is caught in it;
    // on a loaded machine the echo server may close first, and then it is
    // (honestly) inferred. The tour, which paces the server, always sees it.
    assert!(
        client.iter().any(|(_, to, _)| to.starts_with("FIN-WAIT")),
        "{client:?}"
    );
    assert!(
        kernel("TIME-WAIT"),
        "TIME-WAIT must come from the kernel: {client:?}"
    );
    let tw = out
        .events()
        .into_iter()
        .find(|e| e["to"] == "TIME-WAIT")
        .unwrap();
    assert_eq!(tw["via"], "sock_diag");
    for (_, to, source) in &client {
        if ["SYN-SENT", "SYN-RECEIVED", "LAST-ACK"].contains(&to.as_str()) {
            assert_eq!(
                source, "inferred",
                "{to} is too short-lived to be observed by polling"
            );
        }
    }
    let (_, lines, _) = server.terminate();
    let server_states = states(&parse_lines(&lines.join("\n")), "server", Some("C1"));
    assert!(
        server_states.contains(&("ESTABLISHED".into(), "CLOSE-WAIT".into(), "kernel".into())),
        "{server_states:?}"
    );
    assert!(server_states
        .iter()
        .any(|(f, t, s)| f == "LISTEN" && t == "SYN-RECEIVED" && s == "inferred"));
    assert_eq!(server_states.last().map(|s| s.1.as_str()), Some("CLOSED"));
}

/// The human timeline of both programs names the calls, the 5-tuple, the
/// thread, and the states, with no colour codes when piped.
#[test]
fn round_trip_human() {
    let (mut server, addr) = human_server();
    let out = run(
        sockdemo(&["connect", &addr, "--send", "hello", "--color", "never"]),
        b"",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    for expected in [
        "socket(AF_INET, SOCK_STREAM",
        &format!(", {addr}) = -1 EINPROGRESS"),
        "SO_ERROR, [0]) = 0",
        "ephemeral port",
        "◀ in  6 bytes \"hello\\n\"",
        "SHUT_WR) = 0",
        "→ TIME-WAIT [",
        "── 2 REQUEST",
        "── 3 CONFIRM",
    ] {
        assert!(
            out.stdout.contains(expected),
            "client output lacks {expected:?}:\n{}",
            out.stdout
        );
    }
    server.wait_line("the server's close of C1", |l| {
        l.contains("S·C1") && l.contains("close(") && l.contains(") = 0")
    });
    let (status, lines, _) = server.terminate();
    assert!(status.success());
    let text = lines.join("\n");
    for expected in [
        ", 127.0.0.1:0) = 0",
        ", backlog=128) = 0",
        "accept(3) = ",
        "C1 is served by a thread of its own",
        "→ CLOSE-WAIT [",
        "summary: served 1 client ",
    ] {
        assert!(
            text.contains(expected),
            "server output lacks {expected:?}:\n{text}"
        );
    }
    assert!(!text.contains('\x1b') && !out.stdout.contains('\x1b'));
}

/// Control characters and escape sequences from the network are shown
/// escaped, never passed to the terminal.
#[test]
fn control_bytes_are_escaped() {
    use std::io::{Read, Write};
    let (mut server, addr) = human_server();
    let mut peer = std::net::TcpStream::connect(&addr).unwrap();
    let evil = b"\x1b[2J\x1b]0;pwned\x07\xc2\x9b31m\xff\n";
    peer.write_all(evil).unwrap();
    let mut echo = vec![0u8; evil.len()];
    peer.read_exact(&mut echo).unwrap();
    assert_eq!(echo, evil, "the echo itself is byte for byte");
    drop(peer);
    let line = server.wait_line("the escaped preview", |l| l.contains("◀ in"));
    assert!(
        line.contains(r#""\x1b[2J\x1b]0;pwned\x07\u{009b}31m\xff\n""#),
        "{line}"
    );
    let (_, lines, _) = server.terminate();
    let all = lines.join("\n");
    for raw in ['\x1b', '\x07', '\u{9b}'] {
        assert!(!all.contains(raw), "raw {raw:?} reached the terminal");
    }
}

/// Typed lines (stdin) are sent one by one; end of input half-closes.
#[test]
fn connect_reads_stdin_until_end_of_input() {
    let (server, addr) = json_server(&[]);
    let out = run(sockdemo(&["connect", &addr, "--json"]), b"one\ntwo\n");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let events = out.events();
    let sent: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "data" && e["dir"] == "out")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(sent, ["one\\n", "two\\n"]);
    let received: usize = events
        .iter()
        .filter(|e| e["kind"] == "data" && e["dir"] == "in")
        .map(|e| e["bytes"].as_u64().unwrap() as usize)
        .sum();
    assert_eq!(received, 8, "both lines echoed");
    let shutdown = events
        .iter()
        .position(|e| e["call"] == "shutdown")
        .expect("half-close at end of input");
    let last_out = events
        .iter()
        .rposition(|e| e["kind"] == "data" && e["dir"] == "out")
        .unwrap();
    assert!(shutdown > last_out);
    drop(server);
}

/// IPv6 loopback works end to end, and addresses are written in brackets.
#[test]
fn ipv6_loopback() {
    let (server, addr) = json_server(&["--host", "::1"]);
    assert!(addr.starts_with("[::1]:"), "{addr}");
    let out = run(
        sockdemo(&["connect", &addr, "--send", "six", "--json"]),
        b"",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let connect = out
        .events()
        .into_iter()
        .find(|e| e["call"] == "connect")
        .unwrap();
    assert_eq!(connect["args"], addr.as_str());
    assert!(connect["local"].as_str().unwrap().starts_with("[::1]:"));
    assert!(out.stdout.contains("AF_INET6"));
    drop(server);
}

/// A long message is previewed, and the preview says how much it left out.
#[test]
fn long_data_is_cut_with_a_count() {
    let (server, addr) = json_server(&[]);
    let long = "x".repeat(1000);
    let out = run(
        sockdemo(&["connect", &addr, "--send", &long, "--json"]),
        b"",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let sent = out
        .events()
        .into_iter()
        .find(|e| e["kind"] == "data" && e["dir"] == "out")
        .unwrap();
    assert_eq!(sent["bytes"], 1001);
    let shown = sent["text"].as_str().unwrap().len();
    assert!(shown < 100, "{shown}");
    assert_eq!(sent["cut"].as_u64().unwrap() as usize + shown, 1001);
    drop(server);
}

/// The tour runs by itself, exits 0, and tells the whole story.
#[test]
fn tour_completes_human() {
    let out = run(sockdemo(&["tour", "--color", "never"]), b"");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    for expected in [
        "SERVER S",
        "CLIENTS",
        "backlog=16) = 0",
        "C1 is served by a thread of its own",
        // C2 and C3 do what C1 did: one line each per stage, with their own numbers.
        "C3 the same ",
        "S·C3 accept(3) =",
        "hello from C2",
        "CLOSE-WAIT",
        "TIME-WAIT",
        "summary: served 3 clients",
    ] {
        assert!(
            out.stdout.contains(expected),
            "tour lacks {expected:?}:\n{}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains('\x1b'));
}

/// With --verbose every client is told in full, and nothing is folded.
#[test]
fn tour_verbose_tells_every_client_in_full() {
    let out = run(sockdemo(&["tour", "--color", "never", "--verbose"]), b"");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(out.stdout.contains("C3 is served by a thread of its own"));
    assert!(!out.stdout.contains(" events as C1"), "{}", out.stdout);
}

/// The tour's JSON tells the same story, with --clients.
#[test]
fn tour_json_with_five_clients() {
    let out = run(sockdemo(&["tour", "--json", "--clients", "5"]), b"");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let events = out.events();
    let accepts: Vec<_> = events
        .iter()
        .filter(|e| e["call"] == "accept" && e["ok"] == true)
        .collect();
    assert_eq!(accepts.len(), 5);
    for i in 1..=5 {
        let c = format!("C{i}");
        let client_tw = events.iter().any(|e| {
            e["side"] == "client"
                && e["conn"] == c.as_str()
                && e["to"] == "TIME-WAIT"
                && observed(e)
        });
        assert!(client_tw, "{c} should end in TIME-WAIT");
        let client_fw = events.iter().any(|e| {
            e["side"] == "client"
                && e["conn"] == c.as_str()
                && observed(e)
                && e["to"].as_str().is_some_and(|s| s.starts_with("FIN-WAIT"))
        });
        assert!(
            client_fw,
            "{c}: the kernel should be seen in FIN-WAIT after shutdown()"
        );
        let server_cw = events.iter().any(|e| {
            e["side"] == "server"
                && e["conn"] == c.as_str()
                && e["to"] == "CLOSE-WAIT"
                && observed(e)
        });
        assert!(server_cw, "server side of {c} should pass CLOSE-WAIT");
    }
    let rows: Vec<_> = events
        .iter()
        .filter(|e| e["topic"] == "table-row" && e["state"] == "TIME-WAIT")
        .collect();
    assert_eq!(
        rows.len(),
        5,
        "the kernel's table shows five TIME-WAIT connections"
    );
    let summary = events.iter().find(|e| e["topic"] == "summary").unwrap();
    assert_eq!(summary["clients"], 5);
    // Stages arrive in the lesson's order for each connection.
    let order = ["listen", "request", "confirm", "transfer", "close"];
    for i in 1..=5 {
        let c = format!("C{i}");
        let ranks: Vec<usize> = events
            .iter()
            // The program's own steps; a packet is stamped when the kernel
            // saw it, which is inside the call that sent it.
            .filter(|e| e["side"] == "client" && e["conn"] == c.as_str() && e["kind"] != "packet")
            .map(|e| order.iter().position(|s| e["stage"] == *s).unwrap())
            .collect();
        assert!(
            ranks.windows(2).all(|w| w[0] <= w[1]),
            "{c}: stages out of order {ranks:?}"
        );
    }
}

/// SIGTERM (like Ctrl-C) stops the server cleanly: each connected client
/// gets a FIN, closes, and the server prints its summary and exits 0.
/// Here the server closes first, so the roles flip: the client passes
/// CLOSE-WAIT and the server's side ends in TIME-WAIT.
#[test]
fn sigterm_closes_clients_cleanly() {
    let (mut server, addr) = json_server(&[]);
    let mut client = Running::start(sockdemo(&["connect", &addr, "--json"]));
    client.wait_event("the client's tuple note", |e| e["topic"] == "tuple");
    server.wait_event("the server's thread for C1", |e| {
        e["topic"] == "thread" && e["conn"] == "C1"
    });
    let (status, lines, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
    let events = parse_lines(&lines.join("\n"));
    assert!(events.iter().any(|e| e["topic"] == "stopping"));
    assert!(
        events
            .iter()
            .any(|e| e["call"] == "shutdown" && e["conn"] == "C1"),
        "the server says goodbye with a FIN"
    );
    let server_states = states(&events, "server", Some("C1"));
    assert!(
        server_states
            .iter()
            .any(|(_, to, src)| to == "TIME-WAIT" && src != "inferred"),
        "{server_states:?}"
    );
    let summary = events
        .iter()
        .find(|e| e["topic"] == "summary")
        .expect("summary");
    assert_eq!(summary["clients"], 1);

    let (status, lines, stderr) = client.finish();
    assert!(status.success(), "client should end normally: {stderr}");
    let events = parse_lines(&lines.join("\n"));
    assert!(events.iter().any(|e| e["topic"] == "peer-closed"));
    let client_states = states(&events, "client", Some("C1"));
    assert!(
        client_states
            .iter()
            .any(|(f, t, s)| f == "ESTABLISHED" && t == "CLOSE-WAIT" && s != "inferred"),
        "{client_states:?}"
    );
}

/// At the OS limit on file descriptors the server says so clearly, keeps
/// the waiting clients in the accept queue, and serves them once others leave.
#[test]
fn file_descriptor_limit_is_explained() {
    use std::io::{Read, Write};
    let cmd = format!("ulimit -n 40 && exec {} listen --port 0 --json", bin());
    let mut sh = std::process::Command::new("sh");
    sh.args(["-c", &cmd]);
    let mut server = Running::start(sh);
    let addr = server.listening_addr();
    let mut held = Vec::new();
    let echo = |s: &mut std::net::TcpStream| {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).map(|_| b[0])
    };
    // 40 descriptors minus stdin/out/err, the listener and a few of the runtime's own.
    for _ in 0..45 {
        held.push(std::net::TcpStream::connect(&addr).unwrap());
    }
    let err = server.wait_event("the fd-limit error", |e| e["kind"] == "error");
    assert!(
        err["error"].as_str().unwrap().contains("file descriptors"),
        "{err}"
    );
    assert!(err["text"].as_str().unwrap().contains("ulimit -n"), "{err}");
    // The last client waits in the accept queue: it is connected (the kernel
    // did the handshake) but not served. Free some descriptors and it is.
    let mut waiting = held.pop().unwrap();
    // Queued clients are accepted in order, so free enough places for all
    // of them, this one last.
    for s in held.drain(..20) {
        drop(s);
    }
    assert_eq!(
        echo(&mut waiting).unwrap(),
        b'x',
        "served once descriptors were freed"
    );
    let (status, _, _) = server.terminate();
    assert!(status.success());
}

/// `--host ::` takes IPv4 clients too (IPV6_V6ONLY off, Linux's default),
/// and says so; such a client appears as an IPv4-mapped address.
#[cfg(target_os = "linux")]
#[test]
fn dual_stack_explains_ipv4_mapped_clients() {
    let (server, addr) = json_server(&["--host", "::", "--packets", "off"]);
    let port = addr.rsplit(':').next().unwrap().to_string();
    let out = run(
        sockdemo(&[
            "connect",
            &format!("127.0.0.1:{port}"),
            "--send",
            "v4",
            "--json",
            "--packets",
            "off",
        ]),
        b"",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let (_, lines, _) = server.terminate();
    let events = parse_lines(&lines.join("\n"));
    let dual = events
        .iter()
        .find(|e| e["topic"] == "dual-stack")
        .expect("the IPV6_V6ONLY note");
    assert!(dual["text"].as_str().unwrap().contains("IPV6_V6ONLY"));
    let accept = events
        .iter()
        .find(|e| e["call"] == "accept" && e["ok"] == true)
        .unwrap();
    assert!(
        accept["remote"]
            .as_str()
            .unwrap()
            .starts_with("[::ffff:127.0.0.1]:"),
        "{accept}"
    );
    assert!(events
        .iter()
        .any(|e| e["topic"] == "mapped" && e["conn"] == "C1"));
}
