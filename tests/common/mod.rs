//! Runs the real `sockdemo` binary and reads what it prints, line by line,
//! with every wait bounded in time.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single wait in a test may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// How long a whole run may take to end, its exit included. Closing a
/// packet capture waits for an RCU grace period in the kernel
/// (`packet_release` → `synchronize_net`), which on a loaded 2-core machine
/// was seen to take up to 20 s; a run that captured cannot exit sooner.
pub const EXIT_PATIENCE: Duration = Duration::from_secs(60);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sockdemo")
}

/// A command for the binary with a clean environment for colour.
pub fn sockdemo(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env("TERM", "xterm-256color");
    cmd
}

/// The result of a finished run.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
    /// stdout parsed as JSON Lines (panics on a line that is not JSON).
    pub fn events(&self) -> Vec<Value> {
        parse_lines(&self.stdout)
    }
}

pub fn parse_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Runs to completion (bounded by EXIT_PATIENCE, then killed) with `stdin` as input.
pub fn run(mut cmd: Command, stdin: &[u8]) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn sockdemo");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let status = wait_bounded(&mut child, EXIT_PATIENCE);
    let _ = writer.join();
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn drain(mut r: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = r.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn wait_bounded(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sockdemo did not finish within {limit:?}");
        }
        // Polling a child's exit has no event to wait on; this only paces the poll.
        thread::park_timeout(Duration::from_millis(5));
    }
}

/// A running sockdemo whose stdout lines arrive through a channel.
pub struct Running {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    pub seen: Vec<String>,
    stderr: Option<thread::JoinHandle<String>>,
}

impl Running {
    pub fn start(mut cmd: Command) -> Running {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn sockdemo");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Some(drain(child.stderr.take().unwrap()));
        let stdin = child.stdin.take();
        Running {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Waits for a stdout line that satisfies `wanted`; returns it.
    pub fn wait_line(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "timed out waiting for {what}; saw:\n{}",
                    self.seen.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("output ended before {what}; saw:\n{}", self.seen.join("\n"))
                }
            }
        }
    }

    /// Waits for a JSON event that satisfies `wanted`.
    pub fn wait_event(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let line = self.wait_line(what, |l| {
            serde_json::from_str::<Value>(l)
                .map(|v| wanted(&v))
                .unwrap_or(false)
        });
        serde_json::from_str(&line).unwrap()
    }

    /// For `listen --json`: the address the server really listens on.
    pub fn listening_addr(&mut self) -> String {
        let ev = self.wait_event("the listen() event", |v| {
            v["kind"] == "syscall" && v["call"] == "listen" && v["ok"] == true
        });
        ev["local"]
            .as_str()
            .expect("listen event has local")
            .to_string()
    }

    /// Stops the process with SIGTERM and collects the rest of its output.
    #[cfg_attr(unix, allow(unused_mut))]
    pub fn terminate(mut self) -> (Stopped, Vec<String>, String) {
        // SAFETY: kill(2) with our own child's pid and SIGTERM.
        #[cfg(unix)]
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        #[cfg(not(unix))]
        let _ = self.child.kill();
        let (status, lines, stderr) = self.finish();
        (Stopped(status), lines, stderr)
    }

    /// Waits for the process to end by itself and collects the rest.
    pub fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        drop(self.stdin.take());
        let status = wait_bounded(&mut self.child, EXIT_PATIENCE);
        let deadline = Instant::now() + PATIENCE;
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line);
        }
        let stderr = self.stderr.take().unwrap().join().unwrap();
        (status, std::mem::take(&mut self.seen), stderr)
    }
}

/// How a process stopped by [`Running::terminate`] ended.
#[derive(Debug)]
pub struct Stopped(pub ExitStatus);

