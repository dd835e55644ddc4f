//! `--framing raw|line|utf` with the real binary on loopback: messages cut
//! out of the stream and narrated, Java's writeUTF/readUTF spoken byte for
//! byte with a peer none of us wrote (a Python script that plays the Java
//! side with `socket` and `struct` alone), broken frames survived, and
//! memory kept bounded.

mod common;
use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;

/// The Java side, in Python: `write_utf` is DataOutputStream.writeUTF and
/// `read_utf` is DataInputStream.readUTF (readFully of 2 bytes, then of
/// that many), for text that modified UTF-8 writes like UTF-8.
const JAVA_IN_PYTHON: &str = r#"
import socket, struct

def read_exact(s, n):
    data = b''
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise EOFError('the stream ended after %d of %d bytes' % (len(data), n))
        data += chunk
    return data

def write_utf(s, body):
    s.sendall(struct.pack('>H', len(body)) + body)

def read_utf(s):
    (n,) = struct.unpack('>H', read_exact(s, 2))
    return read_exact(s, n)
"#;

/// `python3 -c SCRIPT`, its stdout read line by line.
fn python(script: &str) -> Running {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(format!("{JAVA_IN_PYTHON}\n{script}"));
    Running::start(cmd)
}

fn port_of(addr: &str) -> &str {
    addr.rsplit(':').next().expect("ADDR:PORT")
}

