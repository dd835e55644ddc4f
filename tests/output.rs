//! How output behaves: colour only where it belongs, and a slow terminal
//! never holds up the sockets.

mod common;
use common::*;
#[cfg(target_os = "linux")]
use std::io::{BufRead, BufReader, Read, Write};
#[cfg(target_os = "linux")]
use std::process::Stdio;

const ESC: char = '\x1b';

// The terminal tests use util-linux's `script` to get a pseudo-terminal,
// and the stalled-terminal test sends SIGTERM: both are Linux-only here.

#[cfg(target_os = "linux")]
/// Runs `sockdemo tour --pace 0` (plus `extra`) under a pseudo-terminal, as
/// a person would see it, with `env` added to the environment.
fn tour_on_a_terminal(extra: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = std::process::Command::new("script");
    cmd.args([
        "-qec",
        &format!("{} tour --pace 0 {extra}", bin()),
        "/dev/null",
    ]);
    cmd.env_remove("NO_COLOR").env("TERM", "xterm-256color");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(cmd, b"");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("summary: served 3 clients"),
        "{}",
        out.stdout
    );
    out.stdout
}

#[cfg(target_os = "linux")]
#[test]
fn colour_on_a_terminal_by_default() {
    assert!(tour_on_a_terminal("", &[]).contains(ESC));
}

#[cfg(target_os = "linux")]
#[test]
fn no_color_variable_turns_colour_off() {
    assert!(!tour_on_a_terminal("", &[("NO_COLOR", "1")]).contains(ESC));
}

#[cfg(target_os = "linux")]
#[test]
fn dumb_terminal_gets_no_colour() {
    assert!(!tour_on_a_terminal("", &[("TERM", "dumb")]).contains(ESC));
}

#[cfg(target_os = "linux")]
#[test]
fn color_never_on_a_terminal() {
    assert!(!tour_on_a_terminal("--color never", &[]).contains(ESC));
}

#[test]
fn piped_output_has_no_colour_unless_asked() {
    let out = run(sockdemo(&["tour"]), b"");
    assert!(!out.stdout.contains(ESC));
    let out = run(sockdemo(&["tour", "--color", "always"]), b"");
    assert!(out.stdout.contains(ESC));
    let out = run(sockdemo(&["tour", "--color", "always", "--json"]), b"");
    assert!(!out.stdout.contains(ESC), "JSON is never coloured");
}

/// A terminal that stops reading (a frozen projector, a paused pipe) must
/// not stall the clients: events are dropped and counted instead.
#[cfg(target_os = "linux")]
#[test]
fn a_stalled_terminal_does_not_stall_clients() {
    let mut child = sockdemo(&["listen", "--port", "0", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut addr = None;
    for _ in 0..50 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let ev: serde_json::Value = serde_json::from_str(&line).unwrap();
        if ev["call"] == "listen" {
            addr = ev["local"].as_str().map(str::to_string);
            break;
        }
    }
    let addr = addr.expect("listen event");
    // From here on nobody reads the server's stdout. The pipe fills, then
    // the event queue; the clients must still be served.
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(&addr).unwrap();
                s.set_read_timeout(Some(PATIENCE)).unwrap();
                let msg = [b'z'; 64];
                let mut back = [0u8; 64];
                for _ in 0..2000 {
                    s.write_all(&msg).unwrap();
                    s.read_exact(&mut back)
                        .expect("echo arrives although nobody reads the server's output");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("client finished its 2000 round trips");
    }
    // Now read again: the server reports how many events it could not show.
    let mut rest = String::new();
    // SAFETY: SIGTERM to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(143),
        "a clean stop by SIGTERM: 128 + 15"
    );
    let events = parse_lines(&rest);
    let dropped: u64 = events
        .iter()
        .filter(|e| e["topic"] == "dropped")
        .map(|e| e["dropped"].as_u64().unwrap())
        .sum();
    assert!(dropped > 0, "the server should say it dropped events");
    let summary = events
        .iter()
        .find(|e| e["topic"] == "summary")
        .expect("summary after SIGTERM");
    assert_eq!(summary["clients"], 16);
    assert_eq!(summary["bytes_in"], 16 * 2000 * 64);
    assert_eq!(summary["bytes_out"], 16 * 2000 * 64);
}
