//! The tracker: one RFC 9293 state machine per socket, driven by evidence
//! in time order, and the events it tells.
//!
//! * A packet moves a state at the packet's time ([`Source::Packet`]).
//! * A kernel sample confirms the state, or corrects it
//!   ([`Source::Kernel`]); the states a correction passes through are
//!   filled in along the RFC's path, marked [`Source::Inferred`], and only
//!   where the evidence allows that path (no FIN is ever invented).
//! * A call is explained from what the evidence shows (see [`narrate`]).
//!
//! "Reset" is said only when an RST was seen, or the kernel returned
//! ECONNRESET, EPIPE, ECONNABORTED (or ECONNREFUSED to a SYN).

mod calls;
mod ledger;
pub mod narrate;
mod sweep;
pub mod tcp;
#[cfg(test)]
mod tests;

use crate::engine::event::{Body, Event, Proto, Side, Source, Stage, TcpState};
use crate::engine::evidence::{Evidence, Flags, Sample, Seen, SocketId, What, Who};
use crate::engine::labels::{canonical, Labels, Pair};
use rustc_hash::FxHashMap as HashMap;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tcp::Step;

/// How long a closed socket is remembered, for its last packets (the ACK
/// of a FIN may come after close() returns).
const REMEMBER_AFTER_CLOSE: f64 = 2.0;

/// A packet as two captures of it would both record it: kernel time,
/// ends, numbers, length and flags.
type PacketKey = (u64, SocketAddr, SocketAddr, u32, u32, usize, Flags);

/// What the tracker knows of one socket.
struct Endpoint {
    side: Side,
    proto: Proto,
    fd: Option<i64>,
    label: Option<Arc<str>>,
    /// The addresses as the program sees them (an IPv6 socket's IPv4 peer
    /// is `::ffff:a.b.c.d`).
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
    state: TcpState,
    listener: bool,
    /// For a connection born on a listener: that listener.
    parent: Option<SocketId>,
    /// Socket options that change what the kernel does.
    defer_accept: bool,
    linger0: bool,
    /// O_NONBLOCK is on: a call that would wait returns EAGAIN at once.
    nonblocking: bool,
    /// SO_RCVTIMEO or SO_SNDTIMEO is set: a wait ends with EAGAIN.
    timeout: bool,
    /// Our SYN went out (connect() was made).
    syn_out: bool,
    /// Facts of the close: FINs each way, a reset, our own SHUT_RD.
    fin_out: bool,
    fin_in: bool,
    reset: bool,
    shut_rd: bool,
    /// The sequence number just after our FIN (raw), to recognise its ACK.
    fin_end: Option<u32>,
    /// The last SYN, FIN or RST this socket was seen sending.
    last_sent: Option<(f64, &'static str)>,
    /// How many times our SYN went out again, unanswered.
    syn_again: u32,
    /// A packet of this socket has been seen.
    captured: bool,
    /// When the handshake completed (for the accept queue's wait).
    established_at: Option<f64>,
    /// A run of identical failed calls, counted rather than repeated.
    repeat: Option<Repeat>,
    /// The stage this socket has reached before its connection is known.
    stage: Stage,
    /// The last few state changes, with their times: the state a call
    /// found when it was made, even if packets moved it while it ran.
    history: VecDeque<(f64, TcpState)>,
    /// When each FIN went: who closed first decides the path.
    fin_out_at: Option<f64>,
    fin_in_at: Option<f64>,
    /// When anything was last told about this socket (for the sweep).
    seen: f64,
}

impl Endpoint {
    /// Who speaks for this endpoint (socket `id`), as the evidence said.
    fn who(&self, id: SocketId) -> Who {
        Who {
            side: self.side,
            proto: self.proto,
            socket: Some(id),
            fd: self.fd,
            conn: self.label.clone(),
            local: self.local,
            remote: self.remote,
        }
    }

