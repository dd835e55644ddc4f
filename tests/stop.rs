//! Stopping without losing a byte, against the real binary under load.
//!
//! At SIGTERM the server stops accepting; each client's thread echoes what
//! it has read, sends its FIN and reads until the client closes (what comes
//! after the FIN is read but not echoed). A client that does not close
//! within the grace period is reset and counted as cut.
//!
//! The clients here are driven by a few threads, each with a poll(2) loop
//! over many non-blocking sockets, so 400 clients cost 4 threads.

#![cfg(target_os = "linux")]

mod common;
use common::*;
use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

/// The grace period the server gives each client after its FIN.
const GRACE: Duration = Duration::from_secs(2);

/// Streaming clients, and request/response clients.
const STREAMING: usize = 200;
const REQUESTING: usize = 200;
/// The threads that drive them (each owns a share of both kinds).
const DRIVERS: usize = 4;
/// A request/response client's request: written whole, then its echo read.
const REQUEST: u64 = 64 * 1024;
/// How far a streaming client's writing may run ahead of the echo it has
/// read back (its own flow control; it reads and writes concurrently).
const WINDOW: u64 = 256 * 1024;

/// Byte `offset` of client `seed`'s stream: pseudo-random, reproducible,
/// and computable at any offset, so what comes back can be checked without
/// keeping what was sent.
fn block(seed: u64, index: u64) -> u64 {
    // splitmix64 of (seed, index).
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(0x94D0_49BB_1331_11EB);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `buf` with the stream of `seed` from `offset` on.
fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut index = u64::MAX;
    let mut word = 0u64;
    for (k, b) in buf.iter_mut().enumerate() {
        let at = offset + k as u64;
        if at / 8 != index {
            index = at / 8;
            word = block(seed, index);
        }
        *b = (word >> (8 * (at % 8))) as u8;
    }
}

/// The first offset in `got` (which starts at `offset` of the stream)
/// where it differs from the stream of `seed`.
fn first_difference(seed: u64, offset: u64, got: &[u8], scratch: &mut Vec<u8>) -> Option<u64> {
    scratch.resize(got.len(), 0);
    fill(seed, offset, scratch);
    got.iter()
        .zip(scratch.iter())
        .position(|(a, b)| a != b)
        .map(|k| offset + k as u64)
}

/// One client of the load, and what happened to it.
struct Client {
    stream: Option<TcpStream>,
    seed: u64,
    streaming: bool,
    /// Bytes written, and bytes of echo read back.
    sent: u64,
    received: u64,
    /// Request/response: where the current request ends.
    request_end: u64,
    /// read() returned 0: the server's FIN.
    eof: bool,
    /// The FIN came before the test sent SIGTERM.
    early_eof: bool,
    /// When the FIN came.
    eof_at: Option<Instant>,
    /// A call failed (a reset shows here).
    failed: Option<std::io::Error>,
    /// The first echoed byte that is not what was sent there.
    wrong_at: Option<u64>,
}

