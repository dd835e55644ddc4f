//! The one type everything else talks about: [`Event`].
//!
//! The engine performs socket calls and emits events into a [`Sink`]; the
//! renderers turn the same events into a timeline for people or into JSON
//! Lines for graders, so the two views can never disagree.

use serde::{Serialize, Serializer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Which program in the story made the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Server,
    Client,
}

/// The stages of the classic lesson (the server listens, the client
/// requests, the connection is confirmed) plus data transfer and closing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Listen,
    Request,
    Confirm,
    Transfer,
    Close,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Listen => "listen",
            Stage::Request => "request",
            Stage::Confirm => "confirm",
            Stage::Transfer => "transfer",
            Stage::Close => "close",
        }
    }
}

/// The transport protocol, the middle of the (address, protocol, port) triple.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn upper(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        }
    }
}

/// The TCP states of RFC 9293, section 3.3.2, spelled as the RFC spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum TcpState {
    #[serde(rename = "CLOSED")]
    Closed,
    #[serde(rename = "LISTEN")]
    Listen,
    #[serde(rename = "SYN-SENT")]
    SynSent,
    #[serde(rename = "SYN-RECEIVED")]
    SynReceived,
    #[serde(rename = "ESTABLISHED")]
    Established,
    #[serde(rename = "FIN-WAIT-1")]
    FinWait1,
    #[serde(rename = "FIN-WAIT-2")]
    FinWait2,
    #[serde(rename = "CLOSE-WAIT")]
    CloseWait,
    #[serde(rename = "CLOSING")]
    Closing,
    #[serde(rename = "LAST-ACK")]
    LastAck,
    #[serde(rename = "TIME-WAIT")]
    TimeWait,
}

impl TcpState {
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Closed => "CLOSED",
            TcpState::Listen => "LISTEN",
            TcpState::SynSent => "SYN-SENT",
            TcpState::SynReceived => "SYN-RECEIVED",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait1 => "FIN-WAIT-1",
            TcpState::FinWait2 => "FIN-WAIT-2",
            TcpState::CloseWait => "CLOSE-WAIT",
            TcpState::Closing => "CLOSING",
            TcpState::LastAck => "LAST-ACK",
            TcpState::TimeWait => "TIME-WAIT",
        }
    }

    /// Linux numbers its states in `include/net/tcp_states.h`; TCP_INFO's
    /// `tcpi_state` and sock_diag's `idiag_state` both use these numbers.
    pub fn from_linux(code: u8) -> Option<TcpState> {
        Some(match code {
            1 => TcpState::Established,
            2 => TcpState::SynSent,
            3 => TcpState::SynReceived,
            4 => TcpState::FinWait1,
            5 => TcpState::FinWait2,
            6 => TcpState::TimeWait,
            7 => TcpState::Closed,
            8 => TcpState::CloseWait,
            9 => TcpState::LastAck,
            10 => TcpState::Listen,
            11 => TcpState::Closing,
            // 12 is TCP_NEW_SYN_RECV: a request sock waiting for the last ACK.
            12 => TcpState::SynReceived,
            _ => return None,
        })
    }

    /// States the protocol says a socket must pass through between two
    /// states we saw. They live for microseconds on loopback, so polling
    /// cannot catch them: they are reported with [`Source::Inferred`].
    pub fn inferred_between(from: TcpState, to: TcpState) -> &'static [TcpState] {
        use TcpState::*;
        match (from, to) {
            // connect(): the SYN goes out, the SYN-ACK comes back.
            (Closed, Established) => &[SynSent],
            (Listen, CloseWait) => &[SynReceived, Established],
            // A listener's child is born from a SYN and confirmed by the ACK.
            (Listen, Established) => &[SynReceived],
            // shutdown()/close() sends our FIN; its ACK moves us on.
            (Established, FinWait2) => &[FinWait1],
            // The peer's FIN often carries the ACK of ours: FIN-WAIT-2 is skipped.
            (Established, TimeWait) => &[FinWait1],
            // close() after the peer's FIN sends ours, and we wait for its ACK.
            (CloseWait, Closed) => &[LastAck],
            _ => &[],
        }
    }
}

