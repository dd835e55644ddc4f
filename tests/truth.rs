//! The timeline tells the truth: in closes, resets and queues that are not
//! the everyday path, every state, its source and its explanation agree with
//! the packets on the wire and the results the kernel returned.
//!
//! Each scenario runs the real binary on loopback with port 0, against a
//! peer written here where the peer must do something unusual (close first,
//! keep sending after a FIN, reset while queued), so that it does exactly
//! what the scenario needs and nothing else. Every output is also held to
//! the promises of `assert_truthful`: time and stages only go forward, and
//! "reset" is said only after an RST or a reset errno. Capture needs root
//! (as in CI); without it those tests say so and return. Linux only: the
//! peers use Linux socket options (TCP_CORK) and network namespaces.

#![cfg(target_os = "linux")]

mod common;
use common::*;
use serde_json::Value;
use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// TCP_CORK: the kernel holds small writes back until the cork is pulled
/// or a FIN goes out, which then rides on the same segment.
fn cork(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt(2) on a socket this test owns, with an int option.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            &on as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "TCP_CORK");
}

// ---------------------------------------------------------------------------
// 1. The peer closes first
// ---------------------------------------------------------------------------

/// A peer on 127.0.0.1:0 that echoes one line and closes at once. The echo
/// is corked so that the FIN leaves with it, in one segment: otherwise, on a
/// loaded machine, sockdemo could read the echo and shut down before this
/// thread's close(), and then sockdemo would be the one closing first.
fn peer_that_closes_first() -> (String, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let peer = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let line = peer_read_line(&stream);
        cork(&stream);
        (&stream).write_all(line.as_bytes()).unwrap();
        drop(stream);
    });
    (addr, peer)
}

fn the_peer_closes_first(capture: bool) {
    let what = if capture { "packets on" } else { "packets off" };
    let (addr, peer) = peer_that_closes_first();
    let packets_flag = if capture { "on" } else { "off" };
    let out = run(
        sockdemo(&[
            "connect",
            &addr,
            "--send",
            "hi",
            "--json",
            "--packets",
            packets_flag,
        ]),
        b"",
    );
    peer.join().unwrap();
    assert_eq!(out.code(), 0, "{}\n{}", out.stdout, out.stderr);
    let events = out.events();
    assert_truthful(&events, capture, what);
    let all = &out.stdout;

    assert_state_chain(&events, "client", "C1", what);
    assert_eq!(
        states_entered(&events, "client", "C1"),
        ["SYN-SENT", "ESTABLISHED", "CLOSE-WAIT", "LAST-ACK", "CLOSED"],
        "{what}: the side that closes second passes CLOSE-WAIT and LAST-ACK, never FIN-WAIT or TIME-WAIT:\n{all}"
    );
    assert!(
        !events.iter().any(says_reset),
        "{what}: nobody reset anything:\n{all}"
    );
    assert!(
        !events.iter().any(|e| flags_of(e).contains("RST")),
        "{what}: no RST on the wire:\n{all}"
    );

    // CLOSE-WAIT comes from the peer's FIN, so before the recv() = 0 it causes.
    let (close_wait, _) = state_entered(&events, "client", "C1", "CLOSE-WAIT").unwrap();
    let (eof, eof_event) = *syscalls_named(&events, "recv")
        .iter()
        .find(|(_, e)| e["ret"] == 0)
        .expect("recv() = 0");
    assert!(
        close_wait < eof,
        "{what}: CLOSE-WAIT before recv() = 0:\n{all}"
    );
    let why = eof_event["why"].as_str().unwrap();
    assert!(why.contains("FIN"), "{what}: recv() = 0 says why: {why}");
    let shutdown = &syscalls_named(&events, "shutdown")[0].1;
    let why = shutdown["why"].as_str().unwrap();
    assert!(
        why.contains("LAST-ACK"),
        "{what}: shutdown() says LAST-ACK: {why}"
    );

    let source = |to: &str| {
        last_state_entered(&events, "client", "C1", to).unwrap().1["source"]
            .as_str()
            .unwrap()
            .to_string()
    };
    if capture {
        let their_fin = packet_events(&events)
            .into_iter()
            .find(|(_, e)| e["side"] == "server" && flags_of(e).contains("FIN"))
            .expect("the peer's FIN on the wire");
        assert!(
            their_fin.0 < close_wait,
            "{what}: the peer's FIN before CLOSE-WAIT:\n{all}"
        );
        assert_eq!(source("LAST-ACK"), "packet", "{what}:\n{all}");
        assert_eq!(source("CLOSED"), "packet", "{what}:\n{all}");
    } else {
        assert_eq!(source("LAST-ACK"), "inferred", "{what}:\n{all}");
        assert_eq!(source("CLOSED"), "kernel", "{what}:\n{all}");
    }
}

