//! Where the narration goes: stdout, written by a thread of its own, and
//! stderr when stdout goes away. Output trouble never takes the sockets
//! down.
//!
//! * **A closed stdout** (`sockdemo listen --json | jq …`, and jq exits):
//!   `write()` fails with `EPIPE` (Rust ignores SIGPIPE, so the process is
//!   not killed). The writer says so once on stderr and stops; from then on
//!   the narration is counted and thrown away, and the summary goes to stderr.
//!   The server goes on serving until a signal stops it.
//! * **A stalled stdout** (`sockdemo listen | sleep 1000`, a paused pager):
//!   `write()` blocks, and a thread blocked in `write(2)` cannot be cancelled.
//!   So only the writer thread ever waits for stdout. The renderer hands it
//!   text through a bounded queue and drops (and counts) what does not fit,
//!   as the timeline does, so nothing upstream waits. When the command ends,
//!   the renderer waits for stdout only while it takes bytes (see
//!   [`STALLED_AFTER`] and [`FINISH_MAX`]), then leaves the writer where it
//!   is stuck: the process exits around it, and the summary goes to stderr.

use crate::t;
use crossbeam_channel::{Sender, TrySendError};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How many chunks of text (one per batch of events) may wait for stdout.
/// Beyond that the renderer drops batches and counts them, as it did when
/// it wrote itself: a slow terminal costs narration, never a socket.
const WRITE_QUEUE: usize = 32;

/// Bytes per `write()`: small enough that a slow reader shows progress
/// often (a pipe's `write()` returns only once all its bytes are in), the
/// size std's `BufWriter` writes anyway.
const PIECE: usize = 8 * 1024;

/// At the end of a command, stdout that has taken nothing for this long is
/// stalled: nobody reads it. A terminal or a live pipe takes bytes within
/// milliseconds; two seconds is also what the server gives its clients to
/// finish at stop, so a single Ctrl-C or SIGTERM still ends the run within
/// a few seconds.
pub const STALLED_AFTER: Duration = Duration::from_secs(2);

/// At the end of a command, the longest the renderer waits for stdout, even
/// one that keeps taking bytes (a reader that trickles): a stop must not
/// wait for the whole backlog to crawl through.
pub const FINISH_MAX: Duration = Duration::from_secs(5);

/// Has this process given stdout up (closed, or stalled at the end of a
/// run)? Once it has, a later renderer (a demo after another) does not
/// try again, and the one line on stderr is said only once.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// Writes `line` and a newline to stderr at once, ignoring errors:
/// a closed stderr (`2>&-`, or a pipe whose reader is gone) must never
/// panic or abort, and there is nowhere else to tell.
pub fn to_stderr(line: &str) {
    let _ = io::stderr()
        .lock()
        .write_all(format!("{line}\n").as_bytes());
}

/// Marks stdout as given up; true for the caller that did it first (the
/// one that tells).
fn give_up_stdout() -> bool {
    !STDOUT_GONE.swap(true, Ordering::SeqCst)
}

/// How far the writer has got.
#[derive(Default)]
struct Progress {
    /// Chunks written whole.
    written: u64,
    /// When stdout last took bytes.
    last: Option<Instant>,
    /// The writer thread has ended (all written, or stdout failed).
    ended: bool,
}

#[derive(Default)]
struct Shared {
    progress: Mutex<Progress>,
    changed: Condvar,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut Progress)) {
        let mut p = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut p);
        self.changed.notify_all();
    }
}

/// What became of a chunk handed to [`Stdout::send`].
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Queued for stdout (or held until there is room, if it must not be lost).
    Queued,
    /// The queue was full: dropped, for the caller to count.
    Dropped,
    /// stdout is gone: nothing more is written to it.
    Gone,
}

/// stdout, through the writer thread.
pub struct Stdout {
    tx: Option<Sender<Vec<u8>>>,
    shared: Arc<Shared>,
    handle: Option<thread::JoinHandle<()>>,
    /// Chunks handed to the writer so far.
    sent: u64,
    /// Chunks that must not be dropped, waiting for room in the queue
    /// (everything after them waits or is dropped, so the order holds).
    held: VecDeque<Vec<u8>>,
}

impl Stdout {
    /// Starts the writer; `closed` is the line for stderr should stdout
    /// fail (given the error).
    pub fn start(closed: impl Fn(&io::Error) -> String + Send + 'static) -> Stdout {
        let mut stdout = Stdout {
            tx: None,
            shared: Arc::new(Shared::default()),
            handle: None,
            sent: 0,
            held: VecDeque::new(),
        };
        if STDOUT_GONE.load(Ordering::SeqCst) {
            return stdout;
        }
        let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(WRITE_QUEUE);
        let shared = stdout.shared.clone();
        let writer = thread::Builder::new()
            .name("sockdemo-stdout".into())
            .spawn(move || {
                crate::engine::limits::narration_priority();
                // Held for the thread's life, so that nothing else writes
                // between our lines, and so that the exit of the process
                // does not try to flush a stdout this thread is stuck on
                // (std's exit only *tries* the lock).
                let mut out = io::stdout().lock();
                let failed = rx.iter().find_map(|chunk| {
                    let result = write_chunk(&mut out, &chunk, &shared);
                    shared.update(|p| p.written += u64::from(result.is_ok()));
                    result.err()
                });
                if let Some(e) = failed {
                    if give_up_stdout() {
                        to_stderr(&closed(&e));
                    }
                }
                shared.update(|p| p.ended = true);
            });
        // Without a thread for stdout, narrate nowhere rather than fail the run.
        if let Ok(handle) = writer {
            stdout.tx = Some(tx);
            stdout.handle = Some(handle);
        }
        stdout
    }

