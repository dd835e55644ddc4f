//! `sockdemo trace` explains the classic mistakes of a student's socket
//! program when, and only when, the evidence shows them. Each test runs a
//! small real program (Python, or Java where the mistake is Java's) that
//! makes one mistake, and checks the explanation against what the program
//! did; the honest version of the same program gets no such note.
//!
//! Programs talk on loopback only. Servers get a port from
//! [`free_port`]; clients start once the server listens (`--wait-listen`).
#![cfg(target_os = "linux")]

mod common;

use common::*;
use serde_json::Value;
use std::path::PathBuf;

/// A folder of its own for one test's programs, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("sockdemo-mistakes-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch folder");
        Scratch(dir)
    }

    /// Writes a program; returns its path.
    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write a program");
        path.to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port nobody uses now (the OS's choice for port 0, given back).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().unwrap().port()
}

/// `sockdemo trace --json` of one program, or of a server and a client.
fn trace(programs: &[String], extra: &[&str]) -> Output {
    let mut args: Vec<&str> = vec!["trace", "--json"];
    args.extend_from_slice(extra);
    if programs.len() == 1 {
        args.push("--");
        args.extend(programs[0].split(' '));
    } else {
        args.push("--wait-listen");
        for p in programs {
            args.push("--run");
            args.push(p);
        }
    }
    run(sockdemo(&args), b"")
}

/// Traces a Python server and its client (given a free port each run,
/// the client started once the server listens); both must exit 0.
fn python_pair(server: &str, client: &str) -> Vec<Value> {
    let port = free_port();
    let out = trace(
        &[
            format!("python3 -u {server} {port}"),
            format!("python3 -u {client} {port}"),
        ],
        &[],
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    out.events()
}

fn notes<'a>(events: &'a [Value], topic: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["kind"] == "note" && e["topic"] == topic)
        .collect()
}

fn errors<'a>(events: &'a [Value], code: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["kind"] == "error" && e["code"] == code)
        .collect()
}

fn text(e: &Value) -> &str {
    e["text"].as_str().unwrap_or("")
}

/// A server that reads a 2-byte length first (as readUTF does).
const LENGTH_SERVER: &str = r#"
import socket, struct, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
c, _ = s.accept()
n = struct.unpack(">H", c.recv(2))[0]
c.settimeout(1)
try:
    print("got", c.recv(n))
except socket.timeout:
    print("waited for", n, "bytes")
c.close(); s.close()
"#;

/// The classic: the client writes plain text, the server reads a length
/// first, and takes it from the text's first two bytes ("he" = 26725).
#[test]
fn a_length_read_out_of_plain_text_is_explained_with_the_bytes() {
    let dir = Scratch::new("length");
    let server = dir.write("server.py", LENGTH_SERVER);
    let client = dir.write(
        "client.py",
        r#"
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
c.sendall(b"hello")
c.settimeout(3)
try: c.recv(10)
except OSError: pass
c.close()
"#,
    );
    let events = python_pair(&server, &client);
    let said = notes(&events, "framing-mismatch");
    assert_eq!(said.len(), 1, "one framing note: {said:?}");
    let t = text(said[0]);
    assert!(t.contains("\"he\"") && t.contains("26725"), "{t}");
    assert_eq!(said[0]["side"], "server", "said about the reader");
    // The program really asked for 26725 bytes: the call is there.
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "syscall" && e["args"] == "up to 26725 bytes"),
        "the recvfrom of 26725 bytes"
    );
}

/// The same server against a client that does send a length: no note.
#[test]
fn a_framed_message_read_as_framed_gets_no_framing_note() {
    let dir = Scratch::new("framed");
    let server = dir.write("server.py", LENGTH_SERVER);
    let client = dir.write(
        "client.py",
        r#"
import socket, struct, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
c.sendall(struct.pack(">H", 5) + b"hello")
c.close()
"#,
    );
    let events = python_pair(&server, &client);
    assert!(notes(&events, "framing-mismatch").is_empty());
    assert!(notes(&events, "output")
        .iter()
        .any(|e| text(e).contains("got b'hello'")));
}