    fn new(who: &Who) -> Endpoint {
        Endpoint {
            side: who.side,
            proto: who.proto,
            fd: who.fd,
            label: who.conn.clone(),
            local: who.local,
            remote: who.remote,
            state: TcpState::Closed,
            listener: false,
            parent: None,
            defer_accept: false,
            linger0: false,
            nonblocking: false,
            timeout: false,
            syn_out: false,
            fin_out: false,
            fin_in: false,
            reset: false,
            shut_rd: false,
            fin_end: None,
            last_sent: None,
            syn_again: 0,
            captured: false,
            established_at: None,
            repeat: None,
            stage: Stage::Listen,
            history: VecDeque::new(),
            fin_out_at: None,
            fin_in_at: None,
            seen: 0.0,
        }
    }

    /// The state this socket was in at time `t`.
    fn state_at(&self, t: f64) -> TcpState {
        let latest = self.history.iter().rev().find(|(at, _)| *at <= t);
        match (latest, self.history.front()) {
            (Some((_, state)), _) => *state,
            // Older than anything remembered: the oldest state known.
            (None, Some((_, state))) => *state,
            (None, None) => self.state,
        }
    }

    /// Did the peer's FIN come before ours (or ours never went)?
    fn peer_closed_first(&self) -> bool {
        self.fin_in_at
            .is_some_and(|i| self.fin_out_at.is_none_or(|o| i < o))
    }

    fn facts(&self) -> tcp::Facts {
        tcp::Facts {
            our_fin: self.fin_out,
            their_fin: self.fin_in,
        }
    }
}

/// A state change the tracker is about to tell.
/// Failed calls just like the first of a run: how many more, the last when.
struct Repeat {
    call: &'static str,
    error: String,
    count: u64,
    last: f64,
}

/// Who an event is about, as it will be told.
struct Said {
    side: Side,
    proto: Proto,
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
    conn: Option<Arc<str>>,
    socket: Option<SocketId>,
}

struct Change {
    t: f64,
    to: TcpState,
    source: Source,
    via: Option<&'static str>,
    detail: Option<String>,
}

pub struct Tracker {
    eps: HashMap<SocketId, Endpoint>,
    /// (local, remote), canonical → the socket of ours with those ends.
    by_pair: HashMap<(SocketAddr, SocketAddr), SocketId>,
    listeners: Vec<SocketId>,
    /// UDP sockets of ours, for datagrams to or from their bound address.
    udp: Vec<SocketId>,
    /// Sockets in a connect() (or first sendto()) whose packets may come
    /// before the call returns and names the local address: (target, socket).
    connecting: Vec<(SocketAddr, SocketId)>,
    /// Each direction's first sequence number, for relative numbers.
    ledger: ledger::Ledger,
    /// Each connection's stage (it never goes back), and when it was last told.
    stages: HashMap<(Proto, Pair), (Stage, f64)>,
    labels: Arc<Labels>,
    forget_at: VecDeque<(f64, SocketId)>,
    /// The traced thread whose call is being told (its events carry it).
    task: Option<crate::engine::event::Task>,
    /// The last packet told, to tell a packet seen by two captures once.
    last_packet: Option<PacketKey>,
    /// The events told, in order; the timeline takes them.
    pub out: Vec<Event>,
}

impl Tracker {
    pub fn new(labels: Arc<Labels>) -> Tracker {
        Tracker {
            eps: HashMap::default(),
            by_pair: HashMap::default(),
            listeners: Vec::new(),
            udp: Vec::new(),
            connecting: Vec::new(),
            ledger: ledger::Ledger::default(),
            stages: HashMap::default(),
            labels,
            forget_at: VecDeque::new(),
            task: None,
            last_packet: None,
            out: Vec::new(),
        }
    }

    /// How many sockets and connections the tracker remembers (memory).
    pub fn remembered(&self) -> (usize, usize) {
        (self.eps.len(), self.ledger.len())
    }