    /// Is stdout gone for good?
    pub fn gone(&self) -> bool {
        self.tx.is_none() || STDOUT_GONE.load(Ordering::SeqCst)
    }

    /// Would a chunk that may be dropped be dropped now? (Then the caller
    /// need not draw it.)
    pub fn busy(&self) -> bool {
        !self.held.is_empty() || self.tx.as_ref().is_some_and(|tx| tx.is_full())
    }

    /// Hands `text` to the writer without waiting. A chunk that is
    /// `essential` (the ready line, the summary, the final error) is held
    /// until there is room instead of being dropped. Returns what became of
    /// it, and its number among the chunks queued (see [`Finished::written`]).
    pub fn send(&mut self, text: Vec<u8>, essential: bool) -> (Sent, u64) {
        self.push_held();
        if self.gone() {
            return (Sent::Gone, 0);
        }
        if self.busy() {
            if !essential {
                return (Sent::Dropped, 0);
            }
            self.held.push_back(text);
        } else if let Some(tx) = &self.tx {
            // Only this thread sends, and the queue had room: a failure
            // means the writer has ended (stdout failed).
            if tx.try_send(text).is_err() {
                return (Sent::Gone, 0);
            }
        }
        self.sent += 1;
        (Sent::Queued, self.sent)
    }

    /// Moves held chunks into the queue while it has room.
    fn push_held(&mut self) {
        let Some(tx) = &self.tx else { return };
        while let Some(text) = self.held.pop_front() {
            match tx.try_send(text) {
                Ok(()) => {}
                Err(TrySendError::Full(text)) => {
                    self.held.push_front(text);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.held.clear();
                    return;
                }
            }
        }
    }

    /// At the end of a command: waits for what is queued to reach stdout,
    /// for as long as stdout takes bytes ([`STALLED_AFTER`]) and at most
    /// [`FINISH_MAX`]. Past that, stdout is given up (`gave_up` makes the
    /// line for stderr) and the writer thread is left where it is stuck.
    pub fn finish(mut self, gave_up: impl FnOnce(GaveUp) -> String) -> Finished {
        let start = Instant::now();
        loop {
            self.push_held();
            if self.held.is_empty() {
                // Nothing more will come: the writer ends once it has written all.
                self.tx = None;
            }
            let progress = self
                .shared
                .progress
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let written = progress.written;
            let all = self.held.is_empty() && written >= self.sent;
            if progress.ended || all {
                drop(progress);
                if all {
                    if let Some(handle) = self.handle.take() {
                        let _ = handle.join();
                    }
                }
                return Finished { written };
            }
            let now = Instant::now();
            let quiet = now.duration_since(progress.last.map_or(start, |last| last.max(start)));
            let why = if quiet >= STALLED_AFTER {
                Some(GaveUp::Stalled(quiet))
            } else if now.duration_since(start) >= FINISH_MAX {
                Some(GaveUp::TooSlow(now.duration_since(start)))
            } else {
                None
            };
            if let Some(why) = why {
                drop(progress);
                if give_up_stdout() {
                    to_stderr(&gave_up(why));
                }
                // The writer may be blocked in write(2) for good: leave it.
                // It holds stdout's lock, so the exit does not wait for it.
                return Finished { written };
            }
            // Woken by each piece written; the short timeout also retries
            // the held chunks and reads the clock.
            let _ = self
                .shared
                .changed
                .wait_timeout(progress, Duration::from_millis(20));
        }
    }
}

/// Why stdout was given up at the end of a run.
#[derive(Clone, Copy, Debug)]
pub enum GaveUp {
    /// It took nothing for this long.
    Stalled(Duration),
    /// It still took bytes, but had not taken everything after this long.
    TooSlow(Duration),
}

/// What reached stdout in the end.
#[derive(Clone, Copy, Debug)]
pub struct Finished {
    /// How many of the chunks queued were written whole (they are numbered
    /// from 1 by [`Stdout::send`]).
    pub written: u64,
}

/// Writes one chunk in pieces, noting each piece stdout took.
fn write_chunk(out: &mut impl Write, chunk: &[u8], shared: &Shared) -> io::Result<()> {
    for piece in chunk.chunks(PIECE) {
        out.write_all(piece)?;
        shared.update(|p| p.last = Some(Instant::now()));
    }
    out.flush()
}

/// The line for stderr when stdout fails.
pub fn closed_line(e: &io::Error, serves: bool) -> String {
    if serves {
        t!(
            "sockdemo: output closed ({e}); narration stopped, the server goes on; Ctrl-C or SIGTERM stops it",
            "sockdemo：输出已关闭（{e}）；讲解停止，服务器继续运行；按 Ctrl-C 或发送 SIGTERM 停止它"
        )
    } else {
        t!(
            "sockdemo: output closed ({e}); narration stopped, the run goes on to its end",
            "sockdemo：输出已关闭（{e}）；讲解停止，程序继续运行到结束"
        )
    }
}

/// The line for stderr when stdout is given up at the end of a run.
pub fn gave_up_line(why: GaveUp) -> String {
    match why {
        GaveUp::Stalled(quiet) => {
            let secs = format!("{:.1}", quiet.as_secs_f64());
            t!(
                "sockdemo: output stalled (stdout took nothing for {secs} s); the rest of the narration is dropped",
                "sockdemo：输出卡住了（标准输出 {secs} 秒没有接收任何内容）；其余讲解不再显示"
            )
        }
        GaveUp::TooSlow(waited) => {
            let secs = format!("{:.1}", waited.as_secs_f64());
            t!(
                "sockdemo: output too slow (stdout had not taken everything {secs} s after the end); the rest of the narration is dropped",
                "sockdemo：输出太慢（结束 {secs} 秒后标准输出仍未接收完）；其余讲解不再显示"
            )
        }
    }
}
