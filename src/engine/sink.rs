//! Where evidence goes: the [`Sink`], cloned into every socket thread.
//!
//! Recording never blocks a socket thread. Evidence waits in a queue for
//! the timeline thread ([`crate::engine::timeline`]), bounded by count (a
//! linked queue whose blocks are freed as it drains, so a burst's memory
//! goes back once it has passed); when that queue is half full, evidence that cannot change a state (the bytes of a
//! busy transfer) is dropped and counted, so a flood never takes memory or
//! stalls a client.
//!
//! The timeline puts evidence in time order before the tracker reads it.
//! To know when it may, each thread that is recording publishes the time it
//! stamped in a slot of its own ([`in_flight_floor`]): nothing older than
//! the earliest such time can still be on its way.

use crate::engine::ctx::Gate;
use crate::engine::evidence::{Evidence, What, Who};
use crate::engine::labels::Labels;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// How much evidence may wait for the timeline thread.
pub const EVIDENCE_CAPACITY: usize = 1 << 14;

/// Nanoseconds since 1970 on the system clock: the clock packets are
/// stamped with (SO_TIMESTAMPNS), so calls and packets share one time line.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Where the engine records its evidence. Cheap to clone.
#[derive(Clone)]
pub struct Sink {
    shared: Arc<Shared>,
    /// Asked before every socket call of the run (`--step`).
    stepper: Option<Arc<dyn Gate>>,
}

pub(crate) struct Shared {
    /// The start of the timeline, in [`now_ns`] terms.
    pub(crate) start_ns: u64,
    tx: crossbeam_channel::Sender<Evidence>,
    seq: AtomicU64,
    /// Evidence dropped because the timeline was behind: bytes of a flood
    /// (`busy`) or, far worse, evidence that could move a state (`lost`).
    pub(crate) busy: AtomicU64,
    pub(crate) lost: AtomicU64,
    /// Set by the timeline while the output drops events: in a server,
    /// bytes moved are then not even recorded (they would be dropped after
    /// all the work).
    pub(crate) output_behind: AtomicBool,
    /// How many bytes-moving events may be narrated each tenth of a second.
    budget: Budget,
    pub(crate) labels: Arc<Labels>,
    /// The running packet captures: each says up to when it has seen every packet.
    pub(crate) captures: Mutex<Vec<Arc<Watermark>>>,
}

/// How far a packet capture has read: every packet the kernel stamped
/// before `ns` is already in the evidence queue.
#[derive(Default)]
pub struct Watermark {
    pub ns: AtomicU64,
    pub ended: AtomicBool,
}