/// Where a state came from. `Kernel` and `Packet` are observed (asked of
/// the kernel, or seen on the wire); `Inferred` is deduced from the
/// protocol and always shown as such.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Kernel,
    Packet,
    Inferred,
}

/// Direction of data, seen from the side that reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    In,
    Out,
}

/// What happened. Serialized with a `kind` tag: "syscall", "state", "data",
/// "packet", "note" or "error" (see docs/events.md).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Body {
    /// A socket call and its result, named as in the man pages.
    Syscall {
        call: &'static str,
        args: String,
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        ret: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        why: Option<String>,
    },
    /// A TCP state change.
    State {
        from: TcpState,
        to: TcpState,
        source: Source,
        /// How the kernel was asked: "TCP_INFO" or "sock_diag".
        #[serde(skip_serializing_if = "Option::is_none")]
        via: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// Bytes that went in or out, with an escaped preview.
    Data {
        dir: Dir,
        bytes: usize,
        text: String,
        /// Bytes not shown in `text`.
        cut: usize,
    },
    /// An explanation or a fact that is not a call (a thread started, a
    /// summary). `topic` is a stable word for scripts.
    Note {
        topic: &'static str,
        text: String,
        #[serde(flatten)]
        facts: serde_json::Map<String, serde_json::Value>,
    },
    /// A TCP segment or UDP datagram seen on the wire. The event's `local`
    /// is its source and `remote` its destination; `side` is the sender's.
    Packet {
        /// "SYN", "SYN,ACK", "ACK", "PSH,ACK", "FIN,ACK", "RST"… (empty for UDP).
        flags: String,
        /// Sequence and acknowledgement numbers, relative to each side's first.
        seq: u32,
        ack: u32,
        /// Payload bytes.
        len: usize,
    },
    /// Something went wrong; `text` says what it means and what to do.
    Error {
        /// A stable word for scripts: "refused", "addr-in-use", "reset", "usage"…
        code: &'static str,
        error: String,
        text: String,
    },
}

/// One thing that happened, with everything needed to place it in the story.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Seconds since the program started.
    #[serde(serialize_with = "round_micros")]
    pub t: f64,
    pub side: Side,
    pub stage: Stage,
    pub proto: Proto,
    #[serde(serialize_with = "opt_addr", skip_serializing_if = "Option::is_none")]
    pub local: Option<SocketAddr>,
    #[serde(serialize_with = "opt_addr", skip_serializing_if = "Option::is_none")]
    pub remote: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conn: Option<Arc<str>>,
    #[serde(flatten)]
    pub body: Body,
}

impl Event {
    /// Notes that must be shown even when the output is far behind: the
    /// address to connect to and the summary. Only the main thread emits these.
    pub fn is_essential(&self) -> bool {
        matches!(
            &self.body,
            Body::Note {
                topic: "ready" | "summary",
                ..
            }
        )
    }
}

fn round_micros<S: Serializer>(t: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((t * 1e6).round() / 1e6)
}

fn opt_addr<S: Serializer>(a: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    match a {
        // SocketAddr's Display writes IPv6 in brackets: "[::1]:8888".
        Some(a) => s.collect_str(a),
        None => s.serialize_none(),
    }
}

/// How many events may wait for a slow terminal before new ones are dropped
/// (and counted). A socket thread never waits for the terminal.
pub const QUEUE_CAPACITY: usize = 8192;

