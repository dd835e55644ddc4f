//! `listen --udp` and `connect --udp`, checked with the real binary on
//! loopback, port 0: datagrams instead of a connection.

mod common;
use common::*;
use serde_json::Value;

/// Starts `sockdemo listen --udp --port 0 --json` (plus `extra`) and returns
/// it with the address its socket is bound to (from the `bind` event).
fn udp_server(extra: &[&str]) -> (Running, String) {
    let mut args = vec!["listen", "--udp", "--port", "0", "--json"];
    args.extend_from_slice(extra);
    let mut server = Running::start(sockdemo(&args));
    let bind = server.wait_event("the bind() event", |v| {
        v["kind"] == "syscall" && v["call"] == "bind" && v["ok"] == true
    });
    let addr = bind["local"].as_str().expect("bind event has local");
    (server, addr.to_string())
}

/// The calls in a list of events, in order.
fn calls(events: &[Value]) -> Vec<&str> {
    of_kind(events, "syscall")
        .iter()
        .map(|e| e["call"].as_str().unwrap())
        .collect()
}

/// A port on 127.0.0.1 where no UDP socket is bound: bound by the OS, then freed.
fn closed_udp_port() -> u16 {
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// One client, one datagram and its echo, on `host`; returns what both
/// sides printed after checking what every UDP run must show.
fn round_trip(host: &str) -> (Vec<Value>, Vec<Value>) {
    let (server, addr) = udp_server(&["--host", host]);
    let out = run(
        sockdemo(&["connect", "--udp", &addr, "--send", "hello", "--json"]),
        b"",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let client = out.events();
    assert!(
        client.iter().all(|e| e["proto"] == "udp"),
        "every client event is UDP: {client:?}"
    );
    assert!(
        of_kind(&client, "state").is_empty(),
        "UDP has no states to report"
    );
    assert_eq!(
        calls(&client),
        ["socket", "connect", "setsockopt", "send", "recv", "close"]
    );
    let echoed: Vec<_> = of_kind(&client, "data")
        .into_iter()
        .filter(|e| e["dir"] == "in")
        .collect();
    assert_eq!(echoed.len(), 1, "one datagram back");
    assert_eq!(echoed[0]["text"], "hello\\n");
    assert_eq!(echoed[0]["bytes"], 6);
    let (status, lines, _) = server.terminate();
    assert!(status.success());
    let server = parse_lines(&lines.join("\n"));
    assert!(server.iter().all(|e| e["proto"] == "udp"), "{server:?}");
    (client, server)
}

/// The address the client's socket got from connect() (its `local`).
fn client_local(client: &[Value]) -> String {
    of_kind(client, "syscall")
        .into_iter()
        .find(|e| e["call"] == "connect")
        .and_then(|e| e["local"].as_str())
        .expect("connect event with local")
        .to_string()
}

/// The server's recvfrom() names the client's own address, and its
/// sendto() answers that address; both carry the peer's number, C1.
fn assert_server_answered(server: &[Value], client: &str) {
    let server_calls = calls(server);
    assert_eq!(
        server_calls,
        ["socket", "bind", "recvfrom", "sendto", "close"],
        "no listen(), no accept()"
    );
    for call in ["recvfrom", "sendto"] {
        let e = server
            .iter()
            .find(|e| e["call"] == call)
            .unwrap_or_else(|| panic!("{call} event"));
        assert_eq!(e["remote"], client, "{call} is about the client");
        assert_eq!(e["conn"], "C1");
        assert_eq!(e["side"], "server");
    }
    assert!(of_kind(server, "state").is_empty());
}

/// IPv4: a datagram goes out and its echo comes back; the server sees the
/// client's address with the datagram.
#[test]
fn round_trip_on_ipv4() {
    let (client, server) = round_trip("127.0.0.1");
    let local = client_local(&client);
    assert!(local.starts_with("127.0.0.1:"), "{local}");
    assert_server_answered(&server, &local);
}

/// IPv6: the same on ::1, with AF_INET6 sockets.
#[test]
fn round_trip_on_ipv6() {
    let (client, server) = round_trip("::1");
    let args = client[0]["args"].as_str().unwrap();
    assert!(
        args.starts_with("AF_INET6, SOCK_DGRAM") && args.ends_with(", IPPROTO_UDP"),
        "{args}"
    );
    let local = client_local(&client);
    assert!(local.starts_with("[::1]:"), "{local}");
    assert_server_answered(&server, &local);
}

/// Two clients of one socket: the server numbers them by the address each
/// datagram came from, C1 then C2, and counts them as two peers.
#[test]
fn peers_are_numbered_by_address() {
    let (server, addr) = udp_server(&[]);
    let mut locals = Vec::new();
    for text in ["first", "second"] {
        let out = run(
            sockdemo(&["connect", "--udp", &addr, "--send", text, "--json"]),
            b"",
        );
        assert_eq!(out.code(), 0, "{}", out.stderr);
        locals.push(client_local(&out.events()));
    }
    assert_ne!(locals[0], locals[1], "two ephemeral ports");
    let (_, lines, _) = server.terminate();
    let events = parse_lines(&lines.join("\n"));
    let received: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["call"] == "recvfrom")
        .map(|e| (e["conn"].as_str().unwrap(), e["remote"].as_str().unwrap()))
        .collect();
    assert_eq!(
        received,
        [("C1", locals[0].as_str()), ("C2", locals[1].as_str())]
    );
    let summary = events
        .iter()
        .find(|e| e["topic"] == "summary")
        .expect("summary");
    assert_eq!(summary["peers"], 2);
}

/// SIGTERM stops the server, which closes its one socket and counts what
/// it received. With --no-echo nothing comes back, and the client says
/// that UDP promised nothing.
#[test]
fn sigterm_stops_with_a_summary() {
    let (mut server, addr) = udp_server(&["--no-echo"]);
    let out = run(
        sockdemo(&[
            "connect", "--udp", &addr, "--send", "one", "--send", "two", "--wait", "0.2", "--json",
        ]),
        b"",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let silent: Vec<_> = out
        .events()
        .into_iter()
        .filter(|e| e["topic"] == "no-reply")
        .collect();
    assert_eq!(silent.len(), 2, "one note per unanswered datagram");
    assert!(silent[0]["text"]
        .as_str()
        .unwrap()
        .contains("no retransmission"));
    // Nothing came back to say so: wait until the server has read both.
    for which in ["first", "second"] {
        server.wait_event(&format!("the {which} recvfrom()"), |v| {
            v["call"] == "recvfrom" && v["ok"] == true
        });
    }
    let (status, lines, _) = server.terminate();
    assert!(status.success());
    let events = parse_lines(&lines.join("\n"));
    assert!(events.iter().any(|e| e["topic"] == "stopping"));
    assert!(!events.iter().any(|e| e["call"] == "sendto"), "--no-echo");
    let summary = events.last().expect("events");
    assert_eq!(summary["topic"], "summary", "the summary comes last");
    assert_eq!(summary["datagrams_in"], 2);
    assert_eq!(summary["datagrams_out"], 0);
    assert_eq!(summary["bytes_in"], 8);
    assert_eq!(summary["bytes_out"], 0);
    assert_eq!(summary["peers"], 1);
}

/// Nothing bound to the port: the datagram leaves anyway, the kernel there
/// answers with ICMP "port unreachable", and the connected socket hears of
/// it on its next call, recv(), as ECONNREFUSED.
#[test]
fn closed_port_is_refused_through_icmp() {
    let target = format!("127.0.0.1:{}", closed_udp_port());
    let out = run(
        sockdemo(&["connect", "--udp", &target, "--send", "ping", "--json"]),
        b"",
    );
    assert_eq!(out.code(), 1, "{}", out.stdout);
    let events = out.events();
    let sent = events
        .iter()
        .find(|e| e["call"] == "send")
        .expect("send event");
    assert_eq!(sent["ok"], true, "sending to nobody succeeds");
    let recv = events
        .iter()
        .find(|e| e["call"] == "recv")
        .expect("recv event");
    assert_eq!(recv["ok"], false);
    assert!(recv["error"].as_str().unwrap().starts_with("ECONNREFUSED"));
    let last = events.last().unwrap();
    assert_eq!(last["kind"], "error");
    assert_eq!(last["code"], "refused");
    assert_eq!(last["proto"], "udp");
    assert!(last["text"].as_str().unwrap().contains("ICMP"));
    assert!(out.stderr.contains("ICMP"), "{}", out.stderr);
    assert!(out.stderr.contains("listen --udp"), "{}", out.stderr);
}

/// A line longer than a datagram can carry is refused by the kernel
/// (EMSGSIZE), and nothing is sent.
#[test]
fn too_long_for_one_datagram() {
    let target = format!("127.0.0.1:{}", closed_udp_port());
    let line = vec![b'x'; 70_000];
    let out = run(sockdemo(&["connect", "--udp", &target, "--json"]), &line);
    assert_eq!(out.code(), 1, "{}", out.stdout);
    let last = out.events().pop().unwrap();
    assert_eq!(last["code"], "too-long");
    assert!(out.stderr.contains("65507"), "{}", out.stderr);
}

/// Stdin lines are datagrams too, each with the newline as typed.
#[test]
fn stdin_lines_are_datagrams() {
    let (server, addr) = udp_server(&[]);
    let out = run(
        sockdemo(&["connect", "--udp", &addr, "--json"]),
        b"one\ntwo",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let events = out.events();
    let sent: Vec<_> = of_kind(&events, "data")
        .into_iter()
        .filter(|e| e["dir"] == "out")
        .map(|e| e["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sent, ["one\\n", "two"]);
    let echoed = of_kind(&events, "data")
        .into_iter()
        .filter(|e| e["dir"] == "in")
        .count();
    assert_eq!(echoed, 2);
    let (_, lines, _) = server.terminate();
    let events = parse_lines(&lines.join("\n"));
    let summary = events.iter().find(|e| e["topic"] == "summary").unwrap();
    assert_eq!(summary["datagrams_in"], 2);
    assert_eq!(summary["datagrams_out"], 2);
}

/// Options that belong to TCP's handshake, goodbye or accept queue are
/// usage errors with --udp (exit status 2), and say why.
#[test]
fn tcp_only_options_are_refused() {
    for args in [
        &["connect", "--udp", "127.0.0.1:9", "--timeout", "1"][..],
        &["connect", "--udp", "127.0.0.1:9", "--linger0"],
        &["listen", "--udp", "--port", "0", "--accept-delay", "1"],
        &["listen", "--udp", "--port", "0", "--backlog", "5"],
        &["listen", "--udp", "--port", "0", "--chat"],
    ] {
        let out = run(sockdemo(args), b"");
        assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: nothing ran");
    }
    let out = run(
        sockdemo(&["connect", "--udp", "9", "--timeout", "1", "--json"]),
        b"",
    );
    assert_eq!(out.code(), 2);
    let line = &out.events()[0];
    assert_eq!(line["code"], "usage");
    assert!(line["error"].as_str().unwrap().contains("handshake"));
}

/// The timeline for people: UDP's own stage headings and the ready line
/// with the command to type in the other terminal.
#[test]
fn human_timeline_speaks_udp() {
    let mut server = Running::start(sockdemo(&[
        "listen", "--udp", "--port", "0", "--color", "never",
    ]));
    server.wait_line("the UDP listen heading", |l| {
        l.contains("1 LISTEN · the server binds its UDP socket")
    });
    server.wait_line("the ready line", |l| {
        l.contains("receiving datagrams on 127.0.0.1:")
    });
    let (status, lines, _) = server.terminate();
    assert!(status.success());
    // The timeline wraps long lines at spaces; join them back.
    let text: Vec<&str> = lines.iter().map(|l| l.trim()).collect();
    let text = text.join(" ");
    assert!(text.contains("sockdemo connect --udp 127.0.0.1:"), "{text}");
    assert!(text.contains("summary: 0 datagrams in"), "{text}");
}