    pub fn process(&mut self, ev: Evidence) {
        let Evidence { t, who, what, .. } = ev;
        match what {
            What::Note {
                stage,
                topic,
                text,
                facts,
            } => self.tell(t, &who, stage, Body::Note { topic, text, facts }),
            What::Error {
                stage,
                code,
                error,
                text,
            } => self.tell(t, &who, stage, Body::Error { code, error, text }),
            What::Begun { target } => {
                if let Some(id) = self.ensure(&who) {
                    self.connecting.push((canonical(target), id));
                }
            }
            What::Sample(sample) => {
                if let Some(id) = self.ensure(&who).or_else(|| self.queued(&who)) {
                    let changes = self.correct(id, t, &sample, Vec::new());
                    self.tell_changes(id, changes);
                }
            }
            What::Packet(seen) => self.packet(t, seen),
            What::Call(record) => {
                self.task = record.task;
                self.call(t, &who, *record);
                self.task = None;
            }
            What::Gone => {
                if let Some(id) = who.socket {
                    self.forget_at.push_back((t, id));
                }
            }
        }
        self.expire(t);
    }

    /// The endpoint for `who`, made if new, with what `who` adds to it.
    fn ensure(&mut self, who: &Who) -> Option<SocketId> {
        let id = who.socket?;
        let ep = self.eps.entry(id).or_insert_with(|| Endpoint::new(who));
        if who.fd.is_some() {
            ep.fd = who.fd;
        }
        if who.local.is_some() {
            ep.local = who.local;
        }
        // A UDP socket that talks to many peers names each datagram's peer
        // in its records: that peer is not the socket's own (connect() is).
        let per_datagram = ep.proto == Proto::Udp && ep.remote.is_none() && who.remote.is_some();
        if per_datagram {
            return Some(id);
        }
        if ep.label.is_none() {
            ep.label = who.conn.clone();
        }
        if who.remote.is_some() {
            ep.remote = who.remote;
        }
        if let (Some(local), Some(remote)) = (ep.local, ep.remote) {
            let key = (canonical(local), canonical(remote));
            self.by_pair.entry(key).or_insert(id);
            if let Some(label) = &ep.label {
                self.labels.name(local, remote, label);
            }
        }
        Some(id)
    }

    /// The identity an event about `who` carries: the tracker's knowledge
    /// of the socket (its label may have come from the wire) or `who` itself.
    fn view(
        &self,
        who: &Who,
    ) -> (
        Side,
        Proto,
        Option<SocketAddr>,
        Option<SocketAddr>,
        Option<Arc<str>>,
    ) {
        match who.socket.and_then(|id| self.eps.get(&id)) {
            Some(ep) => (
                ep.side,
                ep.proto,
                who.local.or(ep.local),
                who.remote.or(ep.remote),
                who.conn.clone().or_else(|| ep.label.clone()),
            ),
            None => (who.side, who.proto, who.local, who.remote, who.conn.clone()),
        }
    }

    /// Tells one event about `who` (a note, an error, a call).
    fn tell(&mut self, t: f64, who: &Who, stage: Stage, body: Body) {
        let (side, proto, local, remote, conn) = self.view(who);
        let said = Said {
            side,
            proto,
            local,
            remote,
            conn,
            socket: who.socket,
        };
        self.push(t, said, stage, body);
    }

    /// Adds an event, in the latest stage its connection has reached: a
    /// connection's stage never goes back.
    fn push(&mut self, t: f64, said: Said, stage: Stage, body: Body) {
        let pair = match (said.local, said.remote) {
            (Some(l), Some(r)) => Some(Pair::new(l, r)),
            _ => None,
        };
        let mut ep = said.socket.and_then(|id| self.eps.get_mut(&id));
        if let Some(ep) = ep.as_mut() {
            ep.seen = t;
        }
        let stage = match (pair, ep) {
            (Some(pair), ep) => {
                // The connection starts from where its socket already was.
                let start = ep.as_ref().map_or(Stage::Listen, |e| e.stage);
                let at = self.stages.entry((said.proto, pair)).or_insert((start, t));
                *at = (at.0.max(stage), t);
                let stage = at.0;
                if let Some(ep) = ep.filter(|e| e.remote.is_some()) {
                    ep.stage = stage;
                }
                stage
            }
            (None, Some(ep)) => {
                ep.stage = ep.stage.max(stage);
                ep.stage
            }
            (None, None) => stage,
        };
        self.out.push(Event {
            t,
            side: said.side,
            stage,
            proto: said.proto,
            local: said.local,
            remote: said.remote,
            conn: said.conn,
            task: self.task,
            body,
        });
    }