/// The peer closes first: sockdemo's client is the one that receives the
/// FIN, so it passes CLOSE-WAIT (when the FIN arrives, before its recv()
/// returns 0) and LAST-ACK (its own FIN) to CLOSED, with no FIN-WAIT, no
/// TIME-WAIT and no reset. With packets, LAST-ACK and CLOSED are seen on the
/// wire.
#[cfg(target_os = "linux")]
#[test]
fn the_peer_closes_first_with_packets() {
    if !capture_allowed() {
        return;
    }
    the_peer_closes_first(true);
}

/// The peer closes first, without capture: LAST-ACK lasts one round trip and
/// nobody sees it (inferred); the final CLOSED is the kernel's word.
#[test]
fn the_peer_closes_first_without_packets() {
    the_peer_closes_first(false);
}

// ---------------------------------------------------------------------------
// 2. A half-close: the server keeps sending after the client's FIN
// ---------------------------------------------------------------------------

const MORE: [&str; 2] = ["more 1\n", "more 2\n"];

fn the_server_keeps_sending(capture: bool) {
    let what = if capture { "packets on" } else { "packets off" };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (go, wait_for_go) = mpsc::channel::<()>();
    let peer = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_nodelay(true).unwrap();
        let line = peer_read_line(&stream);
        (&stream).write_all(line.as_bytes()).unwrap();
        peer_read_to_eof(&stream);
        // The client has half-closed; it can still read. The second chunk
        // waits until the client has read the first (or the test gave up),
        // so that the client reads while in FIN-WAIT-2, not all at once.
        (&stream).write_all(MORE[0].as_bytes()).unwrap();
        let _ = wait_for_go.recv_timeout(PATIENCE);
        (&stream).write_all(MORE[1].as_bytes()).unwrap();
        drop(stream);
    });
    let packets_flag = if capture { "on" } else { "off" };
    let mut client = Running::start(sockdemo(&[
        "connect",
        &addr,
        "--send",
        "hi",
        "--json",
        "--packets",
        packets_flag,
    ]));
    client.wait_event("the first chunk read", |e| {
        e["kind"] == "data" && e["dir"] == "in" && e["text"] == MORE[0].replace('\n', "\\n")
    });
    go.send(()).unwrap();
    let (status, lines, stderr) = client.finish();
    peer.join().unwrap();
    let events = events_of_lines(&lines);
    let all = lines.join("\n");
    assert!(status.success(), "{all}\n{stderr}");
    assert_truthful(&events, capture, what);

    assert_state_chain(&events, "client", "C1", what);
    assert_eq!(
        states_entered(&events, "client", "C1"),
        [
            "SYN-SENT",
            "ESTABLISHED",
            "FIN-WAIT-1",
            "FIN-WAIT-2",
            "TIME-WAIT"
        ],
        "{what}:\n{all}"
    );
    let (fin_wait_2, fw2) = state_entered(&events, "client", "C1", "FIN-WAIT-2").unwrap();
    assert!(
        observed(fw2),
        "{what}: FIN-WAIT-2 was seen, not guessed: {fw2}\n{all}"
    );
    let (time_wait, _) = state_entered(&events, "client", "C1", "TIME-WAIT").unwrap();
    assert!(fin_wait_2 < time_wait);
    // Both chunks are read after our FIN.
    let (shutdown, _) = syscalls_named(&events, "shutdown")[0];
    let received: Vec<(usize, &Value)> = events
        .iter()
        .enumerate()
        .filter(|(i, e)| *i > shutdown && e["kind"] == "data" && e["dir"] == "in")
        .collect();
    let text: String = received
        .iter()
        .map(|(_, e)| e["text"].as_str().unwrap().replace("\\n", "\n"))
        .collect();
    assert_eq!(text, MORE.concat(), "{what}: both chunks read:\n{all}");
    if capture {
        let (_, fw1) = state_entered(&events, "client", "C1", "FIN-WAIT-1").unwrap();
        assert_eq!(fw1["source"], "packet", "{what}: {fw1}");
        // The ACK of our FIN came before the peer even read it: FIN-WAIT-2
        // is on the wire before any chunk.
        assert_eq!(fw2["source"], "packet", "{what}: {fw2}");
        assert!(fin_wait_2 < received[0].0, "{what}:\n{all}");
    }
    assert!(!events.iter().any(says_reset), "{what}:\n{all}");
}

/// A half-close: the client's FIN says "I will send nothing more", not "I
/// will read nothing more". The server answers after it, twice, then
/// closes: the client passes FIN-WAIT-1 and FIN-WAIT-2 (the kernel's word,
/// read when the first chunk is), reads both chunks, and ends in
/// TIME-WAIT; its stage, once "close", stays "close".
#[test]
fn the_server_keeps_sending_after_the_clients_fin_without_packets() {
    the_server_keeps_sending(false);
}

