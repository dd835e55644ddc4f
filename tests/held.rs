//! States that last microseconds, held on purpose so the kernel can be
//! seen in them; and the accept queue, seen before accept().

mod common;
use common::*;

/// The handshake demo shows SYN-SENT and SYN-RECEIVED as the kernel
/// reports them, and says plainly that they are held on purpose.
#[cfg(target_os = "linux")]
#[test]
fn handshake_demo_holds_syn_sent_and_syn_received() {
    let out = run(
        sockdemo(&[
            "explain",
            "handshake",
            "--demo",
            "--json",
            "--packets",
            "off",
        ]),
        b"",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let events = out.events();
    let syn_sent = events
        .iter()
        .find(|e| e["kind"] == "state" && e["conn"] == "C3" && e["to"] == "SYN-SENT")
        .expect("C3 passes SYN-SENT");
    assert_eq!(
        syn_sent["source"], "kernel",
        "held long enough to be observed: {syn_sent}"
    );
    let syn_recv = events
        .iter()
        .find(|e| e["topic"] == "table-row" && e["state"] == "SYN-RECEIVED")
        .expect("the server's side is in SYN-RECEIVED in the kernel's table");
    assert!(syn_recv["local"].as_str().is_some());
    let held: Vec<&str> = events
        .iter()
        .filter(|e| e["topic"] == "held")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert!(
        held.iter()
            .any(|t| t.contains("deliberately held") || t.contains("on purpose")),
        "{held:?}"
    );
    // The queue before accept(): one connection waiting, then none.
    let queues: Vec<u64> = events
        .iter()
        .filter(|e| e["topic"] == "table-row" && e["state"] == "LISTEN")
        .map(|e| e["accept_queue"].as_u64().unwrap())
        .collect();
    assert_eq!(&queues[..2], [1, 0], "{queues:?}");
}

/// listen --accept-delay: a client connects at once (the kernel finishes
/// its handshake), and waits in the accept queue until accept() is called.
#[cfg(target_os = "linux")]
#[test]
fn accept_delay_shows_the_queue() {
    let (mut server, addr) = json_server(&["--accept-delay", "1", "--packets", "off"]);
    let client = std::net::TcpStream::connect(&addr).unwrap();
    let queued = server.wait_event("the queue note", |e| {
        e["topic"] == "accept-queue" && e["accept_queue"] == 1
    });
    assert_eq!(queued["backlog"], 128);
    let accepted = server.wait_event("accept()", |e| e["call"] == "accept" && e["ok"] == true);
    assert!(
        accepted["t"].as_f64() >= queued["t"].as_f64(),
        "accept() comes after the queue was seen"
    );
    drop(client);
}

/// connect --linger0 ends with a reset: no TIME-WAIT for the client, and
/// the server reports "connection reset".
#[test]
fn linger0_resets() {
    let (server, addr) = json_server(&["--packets", "off"]);
    let out = run(
        sockdemo(&[
            "connect",
            &addr,
            "--send",
            "bye",
            "--linger0",
            "--json",
            "--packets",
            "off",
        ]),
        b"",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let events = out.events();
    assert!(events
        .iter()
        .any(|e| e["call"] == "setsockopt" && e["args"].as_str().unwrap().contains("SO_LINGER")));
    assert!(
        !events.iter().any(|e| e["to"] == "TIME-WAIT"),
        "a reset leaves no TIME-WAIT"
    );
    let (_, lines, _) = server.terminate();
    let server_events = parse_lines(&lines.join("\n"));
    assert!(server_events
        .iter()
        .any(|e| e["kind"] == "error" && e["code"] == "reset" && e["conn"] == "C1"));
}