impl Client {
    fn connect(addr: &str, seed: u64, streaming: bool) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to the server");
        stream.set_nonblocking(true).unwrap();
        Client {
            stream: Some(stream),
            seed,
            streaming,
            sent: 0,
            received: 0,
            request_end: REQUEST,
            eof: false,
            early_eof: false,
            eof_at: None,
            failed: None,
            wrong_at: None,
        }
    }

    fn done(&self) -> bool {
        self.stream.is_none()
    }

    /// How many bytes it may write now.
    fn may_write(&self) -> u64 {
        if self.streaming {
            WINDOW.saturating_sub(self.sent - self.received)
        } else if self.received == self.request_end {
            // The echo of the last request is complete: the next one.
            REQUEST
        } else {
            self.request_end - self.sent
        }
    }

    fn fail(&mut self, e: std::io::Error) {
        self.failed = Some(e);
        self.stream = None;
    }

    /// Reads what is there (bounded), checking every byte.
    fn read_some(&mut self, buf: &mut [u8], scratch: &mut Vec<u8>, stopping: &AtomicBool) {
        for _ in 0..16 {
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            match stream.read(buf) {
                Ok(0) => {
                    self.eof = true;
                    self.eof_at = Some(Instant::now());
                    self.early_eof = !stopping.load(Ordering::SeqCst);
                    // The server has said all it will: close our side.
                    self.stream = None;
                    return;
                }
                Ok(n) => {
                    if self.wrong_at.is_none() {
                        self.wrong_at =
                            first_difference(self.seed, self.received, &buf[..n], scratch);
                    }
                    self.received += n as u64;
                    if !self.streaming && self.received == self.request_end {
                        self.request_end += REQUEST;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.fail(e),
            }
        }
    }

    /// Writes what it may (bounded).
    fn write_some(&mut self, chunk: &mut [u8]) {
        for _ in 0..16 {
            let room = self.may_write().min(chunk.len() as u64) as usize;
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            if room == 0 {
                return;
            }
            fill(self.seed, self.sent, &mut chunk[..room]);
            match stream.write(&chunk[..room]) {
                Ok(n) => self.sent += n as u64,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.fail(e),
            }
        }
    }
}

/// Drives `clients` with one poll(2) loop until each has seen the server's
/// FIN (or failed), or `deadline`. Says once on `flowing` when every one
/// of them has had some echo back.
fn drive(
    mut clients: Vec<Client>,
    stopping: Arc<AtomicBool>,
    flowing: mpsc::Sender<()>,
    deadline: Instant,
) -> Vec<Client> {
    let mut told = false;
    let mut buf = vec![0u8; 64 * 1024];
    let mut chunk = vec![0u8; 16 * 1024];
    let mut scratch = Vec::new();
    while Instant::now() < deadline && !clients.iter().all(Client::done) {
        if !told && clients.iter().all(|c| c.received > 0) {
            told = true;
            let _ = flowing.send(());
        }
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut owners: Vec<usize> = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            if let Some(stream) = &c.stream {
                let mut events = libc::POLLIN;
                if c.may_write() > 0 {
                    events |= libc::POLLOUT;
                }
                fds.push(libc::pollfd {
                    fd: stream.as_raw_fd(),
                    events,
                    revents: 0,
                });
                owners.push(i);
            }
        }
        // SAFETY: `fds` is a live array of valid pollfds for the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 200) };
        if ready <= 0 {
            continue;
        }
        for (fd, &i) in fds.iter().zip(&owners) {
            if fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                clients[i].read_some(&mut buf, &mut scratch, &stopping);
            }
            if fd.revents & libc::POLLOUT != 0 {
                clients[i].write_some(&mut chunk);
            }
        }
    }
    clients
}

/// The "summary" note among the server's last lines.
fn summary_of(lines: &[String]) -> Value {
    lines
        .iter()
        .filter(|l| l.contains("\"summary\""))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["topic"] == "summary")
        .unwrap_or_else(|| panic!("no summary note among {} lines", lines.len()))
}

fn fact(summary: &Value, name: &str) -> u64 {
    summary[name]
        .as_u64()
        .unwrap_or_else(|| panic!("summary without {name}: {summary}"))
}

