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
use crate::engine::evidence::{Evidence, What};
use crate::engine::recorder::Recorder;
use crate::engine::sink::{in_flight_floor, now_ns, Shared, Sink};
use crate::engine::tracker::Tracker;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Where the events go: in batches, so that a busy timeline wakes the
/// renderer once per batch, not once per event.
pub struct Outlet {
    pub tx: SyncSender<Vec<Event>>,
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

/// Evidence waiting for its turn, in time order (then recording order).
/// Two queues, each nearly in order as it arrives: packets (read a moment
/// late, in the kernel's order) and everything else (stamped as recorded).
/// Each piece is placed by a short look back from the end of its queue,
/// and the earlier of the two fronts is released first: no piece is moved
/// more than a step or two, however busy the run.
#[derive(Default)]
struct Waiting {
    packets: VecDeque<Evidence>,
    records: VecDeque<Evidence>,
}

impl Waiting {
    fn push(&mut self, ev: Evidence) {
        let queue = if matches!(ev.what, What::Packet(_)) {
            &mut self.packets
        } else {
            &mut self.records
        };
        let mut at = queue.len();
        while at > 0 && before(&ev, &queue[at - 1]) {
            at -= 1;
        }
        queue.insert(at, ev);
    }

    /// The earliest piece, if it is older than `horizon`.
    fn pop_before(&mut self, horizon: f64) -> Option<Evidence> {
        let queue = match (self.packets.front(), self.records.front()) {
            (Some(p), Some(r)) if before(r, p) => &mut self.records,
            (Some(_), _) => &mut self.packets,
            (None, _) => &mut self.records,
        };
        if queue.front().is_some_and(|w| w.t < horizon) {
            queue.pop_front()
        } else {
            None
        }
    }

    fn len(&self) -> usize {
        self.packets.len() + self.records.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Gives back the room a burst made the queues take.
    fn shrink(&mut self) {
        for queue in [&mut self.packets, &mut self.records] {
            if queue.capacity() > 4 * queue.len().max(64) {
                queue.shrink_to(2 * queue.len());
            }
        }
    }
}

/// Does `a` come before `b` on the timeline?
fn before(a: &Evidence, b: &Evidence) -> bool {
    a.t.total_cmp(&b.t).then(a.seq.cmp(&b.seq)).is_lt()
}

fn run(
    shared: &Shared,
    rx: &crossbeam_channel::Receiver<Evidence>,
    out: &Outlet,
    done: &AtomicBool,
) {
    let mut tracker = Tracker::new(shared.labels.clone());
    let mut waiting = Waiting::default();
    let mut told = Told::default();
    let mut last_t = 0.0f64;
    let mut quiet = 0u32;
    let mut swept_ns = now_ns();
    let mut output = OutputWatch::default();
    loop {
        let finishing = done.load(Ordering::SeqCst);
        if !finishing {
            if waiting.is_empty() && quiet >= QUIET_ROUNDS {
                // Idle: sleep until evidence comes (its sender wakes us).
                if let Ok(ev) = rx.recv_timeout(Duration::from_millis(50)) {
                    waiting.push(ev);
                    quiet = 0;
                }
            } else {
                // Busy: take what came every millisecond, so that no socket
                // thread ever has to wake this one for each piece it records.
                thread::sleep(Duration::from_millis(1));
            }
        }
        // First the horizon, then the queue: whatever was stamped before
        // the horizon is in the queue by now.
        let horizon_ns = horizon(shared);
        let before = waiting.len();
        while let Ok(ev) = rx.try_recv() {
            waiting.push(ev);
        }
        quiet = if waiting.len() > before {
            0
        } else {
            quiet.saturating_add(1)
        };
        let horizon = if finishing {
            f64::INFINITY
        } else {
            horizon_ns.saturating_sub(shared.start_ns) as f64 / 1e9
        };
        let mut batch = Vec::new();
        while let Some(ev) = waiting.pop_before(horizon) {
            last_t = last_t.max(ev.t);
            tracker.process(ev);
            batch.append(&mut tracker.out);
            if batch.len() >= BATCH_MAX {
                send(
                    out,
                    std::mem::replace(&mut batch, Vec::with_capacity(BATCH_MAX)),
                );
            }
        }
        if let Some(note) = told.losses(shared, out, last_t) {
            batch.push(note);
        }
        output.watch(shared, out, &told);
        if horizon_ns.saturating_sub(swept_ns) >= SWEEP_EVERY_NS {
            swept_ns = horizon_ns;
            let t = horizon_ns.saturating_sub(shared.start_ns) as f64 / 1e9;
            let forgotten = tracker.sweep(t, &kernel_table);
            if forgotten > 0 {
                batch.push(forgotten_note(forgotten, last_t));
            }
            waiting.shrink();
            crate::engine::limits::give_back_memory();
        }
        send(out, batch);
        if finishing && waiting.is_empty() && rx.is_empty() {
            return;
        }
    }
}

/// The kernel's TCP table for a port (sock_diag), for the sweep.
fn kernel_table(port: u16) -> Option<Vec<(std::net::SocketAddr, std::net::SocketAddr)>> {
    if !crate::engine::observe::KERNEL_STATES {
        return None;
    }
    let rows = crate::engine::observe::dump(port).ok()?;
    Some(rows.into_iter().map(|r| (r.local, r.remote)).collect())
}

/// How often the tracker forgets what it no longer needs (ns).
const SWEEP_EVERY_NS: u64 = 5_000_000_000;

/// Labels forgotten for want of room: peers heard again get new numbers.
fn forgotten_note(n: usize, t: f64) -> Event {
    let mut facts = serde_json::Map::new();
    facts.insert("forgotten".into(), n.into());
    let spare = crate::engine::labels::SPARE;
    Event {
        t,
        side: Side::Server,
        stage: Stage::Transfer,
        proto: Proto::Udp,
        local: None,
        remote: None,
        conn: None,
        task: None,
        body: Body::Note {
            topic: "forgotten",
            text: crate::t!(
                "forgot the numbers of {n} peers heard least recently, to keep memory bounded (at most {spare} are remembered besides live connections): a peer heard again gets a new number",
                "为了限制内存，忘记了最久没有消息的 {n} 个对端的编号（除活动连接外最多记住 {spare} 个）：再次收到它们的消息时会给新编号"
            ),
            facts,
        },
    }
}

/// About the most events handed to the renderer at once (a flood is
/// handed on in pieces, so memory stays bounded by the queue).
pub const BATCH_MAX: usize = 512;

/// After this many rounds with nothing new, the timeline sleeps until
/// evidence wakes it (about 20 ms of quiet).
const QUIET_ROUNDS: u32 = 20;

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

/// Hands a batch of events to the renderer (and the tap). Never waits,
/// except for the few events that end a command.
fn send(out: &Outlet, batch: Vec<Event>) {
    if batch.is_empty() {
        return;
    }
    if let Some(tap) = &out.tap {
        for event in &batch {
            tap.push(event.clone());
        }
    }
    if batch.iter().any(Event::is_essential) {
        // Few, and never from a socket thread: worth waiting for. The rest
        // of the batch goes with them, in order.
        let _ = out.tx.send(batch);
        return;
    }
    let n = batch.len() as u64;
    match out.tx.try_send(batch) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            out.dropped.fetch_add(n, Ordering::Relaxed);
        }
        // Nobody renders any more (stdout went away): carry on regardless.
        Err(TrySendError::Disconnected(_)) => {}
    }
}