// ---------------------------------------------------------------------------
// 4. An RST while the connection waits in the accept queue
// ---------------------------------------------------------------------------

/// A client that connects, then closes with SO_LINGER 0: an RST instead of
/// a FIN.
fn connect_and_reset(addr: &str) {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let stream = TcpStream::connect_timeout(&addr, PATIENCE).unwrap();
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
}

fn an_rst_in_the_accept_queue(capture: bool) {
    let what = if capture { "packets on" } else { "packets off" };
    let packets_flag = if capture { "on" } else { "off" };
    let (mut server, addr) = json_server_ready(&["--accept-delay", "2", "--packets", packets_flag]);
    connect_and_reset(&addr);
    server.wait_event("the accept() of C1", |e| {
        e["kind"] == "syscall" && e["call"] == "accept" && e["conn"] == "C1"
    });
    // Still serving: the next client gets its echo.
    let next = run(
        sockdemo(&[
            "connect",
            &addr,
            "--send",
            "after",
            "--json",
            "--packets",
            "off",
        ]),
        b"",
    );
    assert_eq!(next.code(), 0, "{what}: {}\n{}", next.stdout, next.stderr);
    assert_truthful(&next.events(), false, "the next client");
    server.wait_event("the close() of C2", |e| {
        e["kind"] == "syscall" && e["call"] == "close" && e["conn"] == "C2"
    });
    let (status, lines, stderr) = server.terminate();
    let events = events_of_lines(&lines);
    let all = lines.join("\n");
    assert!(status.success(), "{what}: {all}\n{stderr}");
    assert_truthful(&events, capture, what);

    assert_state_chain(&events, "server", "C1", what);
    assert_eq!(
        states_entered(&events, "server", "C1"),
        ["SYN-RECEIVED", "ESTABLISHED", "CLOSED"],
        "{what}:\n{all}"
    );
    assert_eq!(states(&events, "server", Some("C1"))[0].0, "LISTEN");
    if !capture {
        return;
    }
    let (closed_at, closed) = state_entered(&events, "server", "C1", "CLOSED").unwrap();
    assert_eq!(closed["source"], "packet", "{closed}");
    assert!(
        closed["detail"].as_str().unwrap_or("").contains("RST"),
        "the detail names the RST: {closed}"
    );
    let (rst_at, rst) = *packet_events(&events)
        .iter()
        .find(|(_, e)| e["conn"] == "C1" && flags_of(e).contains("RST"))
        .expect("the RST on the wire");
    assert!(rst_at < closed_at);
    assert_eq!(closed["t"], rst["t"], "CLOSED at the RST's time");
    let (accept_at, _) = *syscalls_named(&events, "accept")
        .iter()
        .find(|(_, e)| e["conn"] == "C1")
        .unwrap();
    assert!(closed_at < accept_at, "CLOSED before accept():\n{all}");
    assert!(
        events.iter().any(|e| e["conn"] == "C1" && says_reset(e)),
        "an RST was seen: the reset is named:\n{all}"
    );
}

/// An RST reaches a connection still waiting in the accept queue: the
/// server's C1 shows LISTEN → SYN-RECEIVED → ESTABLISHED → CLOSED, the
/// CLOSED seen in the RST packet before accept() ever returns it, and the
/// server carries on serving.
#[cfg(target_os = "linux")]
#[test]
fn an_rst_in_the_accept_queue_with_packets() {
    if !capture_allowed() {
        return;
    }
    an_rst_in_the_accept_queue(true);
}

// ---------------------------------------------------------------------------
// 5. --accept-delay
// ---------------------------------------------------------------------------

/// `listen --accept-delay 2` and one client that connects and sends
/// nothing, until the server has accepted it and seen it leave.
fn one_client_waits_in_the_queue(capture: bool) -> (Vec<Value>, String) {
    let packets_flag = if capture { "on" } else { "off" };
    let (mut server, addr) = json_server_ready(&["--accept-delay", "2", "--packets", packets_flag]);
    let client = TcpStream::connect(&addr).unwrap();
    server.wait_event("the accept() of C1", |e| {
        e["kind"] == "syscall" && e["call"] == "accept" && e["conn"] == "C1"
    });
    drop(client);
    server.wait_event("the close() of C1", |e| {
        e["kind"] == "syscall" && e["call"] == "close" && e["conn"] == "C1"
    });
    let (status, lines, stderr) = server.terminate();
    let events = events_of_lines(&lines);
    let all = lines.join("\n");
    assert!(status.success(), "{all}\n{stderr}");
    assert_truthful(&events, capture, "accept delay");
    (events, all)
}

