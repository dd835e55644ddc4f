//! `sockdemo watch`: the kernel's socket table, live, for sockets this test
//! makes on loopback. sock_diag is Linux's, so these tests are too.
#![cfg(target_os = "linux")]

mod common;
use common::*;
use serde_json::Value;
use std::net::{SocketAddr, TcpStream, UdpSocket};

const ESC: char = '\x1b';

/// The port of an address such as "127.0.0.1:36039".
fn port_of(addr: &str) -> String {
    addr.parse::<SocketAddr>().unwrap().port().to_string()
}

/// The snapshots of a `watch --json` run, checked for their shape.
fn snapshots(out: &Output) -> Vec<Value> {
    assert_eq!(out.code(), 0, "stderr: {}", out.stderr);
    let snaps = out.events();
    assert!(!snaps.is_empty(), "no snapshot printed");
    for s in &snaps {
        assert_eq!(s["kind"], "snapshot", "{s}");
        assert!(s["t"].is_number() && s["sockets"].is_array(), "{s}");
    }
    snaps
}

/// The row of a snapshot whose local address is `local`.
fn row<'a>(snap: &'a Value, local: &str) -> Option<&'a Value> {
    snap["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["local"] == local)
}

/// A server from `sockdemo listen` and one client connected to it (and accepted).
fn server_and_client() -> (Running, String, TcpStream) {
    let (mut server, addr) = json_server(&[]);
    let client = TcpStream::connect(&addr).unwrap();
    server.wait_event("the server's accept()", |v| {
        v["kind"] == "syscall" && v["call"] == "accept" && v["ok"] == true
    });
    (server, addr, client)
}