/// A std TcpStream to `addr` whose reads and writes give up after PATIENCE.
fn raw_client(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to sockdemo");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Sends `bytes`, ends our side (FIN) and returns everything echoed until the server closes.
fn send_and_collect(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut stream = raw_client(addr);
    stream.write_all(bytes).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut echoed = Vec::new();
    stream.read_to_end(&mut echoed).expect("the server closes");
    echoed
}

fn is_frame_note(e: &Value, side: &str) -> bool {
    e["kind"] == "note" && e["topic"] == "frame" && e["side"] == side
}

/// The messages the `frame` notes of `side` decoded, in order.
fn decoded(events: &[Value], side: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| is_frame_note(e, side) && e.get("message").is_some())
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

fn parse_seen(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A Python client sends writeUTF frames (Chinese, an accent, a NUL written
/// the Java way as C0 80, an empty string, two frames in one send, a frame
/// in two sends) to `listen --framing utf`, reads them back with readUTF,
/// and gets every one back byte for byte; the server decoded each.
#[test]
fn a_python_client_gets_its_utf_frames_back_byte_for_byte() {
    let (server, addr) = json_server(&["--framing", "utf"]);
    let port = port_of(&addr);
    let client = python(&format!(
        r#"
s = socket.create_connection(('127.0.0.1', {port}), timeout=20)
messages = [b'hello', '你好, é'.encode('utf-8'), b'a\xc0\x80b', b'', b'one', b'two', b'split']
for m in messages[:4]:
    write_utf(s, m)
s.sendall(struct.pack('>H', 3) + b'one' + struct.pack('>H', 3) + b'two')
frame = struct.pack('>H', 5) + b'split'
s.sendall(frame[:3])
s.sendall(frame[3:])
for m in messages:
    got = read_utf(s)
    print('sent', m.hex(), 'got', got.hex(), flush=True)
s.shutdown(socket.SHUT_WR)
print('end', len(s.recv(1)), flush=True)
s.close()
"#
    ));
    let (status, lines, stderr) = client.finish();
    assert!(status.success(), "python failed: {stderr}\n{lines:?}");
    assert_eq!(lines.len(), 8, "{lines:?}");
    for line in &lines[..7] {
        let words: Vec<&str> = line.split(' ').collect();
        assert_eq!(words[0], "sent");
        assert_eq!(
            words[1], words[3],
            "the echo differs from what was sent: {line}"
        );
    }
    assert_eq!(lines[7], "end 0", "the server closes after our FIN");

    let (status, seen, _) = server.terminate();
    assert!(status.success());
    let events = parse_seen(&seen);
    assert_eq!(
        decoded(&events, "server"),
        ["hello", "你好, é", "a\\0b", "", "one", "two", "split"],
        "the server narrates every frame it decoded"
    );
    let chinese = events
        .iter()
        .find(|e| is_frame_note(e, "server") && e["message"] == "你好, é")
        .unwrap();
    assert_eq!(chinese["length"], 10);
    assert_eq!(
        chinese["text"], "readUTF: 0x000a = 10 bytes → \"你好, é\"",
        "{chinese}"
    );
    assert!(
        of_kind(&events, "error").is_empty(),
        "no frame was broken: {events:?}"
    );
}

/// A Python server reads a frame as readUTF does and answers with a frame;
/// `connect --framing utf --send héllo` sends one writeUTF frame, waits for
/// the one reply frame and shows it decoded.
#[test]
fn connect_talks_to_a_python_server_with_write_utf() {
    let mut server = python(
        r#"
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.bind(('127.0.0.1', 0))
srv.listen(1)
srv.settimeout(20)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
conn.settimeout(20)
text = read_utf(conn).decode('utf-8')
print('read', text.encode('utf-8').hex(), flush=True)
write_utf(conn, ('echo: ' + text + ' 你好').encode('utf-8'))
while conn.recv(4096):
    pass
conn.close()
srv.close()
print('done', flush=True)
"#,
    );
    let port = server.wait_line("the Python server's port", |l| {
        !l.is_empty() && l.chars().all(|c| c.is_ascii_digit())
    });
    let out = run(
        sockdemo(&[
            "connect",
            "--framing",
            "utf",
            &format!("127.0.0.1:{port}"),
            "--send",
            "héllo",
            "--json",
            "--packets",
            "off",
        ]),
        b"",
    );
    assert_eq!(out.code(), 0, "{}\n{}", out.stdout, out.stderr);
    let events = out.events();
    let sent = events
        .iter()
        .find(|e| e["kind"] == "data" && e["dir"] == "out")
        .expect("a data event out");
    assert_eq!(sent["bytes"], 8, "2 bytes of length + 6 of héllo");
    assert_eq!(sent["text"], "\\0\\x06héllo");
    assert_eq!(decoded(&events, "client"), ["echo: héllo 你好"]);
    assert!(
        !events.iter().any(|e| e["topic"] == "no-reply"),
        "the reply frame ended the wait: {}",
        out.stdout
    );

    let (status, lines, stderr) = server.finish();
    assert!(status.success(), "python failed: {stderr}");
    assert!(
        lines.contains(&format!("read {}", hex(b"h\xc3\xa9llo"))),
        "{lines:?}"
    );
    assert_eq!(lines.last().map(String::as_str), Some("done"));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Broken frames: a length longer than what comes before the client
/// closes, bytes that are not UTF-8, 65535 bytes announced and none sent,
/// half a length. Each gets a `frame` error, nothing broken is echoed, the
/// good frame after a bad one is, and the next client has a clean round trip.
#[test]
fn broken_frames_are_reported_and_the_server_goes_on() {
    let (mut server, addr) = json_server(&["--framing", "utf"]);
    let frame_error = |server: &mut Running, conn: &str, words: &str| -> Value {
        server.wait_event(words, |e| {
            e["kind"] == "error" && e["code"] == "frame" && e["conn"] == conn
        })
    };

    assert_eq!(send_and_collect(&addr, b"\x00\x10abc"), b"");
    let e = frame_error(&mut server, "C1", "the short frame");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("the stream ended after 3 of 16 announced bytes"),
        "{e}"
    );

    assert_eq!(
        send_and_collect(&addr, b"\x00\x01\xff\x00\x02ok"),
        b"\x00\x02ok",
        "the bad frame is skipped, the good one after it echoed"
    );
    let e = frame_error(&mut server, "C2", "the frame that is not UTF-8");
    assert!(e["error"].as_str().unwrap().contains("UTF-8"), "{e}");
    server.wait_event("the good frame after it", |e| {
        is_frame_note(e, "server") && e["conn"] == "C2" && e["message"] == "ok"
    });

    assert_eq!(send_and_collect(&addr, b"\xff\xff"), b"");
    let e = frame_error(&mut server, "C3", "65535 bytes announced, none sent");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("the stream ended after 0 of 65535 announced bytes"),
        "{e}"
    );

    assert_eq!(send_and_collect(&addr, b"\x00"), b"");
    let e = frame_error(&mut server, "C4", "half a length");
    assert!(
        e["error"].as_str().unwrap().contains("2-byte length"),
        "{e}"
    );

    // writeUTFBytes (a line, no length) read by readUTF: the hint says so.
    assert_eq!(send_and_collect(&addr, b"hello\n"), b"");
    let e = frame_error(&mut server, "C5", "a line sent to a utf server");
    assert!(e["text"].as_str().unwrap().contains("\"he\""), "{e}");

    let out = run(
        sockdemo(&[
            "connect",
            "--framing",
            "utf",
            &addr,
            "--send",
            "après",
            "--send",
            "encore",
            "--json",
        ]),
        b"",
    );
    assert_eq!(out.code(), 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(decoded(&out.events(), "client"), ["après", "encore"]);

    let (status, seen, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let events = parse_seen(&seen);
    let summary = events.iter().find(|e| e["topic"] == "summary").unwrap();
    assert_eq!(summary["clients"], 6, "{summary}");
}

/// Line framing: each line is narrated and echoed whole; a 100 KiB line
/// without a newline goes back in pieces before its newline comes (so the
/// server holds at most 64 KiB of it), the rest at the end of the stream
/// is reported, and the server keeps serving.
#[test]
fn line_framing_keeps_a_long_line_bounded() {
    let (mut server, addr) = json_server(&["--framing", "line"]);
    let long = vec![b'x'; 100 * 1024];

    let mut stream = raw_client(&addr);
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        let long = long.clone();
        std::thread::spawn(move || stream.write_all(&long).unwrap())
    };
    // No newline has been sent, yet the first 64 KiB come back.
    let mut first = vec![0u8; 64 * 1024];
    stream
        .read_exact(&mut first)
        .expect("the first piece is echoed before any newline");
    assert!(first.iter().all(|&b| b == b'x'));
    writer.join().unwrap();
    server.wait_event("the note about the long line", |e| {
        is_frame_note(e, "server")
            && e["text"]
                .as_str()
                .unwrap()
                .contains("no newline in the first 65536 bytes")
    });
    stream.write_all(b"\nnext\n").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert_eq!(rest.len(), long.len() - first.len() + 6);
    assert!(rest.ends_with(b"x\nnext\n"));
    server.wait_event("the end of the long line", |e| {
        is_frame_note(e, "server") && e["text"].as_str().unwrap().contains("102401 bytes in all")
    });
    server.wait_event("the next line", |e| {
        is_frame_note(e, "server") && e["message"] == "next\\n"
    });

    // A long line that never ends: echoed, and reported at the end.
    let echoed = send_and_collect(&addr, &long);
    assert_eq!(echoed.len(), long.len());
    server.wait_event("the unfinished line", |e| {
        is_frame_note(e, "server")
            && e["conn"] == "C2"
            && e["text"]
                .as_str()
                .unwrap()
                .contains("102400 bytes without a newline")
    });

    let out = run(sockdemo(&["connect", &addr, "--send", "hi", "--json"]), b"");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    server.wait_event("the clean round trip", |e| {
        is_frame_note(e, "server") && e["conn"] == "C3" && e["message"] == "hi\\n"
    });
    let (status, _, stderr) = server.terminate();
    assert!(status.success(), "{stderr}");
}

/// `connect --framing raw --send hello` sends exactly "hello", no newline
/// added, and shows the echo; waiting ends when as many bytes came back.
#[test]
fn raw_framing_sends_the_text_as_given() {
    let (server, addr) = json_server(&[]);
    let out = run(
        sockdemo(&[
            "connect",
            "--framing",
            "raw",
            &addr,
            "--send",
            "hello",
            "--json",
        ]),
        b"",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let events = out.events();
    let data: Vec<(&str, &str)> = of_kind(&events, "data")
        .iter()
        .map(|e| (e["dir"].as_str().unwrap(), e["text"].as_str().unwrap()))
        .collect();
    assert_eq!(data, [("out", "hello"), ("in", "hello")]);
    assert!(!events.iter().any(|e| e["topic"] == "no-reply"));
    drop(server.terminate());
}

/// A --send over 65535 bytes cannot be one writeUTF frame: a usage error
/// before any socket is made.
#[test]
fn a_text_too_long_for_write_utf_is_a_usage_error() {
    let text = "é".repeat(40_000);
    let out = run(
        sockdemo(&[
            "connect",
            "--framing",
            "utf",
            "127.0.0.1:9",
            "--send",
            &text,
        ]),
        b"",
    );
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(out.stderr.contains("80000 bytes"), "{}", out.stderr);
    assert!(!out.stdout.contains("socket("), "{}", out.stdout);
}
