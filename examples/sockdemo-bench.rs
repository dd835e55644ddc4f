//! `sockdemo-bench`: a small load generator for `sockdemo listen` (or any
//! TCP echo server), so the figures in docs/benchmarks.md can be reproduced.
//!
//! Two measurements:
//!
//! - `hold`: how many clients a server can keep at once. N connections are
//!   opened, each sends one line and reads its echo, and all N stay open
//!   together until every one has been checked.
//! - `rtt`: how many request/response round trips per second, and how long
//!   each takes: C connections play ping-pong with B-byte messages for S seconds.
//!
//! Only point it at a server you run yourself, on loopback (127.0.0.1, ::1)
//! or inside a network namespace made for testing: it is built to put a
//! server under load. Other addresses are refused unless `--allow-remote`.
//!
//! Every wait is bounded: connects, reads and writes all carry timeouts
//! derived from one deadline, so the tool ends even if the server hangs.

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use sockdemo::cli::{parse_target, Target};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Stack for each load thread: they hold a small buffer and a few counters,
/// so the default 2 MiB reservation would only waste address space.
const WORKER_STACK: usize = 256 * 1024;

/// Descriptors kept free beyond the sockets themselves (stdio, the
/// executable, /proc reads), so the last connect() does not fail with EMFILE.
const FD_MARGIN: u64 = 64;

#[derive(Parser, Debug)]
#[command(
    name = "sockdemo-bench",
    version,
    about = "Load generator for `sockdemo listen` (or any TCP echo server): how many clients at once, how many round trips per second.",
    long_about = "Load generator for `sockdemo listen` (or any TCP echo server).\n\n\
        Only point it at a server you run yourself, on loopback (127.0.0.1, ::1) or in a \
        network namespace made for testing. Other addresses are refused unless --allow-remote.",
    after_help = "Examples:\n  sockdemo listen --port 9000 --max-clients 5000 > /tmp/listen.log &\n  \
        sockdemo-bench hold --clients 2000 127.0.0.1:9000\n  \
        sockdemo-bench rtt --conns 8 --seconds 5 --size 16 127.0.0.1:9000 --json"
)]
struct Cli {
    /// Print one JSON object with the results instead of human lines
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Open N connections, all at once, each sending one line and reading its echo; then close them
    Hold(HoldArgs),
    /// C connections play ping-pong (send B bytes, read B back) for S seconds: round trips/s and latency
    Rtt(RttArgs),
}

#[derive(Args, Debug)]
struct TargetArgs {
    /// The echo server: HOST:PORT, [IPv6]:PORT, or just PORT (on 127.0.0.1)
    #[arg(value_parser = parse_target)]
    addr: Target,
    /// Allow an address that is not loopback (only for a test network you own)
    #[arg(long)]
    allow_remote: bool,
    /// The server's process id: its threads, memory and open descriptors are
    /// read from /proc and reported (Linux)
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
}

#[derive(Args, Debug)]
struct HoldArgs {
    /// How many connections to hold open at the same time
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    clients: u64,
    /// Give up on whatever is not connected and echoed after SECS seconds
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs)]
    timeout: Duration,
    /// How many threads open connections in parallel (each connection is
    /// opened, checked, then parked, so the pool stays small)
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    workers: u64,
    /// Keep all connections open this many seconds more before closing
    /// (time to look at the server with ps, ss or /proc)
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = parse_hold_secs)]
    hold: Duration,
    #[command(flatten)]
    target: TargetArgs,
}

#[derive(Args, Debug)]
struct RttArgs {
    /// How many connections, each with a thread of its own
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    conns: u64,
    /// How long to measure
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_run_secs)]
    seconds: Duration,
    /// Bytes in each message (the last one is a newline, so line servers see lines)
    #[arg(long, value_name = "BYTES", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    size: u64,
    /// Give up on a connect or a single round trip after SECS seconds
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    timeout: Duration,
    #[command(flatten)]
    target: TargetArgs,
}

fn parse_secs_in(s: &str, min: f64, max: f64) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if secs.is_finite() && (min..=max).contains(&secs) {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!("expected seconds from {min} to {max}"))
    }
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    parse_secs_in(s, 0.001, 3600.0)
}

fn parse_hold_secs(s: &str) -> Result<Duration, String> {
    parse_secs_in(s, 0.0, 3600.0)
}