/// The seconds accept()'s explanation says the connection waited in the
/// accept queue.
fn waited_in_queue(accept: &Value) -> f64 {
    let why = accept["why"].as_str().unwrap();
    assert!(why.contains("accept queue"), "{why}");
    why.split(" waited ")
        .nth(1)
        .and_then(|rest| rest.split(" s").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("accept() says how long it waited: {why}"))
}

/// --accept-delay: the handshake is over long before accept(). With
/// packets, the child's SYN-RECEIVED and ESTABLISHED carry the times of the
/// SYN and of the client's ACK, about 2 s before the accept() event, whose
/// explanation says how long the connection waited in the queue.
#[cfg(target_os = "linux")]
#[test]
fn accept_delay_shows_the_handshake_at_the_packets_time() {
    if !capture_allowed() {
        return;
    }
    let (events, all) = one_client_waits_in_the_queue(true);
    let wire = packet_events(&events);
    let packet_t = |side: &str, flags: &str| {
        wire.iter()
            .find(|(_, e)| e["conn"] == "C1" && e["side"] == side && e["flags"] == flags)
            .unwrap_or_else(|| panic!("{side} {flags}:\n{all}"))
            .1["t"]
            .as_f64()
            .unwrap()
    };
    let syn = packet_t("client", "SYN");
    let ack = packet_t("client", "ACK");
    let (_, syn_received) = state_entered(&events, "server", "C1", "SYN-RECEIVED").unwrap();
    let (_, established) = state_entered(&events, "server", "C1", "ESTABLISHED").unwrap();
    assert_eq!(syn_received["source"], "packet", "{syn_received}");
    assert_eq!(established["source"], "packet", "{established}");
    let t = |e: &Value| e["t"].as_f64().unwrap();
    assert!(
        (t(syn_received) - syn).abs() < 0.005,
        "SYN-RECEIVED at the SYN's time {syn}: {syn_received}"
    );
    assert!(
        (t(established) - ack).abs() < 0.005 && (ack - syn) < 0.005,
        "ESTABLISHED at the ACK's time {ack}, a few ms after the SYN {syn}: {established}"
    );
    let (_, accept) = *syscalls_named(&events, "accept")
        .iter()
        .find(|(_, e)| e["conn"] == "C1")
        .unwrap();
    let waited = t(accept) - t(established);
    assert!(
        (1.9..4.0).contains(&waited),
        "accept() about 2 s after ESTABLISHED, not {waited}:\n{all}"
    );
    let said = waited_in_queue(accept);
    assert!(
        (said - waited).abs() <= 0.1,
        "waited {waited:.2} s in the accept queue: {accept}"
    );
}

/// --accept-delay without capture: the connection's ESTABLISHED is read
/// from the kernel's table while it waits in the queue (not at accept()),
/// about 2 s before accept(), which says how long it waited.
#[test]
fn accept_delay_without_packets_reads_the_queue() {
    let (events, all) = one_client_waits_in_the_queue(false);
    let (_, established) = state_entered(&events, "server", "C1", "ESTABLISHED")
        .unwrap_or_else(|| panic!("ESTABLISHED:\n{all}"));
    assert_eq!(established["source"], "kernel", "{established}");
    let (_, accept) = *syscalls_named(&events, "accept")
        .iter()
        .find(|(_, e)| e["conn"] == "C1")
        .unwrap();
    let t = |e: &Value| e["t"].as_f64().unwrap();
    let waited = t(accept) - t(established);
    assert!(
        (1.5..4.0).contains(&waited),
        "ESTABLISHED read while queued, about 2 s before accept(), not {waited}:\n{all}"
    );
    let said = waited_in_queue(accept);
    assert!((1.9..4.0).contains(&said), "{accept}");
}

// ---------------------------------------------------------------------------
// 6. An IPv4-mapped client of a `::` listener
// ---------------------------------------------------------------------------