/// The listener shows its accept queue (empty: the client was accepted) and
/// its backlog, and both ends of the connection are ESTABLISHED, each row
/// with its explanation.
#[test]
fn listener_and_connection() {
    let (_server, addr, client) = server_and_client();
    let port = port_of(&addr);
    let out = run(
        sockdemo(&["watch", "--port", &port, "--count", "2", "--json"]),
        b"",
    );
    let snaps = snapshots(&out);
    assert!(snaps.len() <= 2, "--count 2 printed {}", snaps.len());
    let snap = &snaps[0];
    assert_eq!(snap["port"], port.parse::<u16>().unwrap());
    assert_eq!(snap["refresh"], 1);
    let listener = row(snap, &addr).expect("the listener's row");
    assert_eq!(listener["proto"], "tcp");
    assert_eq!(listener["state"], "LISTEN");
    assert_eq!(listener["recv_queue"], 0, "accept queue: {listener}");
    assert_eq!(listener["send_queue"], 128, "backlog: {listener}");
    assert_eq!(listener["remote"], "0.0.0.0:0");
    assert_eq!(listener["timer_s"], Value::Null);
    assert!(listener["explain"]
        .as_str()
        .unwrap()
        .contains("waits for connections"));
    let mine = client.local_addr().unwrap().to_string();
    let ours = row(snap, &mine).expect("the client's row");
    assert_eq!(ours["state"], "ESTABLISHED");
    assert_eq!(ours["remote"], addr.as_str());
    let theirs = snap["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["local"] == addr.as_str() && r["remote"] == mine.as_str())
        .expect("the server's end of the connection");
    assert_eq!(theirs["state"], "ESTABLISHED");
}

/// The client closes first; the server reads the end and closes too; the
/// client's end waits in TIME-WAIT, and the table shows its countdown.
#[test]
fn time_wait_after_the_client_closes_first() {
    let (mut server, addr, client) = server_and_client();
    let mine = client.local_addr().unwrap().to_string();
    drop(client);
    server.wait_event("the server's close()", |v| {
        v["kind"] == "syscall" && v["call"] == "close" && v["conn"] == "C1"
    });
    // Watch until the row appears (the kernel is quick; the wait is bounded).
    let mut watch = Running::start(sockdemo(&[
        "watch",
        "--port",
        &port_of(&addr),
        "--json",
        "--interval",
        "0.05",
        "--count",
        "400",
    ]));
    let snap = watch.wait_event("a TIME-WAIT row", |v| {
        row(v, &mine).is_some_and(|r| r["state"] == "TIME-WAIT")
    });
    let tw = row(&snap, &mine).unwrap();
    assert_eq!(tw["remote"], addr.as_str());
    assert_eq!(tw["timer"], "time-wait");
    let left = tw["timer_s"].as_f64().expect("timer_s on TIME-WAIT");
    assert!(left > 0.0 && left <= 60.0, "{tw}");
    assert!(tw["explain"].as_str().unwrap().contains("60 s"));
}

/// UDP has its own table: a socket bound to the server's port number shows
/// up as "udp", UNCONNECTED, and a socket that connect()ed to it as CONNECTED.
#[test]
fn udp_sockets_show_up() {
    let (_server, addr) = json_server(&[]);
    let bound = UdpSocket::bind(&addr).expect("UDP on the TCP server's port number");
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.connect(bound.local_addr().unwrap()).unwrap();
    let out = run(
        sockdemo(&["watch", "--port", &port_of(&addr), "--count", "1", "--json"]),
        b"",
    );
    let snaps = snapshots(&out);
    let snap = &snaps[0];
    let udp = snap["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["proto"] == "udp" && r["local"] == addr.as_str())
        .unwrap_or_else(|| panic!("no UDP row for {addr}: {snap}"));
    assert_eq!(udp["state"], "UNCONNECTED");
    let connected = row(snap, &peer.local_addr().unwrap().to_string()).expect("the peer's row");
    assert_eq!(connected["proto"], "udp");
    assert_eq!(connected["state"], "CONNECTED");
    assert_eq!(connected["remote"], addr.as_str());
    // And the TCP listener on the same port number is still there: two tables.
    assert!(snap["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["proto"] == "tcp" && r["state"] == "LISTEN" && r["local"] == addr.as_str()));
}

/// --count N stops after N looks at the table, shown or not: the snapshots
/// are numbered, so a script sees which looks found something new.
#[test]
fn count_stops_it() {
    let (_server, addr) = json_server(&[]);
    let port = port_of(&addr);
    let out = run(
        sockdemo(&[
            "watch",
            "--port",
            &port,
            "--count",
            "3",
            "--interval",
            "0.05",
            "--json",
        ]),
        b"",
    );
    let snaps = snapshots(&out);
    let refreshes: Vec<u64> = snaps
        .iter()
        .map(|s| s["refresh"].as_u64().unwrap())
        .collect();
    assert_eq!(refreshes[0], 1);
    assert!(
        refreshes.windows(2).all(|w| w[0] < w[1]) && *refreshes.last().unwrap() <= 3,
        "{refreshes:?}"
    );
    // The human table stops too.
    let out = run(
        sockdemo(&[
            "watch",
            "--port",
            &port,
            "--count",
            "2",
            "--interval",
            "0.05",
        ]),
        b"",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
}

/// Piped, the table is plain text: the state names, the listener's queues,
/// what each state means, a timestamp, and no escape codes.
#[test]
fn human_table_when_piped() {
    let (_server, addr, _client) = server_and_client();
    let port = port_of(&addr);
    let out = run(
        sockdemo(&["watch", "--port", &port, "--count", "1", "--color", "never"]),
        b"",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let text = &out.stdout;
    assert!(!text.contains(ESC), "{text:?}");
    assert!(text.starts_with("t="), "a timestamp first: {text}");
    for word in [
        "LISTEN",
        "ESTABLISHED",
        "accept 0/128",
        addr.as_str(),
        "waits for connections",
        "data can flow both ways",
    ] {
        assert!(text.contains(word), "no {word:?} in:\n{text}");
    }
    // --color always colours even a pipe, but never moves the cursor there.
    let out = run(
        sockdemo(&[
            "watch", "--port", &port, "--count", "1", "--color", "always",
        ]),
        b"",
    );
    assert!(out.stdout.contains("\x1b[3"), "{:?}", out.stdout);
    assert!(!out.stdout.contains("\x1b[?25l"), "{:?}", out.stdout);
    // The explanations follow --lang.
    let out = run(
        sockdemo(&["watch", "--port", &port, "--count", "1", "--lang", "zh"]),
        b"",
    );
    assert!(out.stdout.contains("等待连接"), "{}", out.stdout);
}

/// On a terminal the table is redrawn in place with the cursor hidden, and
/// the cursor comes back at the end; `--color never` turns all of that off.
#[test]
fn redraws_in_place_on_a_terminal() {
    let (_server, addr) = json_server(&[]);
    let on_a_terminal = |extra: &str| {
        let mut cmd = std::process::Command::new("script");
        cmd.args([
            "-qec",
            &format!(
                "{} watch --port {} --count 3 --interval 0.05 {extra}",
                bin(),
                port_of(&addr)
            ),
            "/dev/null",
        ]);
        cmd.env_remove("NO_COLOR").env("TERM", "xterm-256color");
        let out = run(cmd, b"");
        assert_eq!(out.code(), 0, "{}", out.stderr);
        assert!(out.stdout.contains("LISTEN"), "{:?}", out.stdout);
        out.stdout
    };
    let live = on_a_terminal("");
    assert!(live.starts_with("\x1b[?25l"), "{live:?}");
    assert!(live.trim_end().ends_with("\x1b[?25h"), "{live:?}");
    assert!(!on_a_terminal("--color never").contains(ESC));
}

/// Ctrl-C ends a watch cleanly, with the status every command has after
/// Ctrl-C: 130 (128 + SIGINT), as docs/teachers.md says.
#[test]
fn ctrl_c_exits_cleanly() {
    let (_server, addr) = json_server(&[]);
    let mut watch = Running::start(sockdemo(&["watch", "--port", &port_of(&addr), "--json"]));
    watch.wait_event("the first snapshot", |v| v["kind"] == "snapshot");
    // SAFETY: kill(2) with our own child's pid and SIGINT, as Ctrl-C sends.
    unsafe {
        libc::kill(watch.child.id() as i32, libc::SIGINT);
    }
    let (status, _, stderr) = watch.finish();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Without --port: every socket on loopback and wildcard addresses, ours included.
#[test]
fn without_a_port() {
    let (_server, addr) = json_server(&[]);
    let out = run(sockdemo(&["watch", "--count", "1", "--json"]), b"");
    let snaps = snapshots(&out);
    assert_eq!(snaps[0]["port"], Value::Null);
    assert!(row(&snaps[0], &addr).is_some_and(|r| r["state"] == "LISTEN"));
    for r in snaps[0]["sockets"].as_array().unwrap() {
        let local: SocketAddr = r["local"].as_str().unwrap().parse().unwrap();
        let ip = match local.ip() {
            std::net::IpAddr::V6(v6) => {
                v6.to_ipv4_mapped().map_or(local.ip(), std::net::IpAddr::V4)
            }
            ip => ip,
        };
        assert!(ip.is_loopback() || ip.is_unspecified(), "{r}");
    }
}

/// Values that make no sense are refused as usage errors.
#[test]
fn bad_values_are_usage_errors() {
    for args in [
        ["watch", "--interval", "0"],
        ["watch", "--interval", "abc"],
        ["watch", "--port", "0"],
        ["watch", "--count", "0"],
    ] {
        let out = run(sockdemo(&args), b"");
        assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr);
    }
    let out = run(sockdemo(&["watch", "--help"]), b"");
    assert!(out.stdout.contains("--interval"), "{}", out.stdout);
}