fn parse_run_secs(s: &str) -> Result<Duration, String> {
    parse_secs_in(s, 0.1, 600.0)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    let result = match &cli.command {
        Command::Hold(args) => hold(args),
        Command::Rtt(args) => rtt(args),
    };
    match result {
        Ok(report) => {
            if cli.json {
                println!("{}", report.json);
            } else {
                for line in &report.lines {
                    println!("{line}");
                }
            }
            if report.complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(err) => {
            eprintln!("sockdemo-bench: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// What a run found, in both forms; `complete` is false when some of the
/// load did not get through (the exit status is then 1).
struct Report {
    lines: Vec<String>,
    json: Value,
    complete: bool,
}

/// The one address this run may connect to.
fn resolve(target: &TargetArgs) -> anyhow::Result<SocketAddr> {
    let addr = (target.addr.host.as_str(), target.addr.port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", target.addr))?
        .next()
        .with_context(|| format!("{} has no address", target.addr))?;
    if !addr.ip().is_loopback() && !target.allow_remote {
        bail!(
            "{addr} is not a loopback address. A load generator should only hit a server you run \
             yourself: use 127.0.0.1 or ::1, or pass --allow-remote for a test network you own."
        );
    }
    Ok(addr)
}

fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A short name for an error, to count failures by kind.
fn error_label(e: &io::Error) -> String {
    if e.raw_os_error() == Some(libc_emfile()) {
        return "too many open files (EMFILE)".into();
    }
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::ConnectionAborted => "connection aborted".into(),
        io::ErrorKind::BrokenPipe => "broken pipe".into(),
        // A read timeout is WouldBlock on Unix and TimedOut on Windows.
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".into(),
        io::ErrorKind::AddrNotAvailable => "no local port free (EADDRNOTAVAIL)".into(),
        io::ErrorKind::UnexpectedEof => "closed by the server".into(),
        _ => e.to_string(),
    }
}

fn libc_emfile() -> i32 {
    #[cfg(unix)]
    {
        libc::EMFILE
    }
    #[cfg(not(unix))]
    {
        -1
    }
}

/// Time left until `deadline`, never zero (socket timeouts reject zero).
fn left(deadline: Instant) -> Option<Duration> {
    let now = Instant::now();
    (now < deadline).then(|| (deadline - now).max(Duration::from_millis(1)))
}

// ---------------------------------------------------------------- hold

/// How one `hold` connection ended.
enum Outcome {
    Echoed(TcpStream),
    /// The server answered with something else: sockdemo's "server full".
    Refused,
    Failed(String),
}

fn hold(args: &HoldArgs) -> anyhow::Result<Report> {
    let addr = resolve(&args.target)?;
    let clients = args.clients as usize;
    // Every connection is a file descriptor here as well as in the server.
    let fd_limit = sockdemo::engine::limits::raise_fd_limit().map(|(_, after)| after);
    if let Some(limit) = fd_limit {
        if args.clients + FD_MARGIN > limit {
            bail!(
                "this process may open only {limit} file descriptors, too few to hold {clients} \
                 connections; raise the hard limit (ulimit -Hn) or ask for fewer --clients"
            );
        }
    }

    let start = Instant::now();
    let deadline = start + args.timeout;
    let next = Arc::new(AtomicUsize::new(0));
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::with_capacity(clients)));
    let refused = Arc::new(AtomicU64::new(0));
    let failures: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let last_echo = Arc::new(Mutex::new(Duration::ZERO));

    let workers = (args.workers as usize).min(clients);
    let mut handles = Vec::with_capacity(workers);
    for w in 0..workers {
        let (next, held, refused, failures, last_echo) = (
            next.clone(),
            held.clone(),
            refused.clone(),
            failures.clone(),
            last_echo.clone(),
        );
        let handle = thread::Builder::new()
            .name(format!("hold-{w}"))
            .stack_size(WORKER_STACK)
            .spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= clients {
                    break;
                }
                let outcome = match left(deadline) {
                    Some(_) => open_and_echo(addr, i, deadline),
                    None => Outcome::Failed("not tried: --timeout reached".into()),
                };
                match outcome {
                    Outcome::Echoed(stream) => {
                        lock(&held).push(stream);
                        let mut last = lock(&last_echo);
                        *last = (*last).max(start.elapsed());
                    }
                    Outcome::Refused => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Outcome::Failed(why) => {
                        *lock(&failures).entry(why).or_default() += 1;
                    }
                }
            })
            .context("cannot start a load thread")?;
        handles.push(handle);
    }
    for handle in handles {
        let _ = handle.join();
    }
    let opened_in = start.elapsed();
    let streams = std::mem::take(&mut *lock(&held));
    let echoed = streams.len();
    let time_to_all = *lock(&last_echo);

    // All the echoed connections are open together now. Check that the
    // server has not closed any of them meanwhile: a peek that would block
    // means "open, nothing to read"; 0 bytes means the server sent FIN.
    let still_open = streams.iter().filter(|s| is_open(s)).count();
    let server_now = args.target.server_pid.map(server_state);
    if !args.hold.is_zero() {
        thread::sleep(args.hold);
    }
    let close_start = Instant::now();
    for stream in &streams {
        let _ = stream.shutdown(Shutdown::Write);
    }
    drop(streams);
    let closed_in = close_start.elapsed();

    let refused = refused.load(Ordering::Relaxed);
    let failures = std::mem::take(&mut *lock(&failures));
    let failed: u64 = failures.values().sum();
    let complete = echoed == clients && still_open == clients;

    let mut lines = vec![format!(
        "hold {addr}: {echoed}/{clients} clients connected and echoed{}, {still_open} still open together when checked",
        if echoed > 0 {
            format!(" in {:.3} s", time_to_all.as_secs_f64())
        } else {
            String::new()
        }
    )];
    if refused > 0 {
        lines.push(format!(
            "  {refused} refused by the server (it answered with something other than the echo, e.g. \"server full\")"
        ));
    }
    for (why, count) in &failures {
        lines.push(format!("  {count} failed: {why}"));
    }
    if opened_in >= args.timeout {
        lines.push(format!(
            "  the --timeout of {:.1} s was reached before every client was through",
            args.timeout.as_secs_f64()
        ));
    }
    if let Some(state) = &server_now {
        lines.push(format!(
            "  server while all were open: {}",
            server_line(state)
        ));
    }
    lines.push(format!(
        "  closed all {echoed} in {:.3} s ({workers} connecting threads{})",
        closed_in.as_secs_f64(),
        fd_limit
            .map(|l| format!(", fd limit {l}"))
            .unwrap_or_default()
    ));

    let json = json!({
        "mode": "hold",
        "addr": addr.to_string(),
        "unix_time": unix_time(),
        "clients": clients,
        "echoed": echoed,
        "still_open": still_open,
        "refused": refused,
        "failed": failed,
        "failures": failures,
        "seconds_to_all": round3(time_to_all.as_secs_f64()),
        "seconds_to_close": round3(closed_in.as_secs_f64()),
        "timeout_s": args.timeout.as_secs_f64(),
        "workers": workers,
        "fd_limit": fd_limit,
        "server": server_now,
        "complete": complete,
    });
    Ok(Report {
        lines,
        json,
        complete,
    })
}

/// connect() → send one line → read until its echo is complete, all before `deadline`.
fn open_and_echo(addr: SocketAddr, i: usize, deadline: Instant) -> Outcome {
    let timeout = |d| left(d).ok_or_else(|| io::Error::from(io::ErrorKind::TimedOut));
    let run = || -> io::Result<Outcome> {
        let stream = TcpStream::connect_timeout(&addr, timeout(deadline)?)?;
        stream.set_nodelay(true)?;
        let line = format!("hold {i}\n");
        stream.set_write_timeout(Some(timeout(deadline)?))?;
        (&stream).write_all(line.as_bytes())?;
        let mut got = Vec::with_capacity(line.len());
        let mut buf = [0u8; 256];
        // The echo may arrive in pieces; read until the newline (or a mismatch).
        while got.len() < line.len() && !got.contains(&b'\n') {
            stream.set_read_timeout(Some(timeout(deadline)?))?;
            let n = (&stream).read(&mut buf)?;
            if n == 0 {
                return if got.is_empty() {
                    Err(io::ErrorKind::UnexpectedEof.into())
                } else {
                    Ok(Outcome::Refused)
                };
            }
            got.extend_from_slice(&buf[..n]);
            if !line
                .as_bytes()
                .starts_with(&got[..got.len().min(line.len())])
            {
                return Ok(Outcome::Refused);
            }
        }
        if got == line.as_bytes() {
            Ok(Outcome::Echoed(stream))
        } else {
            Ok(Outcome::Refused)
        }
    };
    run().unwrap_or_else(|e| Outcome::Failed(error_label(&e)))
}

fn is_open(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    let open = match stream.peek(&mut byte) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    };
    let _ = stream.set_nonblocking(false);
    open
}