/// An IPv4 client of a server on `::`: the server's socket speaks IPv6 with
/// the client as ::ffff:127.0.0.1, the wire carries IPv4. The packets are
/// still matched to C1, so the short states come from them.
#[cfg(target_os = "linux")]
#[test]
fn an_ipv4_client_of_an_ipv6_listener() {
    if !capture_allowed() {
        return;
    }
    let (mut server, addr) = json_server_ready(&["--host", "::", "--packets", "on"]);
    let port = port_number(&addr);
    let out = run(
        sockdemo(&[
            "connect",
            &format!("127.0.0.1:{port}"),
            "--send",
            "mapped",
            "--json",
            "--packets",
            "off",
        ]),
        b"",
    );
    assert_eq!(out.code(), 0, "{}\n{}", out.stdout, out.stderr);
    assert_truthful(&out.events(), false, "the IPv4 client");
    server.wait_event("the close() of C1", |e| {
        e["kind"] == "syscall" && e["call"] == "close" && e["conn"] == "C1"
    });
    let (status, lines, stderr) = server.terminate();
    let events = events_of_lines(&lines);
    let all = lines.join("\n");
    assert!(status.success(), "{all}\n{stderr}");
    assert_truthful(&events, true, "mapped client");

    let wire = packet_events(&events);
    assert!(wire.len() >= 7, "handshake, data, close:\n{all}");
    for (_, p) in &wire {
        assert_eq!(
            p["conn"], "C1",
            "every packet of the connection is C1's: {p}"
        );
    }
    for to in ["SYN-RECEIVED", "LAST-ACK"] {
        let (_, e) =
            state_entered(&events, "server", "C1", to).unwrap_or_else(|| panic!("{to}:\n{all}"));
        assert_eq!(e["source"], "packet", "{e}");
    }
    for e in events
        .iter()
        .filter(|e| e["side"] == "server" && e["conn"] == "C1" && e["kind"] != "packet")
    {
        for field in ["local", "remote"] {
            if let Some(a) = e[field].as_str() {
                assert!(
                    a.starts_with("[::ffff:127.0.0.1]:"),
                    "the server's socket sees the mapped address: {e}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 7. Backlog 0 and a backlog above somaxconn
// ---------------------------------------------------------------------------

fn listen_why(extra: &[&str]) -> String {
    let mut args = vec!["--packets", "off"];
    args.extend_from_slice(extra);
    // json_server has read up to the listen() event.
    let (server, _) = json_server(&args);
    let listen = events_of_lines(&server.seen)
        .into_iter()
        .find(|e| e["call"] == "listen")
        .unwrap();
    drop(server);
    listen["why"].as_str().unwrap().to_string()
}

/// listen(fd, 0) still lets one finished connection wait: Linux counts
/// backlog + 1.
#[test]
fn backlog_zero_lets_one_wait() {
    let why = listen_why(&["--backlog", "0"]);
    assert!(why.contains("backlog + 1 = 1 "), "{why}");
    assert!(!why.contains("up to 0"), "{why}");
}

/// A backlog above net.core.somaxconn is capped: the explanation gives the
/// value the kernel applies, this machine's somaxconn.
#[test]
fn backlog_above_somaxconn_is_capped() {
    let somaxconn: u64 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let asked = (somaxconn + 1).max(10_000);
    let why = listen_why(&["--backlog", &asked.to_string()]);
    assert!(why.contains("somaxconn"), "{why}");
    assert!(
        why.contains(&format!("backlog is {somaxconn}"))
            && why.contains(&format!("= {} ", somaxconn + 1)),
        "the kernel applies somaxconn = {somaxconn}: {why}"
    );
    assert!(!why.contains(&format!("{}", asked + 1)), "{why}");
}

// ---------------------------------------------------------------------------
// 8. No `stop` connection
// ---------------------------------------------------------------------------

/// Checks that nothing but the clients' own connections reached the server:
/// no "stop" connection, no wake-up note, one SYN per client.
fn assert_only_clients(events: &[Value], clients: &[String], what: &str) {
    for e in events {
        assert_ne!(e["conn"], "stop", "{what}: {e}");
        assert_ne!(e["topic"], "wake", "{what}: {e}");
    }
    let wire = packet_events(events);
    for (_, p) in &wire {
        assert!(
            clients.iter().any(|c| p["conn"] == c.as_str()),
            "{what}: a packet of a connection no client made: {p}"
        );
    }
    for c in clients {
        let syns = wire
            .iter()
            .filter(|(_, p)| p["conn"] == c.as_str() && p["flags"] == "SYN")
            .count();
        assert_eq!(syns, 1, "{what}: {c} sends one SYN");
    }
    let syns = wire.iter().filter(|(_, p)| p["flags"] == "SYN").count();
    assert_eq!(syns, clients.len(), "{what}: one SYN per client");
}

/// The tour stops its server through a waker, not by connecting to it:
/// the wire carries exactly one SYN per client.
#[cfg(target_os = "linux")]
#[test]
fn the_tour_stops_without_a_connection_of_its_own() {
    if !capture_allowed() {
        return;
    }
    let out = run(sockdemo(&["tour", "--json", "--packets", "on"]), b"");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let events = out.events();
    assert_truthful(&events, true, "tour");
    let mut clients: Vec<String> = syscalls_named(&events, "connect")
        .iter()
        .filter(|(_, e)| e["side"] == "client")
        .map(|(_, e)| e["conn"].as_str().unwrap().to_string())
        .collect();
    clients.dedup();
    assert_eq!(clients, ["C1", "C2", "C3"]);
    assert_only_clients(&events, &clients, "tour");
}

/// `listen` stopped with SIGTERM stops through its waker too: after the one
/// client, no other SYN reaches the port.
#[cfg(target_os = "linux")]
#[test]
fn a_listen_stopped_by_sigterm_makes_no_connection() {
    if !capture_allowed() {
        return;
    }
    let (mut server, addr) = json_server_ready(&["--packets", "on"]);
    let out = run(
        sockdemo(&[
            "connect",
            &addr,
            "--send",
            "one",
            "--json",
            "--packets",
            "off",
        ]),
        b"",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_truthful(&out.events(), false, "the client");
    server.wait_event("the close() of C1", |e| {
        e["kind"] == "syscall" && e["call"] == "close" && e["conn"] == "C1"
    });
    let (status, lines, stderr) = server.terminate();
    let events = events_of_lines(&lines);
    assert!(status.success(), "{}\n{stderr}", lines.join("\n"));
    assert_truthful(&events, true, "listen");
    assert_only_clients(&events, &["C1".to_string()], "listen");
}

// ---------------------------------------------------------------------------
// 9. A refused connect shows its SYN
// ---------------------------------------------------------------------------

/// A port that is bound but not listening: nobody can take it while the
/// test holds it, and a SYN to it is answered with an RST.
fn closed_port() -> (socket2::Socket, String) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).unwrap();
    let addr = socket
        .local_addr()
        .unwrap()
        .as_socket()
        .unwrap()
        .to_string();
    (socket, addr)
}

fn a_refused_connect(capture: bool) {
    let what = if capture { "packets on" } else { "packets off" };
    let (_held, addr) = closed_port();
    let packets_flag = if capture { "on" } else { "off" };
    let out = run(
        sockdemo(&[
            "connect",
            &addr,
            "--send",
            "x",
            "--json",
            "--packets",
            packets_flag,
        ]),
        b"",
    );
    assert_ne!(out.code(), 0, "{what}: {}", out.stdout);
    let events = out.events();
    let all = &out.stdout;
    assert_truthful(&events, capture, what);
    let error = events
        .iter()
        .find(|e| e["kind"] == "error")
        .unwrap_or_else(|| panic!("{what}: an error event:\n{all}"));
    assert_eq!(error["code"], "refused", "{what}: {error}");
    assert_state_chain(&events, "client", "C1", what);
    assert_eq!(
        states_entered(&events, "client", "C1"),
        ["SYN-SENT", "CLOSED"],
        "{what}:\n{all}"
    );
    let (_, syn_sent) = state_entered(&events, "client", "C1", "SYN-SENT").unwrap();
    let (_, closed) = state_entered(&events, "client", "C1", "CLOSED").unwrap();
    if capture {
        assert_eq!(syn_sent["source"], "packet", "the SYN was seen: {syn_sent}");
        let wire = packet_events(&events);
        let syn = wire
            .iter()
            .find(|(_, e)| e["side"] == "client" && e["flags"] == "SYN")
            .unwrap_or_else(|| panic!("the SYN:\n{all}"));
        let rst = wire
            .iter()
            .find(|(_, e)| e["side"] == "server" && flags_of(e).contains("RST"))
            .unwrap_or_else(|| panic!("the RST:\n{all}"));
        assert!(syn.0 < rst.0);
        assert_eq!(syn_sent["t"], syn.1["t"], "SYN-SENT at the SYN's time");
        assert_eq!(closed["source"], "packet", "{closed}");
        assert_eq!(closed["t"], rst.1["t"], "CLOSED at the RST's time");
    } else {
        assert_eq!(syn_sent["source"], "inferred", "{syn_sent}");
    }
}

/// A connect to a port nobody listens on: the SYN leaves (SYN-SENT, seen on
/// the wire), the RST answers it, and the error is "refused".
#[cfg(target_os = "linux")]
#[test]
fn a_refused_connect_shows_its_syn_with_packets() {
    if !capture_allowed() {
        return;
    }
    a_refused_connect(true);
}

/// The same refusal without capture: SYN-SENT is inferred, the errno tells
/// the rest.
#[test]
fn a_refused_connect_without_packets() {
    a_refused_connect(false);
}

/// Two network namespaces joined by a veth pair, removed when dropped:
/// `peer` holds the test's peer, `client` runs sockdemo.
#[cfg(target_os = "linux")]
struct TwoHosts {
    peer: String,
    client: String,
}

#[cfg(target_os = "linux")]
impl TwoHosts {
    const PEER_IP: &'static str = "10.232.0.1";
    const CLIENT_IP: &'static str = "10.232.0.2";

    fn new() -> TwoHosts {
        // Unique per test and per run: other test binaries make namespaces too.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let id = (std::process::id() % 100_000) * 10
            + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let hosts = TwoHosts {
            peer: format!("sdtP{id}"),
            client: format!("sdtC{id}"),
        };
        let (vp, vc) = (format!("vtP{id}"), format!("vtC{id}"));
        let peer_ip = format!("{}/24", TwoHosts::PEER_IP);
        let client_ip = format!("{}/24", TwoHosts::CLIENT_IP);
        for ns in [&hosts.peer, &hosts.client] {
            let status = std::process::Command::new("ip")
                .args(["netns", "add", ns])
                .status()
                .expect("run ip");
            assert!(status.success(), "ip netns add {ns}");
        }
        join_namespaces(
            &hosts.peer,
            &vp,
            &[&peer_ip],
            &hosts.client,
            &vc,
            &[&client_ip],
        );
        hosts
    }

    /// Loads an nftables ruleset into namespace `ns`.
    fn nft(&self, ns: &str, rules: &str) {
        use std::process::{Command, Stdio};
        let mut nft = Command::new("ip")
            .args(["netns", "exec", ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("run ip netns exec nft");
        nft.stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        let status = nft.wait().unwrap();
        assert!(status.success(), "nft (nftables) is needed:\n{rules}");
    }

    /// sockdemo ARGS inside namespace `ns`.
    fn sockdemo(&self, ns: &str, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", ns, bin()]).args(args);
        cmd.env("LC_ALL", "C.UTF-8").env_remove("LANG");
        cmd
    }

    /// Runs `body` on a thread of this process that has entered namespace
    /// `ns` (setns(2) moves only the calling thread).
    fn thread_in<T: Send + 'static>(
        &self,
        ns: &str,
        body: impl FnOnce() -> T + Send + 'static,
    ) -> thread::JoinHandle<T> {
        use std::os::fd::AsRawFd;
        let path = format!("/run/netns/{ns}");
        thread::spawn(move || {
            let handle = std::fs::File::open(&path).expect("the namespace's handle");
            // SAFETY: setns(2) with a namespace fd this thread holds open.
            let rc = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}");
            body()
        })
    }
}

#[cfg(target_os = "linux")]
impl Drop for TwoHosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and so the pair.
        for ns in [&self.peer, &self.client] {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
    }
}

/// The peer's host holds back every FIN from the client until the peer has
/// sent its own: the client's FIN is on the wire (its capture sees it
/// leave) but arrives only as a retransmission, after the peer's FIN has
/// crossed it. A long path, made of a drop instead of a delay.
#[cfg(target_os = "linux")]
const FINS_CROSS: &str = "
table inet sockdemo_truth {
  set fin_sent {
    type ipv4_addr . inet_service
    flags dynamic,timeout
    timeout 60s
  }
  chain out {
    type filter hook output priority 0; policy accept;
    tcp flags & fin == fin add @fin_sent { ip daddr . tcp dport }
  }
  chain in {
    type filter hook input priority 0; policy accept;
    tcp flags & fin == fin ip saddr . tcp sport != @fin_sent drop
  }
}
";

/// Simultaneous close: both ends send FIN before receiving the other's.
/// sockdemo's client shuts down; the peer, in another namespace, closes as
/// soon as the client's shutdown() has returned, while the client's FIN is
/// still on its way (the peer's host holds it back until the peer's own FIN
/// has left). The client receives a FIN that does not acknowledge its own:
/// FIN-WAIT-1 → CLOSING, seen in the packets, then TIME-WAIT once its FIN
/// is acknowledged.
#[cfg(target_os = "linux")]
#[test]
fn simultaneous_close_passes_closing() {
    if !capture_allowed() {
        return;
    }
    let hosts = TwoHosts::new();
    hosts.nft(&hosts.peer, FINS_CROSS);
    let (port_tx, port_rx) = mpsc::channel::<u16>();
    let (go, wait_for_go) = mpsc::channel::<()>();
    let peer = hosts.thread_in(&hosts.peer.clone(), move || {
        let listener = TcpListener::bind((TwoHosts::PEER_IP, 0)).unwrap();
        port_tx.send(listener.local_addr().unwrap().port()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let line = peer_read_line(&stream);
        (&stream).write_all(line.as_bytes()).unwrap();
        // Close when the client shuts down: its FIN is in flight.
        wait_for_go
            .recv_timeout(PATIENCE)
            .expect("the client's shutdown()");
        stream.shutdown(Shutdown::Write).unwrap();
        peer_read_to_eof(&stream);
    });
    let port = port_rx.recv_timeout(PATIENCE).expect("the peer's port");
    let addr = format!("{}:{port}", TwoHosts::PEER_IP);
    let mut client = Running::start(hosts.sockdemo(
        &hosts.client,
        &[
            "connect",
            &addr,
            "--send",
            "both",
            "--json",
            "--packets",
            "on",
        ],
    ));
    client.wait_event("the client's shutdown()", |e| {
        e["kind"] == "syscall" && e["call"] == "shutdown"
    });
    go.send(()).unwrap();
    let (status, lines, stderr) = client.finish();
    peer.join().unwrap();
    drop(hosts);
    let events = events_of_lines(&lines);
    let all = lines.join("\n");
    assert!(status.success(), "{all}\n{stderr}");
    assert_truthful(&events, true, "simultaneous close");

    // On the wire: our FIN, then theirs, which does not acknowledge ours.
    let wire = packet_events(&events);
    let (our_fin_at, our_fin) = *wire
        .iter()
        .find(|(_, e)| e["side"] == "client" && flags_of(e).contains("FIN"))
        .expect("our FIN");
    let (their_fin_at, their_fin) = *wire
        .iter()
        .find(|(_, e)| e["side"] == "server" && flags_of(e).contains("FIN"))
        .expect("their FIN");
    assert!(our_fin_at < their_fin_at, "{all}");
    assert_eq!(
        their_fin["ack"], our_fin["seq"],
        "their FIN was sent before ours arrived:\n{all}"
    );

    let (closing_at, closing) = state_entered(&events, "client", "C1", "CLOSING").unwrap();
    assert_eq!(
        closing["source"], "packet",
        "CLOSING is seen, not invented: {closing}"
    );
    assert!(their_fin_at < closing_at, "{all}");
    assert_eq!(closing["t"], their_fin["t"], "CLOSING at their FIN's time");
    let (_, fw1) = state_entered(&events, "client", "C1", "FIN-WAIT-1").unwrap();
    assert_eq!(fw1["source"], "packet", "{fw1}");
    assert!(!events.iter().any(says_reset), "{all}");
    assert_state_chain(&events, "client", "C1", "simultaneous close");
    assert_eq!(
        states_entered(&events, "client", "C1"),
        [
            "SYN-SENT",
            "ESTABLISHED",
            "FIN-WAIT-1",
            "CLOSING",
            "TIME-WAIT"
        ],
        "then TIME-WAIT, once our FIN is acknowledged:\n{all}"
    );
}

// ---------------------------------------------------------------------------
// 4. An RST while the connection waits in the accept queue, without capture
// ---------------------------------------------------------------------------

/// The same RST without capture: the server learns of it from the kernel
/// (the errno of its first recv()), never claims a packet, and carries on.
#[test]
fn an_rst_in_the_accept_queue_without_packets() {
    an_rst_in_the_accept_queue(false);
}

// ---------------------------------------------------------------------------
// 7. The accept queue with three clients
// ---------------------------------------------------------------------------

/// A client that starts a handshake and does not wait for it.
fn start_connect(addr: &str) -> socket2::Socket {
    use socket2::{Domain, Socket, Type};
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_nonblocking(true).unwrap();
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => panic!("connect {addr}: {e}"),
    }
    socket
}

/// Three clients at a server with backlog 1 that waits 2 s before each
/// accept(): two fit in the queue (backlog + 1), the third's SYN is dropped
/// until there is room. The accept-queue notes never claim more waiting
/// than that.
#[test]
fn the_accept_queue_never_holds_more_than_backlog_plus_one() {
    let backlog = 1;
    let (mut server, addr) = json_server(&[
        "--backlog",
        &backlog.to_string(),
        "--accept-delay",
        "2",
        "--packets",
        "off",
    ]);
    let clients: Vec<_> = (0..3).map(|_| start_connect(&addr)).collect();
    server.wait_event("the accept() of C3", |e| {
        e["kind"] == "syscall" && e["call"] == "accept" && e["conn"] == "C3"
    });
    drop(clients);
    let (status, lines, stderr) = server.terminate();
    let events = events_of_lines(&lines);
    let all = lines.join("\n");
    assert!(status.success(), "{all}\n{stderr}");
    assert_truthful(&events, false, "accept queue");
    let notes: Vec<&Value> = events
        .iter()
        .filter(|e| e["topic"] == "accept-queue")
        .collect();
    assert!(!notes.is_empty(), "{all}");
    let room = backlog + 1;
    for note in notes {
        let text = note["text"].as_str().unwrap();
        assert!(note["accept_queue"].as_u64().unwrap() <= room, "{note}");
        assert_eq!(note["backlog"], backlog, "{note}");
        let numbers: Vec<u64> = text
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        assert!(
            numbers.iter().all(|n| *n <= room),
            "no number above backlog + 1 = {room}: {text}"
        );
        assert!(text.contains(&format!("lets {room} wait")), "{text}");
    }
}

// ---------------------------------------------------------------------------
// 2. A half-close, with packets (copied from tests/truth.rs)
// ---------------------------------------------------------------------------

/// chunks, and ends in TIME-WAIT; its stage, once "close", stays "close".
#[cfg(target_os = "linux")]
#[test]
fn the_server_keeps_sending_after_the_clients_fin_with_packets() {
    if !capture_allowed() {
        return;
    }
    the_server_keeps_sending(true);
}
