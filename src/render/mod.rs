//! Renderers turn events into text. They never touch a socket.
//!
//! Events arrive from many socket threads through one channel, and a single
//! renderer thread draws them in order, so lines never interleave. Its text
//! goes to stdout through a writer thread of its own ([`output`]), so that
//! a closed or stalled stdout never holds up the timeline or a stop.

pub mod diagram;
pub mod fold;
pub mod human;
pub mod json;
pub mod lens;
pub mod markdown;
pub mod output;
pub mod watch;

use crate::engine::event::{Body, Event, Proto, Side, Stage};
use crate::engine::evidence::{What, Who};
use crate::engine::recorder::Recorder;
use crate::engine::sink::Sink;
use crate::engine::timeline::{Outlet, Timeline};
use colored::Colorize;
use human::{Human, Layout};
use output::{Sent, Stdout};
use std::io::{self, IsTerminal};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// How many batches of events (each at most `BATCH_MAX`, 512) may wait for
/// the renderer thread before new ones are dropped (and counted). The
/// renderer never waits for the terminal (its text waits in the writer's
/// queue, see [`output`]), and no socket thread ever waits for either.
pub const QUEUE_CAPACITY: usize = 32;

/// The longest a command's end waits for the renderer: its own wait for
/// stdout ([`output::FINISH_MAX`]), then a second for its last lines on stderr.
const RENDERER_MAX: Duration = Duration::from_secs(output::FINISH_MAX.as_secs() + 1);

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
    /// The tour and the demos, for people: each kind of call is explained
    /// the first time (`--verbose` explains every one).
    pub explain_once: bool,
    /// `listen --chat` on the teacher's screen: one line per message; the
    /// relay's every recv(), send() and data segment are left to --json
    /// (and --verbose).
    pub brief_chat: bool,
    /// The tour, for people: a later client's part of a stage that repeats
    /// the first client's step for step is told in one line ([`fold`]).
    pub fold: bool,
    /// The command has `--verbose` (the tour): the fold says to use it.
    pub has_verbose: bool,
    /// A lesson's demo: the part of the story it is about ([`lens`]).
    pub lens: Option<lens::Lens>,
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
            brief_chat: false,
            explain_once: false,
            fold: false,
            has_verbose: false,
            lens: None,
        }
    }
}

/// The timeline and renderer threads, and how to finish them.
pub struct Renderer {
    timeline: Timeline,
    done: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
    /// Disconnected when the renderer thread ends (its sender is dropped,
    /// even by a panic).
    ended: Receiver<()>,
    sink: Sink,
    side: Side,
    /// The protocol of the final error event (TCP unless told otherwise).
    proto: Proto,
    /// Lines drawn for people so far (the tour paces itself by them).
    lines: Arc<AtomicU64>,
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
    let lines = Arc::new(AtomicU64::new(0));
    let (ending, ended) = mpsc::channel::<()>();
    let handle = {
        let done = done.clone();
        let lines = lines.clone();
        thread::Builder::new()
            .name("sockdemo-render".into())
            .spawn(move || {
                let _ending = ending;
                crate::engine::limits::narration_priority();
                render_loop(rx, settings, layout, side, &done, &dropped, lines)
            })
            .expect("cannot start the renderer thread")
    };
    let keep = sink.clone();
    (
        sink,
        Renderer {
            timeline,
            done,
            handle: Some(handle),
            ended,
            sink: keep,
            side,
            proto: Proto::Tcp,
            lines,
        },
    )
}

impl Renderer {
    /// How many lines have been drawn for people so far, as they are drawn.
    pub fn lines(&self) -> Arc<AtomicU64> {
        self.lines.clone()
    }

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
                let who = Who::nobody(self.side, self.proto);
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
        // The renderer bounds its own wait for stdout; this bound is for a
        // stderr that is stalled too (`2>&1 | a reader that stopped`). A
        // thread stuck in write(2) cannot be cancelled: it is left behind,
        // and ends with the process.
        if let Some(handle) = self.handle.take() {
            if self.ended.recv_timeout(RENDERER_MAX) != Err(RecvTimeoutError::Timeout) {
                let _ = handle.join();
            }
        }
    }
}

