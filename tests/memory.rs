//! Memory stays bounded: after a burst of short connections, datagrams from
//! many addresses, or a flood of one-byte segments, the server's resident
//! memory comes back to within a few MB of where it started. Capture is on
//! when the tests run as root (as in CI), and then the packet tables are
//! churned too.
//!
//! The counts are scaled down for CI (20,000 of each); docs/benchmarks.md
//! has the full-size figures.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How far above its starting point the server may stay (MiB).
const SLACK_MIB: u64 = 6;

/// How long the server has to give the memory back: its tables are swept
/// every 5 s, a closed socket is forgotten 2 s after its close, and one
/// whose close was lost under load once the kernel no longer has it (20 s).
const SETTLE: Duration = Duration::from_secs(50);

/// A server whose narration is read and thrown away (a projector that keeps up).
struct Server {
    child: Child,
    addr: SocketAddr,
    lines: Arc<AtomicU64>,
    forgotten: Arc<AtomicBool>,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let mut args = vec!["listen", "--port", "0", "--json"];
        args.extend_from_slice(extra);
        let mut child = sockdemo(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sockdemo");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut addr = None;
        for _ in 0..100 {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let ev: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
            if ev["topic"] == "ready" {
                addr = ev["addr"].as_str().map(|a| a.parse().unwrap());
                break;
            }
        }
        let addr = addr.expect("the ready note with the address");
        let lines = Arc::new(AtomicU64::new(0));
        let forgotten = Arc::new(AtomicBool::new(false));
        {
            let (lines, forgotten) = (lines.clone(), forgotten.clone());
            thread::spawn(move || {
                for line in out.lines() {
                    let Ok(line) = line else { break };
                    lines.fetch_add(1, Ordering::Relaxed);
                    if line.contains("\"topic\":\"forgotten\"") {
                        forgotten.store(true, Ordering::Relaxed);
                    }
                }
            });
        }
        Server {
            child,
            addr,
            lines,
            forgotten,
        }
    }

    /// Resident memory now, in KiB, as the kernel counts it in
    /// `/proc/PID/status`: `field` is VmRSS (all of it) or RssAnon (what the
    /// process allocated: its heap and stacks, without the pages of its own
    /// program file, which a debug build reads in as new code runs).
    fn kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc status"))
    }

    fn rss_kib(&self) -> u64 {
        self.kib("VmRSS")
    }

    /// What the process holds: (RssAnon, VmRSS).
    fn held(&self) -> (u64, u64) {
        (self.kib("RssAnon"), self.kib("VmRSS"))
    }

    /// Waits (bounded) for the memory the process allocated to come back
    /// to within the slack of `start`.
    fn settles_to(&self, start: (u64, u64), what: &str) {
        let deadline = Instant::now() + SETTLE;
        loop {
            let now = self.held();
            if now.0 <= start.0 + SLACK_MIB * 1024 {
                eprintln!(
                    "{what}: allocated {} KiB at the start, {} KiB after; VmRSS {} then {} KiB (capture {})",
                    start.0,
                    now.0,
                    start.1,
                    now.1,
                    if capture_allowed() { "on" } else { "off" }
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: allocated memory (RssAnon) stayed at {} KiB, {} KiB above the {} KiB it started at",
                now.0,
                now.0 - start.0,
                start.0
            );
            // Memory has no event to wait on; this only paces the reading.
            thread::park_timeout(Duration::from_millis(200));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn short_connections_leave_no_memory_behind() {
    let server = Server::start(&["--max-clients", "200"]);
    let start = server.held();
    let per_thread = 2_500;
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let addr = server.addr;
            thread::spawn(move || {
                for _ in 0..per_thread {
                    let mut s = TcpStream::connect(addr).expect("connect");
                    s.set_read_timeout(Some(PATIENCE)).unwrap();
                    s.write_all(b"x\n").unwrap();
                    let mut back = [0u8; 2];
                    s.read_exact(&mut back).expect("the echo");
                    assert_eq!(&back, b"x\n");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a client thread");
    }
    let peak = server.rss_kib();
    eprintln!("20,000 short connections: RSS {peak} KiB at the end of the burst");
    server.settles_to(start, "20,000 short connections");
    assert!(server.lines.load(Ordering::Relaxed) > 20_000, "narrated");
}

#[test]
fn datagrams_from_many_addresses_leave_no_memory_behind() {
    let server = Server::start(&["--udp"]);
    let start = server.held();
    let n: u32 = 20_000;
    let mut buf = [0u8; 16];
    for i in 0..n {
        // Each datagram from an address of its own in 127.0.0.0/8; each
        // waits for its echo, so none is lost to a full receive buffer.
        let from = SocketAddr::from(([127, 1 + (i >> 16) as u8, (i >> 8) as u8, i as u8], 0));
        let sock = UdpSocket::bind(from).expect("bind a loopback source");
        sock.set_read_timeout(Some(PATIENCE)).unwrap();
        sock.send_to(b"hi", server.addr).expect("send");
        let (got, _) = sock.recv_from(&mut buf).expect("the echo");
        assert_eq!(&buf[..got], b"hi");
    }
    eprintln!(
        "20,000 UDP sources: RSS {} KiB at the end of the burst",
        server.rss_kib()
    );
    server.settles_to(start, "20,000 UDP sources");
    // The server said it forgot peers' numbers to stay within bounds.
    let deadline = Instant::now() + PATIENCE;
    while !server.forgotten.load(Ordering::Relaxed) {
        assert!(
            Instant::now() < deadline,
            "no note said that peers were forgotten"
        );
        thread::park_timeout(Duration::from_millis(50));
    }
}

#[test]
fn a_flood_of_one_byte_segments_leaves_no_memory_behind() {
    let server = Server::start(&[]);
    let start = server.held();
    let n = 20_000usize;
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut reader = s.try_clone().unwrap();
    let echo = thread::spawn(move || {
        let mut got = 0usize;
        let mut buf = [0u8; 4096];
        while got < n {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => {
                    assert!(buf[..k].iter().all(|b| *b == b'.'), "echo is byte-exact");
                    got += k;
                }
            }
        }
        got
    });
    for _ in 0..n {
        s.write_all(b".").unwrap();
    }
    assert_eq!(echo.join().unwrap(), n, "every byte came back");
    drop(s);
    eprintln!(
        "20,000 one-byte segments: RSS {} KiB at the end of the flood",
        server.rss_kib()
    );
    server.settles_to(start, "20,000 one-byte segments");
}