impl Sink {
    /// A sink and the receiving end for the timeline thread.
    pub fn new() -> (Sink, crossbeam_channel::Receiver<Evidence>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Shared {
            start_ns: now_ns(),
            tx,
            seq: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            output_behind: AtomicBool::new(false),
            budget: Budget::default(),
            labels: Arc::new(Labels::default()),
            captures: Mutex::new(Vec::new()),
        };
        (
            Sink {
                shared: Arc::new(shared),
                stepper: None,
            },
            rx,
        )
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Every socket call made through this sink first asks `stepper`.
    pub fn with_stepper(mut self, stepper: Arc<dyn Gate>) -> Sink {
        self.stepper = Some(stepper);
        self
    }

    pub fn stepper(&self) -> Option<&Arc<dyn Gate>> {
        self.stepper.as_ref()
    }

    /// The connection labels this run has given (shared with the tracker).
    pub fn labels(&self) -> &Arc<Labels> {
        &self.shared.labels
    }

    /// Seconds since the start of the timeline.
    pub fn elapsed(&self) -> f64 {
        self.t_of(now_ns())
    }

    /// A moment in [`now_ns`] terms, as seconds on this timeline.
    pub fn t_of(&self, ns: u64) -> f64 {
        ns.saturating_sub(self.shared.start_ns) as f64 / 1e9
    }

    /// Records evidence stamped now.
    pub fn record(&self, who: Who, what: What) {
        self.record_with(who, |_| what);
    }

    /// Records evidence stamped now; `make` builds it (it may read the
    /// kernel) after the stamp and before the evidence is queued.
    pub fn record_with(&self, who: Who, make: impl FnOnce(f64) -> What) {
        let stamp = InFlight::begin();
        let t = self.t_of(stamp.ns);
        let what = make(t);
        self.queue(t, who, what);
        drop(stamp);
    }

    /// Records a packet, stamped by the kernel (earlier than now). Only the
    /// capture thread calls this; its [`Watermark`] covers the ordering.
    pub fn record_packet(&self, t: f64, who: Who, what: What) {
        self.queue(t, who, what);
    }

    /// Is evidence that cannot move a state dropped now, because the
    /// timeline is far behind or the output is dropping events? Then a
    /// socket thread need not even build it.
    pub fn shedding(&self) -> bool {
        self.shared.tx.len() > EVIDENCE_CAPACITY / 2
            || (crate::engine::limits::is_sockets_first()
                && (self.shared.output_behind.load(Ordering::Relaxed)
                    || self.shared.budget.spent()))
    }

    /// Takes a bytes-moving event from the narration's budget (a server
    /// only, see [`crate::engine::limits::sockets_first`]).
    fn within_budget(&self) -> bool {
        !crate::engine::limits::is_sockets_first() || self.shared.budget.take()
    }

    /// Counts a piece of droppable evidence not built (see [`Sink::shedding`]).
    pub fn shed(&self) {
        self.shared.busy.fetch_add(1, Ordering::Relaxed);
    }

    fn queue(&self, t: f64, who: Who, what: What) {
        let droppable = is_droppable(&what);
        if droppable && (self.shedding() || !self.within_budget()) {
            self.shared.busy.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let seq = self.shared.seq.fetch_add(1, Ordering::Relaxed);
        let evidence = Evidence { t, seq, who, what };
        // Full: many threads may pass this check at once, so the queue may
        // exceed its bound by at most one piece per thread.
        let full = self.shared.tx.len() >= EVIDENCE_CAPACITY;
        if full || self.shared.tx.try_send(evidence).is_err() {
            let counter = if droppable {
                &self.shared.busy
            } else {
                &self.shared.lost
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Registers a packet capture; the timeline waits for its watermark.
    pub fn add_capture(&self) -> Arc<Watermark> {
        let mark = Arc::new(Watermark::default());
        mark.ns
            .store(now_ns().saturating_sub(CAPTURE_MARGIN_NS), Ordering::SeqCst);
        let mut captures = self
            .shared
            .captures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        captures.push(mark.clone());
        mark
    }
}

/// How long before "now" a capture may vouch for: the kernel stamps a
/// packet a moment before it queues it to the capture socket.
pub const CAPTURE_MARGIN_NS: u64 = 2_000_000;

/// In a server (`listen`), events that move bytes (a send() or recv() that moved data, a data
/// segment on the wire) narrated at most, per second. A class reads a few
/// lines a second; a load test makes a hundred thousand, and narrating
/// each one would take the CPU the sockets need. Beyond the budget they
/// are counted, not shown (the `dropped` note says how many); calls and
/// packets that can move a state are never held to it.
pub const BYTES_EVENTS_PER_SECOND: u64 = 5_000;

/// The budget, in windows of a tenth of a second (one atomic add per event).
#[derive(Default)]
struct Budget {
    /// The current window (ns / 100 ms) and the events taken in it.
    window: AtomicU64,
    taken: AtomicU64,
}

const WINDOW_NS: u64 = 100_000_000;
const PER_WINDOW: u64 = BYTES_EVENTS_PER_SECOND / 10;

impl Budget {
    fn roll(&self) {
        let window = now_ns() / WINDOW_NS;
        let was = self.window.load(Ordering::Relaxed);
        if was != window
            && self
                .window
                .compare_exchange(was, window, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.taken.store(0, Ordering::Relaxed);
        }
    }

    /// Is this window's budget used up?
    fn spent(&self) -> bool {
        self.roll();
        self.taken.load(Ordering::Relaxed) >= PER_WINDOW
    }

    /// Takes one event from the budget, if there is one left.
    fn take(&self) -> bool {
        self.roll();
        self.taken.fetch_add(1, Ordering::Relaxed) < PER_WINDOW
    }
}

/// Evidence that cannot move a state: the first to go when the timeline is behind.
fn is_droppable(what: &What) -> bool {
    use crate::engine::call::Call;
    match what {
        What::Call(record) => {
            matches!(
                record.call,
                Call::Send(_) | Call::Recv(_) | Call::SendTo(..) | Call::RecvFrom(_)
            ) && matches!(record.result, Ok(n) if n > 0)
        }
        What::Packet(seen) => !seen.matters(),
        What::Note { topic, .. } => matches!(*topic, "frame" | "chat"),
        _ => false,
    }
}

/// One slot per recording thread: the time it stamped the evidence it is
/// recording, [`BUSY`] while it is reading the clock, [`IDLE`] otherwise.
struct Slot(AtomicU64);

const IDLE: u64 = u64::MAX;
const BUSY: u64 = 0;

static SLOTS: Mutex<Vec<Arc<Slot>>> = Mutex::new(Vec::new());

thread_local! {
    static MY_SLOT: SlotHandle = SlotHandle::register();
}

/// A thread's slot; when the thread ends, the slot is retired.
struct SlotHandle(Arc<Slot>);

impl SlotHandle {
    fn register() -> SlotHandle {
        let slot = Arc::new(Slot(AtomicU64::new(IDLE)));
        SLOTS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(slot.clone());
        SlotHandle(slot)
    }
}

impl Drop for SlotHandle {
    fn drop(&mut self) {
        self.0 .0.store(IDLE, Ordering::SeqCst);
        let mut slots = SLOTS.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(|s| !Arc::ptr_eq(s, &self.0));
    }
}

/// This thread is recording evidence stamped `ns`.
struct InFlight {
    ns: u64,
}

impl InFlight {
    fn begin() -> InFlight {
        // BUSY first, then read the clock: a timeline that looks in between
        // sees BUSY and waits, so it never misses a stamp older than its own.
        let ns = MY_SLOT
            .try_with(|slot| {
                slot.0 .0.store(BUSY, Ordering::SeqCst);
                let ns = now_ns();
                slot.0 .0.store(ns, Ordering::SeqCst);
                ns
            })
            .unwrap_or_else(|_| now_ns());
        InFlight { ns }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let _ = MY_SLOT.try_with(|slot| slot.0 .0.store(IDLE, Ordering::SeqCst));
    }
}

/// The earliest stamp of any evidence still being recorded (`u64::MAX` if
/// none): the timeline may release evidence older than this.
pub fn in_flight_floor() -> u64 {
    let slots = SLOTS.lock().unwrap_or_else(|p| p.into_inner());
    slots
        .iter()
        .map(|s| s.0.load(Ordering::SeqCst))
        .min()
        .unwrap_or(IDLE)
}