// ---------------------------------------------------------------- rtt

fn rtt(args: &RttArgs) -> anyhow::Result<Report> {
    let addr = resolve(&args.target)?;
    let conns = args.conns as usize;
    let size = args.size as usize;
    sockdemo::engine::limits::raise_fd_limit();

    // Connect everyone first, then start together, so the measured
    // interval holds only round trips.
    let start_line = Arc::new(Barrier::new(conns + 1));
    let setup_deadline = Instant::now() + args.timeout;
    let mut handles = Vec::with_capacity(conns);
    for c in 0..conns {
        let start_line = start_line.clone();
        let (seconds, timeout) = (args.seconds, args.timeout);
        let handle = thread::Builder::new()
            .name(format!("rtt-{c}"))
            .stack_size(WORKER_STACK)
            .spawn(move || ping_pong(addr, size, seconds, timeout, setup_deadline, &start_line))
            .context("cannot start a load thread")?;
        handles.push(handle);
    }
    start_line.wait();
    let started = Instant::now();
    let results: Vec<PingPong> = handles
        .into_iter()
        .map(|h| {
            h.join().unwrap_or_else(|_| PingPong {
                error: Some("load thread panicked".into()),
                ..PingPong::default()
            })
        })
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    let server_after = args.target.server_pid.map(server_state);

    let mut latency = Histogram::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut mismatches = 0;
    for r in &results {
        latency.merge(&r.latency);
        mismatches += r.mismatches;
        if let Some(e) = &r.error {
            *errors.entry(e.clone()).or_default() += 1;
        }
    }
    let trips = latency.count();
    let per_sec = if elapsed > 0.0 {
        trips as f64 / elapsed
    } else {
        0.0
    };
    let us = |ns: u64| ns as f64 / 1000.0;
    let (p50, p99, max, mean) = (
        us(latency.quantile(0.50)),
        us(latency.quantile(0.99)),
        us(latency.max),
        us(latency.mean()),
    );
    let complete = errors.is_empty() && mismatches == 0 && trips > 0;

    let mut lines = vec![
        format!(
            "rtt {addr}: {conns} conns × {size}-byte messages for {elapsed:.2} s: {trips} round trips, {per_sec:.0}/s"
        ),
    ];
    if trips > 0 {
        lines.push(format!(
            "  latency: median {p50:.1} µs, p99 {p99:.1} µs, mean {mean:.1} µs, max {max:.1} µs"
        ));
    }
    if mismatches > 0 {
        lines.push(format!(
            "  {mismatches} replies were not the bytes sent (not an echo server?)"
        ));
    }
    for (why, count) in &errors {
        lines.push(format!("  {count} connections stopped early: {why}"));
    }
    if let Some(state) = &server_after {
        lines.push(format!("  server afterwards: {}", server_line(state)));
    }

    let json = json!({
        "mode": "rtt",
        "addr": addr.to_string(),
        "unix_time": unix_time(),
        "conns": conns,
        "size": size,
        "seconds": round3(elapsed),
        "round_trips": trips,
        "round_trips_per_s": per_sec.round(),
        "latency_us": {
            "p50": round1(p50),
            "p99": round1(p99),
            "mean": round1(mean),
            "max": round1(max),
        },
        "mismatches": mismatches,
        "errors": errors,
        "server": server_after,
        "complete": complete,
    });
    Ok(Report {
        lines,
        json,
        complete,
    })
}