    /// Tells state changes of one socket, in order.
    fn tell_changes(&mut self, id: SocketId, changes: Vec<Change>) {
        for change in changes {
            let Some(ep) = self.eps.get_mut(&id) else {
                return;
            };
            let from = ep.state;
            if from == change.to {
                continue;
            }
            ep.state = change.to;
            if ep.history.is_empty() {
                ep.history.push_back((f64::NEG_INFINITY, from));
            }
            ep.history.push_back((change.t, change.to));
            if ep.history.len() > 8 {
                ep.history.pop_front();
            }
            if change.to == TcpState::Established {
                ep.established_at.get_or_insert(change.t);
            }
            // Entering these states means a FIN went one way or the other.
            use TcpState::*;
            if matches!(change.to, CloseWait | Closing | TimeWait) && !ep.fin_in {
                ep.fin_in = true;
                ep.fin_in_at = Some(change.t);
            }
            if matches!(change.to, FinWait1 | FinWait2 | LastAck | Closing) && !ep.fin_out {
                ep.fin_out = true;
                ep.fin_out_at = Some(change.t);
            }
            let said = Said {
                side: ep.side,
                proto: ep.proto,
                local: ep.local,
                remote: ep.remote,
                conn: ep.label.clone(),
                socket: Some(id),
            };
            let body = Body::State {
                from,
                to: change.to,
                source: change.source,
                via: change.via,
                detail: change.detail,
            };
            self.push(change.t, said, change.to.stage(), body);
        }
    }

    /// Moves a socket one step, as a packet shows it.
    fn step_by_packet(&mut self, id: SocketId, t: f64, step: Step) {
        let Some(ep) = self.eps.get_mut(&id) else {
            return;
        };
        match step {
            Step::SynOut => ep.syn_out = true,
            Step::FinOut => {
                ep.fin_out = true;
                ep.fin_out_at.get_or_insert(t);
            }
            Step::FinIn => {
                ep.fin_in = true;
                ep.fin_in_at.get_or_insert(t);
            }
            Step::Reset => ep.reset = true,
            _ => {}
        }
        let Some(to) = tcp::step(ep.state, step) else {
            return;
        };
        let detail = (step == Step::Reset)
            .then(|| crate::t!("an RST ended the connection", "一个 RST 结束了连接"));
        let change = Change {
            t,
            to,
            source: Source::Packet,
            via: Some("packets"),
            detail,
        };
        self.tell_changes(id, vec![change]);
    }

    /// Confirms or corrects a socket's state with what the kernel said.
    /// `changes` are the changes the evidence already implies (not yet
    /// applied); the result is them plus the correction.
    fn correct(
        &mut self,
        id: SocketId,
        t: f64,
        sample: &Sample,
        mut changes: Vec<Change>,
    ) -> Vec<Change> {
        let Some(ep) = self.eps.get(&id) else {
            return changes;
        };
        let current = changes.last().map_or(ep.state, |c| c.to);
        let seen = sample.state.unwrap_or(TcpState::Closed);
        let detail = sample_detail(sample);
        // A packet is stamped as it leaves the sender; the receiving kernel
        // takes it a moment later. A sample read in that moment still shows
        // the state before it: stale, not a step back (no state goes back).
        let both = tcp::Facts {
            our_fin: true,
            their_fin: true,
        };
        let behind = seen != TcpState::Closed && tcp::path(seen, current, both).is_some();
        if seen != current && changes.is_empty() && behind {
            return changes;
        }
        if seen == current {
            // Confirmed: the last implied change was the kernel's own answer.
            if let Some(last) = changes.last_mut() {
                last.source = Source::Kernel;
                last.via = Some(sample.via);
                last.detail = last.detail.take().or(detail);
            }
            return changes;
        }
        // A reset, an abort, or a connect() that ended (refused or given
        // up: SO_ERROR tells which) goes to CLOSED in one step.
        let straight =
            seen == TcpState::Closed && (ep.reset || ep.linger0 || current == TcpState::SynSent);
        // The state the kernel names is itself evidence of the FINs it takes.
        let mut facts = ep.facts();
        use TcpState::*;
        facts.their_fin |= matches!(seen, CloseWait | LastAck | Closing | TimeWait);
        // Our FIN went and the socket is CLOSED without a reset: only the
        // LAST-ACK path ends there, so the peer's FIN came first.
        facts.their_fin |= seen == Closed && ep.fin_out && !ep.reset && !ep.linger0;
        facts.our_fin |= matches!(seen, FinWait1 | FinWait2 | Closing | TimeWait | LastAck);
        let path = if straight {
            Some(vec![seen])
        } else {
            tcp::path(current, seen, facts)
        };
        let (path, unseen) = match path {
            Some(path) => (path, false),
            None => (vec![seen], true),
        };
        let last = path.len() - 1;
        for (i, to) in path.into_iter().enumerate() {
            let kernel = i == last;
            let detail = if kernel {
                match (&detail, unseen) {
                    (Some(d), _) => Some(d.clone()),
                    (None, true) => Some(crate::t!(
                        "how it got here was not observed",
                        "中间经过了什么没有观测到"
                    )),
                    (None, false) => None,
                }
            } else {
                None
            };
            changes.push(Change {
                // Read right after the evidence it comes with: told at its time.
                t,
                to,
                source: if kernel {
                    Source::Kernel
                } else {
                    Source::Inferred
                },
                via: kernel.then_some(sample.via),
                detail,
            });
        }
        changes
    }