/// writeUTF's frame read by a plain reader: the two bytes of length are
/// named as such.
#[test]
fn a_length_prefix_read_as_text_is_named() {
    let dir = Scratch::new("prefix");
    let server = dir.write(
        "server.py",
        r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
c, _ = s.accept()
print(c.recv(100))
c.close(); s.close()
"#,
    );
    let client = dir.write(
        "client.py",
        r#"
import socket, struct, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
c.sendall(struct.pack(">H", 5) + b"hello")
c.close()
"#,
    );
    let events = python_pair(&server, &client);
    let said = notes(&events, "framing-mismatch");
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(text(said[0]).contains("\\x00\\x05"), "{}", text(said[0]));
}

/// A request written into a buffered writer and never flushed: nothing
/// was sent, the client waits, and the watchdog says so.
#[test]
fn a_request_never_flushed_is_seen_as_a_wait_with_nothing_sent() {
    let dir = Scratch::new("flush");
    let server = dir.write(
        "server.py",
        r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
c, _ = s.accept()
c.settimeout(7)
try: c.sendall(c.recv(100))
except socket.timeout: pass
c.close(); s.close()
"#,
    );
    let client = dir.write(
        "client.py",
        r#"
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
w = c.makefile("w")
w.write("hello\n")          # into the buffer; never flushed
c.settimeout(5)
try: print(c.recv(100))
except socket.timeout: print("no answer")
"#,
    );
    let events = python_pair(&server, &client);
    let said = notes(&events, "unflushed");
    assert_eq!(said.len(), 1, "once, about the client: {said:?}");
    assert_eq!(said[0]["side"], "client");
    assert!(text(said[0]).contains("flush()"));
    // And indeed: the client made no send-like call on its socket.
    let client_pid = notes(&events, "started")
        .iter()
        .find(|e| e["program"] == "C1")
        .map(|e| e["pid"].clone())
        .expect("C1 started");
    // (Python flushes the buffer when the program ends: that write may
    // come later, after the wait the note is about.)
    let said_at = said[0]["t"].as_f64().unwrap();
    let sent = events.iter().any(|e| {
        e["kind"] == "syscall"
            && e["pid"] == client_pid
            && e["t"].as_f64().unwrap() < said_at
            && ["sendto", "write", "sendmsg", "writev"].contains(&e["call"].as_str().unwrap_or(""))
    });
    assert!(!sent, "the client had sent nothing when the note was said");
}

/// The same client that flushes: answered, and no such note.
#[test]
fn a_flushed_request_gets_no_unflushed_note() {
    let dir = Scratch::new("flushed");
    let server = dir.write(
        "server.py",
        r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
c, _ = s.accept()
c.sendall(c.recv(100))
c.close(); s.close()
"#,
    );
    let client = dir.write(
        "client.py",
        r#"
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
w = c.makefile("w")
w.write("hello\n"); w.flush()
print(c.recv(100))
"#,
    );
    let events = python_pair(&server, &client);
    assert!(notes(&events, "unflushed").is_empty());
    assert!(notes(&events, "output")
        .iter()
        .any(|e| text(e).contains("hello")));
}

/// A server restarted on its port without SO_REUSEADDR, while its last
/// run's connection waits in TIME-WAIT: the error names the TIME-WAIT.
#[test]
fn eaddrinuse_after_a_restart_names_the_time_wait_that_holds_the_port() {
    let dir = Scratch::new("reuse");
    // No SO_REUSEADDR; the server closes first, so TIME-WAIT is on its port.
    let server = dir.write(
        "server.py",
        r#"
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
c, _ = s.accept()
c.sendall(b"bye"); c.close(); s.close()
"#,
    );
    let client = dir.write(
        "client.py",
        r#"
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
while c.recv(100): pass
c.close()
"#,
    );
    let port = free_port();
    let first = trace(
        &[
            format!("python3 -u {server} {port}"),
            format!("python3 -u {client} {port}"),
        ],
        &[],
    );
    assert_eq!(first.code(), 0, "{}", first.stderr);
    let summary = notes(&first.events(), "summary")[0].clone();
    assert_eq!(
        summary["ended"]["C1 (server side)"], "TIME-WAIT",
        "the server closed first: {summary}"
    );
    let again = trace(&[format!("python3 -u {server} {port}")], &[]);
    assert_eq!(again.code(), 1, "Python exits 1 on the OSError");
    let events = again.events();
    let bind = events
        .iter()
        .find(|e| e["kind"] == "syscall" && e["call"] == "bind")
        .expect("bind");
    assert_eq!(bind["error"], "EADDRINUSE: Address already in use");
    let said = errors(&events, "addr-in-use");
    assert_eq!(said.len(), 1);
    let t = text(said[0]);
    assert!(t.contains("TIME-WAIT") && t.contains("SO_REUSEADDR"), "{t}");
    assert!(
        t.contains(&format!("127.0.0.1:{port}")),
        "names the connection: {t}"
    );
}

