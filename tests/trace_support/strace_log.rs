//! The same programs, seen by strace and by `sockdemo trace`, written as
//! one list of socket calls each, so that the two lists can be compared.
//!
//! A call is written `name(socket) = result`: `accept4(s1) = s2`.
//! - Sockets are named s1, s2… in the order the program got them (from
//!   socket() or accept), so descriptor numbers do not matter; a name's
//!   life ends at close().
//! - Only calls on IPv4/IPv6 TCP or UDP sockets are kept: calls on files,
//!   on stdout, on Unix sockets (a JVM asks nscd about users) are not the
//!   lesson's, and the trace leaves them out too.
//! - setsockopt() is kept for the options the trace explains (SO_REUSEADDR
//!   on, SO_LINGER, SO_RCVTIMEO, SO_SNDTIMEO, TCP_DEFER_ACCEPT) and
//!   getsockopt() for SO_ERROR; getsockname()/getpeername() are left out.
//! - The trace's fcntl() and poll() are left out: strace is not asked for
//!   them (`-e trace=network,close,read,write,readv,writev`).
//!
//! One strace log is one program; its threads share its descriptors.

use super::{exit_within, Scratch};
use crate::common::{EXIT_PATIENCE, PATIENCE};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;

/// The calls strace is asked to show.
pub const TRACED: &str = "trace=network,close,read,write,readv,writev";

/// The socket options the trace explains, as strace names them.
const OPTIONS: [&str; 7] = [
    "SO_REUSEADDR",
    "SO_LINGER",
    "SO_RCVTIMEO_OLD",
    "SO_RCVTIMEO_NEW",
    "SO_SNDTIMEO_OLD",
    "SO_SNDTIMEO_NEW",
    "TCP_DEFER_ACCEPT",
];

/// The names given to one program's sockets.
#[derive(Default)]
struct Names {
    next: usize,
    live: HashMap<i64, String>,
}

impl Names {
    fn open(&mut self, fd: i64) -> String {
        self.next += 1;
        let name = format!("s{}", self.next);
        self.live.insert(fd, name.clone());
        name
    }

    fn get(&self, fd: i64) -> Option<String> {
        self.live.get(&fd).cloned()
    }
}

/// The result part of a call: a number, or "-1 ENAME".
fn result(ret: i64, errno: Option<&str>) -> String {
    match errno {
        Some(name) if ret < 0 => format!("-1 {name}"),
        _ => ret.to_string(),
    }
}

/// One call from a strace line: (name, arguments, return value, errno).
struct Line<'a> {
    name: &'a str,
    args: &'a str,
    ret: i64,
    errno: Option<&'a str>,
}

fn parse_call(text: &str) -> Option<Line<'_>> {
    let (call, outcome) = text.rsplit_once(" = ")?;
    let (name, args) = call.trim_end().split_once('(')?;
    let args = args.strip_suffix(')')?;
    let mut outcome = outcome.split_whitespace();
    // "?" : the call never returned (the process ended in it).
    let ret = outcome.next()?.parse().ok()?;
    let errno = outcome.next().filter(|e| e.starts_with('E'));
    Some(Line {
        name,
        args,
        ret,
        errno,
    })
}

fn first_arg(args: &str) -> Option<i64> {
    args.split(',').next()?.trim().parse().ok()
}

/// The socket calls in a log of `strace -f -o FILE` (lines start with the
/// thread id; a call another thread interrupted is split in an
/// "<unfinished ...>" line and a "<... NAME resumed>" line).
pub fn from_strace(log: &str) -> Vec<String> {
    let mut unfinished: HashMap<&str, String> = HashMap::new();
    let mut names = Names::default();
    let mut calls = Vec::new();
    for raw in log.lines() {
        let Some((tid, rest)) = raw.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if rest.starts_with("---") || rest.starts_with("+++") {
            continue;
        }
        let line = if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            unfinished.insert(tid, head.trim_end().to_string());
            continue;
        } else if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some((_, tail)) = resumed.split_once(" resumed>") else {
                continue;
            };
            let head = unfinished.remove(tid).unwrap_or_default();
            let sep = if head.ends_with('(') || tail.starts_with(')') || tail.starts_with(',') {
                ""
            } else {
                " "
            };
            format!("{head}{sep}{tail}")
        } else {
            rest.to_string()
        };
        let Some(call) = parse_call(&line) else {
            continue;
        };
        if let Some(text) = strace_call(&call, &mut names) {
            calls.push(text);
        }
    }
    calls
}

/// One strace call, written as the comparison wants it (None: not a call
/// on a socket of the lesson, or not one the trace shows).
fn strace_call(call: &Line, names: &mut Names) -> Option<String> {
    let plain = result(call.ret, call.errno);
    if call.name == "socket" {
        let mut words = call.args.split(", ");
        let family = words.next()?;
        let kind = words.next()?.split('|').next()?;
        let lesson = ["AF_INET", "AF_INET6"].contains(&family)
            && ["SOCK_STREAM", "SOCK_DGRAM"].contains(&kind);
        if !lesson {
            return None;
        }
        let ret = if call.ret >= 0 {
            names.open(call.ret)
        } else {
            plain
        };
        return Some(format!("socket({family}, {kind}) = {ret}"));
    }
    let fd = first_arg(call.args)?;
    let sock = names.get(fd)?;
    match call.name {
        "accept" | "accept4" if call.ret >= 0 => {
            let new = names.open(call.ret);
            Some(format!("{}({sock}) = {new}", call.name))
        }
        "close" => {
            names.live.remove(&fd);
            Some(format!("close({sock}) = {plain}"))
        }
        "setsockopt" | "getsockopt" => {
            let option = call.args.split(", ").nth(2)?;
            let shown = if call.name == "getsockopt" {
                option == "SO_ERROR"
            } else {
                // SO_REUSEADDR set to 0 changes nothing: the trace leaves it out.
                OPTIONS.contains(&option) && !call.args.contains("SO_REUSEADDR, [0]")
            };
            let option = option.trim_end_matches("_OLD").trim_end_matches("_NEW");
            shown.then(|| format!("{}({sock}, {option}) = {plain}", call.name))
        }
        "getsockname" | "getpeername" => None,
        name => Some(format!("{name}({sock}) = {plain}")),
    }
}