#[derive(Default)]
struct PingPong {
    latency: Histogram,
    mismatches: u64,
    error: Option<String>,
}

/// One connection's loop: write `size` bytes, read `size` bytes, time it.
fn ping_pong(
    addr: SocketAddr,
    size: usize,
    seconds: Duration,
    timeout: Duration,
    setup_deadline: Instant,
    start_line: &Barrier,
) -> PingPong {
    let mut result = PingPong::default();
    let connected = left(setup_deadline)
        .ok_or_else(|| io::Error::from(io::ErrorKind::TimedOut))
        .and_then(|t| TcpStream::connect_timeout(&addr, t))
        .and_then(|s| {
            // Without TCP_NODELAY a small write may wait for an ACK (Nagle);
            // latency benchmarks turn it off.
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
            Ok(s)
        });
    // Everyone passes the start line, connected or not, so no one waits forever.
    start_line.wait();
    let mut stream = match connected {
        Ok(s) => s,
        Err(e) => {
            result.error = Some(format!("connect: {}", error_label(&e)));
            return result;
        }
    };
    let mut message = vec![b'x'; size];
    message[size - 1] = b'\n';
    let mut reply = vec![0u8; size];
    let end = Instant::now() + seconds;
    while Instant::now() < end {
        let t0 = Instant::now();
        let trip = stream
            .write_all(&message)
            .and_then(|_| stream.read_exact(&mut reply));
        let took = t0.elapsed();
        if let Err(e) = trip {
            result.error = Some(error_label(&e));
            break;
        }
        result.latency.record(took.as_nanos() as u64);
        if reply != message {
            result.mismatches += 1;
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
    result
}

/// Latencies in nanoseconds, in log-linear buckets (128 per power of two,
/// so a quantile is within 1 % of the truth) and fixed memory however long
/// the run: a few thousand counters instead of every sample.
struct Histogram {
    counts: Vec<u64>,
    max: u64,
    /// Exact sum, for the mean (which, times the round trip rate, should
    /// come to about the number of connections: a check on the figures).
    sum: u128,
}

const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: vec![0; ((64 - SUB_BITS as u64 + 1) * SUB) as usize],
            max: 0,
            sum: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros(); // >= SUB_BITS
        let shift = exp - SUB_BITS;
        let mantissa = v >> shift; // in [SUB, 2 * SUB)
        ((shift as u64 + 1) * SUB + (mantissa - SUB)) as usize
    }

    /// The middle of bucket `i`.
    fn value(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB {
            return i;
        }
        let shift = i / SUB - 1;
        let mantissa = i % SUB + SUB;
        (mantissa << shift) + ((1u64 << shift) >> 1)
    }

    fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.max = self.max.max(v);
        self.sum += v as u128;
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    fn mean(&self) -> u64 {
        match self.count() {
            0 => 0,
            n => (self.sum / n as u128) as u64,
        }
    }

    fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn quantile(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }
}