/// 400 clients with data in flight both ways when SIGTERM comes: every
/// client gets back exactly a prefix of what it sent, then the server's
/// FIN (not a reset); the echo they all got is the server's bytes_out;
/// every byte they sent was either echoed or counted as after the FIN;
/// nobody is cut; the exit status is 143.
#[test]
fn stop_under_load_loses_no_byte() {
    // A grace long enough for a loaded machine's clients to read the rest
    // of their echo: nobody should be cut here (the stuck client's test
    // checks the cut at the default grace).
    let (server, addr) = json_server(&[
        "--max-clients",
        "1000",
        "--backlog",
        "1024",
        "--grace",
        "30",
    ]);
    let started = Instant::now();
    let deadline = started + 3 * PATIENCE;
    let stopping = Arc::new(AtomicBool::new(false));
    let (flowing_tx, flowing) = mpsc::channel();
    let mut drivers = Vec::new();
    for d in 0..DRIVERS {
        let clients: Vec<Client> = (0..(STREAMING + REQUESTING) / DRIVERS)
            .map(|k| {
                let n = d * (STREAMING + REQUESTING) / DRIVERS + k;
                Client::connect(&addr, 1000 + n as u64, k % 2 == 0)
            })
            .collect();
        let (stopping, flowing_tx) = (stopping.clone(), flowing_tx.clone());
        drivers.push(thread::spawn(move || {
            drive(clients, stopping, flowing_tx, deadline)
        }));
    }
    // Every client connected, accepted and echoed to: data flows.
    for _ in 0..DRIVERS {
        flowing
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("every client has some echo back");
    }
    let flowing_after = started.elapsed();
    stopping.store(true, Ordering::SeqCst);
    let stop_sent = Instant::now();
    let (status, lines, stderr) = server.terminate();
    let stop_took = stop_sent.elapsed();
    let clients: Vec<Client> = drivers
        .into_iter()
        .flat_map(|d| d.join().expect("driver thread"))
        .collect();

    let summary = summary_of(&lines);
    let (sent, received): (u64, u64) = clients
        .iter()
        .fold((0, 0), |(s, r), c| (s + c.sent, r + c.received));
    let (bytes_in, bytes_out, after_fin) = (
        fact(&summary, "bytes_in"),
        fact(&summary, "bytes_out"),
        fact(&summary, "after_fin"),
    );
    let last_fin = clients
        .iter()
        .filter_map(|c| c.eof_at)
        .max()
        .map(|at| at.saturating_duration_since(stop_sent));
    eprintln!(
        "400 clients flowing after {flowing_after:?}; the last FIN came {last_fin:?} \
         after SIGTERM, and the server exited after {stop_took:?}; \
         clients sent {sent} B and got {received} B back; summary: bytes_in {bytes_in}, \
         bytes_out {bytes_out}, after_fin {after_fin}, cut {}; {} output lines",
        summary["cut"],
        lines.len()
    );

    for (n, c) in clients.iter().enumerate() {
        let kind = if c.streaming { "streaming" } else { "request" };
        let what = format!("client {n} ({kind}, sent {}, got {})", c.sent, c.received);
        assert_eq!(
            c.wrong_at, None,
            "{what}: the echo differs from what was sent"
        );
        assert!(c.received <= c.sent, "{what}: more echo than was sent");
        assert!(
            c.failed.is_none(),
            "{what}: {:?} instead of the server's FIN",
            c.failed
        );
        assert!(c.eof, "{what}: no FIN from the server in time");
        assert!(
            !c.early_eof,
            "{what}: the server's FIN came before the stop"
        );
    }
    assert!(
        status.success(),
        "exit status {:?}; stderr: {stderr}",
        status.0
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(fact(&summary, "clients"), 400, "{summary}");
    assert_eq!(fact(&summary, "cut"), 0, "nobody is cut: {summary}");
    assert_eq!(
        received, bytes_out,
        "the echo the clients got is what the server says it sent: {summary}"
    );
    assert_eq!(
        sent,
        bytes_out + after_fin,
        "every byte sent was echoed, or came after the server's FIN: {summary}"
    );
    assert_eq!(
        bytes_in,
        bytes_out + after_fin,
        "every byte the server read was echoed, or came after its FIN: {summary}"
    );
}

/// The summary's bytes_in is every byte received, the bytes that came after
/// the server's FIN included: docs/events.md says "`bytes_in` and
/// `bytes_out` are the bytes received and echoed" and "`bytes_out` =
/// `bytes_in` − `after_fin` for an echo server that lost nothing".
#[test]
fn bytes_after_the_fin_are_bytes_in() {
    let (server, addr) = json_server(&["--packets", "off"]);
    let mut client = TcpStream::connect(&addr).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.write_all(b"early").unwrap();
    let mut echo = [0u8; 5];
    client.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"early");
    // After the server's FIN, the client sends 10 more bytes and closes.
    let late = thread::spawn(move || {
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).expect("the server's FIN");
        client.write_all(b"late bytes").unwrap();
        rest
    });
    let (status, lines, _) = server.terminate();
    assert_eq!(late.join().unwrap(), b"", "nothing after the echo");
    assert!(status.success(), "{:?}", status.0);
    let summary = summary_of(&lines);
    assert_eq!(fact(&summary, "after_fin"), 10, "{summary}");
    assert_eq!(fact(&summary, "bytes_out"), 5, "{summary}");
    assert_eq!(
        fact(&summary, "bytes_in"),
        15,
        "all 15 bytes were received: {summary}"
    );
    assert_eq!(
        fact(&summary, "bytes_in").checked_sub(fact(&summary, "after_fin")),
        Some(fact(&summary, "bytes_out")),
        "bytes_out = bytes_in - after_fin: {summary}"
    );
}