/// The socket calls that `sockdemo trace` shows for process `pid`, written
/// as [`from_strace`] writes strace's.
pub fn from_timeline(events: &[Value], pid: u64) -> Vec<String> {
    let mut names = Names::default();
    let mut calls = Vec::new();
    for e in events
        .iter()
        .filter(|e| e["kind"] == "syscall" && e["pid"] == pid)
    {
        let call = e["call"].as_str().unwrap_or("?");
        if ["fcntl", "poll", "ppoll"].contains(&call) {
            continue;
        }
        let ret = e["ret"].as_i64().unwrap_or(i64::MIN);
        let errno = e["error"]
            .as_str()
            .map(|err| err.split(':').next().unwrap_or(err).trim());
        let plain = result(ret, errno);
        let args = e["args"].as_str().unwrap_or("");
        if call == "socket" {
            let mut words = args.split(", ");
            let family = words.next().unwrap_or("?");
            let kind = words.next().unwrap_or("?").split('|').next().unwrap_or("?");
            let ret = if ret >= 0 { names.open(ret) } else { plain };
            calls.push(format!("socket({family}, {kind}) = {ret}"));
            continue;
        }
        let fd = e["fd"].as_i64().unwrap_or(-1);
        let sock = names.get(fd).unwrap_or_else(|| format!("?fd{fd}"));
        let text = match call {
            "accept" | "accept4" if ret >= 0 => format!("{call}({sock}) = {}", names.open(ret)),
            "close" => {
                names.live.remove(&fd);
                format!("close({sock}) = {plain}")
            }
            "setsockopt" | "getsockopt" => {
                let option = args.split(", ").nth(1).unwrap_or("?");
                format!("{call}({sock}, {option}) = {plain}")
            }
            _ => format!("{call}({sock}) = {plain}"),
        };
        calls.push(text);
    }
    calls
}

/// Runs a server and then a client, each under `strace -f`, without
/// sockdemo: the client starts once the server has printed a line with
/// "listening" (it prints it after listen()). Returns the socket calls of
/// each, as [`from_strace`] writes them.
pub fn strace_pair(
    scratch: &Scratch,
    server: &[String],
    client: &[String],
) -> (Vec<String>, Vec<String>) {
    super::need("strace");
    let (server_log, client_log) = (scratch.path("server.strace"), scratch.path("client.strace"));
    let strace = |log: &str, argv: &[String]| {
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-e", TRACED, "-o", log])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        cmd
    };
    let mut server_run = strace(&server_log, server).spawn().expect("start strace");
    let (tx, lines) = mpsc::channel();
    let stdout = server_run.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains("listening") => break,
            Ok(_) => {}
            Err(e) => {
                super::kill_tree(server_run.id());
                let _ = server_run.wait();
                panic!("the server under strace never said it was listening ({e})");
            }
        }
    }
    let mut client_run = strace(&client_log, client).spawn().expect("start strace");
    let client_status = exit_within(&mut client_run, EXIT_PATIENCE);
    let server_status = exit_within(&mut server_run, EXIT_PATIENCE);
    assert!(
        client_status.success() && server_status.success(),
        "without sockdemo: server {server_status:?}, client {client_status:?}"
    );
    let read = |log: &str| std::fs::read_to_string(log).expect("the strace log");
    (
        from_strace(&read(&server_log)),
        from_strace(&read(&client_log)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log with a resumed call, a call on a file, a Unix socket and an
    /// option the trace leaves out reads as the socket calls alone.
    #[test]
    fn reads_a_strace_log() {
        let log = "\
10  read(3, \"\\177ELF\", 832) = 832
10  socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC|SOCK_NONBLOCK, 0) = 4
10  connect(4, {sa_family=AF_UNIX, sun_path=\"/var/run/nscd/socket\"}, 110) = -1 ENOENT (No such file or directory)
10  close(4)                          = 0
10  socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP) = 4
10  setsockopt(4, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
10  setsockopt(4, SOL_SOCKET, SO_REUSEPORT, [1], 4) = 0
10  listen(4, 8)                      = 0
11  accept4(4,  <unfinished ...>
10  write(1, \"x\", 1) = 1
11  <... accept4 resumed>{sa_family=AF_INET, sin_port=htons(1), sin_addr=inet_addr(\"127.0.0.1\")}, [16], SOCK_CLOEXEC) = 5
11  recvfrom(5, \"\", 1024, 0, NULL, NULL) = 0
11  close(5) = 0
11  +++ exited with 0 +++
";
        assert_eq!(
            from_strace(log),
            [
                "socket(AF_INET, SOCK_STREAM) = s1",
                "setsockopt(s1, SO_REUSEADDR) = 0",
                "listen(s1) = 0",
                "accept4(s1) = s2",
                "recvfrom(s2) = 0",
                "close(s2) = 0",
            ]
        );
    }
}
