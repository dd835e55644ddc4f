//! Renderers turn events into text. They never touch a socket.
//!
//! Events arrive from many socket threads through one channel, and a single
//! renderer thread writes them in order, so lines never interleave.

pub mod diagram;
pub mod human;
pub mod json;
pub mod markdown;
pub mod watch;

use crate::engine::event::{Body, Event, Proto, Side, Stage};
use crate::engine::evidence::{What, Who};
use crate::engine::recorder::Recorder;
use crate::engine::sink::Sink;
use crate::engine::timeline::{Outlet, Timeline};
use human::{Human, Layout};
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// How many batches of events (each at most `BATCH_MAX`, 512) may wait for
/// a slow terminal before new ones are dropped (and counted). No socket
/// thread ever waits for the terminal.
pub const QUEUE_CAPACITY: usize = 32;

/// `--color`: auto means colour only on a terminal, and never with NO_COLOR
/// set or TERM=dumb (https://no-color.org).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// Output settings, resolved once from the flags and the environment.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub json: bool,
    pub color: bool,
    pub width: usize,
    /// Is stdout a terminal? (The tour paces itself only for people.)
    pub terminal: bool,
}

impl Settings {
    pub fn resolve(json: bool, choice: ColorChoice) -> Settings {
        let terminal = io::stdout().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        let color = !json
            && match choice {
                ColorChoice::Always => true,
                ColorChoice::Never => false,
                ColorChoice::Auto => terminal && !no_color && !dumb,
            };
        let width = terminal_size::terminal_size()
            .map(|(w, _)| w.0 as usize)
            .filter(|_| terminal)
            .unwrap_or(100);
        Settings {
            json,
            color,
            width,
            terminal,
        }
    }
}

/// The timeline and renderer threads, and how to finish them.
pub struct Renderer {
    timeline: Timeline,
    done: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
    sink: Sink,
    side: Side,
    /// The protocol of the final error event (TCP unless told otherwise).
    proto: Proto,
}

/// Starts the timeline and renderer threads; the returned sink feeds them.
pub fn start(
    settings: Settings,
    layout: Layout,
    side: Side,
    tap: Option<Arc<Recorder>>,
) -> (Sink, Renderer) {
    colored::control::set_override(settings.color);
    let (sink, evidence) = Sink::new();
    let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
    let dropped = Arc::new(AtomicU64::new(0));
    let timeline = Timeline::start(
        &sink,
        evidence,
        Outlet {
            tx,
            tap,
            dropped: dropped.clone(),
        },
    );
    let done = Arc::new(AtomicBool::new(false));
    let handle = {
        let done = done.clone();
        thread::Builder::new()
            .name("sockdemo-render".into())
            .spawn(move || render_loop(rx, settings, layout, side, &done, &dropped))
            .expect("cannot start the renderer thread")
    };
    let keep = sink.clone();
    (
        sink,
        Renderer {
            timeline,
            done,
            handle: Some(handle),
            sink: keep,
            side,
            proto: Proto::Tcp,
        },
    )
}

impl Renderer {
    /// For a program that speaks UDP: its final error event says so.
    pub fn with_proto(mut self, proto: Proto) -> Renderer {
        self.proto = proto;
        self
    }

    /// Writes what is still queued and stops. A failed command's error is
    /// added to the JSON stream first, so graders see it too.
    pub fn finish<T>(mut self, json: bool, result: anyhow::Result<T>) -> anyhow::Result<T> {
        if let Err(e) = &result {
            if json {
                let (code, error, text) = match crate::engine::errors::lesson_of(e) {
                    Some(lesson) => (lesson.code, lesson.summary, lesson.explanation),
                    None => ("other", format!("{e:#}"), String::new()),
                };
                let who = Who {
                    side: self.side,
                    proto: self.proto,
                    socket: None,
                    fd: None,
                    conn: None,
                    local: None,
                    remote: None,
                };
                let what = What::Error {
                    stage: Stage::Close,
                    code,
                    error,
                    text,
                };
                self.sink.record(who, what);
            }
        }
        self.stop();
        result
    }

    fn stop(&mut self) {
        self.timeline.finish();
        self.done.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Renderer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn render_loop(
    rx: Receiver<Vec<Event>>,
    settings: Settings,
    layout: Layout,
    side: Side,
    done: &AtomicBool,
    dropped: &AtomicU64,
) {
    let mut human = Human::new(layout, settings.width);
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    if !settings.json {
        if let Some(header) = human.header() {
            write_or_exit(&mut out, header.as_bytes());
        }
    }
    let mut reported = 0u64;
    // The time of the last event written: a note about drops carries it,
    // so time never goes back in the output.
    let last_t = std::cell::Cell::new(0.0f64);
    let mut render = |ev: &Event, out: &mut io::BufWriter<io::StdoutLock>| {
        last_t.set(last_t.get().max(ev.t));
        let text = if settings.json {
            json::line(ev)
        } else {
            human.render(ev)
        };
        write_or_exit(out, text.as_bytes());
    };
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(first) => {
                let mut next = Some(first);
                while let Some(batch) = next {
                    for ev in &batch {
                        render(ev, &mut out);
                    }
                    // Under a flood the queue may never empty: say what was
                    // lost after each batch, not only at the end.
                    if let Some(note) = drops_note(dropped, side, &mut reported, last_t.get()) {
                        render(&note, &mut out);
                    }
                    next = rx.try_recv().ok();
                }
            }
            Err(RecvTimeoutError::Timeout) if done.load(Ordering::SeqCst) => break,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if let Some(note) = drops_note(dropped, side, &mut reported, last_t.get()) {
            render(&note, &mut out);
        }
        if out.flush().is_err() {
            quiet_exit();
        }
    }
    if let Some(note) = drops_note(dropped, side, &mut reported, last_t.get()) {
        render(&note, &mut out);
    }
    if out.flush().is_err() {
        quiet_exit();
    }
}

/// A note for the events dropped since the last one, if any were.
fn drops_note(dropped: &AtomicU64, side: Side, reported: &mut u64, t: f64) -> Option<Event> {
    let now = dropped.load(Ordering::Relaxed);
    if now <= *reported {
        return None;
    }
    let lost = now - *reported;
    *reported = now;
    let mut facts = serde_json::Map::new();
    facts.insert("dropped".into(), lost.into());
    Some(Event {
        t,
        side,
        stage: Stage::Transfer,
        proto: Proto::Tcp,
        local: None,
        remote: None,
        conn: None,
        body: Body::Note {
            topic: "dropped",
            text: crate::t!(
                "{lost} events were not shown: the output could not keep up (the sockets did not wait for it)",
                "有 {lost} 个事件没有显示：输出跟不上（套接字没有为它停下等待）"
            ),
            facts,
        },
    })
}

fn write_or_exit(out: &mut impl Write, bytes: &[u8]) {
    if out.write_all(bytes).is_err() {
        quiet_exit();
    }
}

/// stdout was closed (`sockdemo listen | head`): that is the reader's
/// choice, not an error.
fn quiet_exit() -> ! {
    std::process::exit(0)
}