impl Drop for Renderer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the renderer thread keeps between batches.
struct Narration {
    settings: Settings,
    human: Human,
    side: Side,
    stdout: Stdout,
    /// Events dropped so far that a note has told about.
    reported: u64,
    /// The time of the last event drawn: a note about drops carries it,
    /// so time never goes back in the output.
    last_t: f64,
    /// The summary's text and the number of the chunk that carries it
    /// (0: not queued for stdout).
    summary: Option<(String, u64)>,
    /// Events thrown away because stdout was gone.
    discarded: u64,
    /// Repeats told once (the tour, for people), and when the last event came.
    fold: Option<(fold::Fold, std::time::Instant)>,
    /// Lines drawn so far (see [`Renderer::lines`]).
    lines: Arc<AtomicU64>,
    /// Events the lens kept out of view.
    hidden: u64,
}

/// A part held by the fold is told once the story has been quiet this long
/// (the tour's pause between stages is much longer).
pub const FOLD_QUIET: Duration = Duration::from_millis(100);

fn render_loop(
    rx: Receiver<Vec<Event>>,
    settings: Settings,
    layout: Layout,
    side: Side,
    done: &AtomicBool,
    dropped: &AtomicU64,
    lines: Arc<AtomicU64>,
) {
    // Only `listen` serves until it is stopped; the tour and the demos end
    // by themselves (their server sits in the left column).
    let serves = side == Side::Server && layout == Layout::Single;
    let mut n = Narration {
        settings,
        human: Human::new(layout, settings.width)
            .brief_chat(settings.brief_chat)
            .follow_terminal(settings.terminal)
            .explain_once(settings.explain_once),
        side,
        stdout: Stdout::start(move |e| output::closed_line(e, serves)),
        reported: 0,
        last_t: 0.0,
        summary: None,
        discarded: 0,
        fold: (settings.fold && !settings.json).then(|| {
            (
                fold::Fold::new(settings.has_verbose),
                std::time::Instant::now(),
            )
        }),
        lines,
        hidden: 0,
    };
    if !settings.json {
        if let Some(header) = n.human.header() {
            n.stdout.send(header.into_bytes(), true);
        }
    }
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(first) => {
                let mut next = Some(first);
                while let Some(batch) = next {
                    n.batch(&batch, dropped);
                    next = rx.try_recv().ok();
                }
            }
            Err(RecvTimeoutError::Timeout) if done.load(Ordering::SeqCst) => break,
            Err(RecvTimeoutError::Timeout) => n.batch(&[], dropped),
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    n.batch(&[], dropped);
    n.release_fold(true);
    n.lens_note();
    n.last_drops(dropped);
    n.finish();
}

impl Narration {
    /// Draws a batch (and a note for what was dropped since the last one)
    /// and hands it to stdout; or counts it, if stdout cannot take it.
    fn batch(&mut self, batch: &[Event], dropped: &AtomicU64) {
        let summary = batch.iter().rev().find_map(|ev| match &ev.body {
            Body::Note {
                topic: "summary",
                text,
                ..
            } => Some(text.clone()),
            _ => None,
        });
        if let Some(text) = &summary {
            self.summary = Some((text.clone(), 0));
        }
        let count = batch.len() as u64;
        if self.stdout.gone() {
            self.discarded += count;
            return;
        }
        let essential = batch.iter().any(Event::is_essential);
        if !essential && self.stdout.busy() {
            // stdout is behind: drop without drawing, as the timeline does.
            dropped.fetch_add(count, Ordering::Relaxed);
            return;
        }
        let mut text = String::new();
        for ev in batch {
            let lens = self.settings.lens.filter(|_| !self.settings.json);
            if lens.is_some_and(|lens| !lens.shows(ev)) {
                self.hidden += 1;
                continue;
            }
            match &mut self.fold {
                Some((fold, last)) => {
                    *last = std::time::Instant::now();
                    for ev in fold.push(ev.clone()) {
                        text.push_str(&self.draw(&ev));
                    }
                }
                None => text.push_str(&self.draw(ev)),
            }
        }
        if batch.is_empty() {
            text.push_str(&self.fold_text(false));
        }
        // Under a flood the queue may never empty: say what was lost after
        // each batch, not only at the end.
        if let Some(note) = drops_note(dropped, self.side, &mut self.reported, self.last_t) {
            text.push_str(&self.draw(&note));
        }
        if text.is_empty() {
            return;
        }
        self.count_lines(&text);
        match self.stdout.send(text.into_bytes(), essential) {
            (Sent::Queued, chunk) => {
                if let (Some(text), true) = (summary, chunk > 0) {
                    self.summary = Some((text, chunk));
                }
            }
            (Sent::Dropped, _) => {
                dropped.fetch_add(count, Ordering::Relaxed);
            }
            (Sent::Gone, _) => self.discarded += count,
        }
    }

