//! Output trouble never takes the sockets down, and the exit status says
//! how a run ended whatever happened to stdout or stderr: 0 after a run
//! that ended by itself, 130 after SIGINT, 143 after SIGTERM, 1 after an
//! error, 2 for a usage error (docs/teachers.md, "Exit status").

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A pipe whose reader is already gone (`| head -1` once head has left):
/// every write to it fails with EPIPE.
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    writer
}

/// Waits for the child's exit, at most `limit`; kills it and fails after.
fn exit_within(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sockdemo did not exit within {limit:?}");
        }
        // A child's exit has no event to wait on here; this only paces the poll.
        thread::park_timeout(Duration::from_millis(5));
    }
}

/// Where a run's stdout and stderr go in the exit-status tests.
#[derive(Clone, Copy, Debug)]
enum Outputs {
    /// Both to a pipe whose reader is already gone.
    ClosedPipe,
    /// stdout to a closed pipe, stderr read (to see that nothing panicked).
    StdoutClosed,
    /// stderr not open at all (`2>&-`), stdout read.
    #[cfg(unix)]
    NoStderr,
}

impl Outputs {
    fn all() -> Vec<Outputs> {
        vec![
            Outputs::ClosedPipe,
            Outputs::StdoutClosed,
            #[cfg(unix)]
            Outputs::NoStderr,
        ]
    }

    /// Sets up `cmd`'s stdout and stderr.
    fn apply(self, cmd: &mut Command) {
        cmd.stdin(Stdio::null());
        match self {
            Outputs::ClosedPipe => {
                let pipe = closed_pipe();
                cmd.stdout(pipe.try_clone().unwrap()).stderr(pipe);
            }
            Outputs::StdoutClosed => {
                cmd.stdout(closed_pipe()).stderr(Stdio::piped());
            }
            #[cfg(unix)]
            Outputs::NoStderr => {
                use std::os::unix::process::CommandExt;
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
                // SAFETY: close(2) is async-signal-safe, as pre_exec requires.
                unsafe {
                    cmd.pre_exec(|| {
                        libc::close(2);
                        Ok(())
                    });
                }
            }
        }
    }
}

/// Runs `args` to its end with `outputs`; returns its exit code and stderr
/// (empty where stderr is not read).
fn status_of(args: &[&str], outputs: Outputs) -> (Option<i32>, String) {
    let mut cmd = sockdemo(args);
    outputs.apply(&mut cmd);
    let mut child = cmd.spawn().expect("spawn sockdemo");
    let stderr = child.stderr.take().map(|mut e| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = e.read_to_string(&mut text);
            text
        })
    });
    let status = exit_within(&mut child, PATIENCE);
    let stderr = stderr.map(|t| t.join().unwrap()).unwrap_or_default();
    assert!(
        !stderr.contains("panicked") && !stderr.contains("internal error"),
        "{args:?} with {outputs:?}: {stderr}"
    );
    (status.code(), stderr)
}

/// A run that ends by itself exits 0, even with nowhere to write.
#[test]
fn a_finished_tour_exits_0() {
    for outputs in Outputs::all() {
        let (code, stderr) = status_of(&["tour", "--pace", "0"], outputs);
        assert_eq!(code, Some(0), "tour with {outputs:?}: {stderr}");
    }
}

/// A failed command exits 1: a refused connect, with its lesson on a
/// stderr that may not be there.
#[test]
fn a_refused_connect_exits_1() {
    // Bound but not listening: nobody else can take the port while we
    // hold it, and a SYN to it is answered with an RST.
    let port = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    port.bind(&any.into()).unwrap();
    let addr = port.local_addr().unwrap().as_socket().unwrap().to_string();
    for outputs in Outputs::all() {
        let (code, stderr) = status_of(&["connect", &addr, "--send", "x"], outputs);
        assert_eq!(code, Some(1), "connect with {outputs:?}: {stderr}");
    }
}

/// A usage error exits 2, whether clap or sockdemo finds it.
#[test]
fn usage_errors_exit_2() {
    for args in [
        &["conect"][..],
        &["listen", "--port", "not-a-port"],
        &["explain", "handshak"],
        &["explain", "handshak", "--json"],
    ] {
        for outputs in Outputs::all() {
            let (code, stderr) = status_of(args, outputs);
            assert_eq!(code, Some(2), "{args:?} with {outputs:?}: {stderr}");
        }
    }
}

/// `sockdemo explain handshak 2>&1 | head -1`: head reads the first line
/// and leaves; the rest of the list and the error meet a closed pipe.
/// Still 2, never 134 (an abort from a panic while panicking).
#[test]
fn explain_typo_through_head_exits_2() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    let mut child = sockdemo(&["explain", "handshak"])
        .stdin(Stdio::null())
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .spawn()
        .expect("spawn sockdemo");
    let mut first = String::new();
    BufReader::new(reader).read_line(&mut first).unwrap();
    // The reader is dropped here, as head exits after one line.
    let status = exit_within(&mut child, PATIENCE);
    assert_eq!(status.code(), Some(2), "first line: {first}");
}