// ---------------------------------------------------------------- server state

/// What /proc says about the server process (Linux; null elsewhere or if unreadable).
fn server_state(pid: u32) -> Value {
    let status = match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(s) => s,
        Err(e) => return json!({ "pid": pid, "error": e.to_string() }),
    };
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .ok();
    json!({
        "pid": pid,
        "threads": field("Threads:"),
        "rss_kib": field("VmRSS:"),
        "peak_rss_kib": field("VmHWM:"),
        "open_fds": fds,
    })
}

fn server_line(state: &Value) -> String {
    if let Some(e) = state.get("error") {
        return format!("pid {}: cannot read /proc ({})", state["pid"], e);
    }
    let mib = |k: &str| {
        state[k]
            .as_u64()
            .map(|kib| format!("{:.1} MiB", kib as f64 / 1024.0))
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "pid {}: {} threads, RSS {} (peak {}), {} open descriptors",
        state["pid"],
        state["threads"],
        mib("rss_kib"),
        mib("peak_rss_kib"),
        state["open_fds"]
    )
}

// ---------------------------------------------------------------- small helpers

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_one_percent() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 10);
        }
        let median = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((median / 500_000.0 - 1.0).abs() < 0.01, "{median}");
        assert!((p99 / 990_000.0 - 1.0).abs() < 0.01, "{p99}");
        assert_eq!(h.count(), 100_000);
        assert_eq!(h.max, 1_000_000);
        assert_eq!(h.mean(), 500_005);
    }

    #[test]
    fn histogram_small_values_are_exact() {
        let mut h = Histogram::new();
        for v in [3, 3, 5, 7] {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), 3);
        assert_eq!(h.quantile(1.0), 7);
        assert!(Histogram::index(u64::MAX) < h.counts.len());
    }

    #[test]
    fn refuses_non_loopback() {
        let target = TargetArgs {
            addr: parse_target("192.0.2.1:9").unwrap(),
            allow_remote: false,
            server_pid: None,
        };
        assert!(resolve(&target).is_err());
        let local = TargetArgs {
            addr: parse_target("127.0.0.1:9").unwrap(),
            allow_remote: false,
            server_pid: None,
        };
        assert!(resolve(&local).is_ok());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