    /// Forgets sockets whose time has come (memory stays bounded).
    fn expire(&mut self, now: f64) {
        while let Some((at, id)) = self.forget_at.front().copied() {
            if at > now {
                break;
            }
            self.forget_at.pop_front();
            self.forget(id);
        }
    }

    fn forget(&mut self, id: SocketId) {
        let Some(ep) = self.eps.remove(&id) else {
            return;
        };
        if let (Some(local), Some(remote)) = (ep.local, ep.remote) {
            let (l, r) = (canonical(local), canonical(remote));
            if self.by_pair.get(&(l, r)) == Some(&id) {
                self.by_pair.remove(&(l, r));
            }
            // The other end may be ours too (the tour): keep what it needs.
            if !self.by_pair.contains_key(&(r, l)) {
                self.ledger.forget(l, r);
                self.labels.forget(l, r);
                self.stages.remove(&(ep.proto, Pair::new(l, r)));
            }
        }
        self.listeners.retain(|l| *l != id);
        self.udp.retain(|u| *u != id);
        self.connecting.retain(|(_, c)| *c != id);
        if ep.listener {
            // Connections that never left its accept queue go with it.
            let orphans: Vec<SocketId> = self
                .eps
                .iter()
                .filter(|(_, e)| e.parent == Some(id) && e.fd.is_none())
                .map(|(k, _)| *k)
                .collect();
            for orphan in orphans {
                self.forget(orphan);
            }
        }
    }

    /// A connection seen in the kernel's table while it waits in one of our
    /// listeners' accept queues (no socket of the program's yet).
    fn queued(&mut self, who: &Who) -> Option<SocketId> {
        let (local, remote) = (who.local?, who.remote?);
        let key = (canonical(local), canonical(remote));
        if let Some(id) = self.by_pair.get(&key) {
            return Some(*id);
        }
        let listener = self.listener_at(canonical(local))?;
        Some(self.new_child(listener, canonical(local), canonical(remote)))
    }

    /// A listener of ours that a SYN to `dst` is for.
    fn listener_at(&self, dst: SocketAddr) -> Option<SocketId> {
        self.listeners.iter().copied().find(|id| {
            self.eps.get(id).is_some_and(|ep| {
                ep.local.is_some_and(|l| serves(l, dst)) && ep.state == TcpState::Listen
            })
        })
    }

    /// A UDP socket of ours bound where `addr` is.
    fn udp_at(&self, addr: SocketAddr) -> Option<SocketId> {
        self.udp.iter().copied().find(|id| {
            self.eps
                .get(id)
                .is_some_and(|ep| ep.local.is_some_and(|l| serves(l, addr)))
        })
    }