impl Stopped {
    /// Did it stop cleanly, as SIGTERM asks? sockdemo then exits with 143
    /// (128 + 15), not 0: its status says that a signal ended the run.
    pub fn success(&self) -> bool {
        self.0.code() == Some(143)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sockdemo listen --port 0 --json` (plus `extra`) and returns it
/// with the address it listens on.
pub fn json_server(extra: &[&str]) -> (Running, String) {
    let mut args = vec!["listen", "--port", "0", "--json"];
    args.extend_from_slice(extra);
    let mut server = Running::start(sockdemo(&args));
    let addr = server.listening_addr();
    (server, addr)
}

/// [`json_server`], then its "ready" note: everything the server sets up
/// before it says it is listening (the packet capture among it) is running,
/// so a client that connects now is seen from its SYN on.
pub fn json_server_ready(extra: &[&str]) -> (Running, String) {
    let (mut server, addr) = json_server(extra);
    server.wait_event("the ready note", |e| e["topic"] == "ready");
    (server, addr)
}

/// Starts `sockdemo listen --port 0 --color never` (the human timeline) and
/// returns it with the address from its "listening on ADDR." line.
pub fn human_server() -> (Running, String) {
    let mut server = Running::start(sockdemo(&["listen", "--port", "0", "--color", "never"]));
    let ready = server.wait_line("the ready line", |l| l.contains("listening on "));
    let addr = ready
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split(". ").next())
        .expect("address in the ready line");
    (server, addr.to_string())
}

/// Events of one kind from a list.
pub fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

/// The state changes of one side (and connection), as (from, to, source).
pub fn states(events: &[Value], side: &str, conn: Option<&str>) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter(|e| {
            e["kind"] == "state" && e["side"] == side && conn.is_none_or(|c| e["conn"] == c)
        })
        .map(|e| {
            (
                e["from"].as_str().unwrap().to_string(),
                e["to"].as_str().unwrap().to_string(),
                e["source"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Is this process root? (Namespace and privilege tests need it.)
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A state event seen for real: asked of the kernel, or seen in the packets.
pub fn observed(e: &Value) -> bool {
    e["source"] == "kernel" || e["source"] == "packet"
}

/// The stages of a connection, in the order a connection lives them.
pub const STAGES: [&str; 5] = ["listen", "request", "confirm", "transfer", "close"];

/// The errnos that are themselves a reset (or a refusal, which is an RST
/// answering a SYN): a program that got one may say "reset".
pub const RESET_ERRNOS: [&str; 4] = ["ECONNRESET", "EPIPE", "ECONNABORTED", "ECONNREFUSED"];

/// The port of "IP:PORT" or "[IPv6]:PORT".
pub fn port_number(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"))
}

/// The promises every timeline keeps, whatever the scenario:
/// - time never goes backwards (`t` is non-decreasing over the whole output);
/// - no connection goes back a stage (per side and connection, for every
///   kind of event: listen < request < confirm < transfer < close);
/// - "reset" is said only about a connection that saw an RST on the wire
///   or got an errno that is a reset;
/// - without capture, no packet events and no state moved by a packet.
pub fn assert_truthful(events: &[Value], capture: bool, what: &str) {
    assert_time_order(events, what);
    assert_stages_forward(events, what);
    assert_reset_only_when_seen(events, what);
    if !capture {
        for e in events {
            assert_ne!(e["kind"], "packet", "{what}: a packet without capture: {e}");
            assert_ne!(
                e["source"], "packet",
                "{what}: a state moved by a packet without capture: {e}"
            );
        }
    }
}

pub fn assert_time_order(events: &[Value], what: &str) {
    let mut last: Option<&Value> = None;
    for e in events {
        let t = e["t"]
            .as_f64()
            .unwrap_or_else(|| panic!("{what}: event without t: {e}"));
        if let Some(before) = last {
            assert!(
                before["t"].as_f64().unwrap() <= t,
                "{what}: time goes backwards:\n  {before}\n  {e}"
            );
        }
        last = Some(e);
    }
}

pub fn assert_stages_forward(events: &[Value], what: &str) {
    let rank = |e: &Value| {
        let stage = e["stage"].as_str().unwrap_or("");
        STAGES
            .iter()
            .position(|s| *s == stage)
            .unwrap_or_else(|| panic!("{what}: unknown stage: {e}"))
    };
    let mut reached: std::collections::HashMap<(String, String), &Value> = Default::default();
    for e in events.iter().filter(|e| e["conn"].is_string()) {
        let key = (e["side"].to_string(), e["conn"].to_string());
        if let Some(before) = reached.get(&key) {
            assert!(
                rank(before) <= rank(e),
                "{what}: {} {} goes back a stage:\n  {before}\n  {e}",
                e["side"],
                e["conn"]
            );
        }
        reached.insert(key, e);
    }
}

/// Does this event say "reset" (in its explanation, detail, text or code)?
pub fn says_reset(e: &Value) -> bool {
    ["why", "detail", "text", "code"].iter().any(|field| {
        e[*field]
            .as_str()
            .is_some_and(|s| s.to_lowercase().contains("reset"))
    })
}

/// Is this event evidence of a reset: an RST on the wire, or an errno that
/// is one (returned by a call, or read back with SO_ERROR)?
pub fn is_reset_evidence(e: &Value) -> bool {
    if e["kind"] == "packet" {
        return e["flags"].as_str().is_some_and(|f| f.contains("RST"));
    }
    e["kind"] == "syscall"
        && ["error", "args"].iter().any(|field| {
            e[*field]
                .as_str()
                .is_some_and(|s| RESET_ERRNOS.iter().any(|errno| s.contains(errno)))
        })
}

pub fn assert_reset_only_when_seen(events: &[Value], what: &str) {
    for e in events.iter().filter(|e| says_reset(e)) {
        // About a connection: its own evidence; about the program: any.
        let evidence = events
            .iter()
            .any(|x| is_reset_evidence(x) && (!e["conn"].is_string() || x["conn"] == e["conn"]));
        assert!(
            evidence,
            "{what}: says \"reset\" with no RST seen and no reset errno:\n  {e}"
        );
    }
}

// Reading a timeline, and the peers that tests write.

/// The events of a finished `Running`'s output.
pub fn events_of_lines(lines: &[String]) -> Vec<Value> {
    parse_lines(&lines.join("\n"))
}

pub fn capture_allowed() -> bool {
    if is_root() {
        return true;
    }
    eprintln!("skipped: needs root (capturing packets needs CAP_NET_RAW)");
    false
}

/// The `to` states of one side's connection, in output order.
pub fn states_entered(events: &[Value], side: &str, conn: &str) -> Vec<String> {
    states(events, side, Some(conn))
        .into_iter()
        .map(|(_, to, _)| to)
        .collect()
}

/// The first state event of `side`/`conn` that enters `to`, with its index.
pub fn state_entered<'a>(
    events: &'a [Value],
    side: &str,
    conn: &str,
    to: &str,
) -> Option<(usize, &'a Value)> {
    events.iter().enumerate().find(|(_, e)| {
        e["kind"] == "state" && e["side"] == side && e["conn"] == conn && e["to"] == to
    })
}

/// The last state event of `side`/`conn` that enters `to`, with its index.
pub fn last_state_entered<'a>(
    events: &'a [Value],
    side: &str,
    conn: &str,
    to: &str,
) -> Option<(usize, &'a Value)> {
    events.iter().enumerate().rev().find(|(_, e)| {
        e["kind"] == "state" && e["side"] == side && e["conn"] == conn && e["to"] == to
    })
}

/// Each state change starts where the previous one ended.
pub fn assert_state_chain(events: &[Value], side: &str, conn: &str, what: &str) {
    let chain = states(events, side, Some(conn));
    for pair in chain.windows(2) {
        assert_eq!(
            pair[0].1, pair[1].0,
            "{what}: {side} {conn} jumps: {chain:?}"
        );
    }
}

/// Packet events, as (index, event).
pub fn packet_events(events: &[Value]) -> Vec<(usize, &Value)> {
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["kind"] == "packet")
        .collect()
}

pub fn flags_of(e: &Value) -> &str {
    e["flags"].as_str().unwrap_or("")
}

/// The syscall events named `call`, with their indexes.
pub fn syscalls_named<'a>(events: &'a [Value], call: &str) -> Vec<(usize, &'a Value)> {
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["kind"] == "syscall" && e["call"] == call)
        .collect()
}

/// Reads one line from the client, bounded in time.
pub fn peer_read_line(stream: &std::net::TcpStream) -> String {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .expect("the client's line");
    line
}

/// Reads until the client's FIN (read() = 0), bounded in time.
pub fn peer_read_to_eof(mut stream: &std::net::TcpStream) {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("the client's FIN");
}

/// Joins two namespaces, already made, with a veth pair: `a_dev` in `a`
/// with the addresses `a_ips` (CIDR), `b_dev` in `b` with `b_ips`; both
/// ends and both loopbacks up. Each end knows the other's link address for
/// good (a permanent neighbour entry), so no ARP exchange can be lost on a
/// loaded machine (it was: EHOSTUNREACH after 3 s), and this returns once
/// both ends have a carrier (bounded by PATIENCE).
#[cfg(target_os = "linux")]
pub fn join_namespaces(a: &str, a_dev: &str, a_ips: &[&str], b: &str, b_dev: &str, b_ips: &[&str]) {
    let (a_mac, b_mac) = ("02:5d:00:00:00:0a", "02:5d:00:00:00:0b");
    let ip = |args: &[&str]| {
        let status = std::process::Command::new("ip")
            .args(args)
            .status()
            .expect("run ip");
        assert!(status.success(), "ip {}", args.join(" "));
    };
    ip(&[
        "link", "add", a_dev, "address", a_mac, "type", "veth", "peer", "name", b_dev, "address",
        b_mac,
    ]);
    ip(&["link", "set", a_dev, "netns", a]);
    ip(&["link", "set", b_dev, "netns", b]);
    for (ns, dev, ips, their_ips, their_mac) in [
        (a, a_dev, a_ips, b_ips, b_mac),
        (b, b_dev, b_ips, a_ips, a_mac),
    ] {
        for cidr in ips {
            ip(&["-n", ns, "addr", "add", cidr, "dev", dev]);
        }
        for cidr in their_ips {
            let addr = cidr.split('/').next().unwrap();
            ip(&[
                "-n",
                ns,
                "neigh",
                "replace",
                addr,
                "lladdr",
                their_mac,
                "dev",
                dev,
                "nud",
                "permanent",
            ]);
        }
        ip(&["-n", ns, "link", "set", dev, "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
    // The carrier comes once both ends are up: wait for it, not for a time.
    let deadline = Instant::now() + PATIENCE;
    for (ns, dev) in [(a, a_dev), (b, b_dev)] {
        loop {
            let out = std::process::Command::new("ip")
                .args(["-n", ns, "link", "show", "dev", dev])
                .output()
                .expect("run ip");
            if String::from_utf8_lossy(&out.stdout).contains("LOWER_UP") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{dev} in {ns} never got a carrier"
            );
            thread::park_timeout(Duration::from_millis(10));
        }
    }
}
