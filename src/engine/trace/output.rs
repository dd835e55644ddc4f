//! The traced program's own output. Its stdout and stderr come through
//! pipes and are shown on the timeline, line by line, marked with the
//! program's tag and escaped like every byte sockdemo shows: so they never
//! tangle with the timeline, and a program cannot send the terminal raw
//! control codes through sockdemo.
//!
//! A pipe is not a terminal: C's stdio and Python buffer their output
//! when it goes to a pipe, and write it in blocks (or at exit). Run
//! `python3 -u`, or flush after printing, to see it line by line.

use super::Program;
use crate::engine::event::Stage;
use crate::engine::evidence::What;
use crate::engine::sink::Sink;
use std::io::Read;
use std::os::fd::AsFd;
use std::sync::mpsc;
use std::time::Duration;

/// The longest line shown whole; longer ones are shown in pieces.
const LINE_MAX: usize = 4096;

/// The threads that read the programs' output: the trace waits for them
/// to reach the end of their pipes before it ends, so that a last line
/// written just before exit is told too.
pub struct Pumps {
    running: Option<mpsc::Sender<()>>,
    ended: mpsc::Receiver<()>,
}

/// How long the trace waits for the pipes to end once every program has
/// ended (a child left running in the background may keep one open).
const LAST_WORDS: Duration = Duration::from_secs(2);

impl Pumps {
    pub fn new() -> Pumps {
        let (running, ended) = mpsc::channel();
        Pumps {
            running: Some(running),
            ended,
        }
    }

    /// Reads a program's stdout and stderr on threads of their own.
    pub fn follow(
        &self,
        sink: &Sink,
        program: &Program,
        pid: u32,
        stdout: std::fs::File,
        stderr: std::fs::File,
    ) {
        for (stream, from) in [("stdout", stdout), ("stderr", stderr)] {
            let (sink, tag) = (sink.clone(), program.tag.clone());
            // Each thread holds a sender: the channel closes when all end.
            let running = self.running.clone();
            let _ = std::thread::Builder::new()
                .name("sockdemo-output".into())
                .spawn(move || {
                    pump(&sink, &tag, pid, stream, from);
                    drop(running);
                });
        }
    }

    /// Waits (at most [`LAST_WORDS`]) for every pipe to reach its end.
    pub fn finish(&mut self) {
        drop(self.running.take());
        // Nothing is ever sent: this returns when the last sender is
        // dropped (every pipe ended), or at the deadline.
        let _ = self.ended.recv_timeout(LAST_WORDS);
    }
}

/// Reads until the pipe closes; tells each complete line, and whatever
/// is left when the program has written nothing more for a moment (a
/// prompt without a newline). A traced program writes slowly (each write
/// stops it), so "a moment" is not one read.
fn pump(sink: &Sink, tag: &str, pid: u32, stream: &'static str, mut from: impl Read + AsFd) {
    let mut buf = vec![0u8; LINE_MAX];
    let mut line: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        line.extend_from_slice(&buf[..n]);
        while let Some(end) = line
            .iter()
            .position(|b| *b == b'\n')
            .or_else(|| (line.len() >= LINE_MAX).then_some(LINE_MAX))
        {
            let rest = line.split_off((end + 1).min(line.len()));
            tell(sink, tag, pid, stream, &line);
            line = rest;
        }
        if !line.is_empty() && !more_soon(&from) {
            tell(sink, tag, pid, stream, &std::mem::take(&mut line));
        }
    }
    if !line.is_empty() {
        tell(sink, tag, pid, stream, &line);
    }
}

/// Does the pipe have more to read within a moment (200 ms)?
fn more_soon(from: &impl AsFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(from.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::from(200u16)), Ok(n) if n > 0)
}

fn tell(sink: &Sink, tag: &str, pid: u32, stream: &'static str, bytes: &[u8]) {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    // Text to be read as it is, as a lesson's is: only what the terminal
    // would obey or hide is escaped (not the program's own backslashes).
    let text = crate::sanitize::text(&String::from_utf8_lossy(bytes)).into_owned();
    let mut facts = serde_json::Map::new();
    facts.insert("program".into(), tag.into());
    facts.insert("pid".into(), pid.into());
    facts.insert("stream".into(), stream.into());
    let who = super::program_who(tag);
    let mark = if stream == "stderr" { "!" } else { "" };
    sink.record(
        who,
        What::Note {
            stage: Stage::Transfer,
            topic: "output",
            text: format!("{tag}{mark}› {text}"),
            facts,
        },
    );
}