/// Whether the output (the renderer, or stdout behind it) is dropping
/// events: while it is, and for a moment after, the sink sheds the bytes
/// of a busy transfer at their source (see [`Sink::shedding`]), so the
/// sockets do not pay for events nobody will see.
#[derive(Default)]
struct OutputWatch {
    /// Events the output dropped, as last seen.
    seen: u64,
    /// Until when the sink sheds (ns).
    until: u64,
}

/// How long the sink sheds after the output last dropped an event.
const SHED_FOR_NS: u64 = 50_000_000;

impl OutputWatch {
    fn watch(&mut self, shared: &Shared, out: &Outlet, told: &Told) {
        // The output's own drops: all dropped events but those the sink shed.
        let dropped = out
            .dropped
            .load(Ordering::Relaxed)
            .saturating_sub(told.busy);
        let now = now_ns();
        if dropped > self.seen {
            self.seen = dropped;
            self.until = now + SHED_FOR_NS;
            shared.output_behind.store(true, Ordering::Relaxed);
        } else if now > self.until {
            shared.output_behind.store(false, Ordering::Relaxed);
        }
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
    fn losses(&mut self, shared: &Shared, out: &Outlet, t: f64) -> Option<Event> {
        let busy = shared.busy.load(Ordering::Relaxed);
        if busy > self.busy {
            out.dropped.fetch_add(busy - self.busy, Ordering::Relaxed);
            self.busy = busy;
        }
        let lost = shared.lost.load(Ordering::Relaxed);
        if lost <= self.lost {
            return None;
        }
        let n = lost - self.lost;
        self.lost = lost;
        let mut facts = serde_json::Map::new();
        facts.insert("lost".into(), n.into());
        Some(Event {
            t,
            side: Side::Server,
            stage: Stage::Transfer,
            proto: Proto::Tcp,
            local: None,
            remote: None,
            conn: None,
            task: None,
            body: Body::Note {
                topic: "lost",
                text: crate::t!(
                    "{n} pieces of evidence were lost (the timeline fell far behind): some states may be shown as inferred, or late",
                    "有 {n} 条证据丢失了（时间线落后太多）：有些状态可能显示为推断的，或者显示得较晚"
                ),
                facts,
            },
        })
    }
}

/// Runs `f` with a sink of its own and returns what it did with every
/// event told, in order: for tests of the engine without a renderer.
pub fn collect<T>(f: impl FnOnce(&Sink) -> T) -> (T, Vec<Event>) {
    let (sink, evidence) = Sink::new();
    let (tx, rx) = std::sync::mpsc::sync_channel(1 << 16);
    let outlet = Outlet {
        tx,
        tap: None,
        dropped: Arc::new(AtomicU64::new(0)),
    };
    let mut timeline = Timeline::start(&sink, evidence, outlet);
    let result = f(&sink);
    timeline.finish();
    (result, rx.try_iter().flatten().collect())
}
