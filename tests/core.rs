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
    for e in &events {
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