/// Where the engine sends its events. Cloned into every socket thread.
///
/// Sending never blocks: if the renderer falls behind by more than
/// [`QUEUE_CAPACITY`] events, new events are counted as dropped instead, so
/// a slow projector can never stall a client.
#[derive(Clone)]
pub struct Sink {
    start: Instant,
    tx: SyncSender<Event>,
    dropped: Arc<AtomicU64>,
    tap: Option<Arc<Recorder>>,
    /// Asked before every socket call of the run (`--step`).
    stepper: Option<Arc<dyn crate::engine::conn::Gate>>,
    /// Which connection (C1, C2…) each pair of addresses belongs to, so a
    /// captured packet can be labelled like the calls that caused it.
    labels: Arc<Labels>,
    /// What crossed the wire, per direction, while packets are captured.
    wire: Arc<Wire>,
}

/// The flags of one captured TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

/// The segments seen in one direction: (the order seen, flags), in order.
type Segments = Vec<(u64, Flags)>;

/// Segments seen on the wire, so that a state can be shown as seen in the
/// packets ("source": "packet") instead of inferred.
#[derive(Default)]
struct Wire {
    enabled: std::sync::atomic::AtomicBool,
    /// (source, destination) → (order seen, flags), in order.
    seen: Mutex<std::collections::HashMap<(SocketAddr, SocketAddr), Segments>>,
    count: AtomicU64,
    changed: Condvar,
}

/// Address pairs → connection labels, kept only while packets are captured.
#[derive(Default)]
struct Labels {
    enabled: std::sync::atomic::AtomicBool,
    map: Mutex<std::collections::HashMap<(SocketAddr, SocketAddr), Arc<str>>>,
}

impl Sink {
    /// A sink and the receiving end for a renderer (or a test).
    pub fn new(capacity: usize) -> (Sink, Receiver<Event>) {
        let (tx, rx) = mpsc::sync_channel(capacity);
        let sink = Sink {
            start: Instant::now(),
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
            tap: None,
            stepper: None,
            labels: Arc::new(Labels::default()),
            wire: Arc::new(Wire::default()),
        };
        (sink, rx)
    }

    /// Also record every event in `recorder`, synchronously, so a driver
    /// (the tour, a test) can wait for the engine to reach a point.
    pub fn with_tap(mut self, recorder: Arc<Recorder>) -> Sink {
        self.tap = Some(recorder);
        self
    }

    /// Every socket call made through this sink first asks `stepper`.
    pub fn with_stepper(mut self, stepper: Arc<dyn crate::engine::conn::Gate>) -> Sink {
        self.stepper = Some(stepper);
        self
    }

    pub fn stepper(&self) -> Option<&Arc<dyn crate::engine::conn::Gate>> {
        self.stepper.as_ref()
    }

    /// Starts remembering which connection each address pair belongs to
    /// (for labelling captured packets; off otherwise, it costs a lock).
    pub fn remember_labels(&self) {
        self.labels.enabled.store(true, Ordering::Relaxed);
        // From now on a state may wait (briefly) for the wire to confirm it.
        self.wire.enabled.store(true, Ordering::Relaxed);
    }

    /// Records a TCP segment seen going from `src` to `dst`.
    pub fn wire_record(&self, src: SocketAddr, dst: SocketAddr, flags: Flags) {
        self.wire.enabled.store(true, Ordering::Relaxed);
        let order = self.wire.count.fetch_add(1, Ordering::Relaxed);
        let mut seen = self.wire.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.entry((src, dst)).or_default().push((order, flags));
        self.wire.changed.notify_all();
    }