    /// The part the fold holds, once the story is quiet (or at the end).
    fn fold_text(&mut self, end: bool) -> String {
        let Some((fold, last)) = &mut self.fold else {
            return String::new();
        };
        if !fold.holding() || (!end && last.elapsed() < FOLD_QUIET) {
            return String::new();
        }
        let mut text = String::new();
        for ev in fold.release() {
            text.push_str(&self.draw(&ev));
        }
        text
    }

    /// What the lens left out, said once at the end.
    fn lens_note(&mut self) {
        let Some(line) = self.settings.lens.and_then(|l| l.left_out(self.hidden)) else {
            return;
        };
        if self.settings.json || self.stdout.gone() {
            return;
        }
        let width = self.settings.width.max(40);
        let text = format!("{}\n", textwrap::fill(&line, width).dimmed());
        self.count_lines(&text);
        self.stdout.send(text.into_bytes(), true);
    }

    fn count_lines(&self, text: &str) {
        if !self.settings.json {
            let n = text.bytes().filter(|b| *b == b'\n').count();
            self.lines.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// Writes the part the fold still holds at the end.
    fn release_fold(&mut self, end: bool) {
        let text = self.fold_text(end);
        self.count_lines(&text);
        if !text.is_empty() && !self.stdout.gone() {
            self.stdout.send(text.into_bytes(), false);
        }
    }

    /// The drops not yet told, at the end: held like the summary, so the
    /// count is said even if stdout was behind when the run ended.
    fn last_drops(&mut self, dropped: &AtomicU64) {
        if self.stdout.gone() {
            return;
        }
        if let Some(note) = drops_note(dropped, self.side, &mut self.reported, self.last_t) {
            let text = self.draw(&note);
            self.stdout.send(text.into_bytes(), true);
        }
    }

    fn draw(&mut self, ev: &Event) -> String {
        self.last_t = self.last_t.max(ev.t);
        if self.settings.json {
            json::line(ev)
        } else {
            self.human.render(ev)
        }
    }

    /// Waits (a bounded time) for stdout to take the rest; what it could
    /// not show that matters, the summary, goes to stderr.
    fn finish(self) {
        let finished = self.stdout.finish(output::gave_up_line);
        if let Some((text, chunk)) = &self.summary {
            if *chunk == 0 || finished.written < *chunk {
                output::to_stderr(&format!("sockdemo: {text}"));
            }
        }
        let lost = self.discarded;
        if lost > 0 {
            output::to_stderr(&crate::t!(
                "sockdemo: {lost} events were not shown: stdout was gone",
                "sockdemo：有 {lost} 个事件没有显示：标准输出已不可用"
            ));
        }
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
        task: None,
        body: Body::Note {
            topic: "dropped",
            text: crate::t!(
                "{lost} events were not shown: more than the narration can show (the sockets did not wait for it)",
                "有 {lost} 个事件没有显示：超出了讲解能显示的数量（套接字没有为它停下等待）"
            ),
            facts,
        },
    })
}