    /// A socket of ours in connect() (or a first sendto()) to `dst`: this
    /// packet from `src` is its first, and names its local address.
    fn claim_connecting(&mut self, src: SocketAddr, dst: SocketAddr) -> Option<SocketId> {
        let at = self
            .connecting
            .iter()
            .position(|(target, _)| *target == dst)?;
        let (_, id) = self.connecting.remove(at);
        let ep = self.eps.get_mut(&id)?;
        let like = ep.remote.or(ep.local);
        ep.local = Some(as_family_of(src, like));
        if ep.remote.is_none() && ep.proto == Proto::Tcp {
            ep.remote = Some(as_family_of(dst, like));
        }
        if ep.proto == Proto::Tcp {
            self.by_pair.insert((src, dst), id);
        }
        match &ep.label {
            Some(label) => {
                self.labels.name(src, dst, label);
            }
            // A socket with no label of its own (a traced program's) takes
            // the number the listener it reaches gives it, or its own count.
            None if ep.proto == Proto::Tcp => {
                let scope = self.listener_at(dst).map_or(0, |l| l.0);
                let label = self.labels.assign(scope, src, dst);
                if let Some(ep) = self.eps.get_mut(&id) {
                    ep.label = Some(label);
                }
            }
            None => {}
        }
        Some(id)
    }

    /// A connection born on `listener` from a SYN: it waits, unknown to
    /// the program, until accept() returns it.
    fn new_child(&mut self, listener: SocketId, local: SocketAddr, remote: SocketAddr) -> SocketId {
        let id = SocketId::next();
        let parent = &self.eps[&listener];
        let shown = |a: SocketAddr| as_family_of(a, parent.local);
        let (local, remote) = (shown(local), shown(remote));
        let label = self.labels.assign(listener.0, local, remote);
        let mut child = Endpoint::new(&Who {
            side: Side::Server,
            proto: Proto::Tcp,
            socket: Some(id),
            fd: None,
            conn: Some(label),
            local: Some(local),
            remote: Some(remote),
        });
        child.state = TcpState::Listen;
        child.parent = Some(listener);
        child.defer_accept = parent.defer_accept;
        self.eps.insert(id, child);
        self.by_pair
            .insert((canonical(local), canonical(remote)), id);
        id
    }

    /// A packet: told, then the states it moves, at its own time.
    fn packet(&mut self, t: f64, p: Seen) {
        // Two captures (one per port, as `trace` opens them) both see a
        // packet between their ports: the same frame, with the same
        // kernel timestamp. It is told once.
        let key = (t.to_bits(), p.src, p.dst, p.seq, p.ack_no, p.len, p.flags);
        if self.last_packet.as_ref() == Some(&key) {
            return;
        }
        self.last_packet = Some(key);
        let (src, dst) = (canonical(p.src), canonical(p.dst));
        let first_syn = p.flags.syn && !p.flags.ack;
        let mut sender = self.by_pair.get(&(src, dst)).copied();
        if sender.is_none() && p.proto == Proto::Udp {
            sender = self.udp_at(src);
        }
        if sender.is_none() && (first_syn || p.proto == Proto::Udp) {
            sender = self.claim_connecting(src, dst);
        }
        // A SYN-ACK from one of our listeners' ports: the kernel took the
        // SYN (a full accept queue drops it instead), and a connection is born.
        if sender.is_none() && p.proto == Proto::Tcp && p.flags.syn && p.flags.ack {
            if let Some(listener) = self.listener_at(src) {
                let child = self.new_child(listener, src, dst);
                self.step_by_packet(child, t, Step::SynIn);
                sender = Some(child);
            }
        }
        let mut receiver = self.by_pair.get(&(dst, src)).copied();
        if receiver.is_none() && p.proto == Proto::Udp {
            receiver = self.udp_at(dst);
        }
        // A SYN to one of our listeners: shown, and its connection named,
        // though no connection exists until the kernel answers it.
        let knocking = (sender.or(receiver).is_none() && first_syn && p.proto == Proto::Tcp)
            .then(|| self.listener_at(dst))
            .flatten();
        let Some(ours) = sender.or(receiver).or(knocking) else {
            // Not a socket of this program (another client of the same server).
            return;
        };
        let label = match knocking {
            Some(listener) => Some(self.labels.assign(listener.0, dst, src)),
            None => self.packet_label(sender, receiver, src, dst),
        };
        let side = match (sender, knocking) {
            (Some(s), _) => self.eps[&s].side,
            (None, Some(_)) => Side::Client,
            (None, None) => match self.eps[&ours].side {
                Side::Server => Side::Client,
                Side::Client => Side::Server,
            },
        };
        // Sequence numbers start at a random value (the ISN); count from it.
        let (seq, ack) = self.ledger.relative(src, dst, &p, t);
        let reached = self
            .stages
            .get(&(p.proto, Pair::new(src, dst)))
            .map(|(stage, _)| *stage);
        let stage = packet_stage(&p, reached);
        let shown = |a: SocketAddr| as_family_of(a, self.eps[&ours].local);
        let body = Body::Packet {
            flags: if p.proto == Proto::Tcp {
                p.flags.names()
            } else {
                String::new()
            },
            seq,
            ack,
            len: p.len,
        };
        let (from, to) = (shown(p.src), shown(p.dst));
        let said = Said {
            side,
            proto: p.proto,
            local: Some(from),
            remote: Some(to),
            conn: label,
            socket: Some(ours),
        };
        self.push(t, said, stage, body);
        if p.proto == Proto::Tcp {
            if let Some(s) = sender {
                self.sent(s, t, &p);
            }
            if let Some(r) = receiver {
                self.received(r, t, &p);
            }
        }
    }