/// A connection to a port where nothing listens: refused, and why.
#[test]
fn a_refused_connect_is_explained() {
    let dir = Scratch::new("refused");
    let client = dir.write(
        "client.py",
        r#"
import socket, sys
try: socket.create_connection(("127.0.0.1", int(sys.argv[1])))
except ConnectionRefusedError: print("refused")
"#,
    );
    let port = free_port();
    let out = trace(&[format!("python3 -u {client} {port}")], &[]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let events = out.events();
    let connect = events
        .iter()
        .find(|e| e["kind"] == "syscall" && e["call"] == "connect")
        .expect("connect");
    assert_eq!(connect["error"], "ECONNREFUSED: Connection refused");
    let said = errors(&events, "refused");
    assert_eq!(said.len(), 1);
    assert!(text(said[0]).contains(&format!("127.0.0.1:{port}")));
    if capture_allowed() {
        assert!(
            events
                .iter()
                .any(|e| e["kind"] == "packet" && e["flags"] == "RST,ACK"),
            "the RST that refused it"
        );
    }
}

/// Three sends read by one recv: TCP kept no boundaries, and the note
/// gives the sizes of the sends.
#[test]
fn sends_merged_into_one_recv_are_shown_with_their_sizes() {
    let dir = Scratch::new("merge");
    let program = dir.write(
        "merge.py",
        r#"
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
c = socket.create_connection(s.getsockname())
a, _ = s.accept()
for m in (b"one\n", b"two\n", b"three\n"):
    c.send(m)
got = b""
while len(got) < 14:
    got += a.recv(100)
print(got)
c.close(); a.close(); s.close()
"#,
    );
    let out = trace(&[format!("python3 -u {program}")], &[]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let events = out.events();
    let said = notes(&events, "message-boundaries");
    // The kernel may hand the bytes over in one piece or in several (the
    // receiver can run between the sends): the note must match whichever.
    let recvs: Vec<i64> = events
        .iter()
        .filter(|e| e["kind"] == "syscall" && e["call"] == "recvfrom")
        .filter_map(|e| e["ret"].as_i64())
        .collect();
    if recvs.iter().any(|n| *n > 6) {
        assert_eq!(said.len(), 1, "merged sends said once: {recvs:?}");
        assert!(text(said[0]).contains("send() calls"), "{}", text(said[0]));
    } else {
        assert!(said.is_empty(), "one recv per send: nothing to say");
    }
}

/// The peer closed and the program never closes: CLOSE-WAIT, said.
#[test]
fn a_socket_left_in_close_wait_is_pointed_out() {
    let dir = Scratch::new("closewait");
    // After the end of C1 it does not close it: it waits for another
    // client (the test connects once the note has been said).
    let server = dir.write(
        "server.py",
        r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
c, _ = s.accept()
print(c.recv(100)); print(c.recv(100))
s.accept()
"#,
    );
    let client = dir.write(
        "client.py",
        r#"
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
c.sendall(b"hello"); c.close()
"#,
    );
    let port = free_port();
    let (server_cmd, client_cmd) = (
        format!("python3 -u {server} {port}"),
        format!("python3 -u {client} {port}"),
    );
    let mut traced = Running::start(sockdemo(&[
        "trace",
        "--json",
        "--wait-listen",
        "--run",
        &server_cmd,
        "--run",
        &client_cmd,
    ]));
    let said = traced.wait_event("the close-wait note", |e| e["topic"] == "close-wait");
    // Now let the server end.
    let _release = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the second client");
    let (status, lines, stderr) = traced.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let events = events_of_lines(&lines);
    assert_eq!(notes(&events, "close-wait").len(), 1, "said once");
    assert_eq!(said["side"], "server");
    assert_eq!(said["conn"], "C1");
    // The kernel said CLOSE-WAIT before the note.
    let at = said["t"].as_f64().unwrap();
    assert!(events.iter().any(|e| e["kind"] == "state"
        && e["side"] == "server"
        && e["to"] == "CLOSE-WAIT"
        && e["t"].as_f64().unwrap() <= at));
}

/// A server that closes with the request unread: the close sends an RST,
/// and the close says why.
#[test]
fn closing_with_unread_data_is_explained_as_the_reset_it_causes() {
    let dir = Scratch::new("unread");
    let server = dir.write(
        "server.py",
        r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
c, _ = s.accept()
c.recv(1)            # reads 1 byte of the 5
c.close(); s.close()
"#,
    );
    let client = dir.write(
        "client.py",
        r#"
import socket, sys, time
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
c.sendall(b"hello")
c.settimeout(3)
try: print(c.recv(100))
except OSError as e: print("error", e.errno)
"#,
    );
    let events = python_pair(&server, &client);
    let close = events
        .iter()
        .find(|e| {
            e["kind"] == "syscall"
                && e["call"] == "close"
                && e["side"] == "server"
                && e["conn"] == "C1"
        })
        .expect("the server's close of C1");
    let why = close["why"].as_str().unwrap_or("");
    assert!(why.contains("never read") && why.contains("RST"), "{why}");
    if capture_allowed() {
        assert!(events.iter().any(|e| e["kind"] == "packet"
            && e["side"] == "server"
            && e["flags"].as_str().unwrap_or("").contains("RST")));
    }
}

/// A network namespace of the test's own, deleted when dropped.
struct Namespace(String);

impl Namespace {
    fn new(name: &str) -> Option<Namespace> {
        let name = format!("sdm-{name}-{}", std::process::id());
        let ok = |args: &[&str]| {
            std::process::Command::new(args[0])
                .args(&args[1..])
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ok(&["ip", "netns", "add", &name]) {
            return None;
        }
        let ns = Namespace(name);
        let n = ns.0.as_str();
        let ready = ok(&["ip", "-n", n, "link", "set", "lo", "up"])
            && ok(&["ip", "netns", "exec", n, "nft", "add", "table", "inet", "t"])
            && ok(&[
                "ip",
                "netns",
                "exec",
                n,
                "nft",
                "add",
                "chain",
                "inet",
                "t",
                "in",
                "{ type filter hook input priority 0; }",
            ]);
        ready.then_some(ns)
    }

    /// Drops every TCP segment to `port` in the namespace: SYNs go unanswered.
    fn drop_port(&self, port: u16) -> bool {
        std::process::Command::new("ip")
            .args([
                "netns", "exec", &self.0, "nft", "add", "rule", "inet", "t", "in",
            ])
            .args(["tcp", "dport", &port.to_string(), "drop"])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// A SYN nobody answers (dropped by a firewall rule in a namespace made
/// for the test): each retry is on the wire, and said as such.
#[test]
fn unanswered_syns_are_shown_as_retries() {
    if !is_root() {
        eprintln!("skipped: needs root for a network namespace and packet capture");
        return;
    }
    let Some(ns) = Namespace::new("syn") else {
        eprintln!("skipped: cannot make a network namespace with nft here");
        return;
    };
    assert!(ns.drop_port(9999), "nft rule");
    let dir = Scratch::new("syn");
    let client = dir.write(
        "client.py",
        r#"
import socket
s = socket.socket(); s.settimeout(2.5)
try: s.connect(("127.0.0.1", 9999))
except OSError as e: print("error", type(e).__name__)
"#,
    );
    let out = run(
        {
            let mut cmd = std::process::Command::new("ip");
            cmd.args(["netns", "exec", &ns.0, bin(), "trace", "--json", "--"])
                .args(["python3", "-u", &client]);
            cmd
        },
        b"",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let events = out.events();
    let syns = events
        .iter()
        .filter(|e| e["kind"] == "packet" && e["flags"] == "SYN")
        .count();
    let retries = notes(&events, "syn-again");
    assert!(syns >= 2, "the SYN and at least one retry: {syns}");
    assert_eq!(retries.len(), syns - 1, "one note per retry");
    for (i, r) in retries.iter().enumerate() {
        assert_eq!(r["retry"], i as u64 + 1);
        let waited = r["waited"].as_f64().unwrap();
        assert!((0.5..5.0).contains(&waited), "a retry after {waited} s");
    }
    assert!(notes(&events, "output")
        .iter()
        .any(|e| text(e).contains("TimeoutError")));
}

/// The Java classic: `writeBytes` on one side, `readUTF` on the other.
/// readUTF reads its length one byte at a time, then asks for that many
/// bytes: "he" asks for 26725.
#[test]
fn java_readutf_against_writebytes_is_explained() {
    if !javac_here() {
        eprintln!("skipped: no javac (.ci/run installs a JDK)");
        return;
    }
    let dir = Scratch::new("java");
    dir.write(
        "Server.java",
        r#"import java.io.*; import java.net.*;
public class Server { public static void main(String[] a) throws Exception {
  ServerSocket ss = new ServerSocket(Integer.parseInt(a[0]));
  Socket s = ss.accept(); s.setSoTimeout(2000);
  DataInputStream in = new DataInputStream(s.getInputStream());
  try { System.out.println(in.readUTF()); } catch (IOException e) { System.out.println("failed: " + e); }
  s.close(); ss.close(); } }
"#,
    );
    dir.write(
        "Client.java",
        r#"import java.io.*; import java.net.*;
public class Client { public static void main(String[] a) throws Exception {
  Socket s = new Socket("127.0.0.1", Integer.parseInt(a[0]));
  DataOutputStream out = new DataOutputStream(s.getOutputStream());
  out.writeBytes("hello"); out.flush();
  s.setSoTimeout(4000);
  try { s.getInputStream().read(); } catch (IOException e) {}
  s.close(); } }
"#,
    );
    let compiled = std::process::Command::new("javac")
        .current_dir(&dir.0)
        .args(["Server.java", "Client.java"])
        .status()
        .expect("javac");
    assert!(compiled.success());
    let cp = dir.0.to_string_lossy().into_owned();
    let port = free_port();
    let out = trace(
        &[
            format!("java -cp {cp} Server {port}"),
            format!("java -cp {cp} Client {port}"),
        ],
        &[],
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let events = out.events();
    let said = notes(&events, "framing-mismatch");
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(text(said[0]).contains("26725"), "{}", text(said[0]));
    // The two one-byte reads of readUnsignedShort, as the JVM made them.
    let one_byte_reads = events
        .iter()
        .filter(|e| {
            e["kind"] == "syscall"
                && e["side"] == "server"
                && e["args"] == "up to 1 bytes"
                && e["ret"] == 1
        })
        .count();
    assert_eq!(one_byte_reads, 2);
    assert!(notes(&events, "output")
        .iter()
        .any(|e| text(e).contains("failed")));
}

fn javac_here() -> bool {
    std::process::Command::new("javac")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// One big send read by a receive that asks for more than it gets: the
/// note says the rest comes later. (Whether the first receive gets it all
/// depends on the kernel; the note must follow what happened.)
#[test]
fn a_send_split_over_receives_is_said_only_when_it_was() {
    let dir = Scratch::new("split");
    let program = dir.write(
        "split.py",
        r#"
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
c = socket.create_connection(s.getsockname())
a, _ = s.accept()
sent = c.send(b"x" * 300000)
got = 0
while got < sent:
    got += len(a.recv(1000000))
print(sent, got)
c.close(); a.close(); s.close()
"#,
    );
    let out = trace(&[format!("python3 -u {program}")], &["--packets", "off"]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let events = out.events();
    let send = events
        .iter()
        .find(|e| e["kind"] == "syscall" && e["call"] == "sendto")
        .and_then(|e| e["ret"].as_i64())
        .expect("the send");
    let first_recv = events
        .iter()
        .find(|e| e["kind"] == "syscall" && e["call"] == "recvfrom" && e["ok"] == true)
        .and_then(|e| e["ret"].as_i64())
        .expect("a receive");
    let said = notes(&events, "message-boundaries");
    if first_recv < send {
        assert_eq!(said.len(), 1, "split: {first_recv} of {send}");
        let t = text(said[0]);
        assert!(
            t.contains(&format!("{first_recv} bytes of a send() of {send} bytes")),
            "{t}"
        );
    } else {
        assert!(said.is_empty(), "it came whole: {said:?}");
    }
}

/// A forking server: the parent accepts, forks, and closes its copy of
/// the connection; the child serves it. The parent's close() frees only
/// its descriptor (nothing is sent), the child's use of the inherited
/// socket is said, and the FIN goes only with the child's close().
#[test]
fn a_forked_copy_keeps_the_socket_open_until_the_last_close() {
    let dir = Scratch::new("fork");
    let server = dir.write(
        "server.py",
        r#"
import socket, os, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
c, _ = s.accept()
pid = os.fork()
if pid == 0:
    s.close()
    c.sendall(c.recv(100).upper()); c.close(); os._exit(0)
c.close()
os.waitpid(pid, 0); s.close()
"#,
    );
    let client = dir.write(
        "client.py",
        r#"
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
c.sendall(b"hello")
print(c.recv(100))
c.close()
"#,
    );
    let events = python_pair(&server, &client);
    let closes: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["kind"] == "syscall"
                && e["call"] == "close"
                && e["side"] == "server"
                && e["conn"] == "C1"
        })
        .collect();
    assert_eq!(closes.len(), 2, "the parent's and the child's: {closes:?}");
    let (first, last) = (closes[0], closes[1]);
    assert_ne!(first["pid"], last["pid"], "two processes");
    assert!(
        first["why"]
            .as_str()
            .unwrap_or("")
            .contains("only this descriptor"),
        "{first}"
    );
    assert!(
        !last["why"]
            .as_str()
            .unwrap_or("")
            .contains("only this descriptor"),
        "{last}"
    );
    // Parent and child close in either order (whichever runs first); the
    // child is the one that did not accept().
    let parent = events
        .iter()
        .find(|e| e["kind"] == "syscall" && e["call"] == "accept4")
        .expect("the accept")["pid"]
        .clone();
    let child = [first, last]
        .into_iter()
        .map(|c| &c["pid"])
        .find(|pid| **pid != parent)
        .expect("the child's close");
    let fork = notes(&events, "fork");
    assert!(
        fork.iter()
            .any(|n| n["process"] == *child && n["conn"] == "C1"),
        "the child's use of C1: {fork:?}"
    );
    assert!(
        notes(&events, "thread").is_empty(),
        "a process per client, not a thread"
    );
    if capture_allowed() {
        let fin = events
            .iter()
            .find(|e| {
                e["kind"] == "packet"
                    && e["side"] == "server"
                    && e["flags"].as_str().unwrap_or("").contains("FIN")
            })
            .expect("the server's FIN");
        let t = |e: &Value| e["t"].as_f64().unwrap();
        assert!(t(fin) > t(first), "no FIN at the parent's close");
    }
    assert!(notes(&events, "output")
        .iter()
        .any(|e| text(e).contains("HELLO")));
}

/// `--wait-listen`: a server that ends before it listens (here, it fails
/// at once) leaves its clients unstarted, and says so; the trace ends
/// with the server's status.
#[test]
fn clients_wait_for_a_server_that_never_listens_and_are_not_started() {
    let dir = Scratch::new("nolisten");
    let server = dir.write("server.py", "import sys\nsys.exit(4)\n");
    let client = dir.write("client.py", "print('should not run')\n");
    let out = trace(
        &[
            format!("python3 -u {server}"),
            format!("python3 -u {client}"),
        ],
        &[],
    );
    assert_eq!(out.code(), 4, "{}", out.stderr);
    let events = out.events();
    let started: Vec<&Value> = notes(&events, "started");
    assert_eq!(started.len(), 1, "only S: {started:?}");
    assert_eq!(started[0]["program"], "S");
    let said = notes(&events, "not-started");
    assert_eq!(said.len(), 1);
    assert_eq!(said[0]["programs"], "C1");
    assert!(notes(&events, "output").is_empty());
}