/// A server's stop: by a signal, with stdout closed or stalled (Unix: kill(2)).
#[cfg(unix)]
mod servers {
    use super::*;
    use std::io::Write;
    use std::net::TcpStream;
    use std::sync::mpsc::{self, Receiver};

    /// The lines of `r`, as they come, through a channel.
    fn lines_of(r: impl Read + Send + 'static) -> Receiver<String> {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    }

    /// Waits for a line that satisfies `wanted`, keeping every line seen in `seen`.
    fn wait_for(
        lines: &Receiver<String>,
        seen: &mut Vec<String>,
        what: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no {what}; saw:\n{}", seen.join("\n")),
            }
        }
    }

    /// Every line still to come, until the writer closes its end.
    fn rest_of(lines: &Receiver<String>, seen: &mut Vec<String>) {
        let deadline = Instant::now() + PATIENCE;
        while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            seen.push(line);
        }
    }

    /// Sends `message` and checks that exactly the same bytes come back.
    fn echoes(addr: &str, message: &[u8]) {
        let mut client = TcpStream::connect(addr).expect("connect to the server");
        client.set_read_timeout(Some(PATIENCE)).unwrap();
        client.write_all(message).expect("send");
        let mut back = vec![0u8; message.len()];
        client.read_exact(&mut back).expect("the echo");
        assert_eq!(back, message, "the echo is byte-exact");
    }

    /// Reads `r` line by line until a line satisfies `wanted` (within
    /// [`PATIENCE`]); returns that line and the reader, still open, so the
    /// caller decides whether it goes on reading, stops reading, or closes it.
    fn read_until<R: Read + Send + 'static>(
        r: R,
        what: &str,
        wanted: impl Fn(&str) -> bool + Send + 'static,
    ) -> (String, BufReader<R>) {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(r);
            let mut seen = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    let _ = tx.send(Err(seen));
                    return;
                }
                if wanted(&line) {
                    let _ = tx.send(Ok((line, reader)));
                    return;
                }
                seen.push_str(&line);
            }
        });
        match rx.recv_timeout(PATIENCE) {
            Ok(Ok(found)) => found,
            Ok(Err(seen)) => panic!("output ended before {what}; saw:\n{seen}"),
            Err(_) => panic!("no {what} within {PATIENCE:?}"),
        }
    }

    /// For `listen --json`: the address of its listen() event, and its stdout.
    fn listen_addr<R: Read + Send + 'static>(stdout: R) -> (String, BufReader<R>) {
        let (line, reader) = read_until(stdout, "the listen() event", |l| {
            l.contains("\"call\":\"listen\"") && l.contains("\"ok\":true")
        });
        let ev: serde_json::Value = serde_json::from_str(&line).unwrap();
        let addr = ev["local"].as_str().expect("local address").to_string();
        (addr, reader)
    }

    fn signal(child: &Child, signal: i32) {
        // SAFETY: kill(2) with our own child's pid, still running (not yet waited for).
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
    }

    /// Bytes that a line-minded echo would mangle: the echo must return them as they are.
    const ODD_BYTES: &[u8] = b"caf\xc3\xa9 \x00\x01\xff\r\nno newline at the end";

    /// `listen --json | jq …`, and jq exits: the server keeps serving, says
    /// once on stderr that narration has stopped, and stops only on SIGTERM,
    /// with exit status 143 and its summary on stderr.
    #[test]
    fn a_closed_stdout_does_not_stop_the_server() {
        let mut child = sockdemo(&["listen", "--port", "0", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sockdemo");
        let stderr = lines_of(child.stderr.take().unwrap());
        let mut err = Vec::new();
        let (addr, stdout) = listen_addr(child.stdout.take().unwrap());
        // The reader goes away, as jq would.
        drop(stdout);

        // The next event the server writes meets the closed pipe; the client is
        // served all the same.
        echoes(&addr, ODD_BYTES);
        wait_for(&stderr, &mut err, "the 'output closed' line", |l| {
            l.contains("output closed")
        });
        // And it goes on serving after it has noticed.
        echoes(&addr, b"still here\n");

        signal(&child, libc::SIGTERM);
        let status = exit_within(&mut child, PATIENCE);
        rest_of(&stderr, &mut err);
        let all = err.join("\n");
        assert_eq!(status.code(), Some(143), "SIGTERM: 128 + 15\n{all}");
        let closed: Vec<_> = err.iter().filter(|l| l.contains("output closed")).collect();
        assert_eq!(closed.len(), 1, "one line, once:\n{all}");
        assert!(
            closed[0].contains("Broken pipe") && closed[0].contains("the server goes on"),
            "{all}"
        );
        assert!(
            all.contains("sockdemo: summary: served 2 clients"),
            "the summary goes to stderr:\n{all}"
        );
        assert!(
            !all.contains("panicked") && !all.contains("internal error"),
            "{all}"
        );
    }

    /// `listen | a reader that never reads`: the pipe fills (64 KiB), the
    /// writer blocks in write(2) for good; clients are still served, and one
    /// SIGTERM stops the server within a few seconds (its grace period, then
    /// `render::output::STALLED_AFTER` for stdout), with 143 and the summary on stderr.
    #[test]
    fn a_stalled_stdout_does_not_hold_up_a_stop() {
        let mut child = sockdemo(&["listen", "--port", "0", "--color", "never"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sockdemo");
        let stderr = lines_of(child.stderr.take().unwrap());
        // Read up to the ready line, then never again, but keep the pipe open.
        let (ready, stdout) = read_until(child.stdout.take().unwrap(), "the ready line", |l| {
            l.contains("listening on ")
        });
        let addr = ready
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split(". ").next())
            .expect("the address in the ready line")
            .to_string();

        // Each round trip is a few lines of narration, previews included:
        // 8 clients × 60 round trips of 200 bytes is far more than 64 KiB.
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let addr = addr.clone();
                thread::spawn(move || {
                    let mut client = TcpStream::connect(&addr).unwrap();
                    client.set_read_timeout(Some(PATIENCE)).unwrap();
                    let message = [b'z'; 200];
                    let mut back = [0u8; 200];
                    for _ in 0..60 {
                        client.write_all(&message).unwrap();
                        client
                            .read_exact(&mut back)
                            .expect("echo although nobody reads the server's stdout");
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("a client finished its round trips");
        }
        // stdout has been full for a while now: one more client is served too.
        echoes(&addr, ODD_BYTES);

        let asked = Instant::now();
        signal(&child, libc::SIGTERM);
        let status = exit_within(&mut child, PATIENCE);
        let took = asked.elapsed();
        let mut err = Vec::new();
        rest_of(&stderr, &mut err);
        let all = err.join("\n");
        assert_eq!(status.code(), Some(143), "SIGTERM: 128 + 15\n{all}");
        assert!(
            took < Duration::from_secs(10),
            "one SIGTERM should stop it within the grace period and the wait for stdout: {took:?}"
        );
        assert!(
            all.contains("output stalled"),
            "stdout was given up:\n{all}"
        );
        assert!(
            all.contains("sockdemo: summary: served 9 clients"),
            "the summary goes to stderr:\n{all}"
        );
        assert!(
            !all.contains("panicked") && !all.contains("internal error"),
            "{all}"
        );
        drop(stdout);
    }

    /// Ctrl-C exits 130, SIGTERM 143, SIGHUP 129: 128 + the signal's number,
    /// after a clean stop; also when stdout and stderr are a pipe whose reader
    /// has gone (`2>&1 | head -1`), or when stderr is closed.
    #[test]
    fn a_stop_by_signal_exits_128_plus_its_number() {
        for (sig, code) in [
            (libc::SIGINT, 130),
            (libc::SIGTERM, 143),
            (libc::SIGHUP, 129),
        ] {
            for outputs in ["piped", "head -1", "2>&-"] {
                let mut cmd = sockdemo(&["listen", "--port", "0", "--json"]);
                cmd.stdin(Stdio::null());
                let head = outputs == "head -1";
                let stderr_read = outputs == "piped";
                if head {
                    let (reader, writer) = std::io::pipe().expect("pipe");
                    cmd.stdout(writer.try_clone().unwrap()).stderr(writer);
                    let mut child = cmd.spawn().expect("spawn sockdemo");
                    drop(cmd);
                    stop_with(&mut child, Box::new(reader), sig, code, outputs, None);
                    continue;
                }
                if stderr_read {
                    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
                } else {
                    use std::os::unix::process::CommandExt;
                    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
                    // SAFETY: close(2) is async-signal-safe, as pre_exec requires.
                    unsafe {
                        cmd.pre_exec(|| {
                            libc::close(2);
                            Ok(())
                        });
                    }
                }
                let mut child = cmd.spawn().expect("spawn sockdemo");
                let stdout = child.stdout.take().unwrap();
                let stderr = child.stderr.take();
                stop_with(&mut child, Box::new(stdout), sig, code, outputs, stderr);
            }
        }
    }

    /// Reads the listen() event from `stdout` (then drops it for `head -1`),
    /// checks that the server serves (so its signal handler is in place), sends
    /// `sig`, and checks the exit status.
    fn stop_with(
        child: &mut Child,
        stdout: Box<dyn Read + Send>,
        sig: i32,
        code: i32,
        outputs: &str,
        stderr: Option<std::process::ChildStderr>,
    ) {
        let (addr, stdout) = listen_addr(stdout);
        if outputs == "head -1" {
            drop(stdout);
        } else {
            // Keep reading, so the server's stdout never fills.
            let mut stdout = stdout;
            thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        }
        echoes(&addr, b"ping\n");
        signal(child, sig);
        let status = exit_within(child, PATIENCE);
        let stderr = stderr
            .map(|mut e| {
                let mut text = String::new();
                let _ = e.read_to_string(&mut text);
                text
            })
            .unwrap_or_default();
        assert_eq!(
            status.code(),
            Some(code),
            "signal {sig} with {outputs}: {status:?}\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