    fn packet_label(
        &mut self,
        sender: Option<SocketId>,
        receiver: Option<SocketId>,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Option<Arc<str>> {
        if let Some(label) = self.labels.get(src, dst) {
            return Some(label);
        }
        // A UDP socket with many peers numbers them as it hears from them.
        for (id, peer_is_dst) in [(sender, true), (receiver, false)] {
            let Some(ep) = id.and_then(|id| self.eps.get(&id)) else {
                continue;
            };
            if ep.proto == Proto::Udp && ep.remote.is_none() && ep.label.is_none() {
                let (local, peer) = if peer_is_dst { (src, dst) } else { (dst, src) };
                return Some(self.labels.assign_peer(id.map_or(0, |i| i.0), local, peer));
            }
            if let Some(label) = &ep.label {
                return Some(label.clone());
            }
        }
        None
    }

    /// A segment this socket sent.
    fn sent(&mut self, id: SocketId, t: f64, p: &Seen) {
        let mut syn_again = None;
        if let Some(ep) = self.eps.get_mut(&id) {
            ep.captured = true;
            if p.flags.syn && !p.flags.ack && ep.state == TcpState::SynSent {
                if let Some((before, "SYN")) = ep.last_sent {
                    ep.syn_again += 1;
                    syn_again = Some((t - before, ep.syn_again));
                }
            }
            if p.flags.rst || p.flags.fin || p.flags.syn {
                let kind = if p.flags.rst {
                    "RST"
                } else if p.flags.fin {
                    "FIN"
                } else {
                    "SYN"
                };
                ep.last_sent = Some((t, kind));
            }
            if p.flags.fin {
                ep.fin_end = Some(p.seq.wrapping_add(p.len as u32).wrapping_add(1));
            }
        }
        if let Some((waited, n)) = syn_again {
            self.tell_syn_again(id, t, waited, n);
        }
        if p.flags.rst {
            return self.step_by_packet(id, t, Step::Reset);
        }
        if p.flags.syn && !p.flags.ack {
            self.step_by_packet(id, t, Step::SynOut);
        }
        if p.flags.fin {
            self.step_by_packet(id, t, Step::FinOut);
        }
    }

    /// Our SYN went out again: nothing answered the last one.
    fn tell_syn_again(&mut self, id: SocketId, t: f64, waited: f64, n: u32) {
        let Some(ep) = self.eps.get(&id) else {
            return;
        };
        let who = ep.who(id);
        let limit = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_syn_retries")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        let text = match limit {
            Some(limit) => crate::t!(
                "no SYN-ACK and no RST came for {waited:.1} s: the kernel sends the SYN again (retry {n}; this machine gives up after {limit}: net.ipv4.tcp_syn_retries)",
                "{waited:.1} 秒内既没有 SYN-ACK 也没有 RST：内核再次发送 SYN（第 {n} 次重试；这台机器在 {limit} 次后放弃：net.ipv4.tcp_syn_retries）"
            ),
            None => crate::t!(
                "no SYN-ACK and no RST came for {waited:.1} s: the kernel sends the SYN again (retry {n})",
                "{waited:.1} 秒内既没有 SYN-ACK 也没有 RST：内核再次发送 SYN（第 {n} 次重试）"
            ),
        };
        let mut facts = serde_json::Map::new();
        facts.insert("retry".into(), n.into());
        facts.insert("waited".into(), ((waited * 1e3).round() / 1e3).into());
        let body = Body::Note {
            topic: "syn-again",
            text,
            facts,
        };
        self.tell(t, &who, Stage::Request, body);
    }

