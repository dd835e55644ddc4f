//! The timeline thread: evidence in, events out, in the order things happened.
//!
//! Evidence arrives from many threads, and packets arrive a little after
//! they happened (the capture reads them late, with the kernel's earlier
//! timestamps). The timeline holds evidence until nothing older can still
//! come, then hands it to the tracker in time order:
//!
//! * no socket thread is still recording anything older
//!   ([`in_flight_floor`]), and
//! * every running capture has read every packet older ([`Watermark`]).
//!
//! So a packet comes before the state change it causes, and the state
//! change before the call that returns because of it, in `--json` as on
//! the screen. The tracker's events then go to the renderer (never
//! waiting for it, except for the few that end a command) and to a tap.

use crate::engine::event::{Body, Event, Proto, Side, Stage};
use crate::engine::evidence::Evidence;
use crate::engine::recorder::Recorder;
use crate::engine::sink::{in_flight_floor, now_ns, Shared, Sink};
use crate::engine::tracker::Tracker;
use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Where the events go.
pub struct Outlet {
    pub tx: SyncSender<Event>,
    pub tap: Option<Arc<Recorder>>,
    /// Events the renderer could not take in time (it was behind).
    pub dropped: Arc<AtomicU64>,
}

/// The running timeline thread.
pub struct Timeline {
    done: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Timeline {
    pub fn start(sink: &Sink, rx: crossbeam_channel::Receiver<Evidence>, out: Outlet) -> Timeline {
        let done = Arc::new(AtomicBool::new(false));
        let handle = {
            let (shared, done) = (sink.shared().clone(), done.clone());
            thread::Builder::new()
                .name("sockdemo-timeline".into())
                .spawn(move || run(&shared, &rx, &out, &done))
                .expect("cannot start the timeline thread")
        };
        Timeline {
            done,
            handle: Some(handle),
        }
    }

    /// Tells everything recorded so far, then stops. Call it once the
    /// engine is done (captures stopped, socket threads ended).
    pub fn finish(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Timeline {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Evidence waiting for its turn, ordered by time, then by recording order.
struct Waiting(Evidence);

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.0
            .t
            .total_cmp(&other.0.t)
            .then(self.0.seq.cmp(&other.0.seq))
    }
}

fn run(
    shared: &Shared,
    rx: &crossbeam_channel::Receiver<Evidence>,
    out: &Outlet,
    done: &AtomicBool,
) {
    let mut tracker = Tracker::new(shared.labels.clone());
    let mut waiting: BinaryHeap<Reverse<Waiting>> = BinaryHeap::new();
    let mut told = Told::default();
    let mut last_t = 0.0f64;
    loop {
        let finishing = done.load(Ordering::SeqCst);
        // Sleep until evidence comes, but look again soon if some waits.
        let nap = if waiting.is_empty() { 50 } else { 2 };
        if !finishing {
            if let Ok(ev) = rx.recv_timeout(Duration::from_millis(nap)) {
                waiting.push(Reverse(Waiting(ev)));
            }
        }
        // First the horizon, then the queue: whatever was stamped before
        // the horizon is in the queue by now.
        let horizon_ns = horizon(shared);
        while let Ok(ev) = rx.try_recv() {
            waiting.push(Reverse(Waiting(ev)));
        }
        let horizon = if finishing {
            f64::INFINITY
        } else {
            horizon_ns.saturating_sub(shared.start_ns) as f64 / 1e9
        };
        while waiting.peek().is_some_and(|Reverse(w)| w.0.t < horizon) {
            let Reverse(Waiting(ev)) = waiting.pop().expect("peeked");
            last_t = last_t.max(ev.t);
            tracker.process(ev);
            for event in tracker.out.drain(..) {
                send(out, event);
            }
        }
        told.losses(shared, out, last_t);
        if finishing && waiting.is_empty() && rx.is_empty() {
            return;
        }
    }
}

/// Nothing stamped before this moment (ns since 1970) can still arrive.
fn horizon(shared: &Shared) -> u64 {
    let now = now_ns();
    let floor = in_flight_floor();
    let captures = shared.captures.lock().unwrap_or_else(|p| p.into_inner());
    let packets = captures
        .iter()
        .filter(|m| !m.ended.load(Ordering::SeqCst))
        .map(|m| m.ns.load(Ordering::SeqCst))
        .min()
        .unwrap_or(u64::MAX);
    now.min(floor).min(packets)
}

fn send(out: &Outlet, event: Event) {
    if let Some(tap) = &out.tap {
        tap.push(event.clone());
    }
    if event.is_essential() {
        // Few, and never from a socket thread: worth waiting for.
        let _ = out.tx.send(event);
        return;
    }
    match out.tx.try_send(event) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            out.dropped.fetch_add(1, Ordering::Relaxed);
        }
        // Nobody renders any more (stdout went away): carry on regardless.
        Err(TrySendError::Disconnected(_)) => {}
    }
}

/// What the timeline has said about evidence it never received.
#[derive(Default)]
struct Told {
    busy: u64,
    lost: u64,
}

impl Told {
    /// Evidence dropped by the sink: the bytes of a flood count as events
    /// not shown; evidence that could move a state is said to be lost.
    fn losses(&mut self, shared: &Shared, out: &Outlet, t: f64) {
        let busy = shared.busy.load(Ordering::Relaxed);
        if busy > self.busy {
            out.dropped.fetch_add(busy - self.busy, Ordering::Relaxed);
            self.busy = busy;
        }
        let lost = shared.lost.load(Ordering::Relaxed);
        if lost > self.lost {
            let n = lost - self.lost;
            self.lost = lost;
            let mut facts = serde_json::Map::new();
            facts.insert("lost".into(), n.into());
            send(
                out,
                Event {
                    t,
                    side: Side::Server,
                    stage: Stage::Transfer,
                    proto: Proto::Tcp,
                    local: None,
                    remote: None,
                    conn: None,
                    body: Body::Note {
                        topic: "lost",
                        text: crate::t!(
                            "{n} pieces of evidence were lost (the timeline fell far behind): some states may be shown as inferred, or late",
                            "有 {n} 条证据丢失了（时间线落后太多）：有些状态可能显示为推断的，或者显示得较晚"
                        ),
                        facts,
                    },
                },
            );
        }
    }
}

/// Runs `f` with a sink of its own and returns what it did with every
/// event told, in order: for tests of the engine without a renderer.
pub fn collect<T>(f: impl FnOnce(&Sink) -> T) -> (T, Vec<Event>) {
    let (sink, evidence) = Sink::new();
    let (tx, rx) = std::sync::mpsc::sync_channel(1 << 20);
    let outlet = Outlet {
        tx,
        tap: None,
        dropped: Arc::new(AtomicU64::new(0)),
    };
    let mut timeline = Timeline::start(&sink, evidence, outlet);
    let result = f(&sink);
    timeline.finish();
    (result, rx.try_iter().collect())
}