/// The kernel's TCP state of our side (TCP_INFO's first byte).
fn tcp_state(stream: &TcpStream) -> u8 {
    let mut info = [0u8; 232];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info[0]
}

/// Linux's TCP_CLOSE and TCP_CLOSE_WAIT.
const TCP_CLOSE: u8 = 7;
const TCP_CLOSE_WAIT: u8 = 8;

/// A client that neither reads nor closes after the stop is reset when the
/// grace period ends, and only that one: the summary counts 1 cut, a "cut"
/// note names it, and the stop takes the grace period, not forever.
#[test]
fn a_client_that_never_closes_is_cut_after_the_grace_period() {
    let (mut server, addr) = json_server(&["--packets", "off"]);
    let mut stuck = TcpStream::connect(&addr).unwrap();
    let mut polite = TcpStream::connect(&addr).unwrap();
    for (c, text) in [(&mut stuck, b"stuck"), (&mut polite, b"hello")] {
        c.set_read_timeout(Some(PATIENCE)).unwrap();
        c.write_all(text).unwrap();
        let mut echo = [0u8; 5];
        c.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, text);
    }
    let stuck_addr: SocketAddr = stuck.local_addr().unwrap();
    let label = server.wait_event("the stuck client's 5-tuple", |e| {
        e["topic"] == "tuple" && e["remote"] == stuck_addr.to_string()
    })["conn"]
        .as_str()
        .expect("a label")
        .to_string();

    let stop_sent = Instant::now();
    // The polite client reads to the FIN and closes, while the server stops.
    let polite = thread::spawn(move || {
        let mut rest = Vec::new();
        let read = polite.read_to_end(&mut rest);
        drop(polite);
        read.map(|_| rest)
    });
    let (status, lines, stderr) = server.terminate();
    let stop_took = stop_sent.elapsed();
    eprintln!("the stop with one stuck client took {stop_took:?}");

    let read = polite.join().unwrap();
    assert_eq!(read.expect("the polite client gets the FIN"), b"");
    assert!(status.success(), "exit status {:?}; {stderr}", status.0);
    assert!(stop_took < PATIENCE, "the stop took {stop_took:?}");
    assert!(
        stop_took >= GRACE,
        "the stuck client was given the grace period: the stop took {stop_took:?}"
    );
    let summary = summary_of(&lines);
    assert_eq!(fact(&summary, "cut"), 1, "{summary}");
    assert_eq!(fact(&summary, "clients"), 2, "{summary}");
    let cuts: Vec<Value> = events_of_lines(&lines)
        .into_iter()
        .filter(|e| e["topic"] == "cut")
        .collect();
    assert_eq!(cuts.len(), 1, "one cut note: {cuts:?}");
    assert_eq!(cuts[0]["conn"], label.as_str(), "{}", cuts[0]);
    assert_eq!(cuts[0]["remote"], stuck_addr.to_string(), "{}", cuts[0]);
    assert!(
        cuts[0]["text"].as_str().unwrap().contains(&label),
        "{}",
        cuts[0]
    );

    // The stuck client's side: reset after the server's FIN. Linux then
    // holds EPIPE as the socket's error, and the socket is CLOSED, not
    // waiting in CLOSE-WAIT for our close as after a FIN alone.
    assert_eq!(
        tcp_state(&stuck),
        TCP_CLOSE,
        "not {TCP_CLOSE_WAIT} (CLOSE-WAIT)"
    );
    let error = stuck.take_error().unwrap().expect("a pending error");
    assert!(
        [libc::EPIPE, libc::ECONNRESET].contains(&error.raw_os_error().unwrap_or(0)),
        "{error}"
    );
    let write = stuck.write(b"too late");
    assert!(write.is_err(), "a reset socket takes no more: {write:?}");
}