    /// Has the wire shown that the endpoint `local` (talking to `remote`)
    /// went through `state`? Waits at most `patience` for the capture to
    /// catch up. Always false when no packets are captured.
    pub fn wire_shows(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        state: TcpState,
        patience: Duration,
    ) -> bool {
        if !self.wire.enabled.load(Ordering::Relaxed) {
            return false;
        }
        let deadline = Instant::now() + patience;
        let mut seen = self.wire.seen.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let empty = Vec::new();
            let out = seen.get(&(local, remote)).unwrap_or(&empty);
            let inn = seen.get(&(remote, local)).unwrap_or(&empty);
            let first = |list: &[(u64, Flags)], want: fn(&Flags) -> bool| {
                list.iter().find(|(_, f)| want(f)).map(|(o, _)| *o)
            };
            let our_fin = first(out, |f| f.fin);
            let their_fin = first(inn, |f| f.fin);
            let shown = match state {
                TcpState::SynSent => first(out, |f| f.syn && !f.ack).is_some(),
                TcpState::SynReceived => {
                    first(inn, |f| f.syn && !f.ack).is_some()
                        && first(out, |f| f.syn && f.ack).is_some()
                }
                TcpState::FinWait1 => our_fin.is_some(),
                // Our FIN was acknowledged by a segment without FIN, before theirs.
                TcpState::FinWait2 => our_fin.is_some_and(|fin| {
                    inn.iter().any(|(o, f)| {
                        *o > fin && f.ack && !f.fin && their_fin.is_none_or(|t| *o < t)
                    })
                }),
                TcpState::CloseWait => their_fin.is_some(),
                TcpState::LastAck => their_fin.is_some_and(|t| our_fin.is_some_and(|o| o > t)),
                _ => false,
            };
            if shown {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            seen = self
                .wire
                .changed
                .wait_timeout(seen, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The connection label of `a` ⇄ `b`, if an event has named it.
    pub fn label_of(&self, a: SocketAddr, b: SocketAddr) -> Option<Arc<str>> {
        let labels = self.labels.map.lock().unwrap_or_else(|p| p.into_inner());
        labels.get(&(a, b)).or_else(|| labels.get(&(b, a))).cloned()
    }

    /// The instant `t` counts from.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Seconds since this sink was made: the `t` of every event.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    pub fn emit(&self, mut event: Event) {
        event.t = self.elapsed();
        self.emit_stamped(event);
    }

    /// Emits an event whose `t` is already set (a packet carries the
    /// kernel's own timestamp, earlier than the moment we read it).
    pub fn emit_stamped(&self, event: Event) {
        if self.labels.enabled.load(Ordering::Relaxed) {
            if let (Some(conn), Some(local), Some(remote)) =
                (&event.conn, event.local, event.remote)
            {
                let mut map = self.labels.map.lock().unwrap_or_else(|p| p.into_inner());
                map.entry((local, remote)).or_insert_with(|| conn.clone());
            }
        }
        // The renderer's queue first, the tap second: whoever waits on the
        // tap (the tour) may react at once, and its next event must not
        // overtake this one in the output.
        let copy = self.tap.as_ref().map(|_| event.clone());
        if event.is_essential() {
            // Few and never from a socket thread: worth waiting for.
            self.send_waiting(event);
        } else {
            match self.tx.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                // Nobody is listening any more (the renderer stopped because
                // stdout was closed): the sockets carry on regardless.
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
        if let (Some(tap), Some(copy)) = (&self.tap, copy) {
            tap.push(copy);
        }
    }

    /// Sends even if that means waiting for the renderer. Only for the few
    /// events that end a command (a summary, an error), never from a socket thread.
    pub fn emit_waiting(&self, mut event: Event) {
        event.t = self.elapsed();
        self.send_waiting(event);
    }

    fn send_waiting(&self, event: Event) {
        let _ = self.tx.send(event);
    }

    /// The counter of events dropped because the renderer was too slow.
    pub fn dropped_counter(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }
}

/// Keeps a copy of every event and lets a thread wait for one.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<Event>>,
    changed: Condvar,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }

    fn push(&self, event: Event) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events.push(event);
        self.changed.notify_all();
    }

    /// Waits, at most `timeout`, for an event that satisfies `wanted`.
    pub fn wait_for(&self, timeout: Duration, wanted: impl Fn(&Event) -> bool) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(found) = events.iter().find(|e| wanted(e)) {
                return Some(found.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            events = self
                .changed
                .wait_timeout(events, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    pub fn snapshot(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
