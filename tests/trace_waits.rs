//! The wait of a non-blocking connect() in a traced program: after
//! `connect() = -1 EINPROGRESS`, the select() (Python) or epoll_wait()
//! (Node) that waits for the socket to become writable is shown, then the
//! getsockopt(SO_ERROR) that says how the handshake ended; each checked
//! against strace of the same program.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use serde_json::Value;

/// The calls (name, ret) of the traced program, in order.
fn calls(events: &[Value]) -> Vec<(String, i64)> {
    events
        .iter()
        .filter(|e| e["kind"] == "syscall")
        .map(|e| {
            (
                e["call"].as_str().unwrap_or("").to_string(),
                e["ret"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

/// The names strace saw for `calls` in `program`, in order.
fn strace_names(program: &[&str], calls: &str) -> Vec<String> {
    let log = std::env::temp_dir().join(format!("sockdemo-waits-{}.strace", std::process::id()));
    let status = std::process::Command::new("strace")
        .args(["-f", "-qq", "-e", &format!("trace={calls}"), "-o"])
        .arg(&log)
        .args(program)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("strace");
    assert!(status.success());
    let text = std::fs::read_to_string(&log).expect("the strace log");
    let _ = std::fs::remove_file(&log);
    text.lines()
        // Only the lesson's sockets: a pyenv shim's shell may connect to
        // Unix sockets (nscd, sssd) before Python starts, and the trace
        // rightly leaves those out.
        .filter(|l| !l.contains("AF_UNIX") && !l.contains("AF_NETLINK"))
        .filter_map(|l| {
            let l = l.split_once(' ').map_or(l, |(_, rest)| rest).trim_start();
            l.split_once('(').map(|(name, _)| name.to_string())
        })
        .collect()
}

/// Python: a non-blocking connect to a port nobody listens on, select()
/// for writability, SO_ERROR.
#[test]
fn select_after_einprogress_is_shown_between_connect_and_so_error() {
    let dir = std::env::temp_dir().join(format!("sockdemo-waits-py-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let program = dir.join("wait_connect.py"); // not select.py: it would hide the module
    std::fs::write(
        &program,
        r#"
import socket, select
s = socket.socket(); s.setblocking(False)
s.connect_ex(("127.0.0.1", 9))
select.select([], [s], [], 2)
print(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
"#,
    )
    .unwrap();
    let path = program.to_string_lossy().into_owned();
    let out = run(
        sockdemo(&["trace", "--json", "--", "python3", "-u", &path]),
        b"",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let events = out.events();
    let seen = calls(&events);
    let at = |name: &str| seen.iter().position(|(c, _)| c == name);
    let (connect, wait, so_error) = (
        at("connect").expect("connect"),
        at("pselect6").or_else(|| at("select")).expect("the select"),
        at("getsockopt").expect("getsockopt"),
    );
    assert!(connect < wait && wait < so_error, "{seen:?}");
    assert_eq!(seen[wait].1, 1, "one descriptor ready");
    let wait_event = events
        .iter()
        .filter(|e| e["kind"] == "syscall")
        .nth(wait)
        .unwrap();
    assert!(
        wait_event["args"].as_str().unwrap().contains("2000 ms"),
        "{wait_event}"
    );
    assert!(
        wait_event.get("fd").is_none(),
        "select's first argument is not the socket"
    );
    assert!(errors_of(&events).iter().any(|e| e["code"] == "refused"));
    // strace saw the same wait between the same calls.
    let names = strace_names(
        &["python3", "-u", &path],
        "connect,select,pselect6,getsockopt",
    );
    let traced: Vec<&str> = seen
        .iter()
        .map(|(c, _)| c.as_str())
        .filter(|c| ["connect", "select", "pselect6", "getsockopt"].contains(c))
        .collect();
    assert_eq!(traced, names, "the trace and strace");
    let _ = std::fs::remove_dir_all(&dir);
}

fn errors_of(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e["kind"] == "error").collect()
}

/// Node: net.connect() is a non-blocking connect, and libuv waits for it
/// in epoll_wait (or epoll_pwait) with the socket in its set.
#[test]
fn nodes_epoll_wait_for_its_connect_is_shown() {
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: no node");
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepting = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("the node client");
        use std::io::{Read, Write};
        let mut buf = [0u8; 6];
        conn.read_exact(&mut buf).expect("its hello");
        conn.write_all(b"HELLO\n").unwrap();
    });
    let script = format!(
        "const c = require('net').connect({port}, '127.0.0.1', () => c.write('hello\\n'));\
         c.on('data', d => {{ console.log(d.toString().trim()); c.end(); }});"
    );
    let out = run(
        sockdemo(&["trace", "--json", "--", "node", "-e", &script]),
        b"",
    );
    accepting.join().unwrap();
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let events = out.events();
    let seen = calls(&events);
    let connect = seen
        .iter()
        .position(|(c, r)| c == "connect" && *r == -1)
        .expect("EINPROGRESS");
    let so_error = seen
        .iter()
        .position(|(c, _)| c == "getsockopt")
        .expect("SO_ERROR");
    let waits: Vec<&(String, i64)> = seen[connect..so_error]
        .iter()
        .filter(|(c, _)| c.starts_with("epoll"))
        .collect();
    assert!(
        !waits.is_empty(),
        "an epoll wait between connect and SO_ERROR: {seen:?}"
    );
    assert!(waits.iter().all(|(_, r)| *r >= 0));
    assert!(events
        .iter()
        .any(|e| e["kind"] == "note" && e["topic"] == "output" && e["text"] == "P› HELLO"));
}

/// A traced client against `sockdemo listen` in another process: both
/// timelines tell the same bytes, and each side's label matches by address.
#[test]
fn a_traced_client_talks_to_sockdemo_listen() {
    let (mut server, addr) = json_server_ready(&["--packets", "off"]);
    let port = port_number(&addr);
    let script = format!(
        "import socket; c = socket.create_connection(('127.0.0.1', {port})); \
         c.sendall(b'hi there\\n'); print(c.recv(100)); c.close()"
    );
    let out = run(
        sockdemo(&[
            "trace",
            "--json",
            "--packets",
            "off",
            "--",
            "python3",
            "-u",
            "-c",
            &script,
        ]),
        b"",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let events = out.events();
    assert!(events.iter().any(|e| e["kind"] == "note"
        && e["topic"] == "output"
        && e["text"] == "P› b'hi there\\n'"));
    let local = events
        .iter()
        .find(|e| e["kind"] == "syscall" && e["call"] == "connect")
        .and_then(|e| e["local"].as_str())
        .expect("the client's address")
        .to_string();
    // The server saw the same bytes from the same address.
    let echoed = server.wait_event("the server's data from the traced client", |e| {
        e["kind"] == "data" && e["dir"] == "in" && e["remote"] == local.as_str()
    });
    assert_eq!(echoed["text"], "hi there\\n");
    server.terminate();
}
