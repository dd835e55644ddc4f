//! Renderers turn events into text. They never touch a socket.
//!
//! Events arrive from many socket threads through one channel, and a single
//! renderer thread writes them in order, so lines never interleave.

pub mod diagram;
pub mod human;
pub mod json;
pub mod markdown;
pub mod sanitize;
pub mod watch;

use crate::engine::event::{Body, Event, Proto, Recorder, Side, Sink, Stage, QUEUE_CAPACITY};
use human::{Human, Layout};
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// `--color`: auto means colour only on a terminal, and never with NO_COLOR
/// set or TERM=dumb (https://no-color.org).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
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
    /// How long events wait to be put in time order (packets carry the
    /// kernel's earlier timestamps); zero when nothing needs reordering.
    pub holdback: Duration,
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
            holdback: Duration::ZERO,
        }
    }
}

/// The renderer thread and how to finish it.
pub struct Renderer {
    done: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
    sink: Sink,
    side: Side,
    /// The protocol of the final error event (TCP unless told otherwise).
    proto: Proto,
}

/// Starts the renderer thread; the returned sink feeds it.
pub fn start(
    settings: Settings,
    layout: Layout,
    side: Side,
    tap: Option<Arc<Recorder>>,
) -> (Sink, Renderer) {
    colored::control::set_override(settings.color);
    let (sink, rx) = Sink::new(QUEUE_CAPACITY);
    let sink = match tap {
        Some(tap) => sink.with_tap(tap),
        None => sink,
    };
    let done = Arc::new(AtomicBool::new(false));
    let handle = {
        let (done, sink) = (done.clone(), sink.clone());
        thread::Builder::new()
            .name("sockdemo-render".into())
            .spawn(move || render_loop(rx, settings, layout, side, &done, &sink))
            .expect("cannot start the renderer thread")
    };
    let keep = sink.clone();
    (
        sink,
        Renderer {
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
                let (code, error, text) = match e.downcast_ref::<crate::engine::errors::Lesson>() {
                    Some(lesson) => (
                        lesson.code,
                        lesson.summary.clone(),
                        lesson.explanation.clone(),
                    ),
                    None => ("other", format!("{e:#}"), String::new()),
                };
                self.sink.emit_waiting(Event {
                    t: 0.0,
                    side: self.side,
                    stage: Stage::Close,
                    proto: self.proto,
                    local: None,
                    remote: None,
                    conn: None,
                    body: Body::Error { code, error, text },
                });
            }
        }
        self.stop();
        result
    }

    fn stop(&mut self) {
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
    rx: Receiver<Event>,
    settings: Settings,
    layout: Layout,
    side: Side,
    done: &AtomicBool,
    sink: &Sink,
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
    let render = |ev: &Event, human: &mut Human| {
        if settings.json {
            json::line(ev)
        } else {
            human.render(ev)
        }
    };
    // Events wait here for `holdback` so that they come out in time order.
    let mut waiting: Vec<Event> = Vec::new();
    let release = |waiting: &mut Vec<Event>,
                   all: bool,
                   out: &mut io::BufWriter<io::StdoutLock>,
                   human: &mut Human| {
        if waiting.is_empty() {
            return;
        }
        waiting.sort_by(|a, b| a.t.total_cmp(&b.t));
        let horizon = sink.elapsed() - settings.holdback.as_secs_f64();
        // Never hold more than the queue itself may: a stalled terminal
        // must make events drop (and be counted), not memory grow.
        let over = waiting.len().saturating_sub(QUEUE_CAPACITY);
        let ready = if all {
            waiting.len()
        } else {
            waiting.partition_point(|e| e.t <= horizon).max(over)
        };
        for ev in waiting.drain(..ready) {
            write_or_exit(out, render(&ev, human).as_bytes());
        }
    };
    let reorder = !settings.holdback.is_zero();
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(first) => {
                let mut next = Some(first);
                let mut written = 0u32;
                while let Some(ev) = next {
                    if reorder {
                        waiting.push(ev);
                        if waiting.len() > QUEUE_CAPACITY {
                            release(&mut waiting, false, &mut out, &mut human);
                        }
                    } else {
                        write_or_exit(&mut out, render(&ev, &mut human).as_bytes());
                    }
                    written += 1;
                    // Under a flood the queue may never empty: say what was
                    // lost every few hundred events, not only at the end.
                    if written.is_multiple_of(256) {
                        if let Some(note) = drops_note(sink, side, &mut reported) {
                            write_or_exit(&mut out, render(&note, &mut human).as_bytes());
                        }
                    }
                    next = rx.try_recv().ok();
                }
            }
            Err(RecvTimeoutError::Timeout) if done.load(Ordering::SeqCst) => break,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        release(&mut waiting, false, &mut out, &mut human);
        if let Some(note) = drops_note(sink, side, &mut reported) {
            write_or_exit(&mut out, render(&note, &mut human).as_bytes());
        }
        if out.flush().is_err() {
            quiet_exit();
        }
    }
    release(&mut waiting, true, &mut out, &mut human);
    if out.flush().is_err() {
        quiet_exit();
    }
}

/// A note for the events dropped since the last one, if any were.
fn drops_note(sink: &Sink, side: Side, reported: &mut u64) -> Option<Event> {
    let now = sink.dropped_counter().load(Ordering::Relaxed);
    if now <= *reported {
        return None;
    }
    let lost = now - *reported;
    *reported = now;
    let mut facts = serde_json::Map::new();
    facts.insert("dropped".into(), lost.into());
    Some(Event {
        t: sink.elapsed(),
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