    /// A segment that came in to this socket.
    fn received(&mut self, id: SocketId, t: f64, p: &Seen) {
        let Some(ep) = self.eps.get_mut(&id) else {
            return;
        };
        ep.captured = true;
        if p.flags.rst {
            return self.step_by_packet(id, t, Step::Reset);
        }
        if p.flags.syn && p.flags.ack {
            self.step_by_packet(id, t, Step::SynAckIn);
        } else if p.flags.ack {
            let Some(ep) = self.eps.get(&id) else { return };
            // With TCP_DEFER_ACCEPT, Linux ignores the bare ACK: only data
            // (or a FIN) completes the handshake on the server's side.
            if ep.state == TcpState::SynReceived && (!ep.defer_accept || p.len > 0 || p.flags.fin) {
                self.step_by_packet(id, t, Step::AckIn);
            }
            let acked = self
                .eps
                .get(&id)
                .and_then(|ep| ep.fin_end)
                .is_some_and(|end| {
                    // "ack ≥ end" in sequence-number space (it wraps at 2^32).
                    (p.ack_no.wrapping_sub(end) as i32) >= 0
                });
            if acked {
                self.step_by_packet(id, t, Step::FinAckedIn);
            }
        }
        if p.flags.fin {
            self.step_by_packet(id, t, Step::FinIn);
        }
    }
}

/// The stage of a packet, from its flags and its connection's stage.
fn packet_stage(p: &Seen, conn: Option<Stage>) -> Stage {
    if p.proto == Proto::Udp {
        return Stage::Transfer;
    }
    let f = p.flags;
    if f.rst || f.fin {
        Stage::Close
    } else if f.syn && !f.ack {
        Stage::Request
    } else if f.syn || p.len == 0 && conn.is_none_or(|s| s <= Stage::Confirm) {
        Stage::Confirm
    } else if p.len > 0 {
        Stage::Transfer
    } else {
        conn.unwrap_or(Stage::Transfer)
    }
}

/// Does a socket bound at `local` receive what is sent to `addr`?
fn serves(local: SocketAddr, addr: SocketAddr) -> bool {
    let local_c = canonical(local);
    local_c.port() == addr.port() && (local.ip().is_unspecified() || local_c.ip() == addr.ip())
}

/// `addr` written as a socket of `like`'s family sees it: an IPv4 address
/// on an IPv6 socket is IPv4-mapped (`::ffff:127.0.0.1`).
fn as_family_of(addr: SocketAddr, like: Option<SocketAddr>) -> SocketAddr {
    match (addr.ip(), like) {
        (IpAddr::V4(v4), Some(SocketAddr::V6(_))) => {
            SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), addr.port())
        }
        _ => addr,
    }
}

/// More about a state the kernel reported: TIME-WAIT's timer, a
/// connection gone from the table.
fn sample_detail(sample: &Sample) -> Option<String> {
    match (sample.state, sample.timer) {
        (None, _) => Some(crate::t!(
            "gone from the kernel's socket table",
            "已从内核的套接字表中消失"
        )),
        (Some(TcpState::TimeWait), Some(left)) => {
            let left = format!("{:.1}", left.as_secs_f64());
            Some(crate::t!(
                "timer {left} s left of 60 s",
                "计时器：60 秒中还剩 {left} 秒"
            ))
        }
        _ => None,
    }
}
