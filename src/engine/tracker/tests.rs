//! The tracker on evidence made by hand: each test is a small story whose
//! truth is known, and checks the states it tells and how it knows them.

use super::Tracker;
use crate::engine::call::{Call, Family, How, Opt};
use crate::engine::event::{Body, Event, Proto, Side, Source, TcpState};
use crate::engine::evidence::{
    CallRecord, Errno, Evidence, Flags, Sample, Seen, SocketId, What, Who,
};
use crate::engine::labels::Labels;
use std::net::SocketAddr;
use std::sync::Arc;

const SERVER: &str = "127.0.0.1:8888";
const CLIENT: &str = "127.0.0.1:40000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A story told to one tracker, evidence by evidence, in time order.
struct Story {
    tracker: Tracker,
    t: f64,
    seq: u64,
    events: Vec<Event>,
}

impl Story {
    fn new() -> Story {
        Story {
            tracker: Tracker::new(Arc::new(Labels::default())),
            t: 0.0,
            seq: 0,
            events: Vec::new(),
        }
    }

    fn tell(&mut self, who: &Who, what: What) {
        self.t += 0.001;
        self.seq += 1;
        let ev = Evidence {
            t: self.t,
            seq: self.seq,
            who: who.clone(),
            what,
        };
        self.tracker.process(ev);
        self.events.append(&mut self.tracker.out);
    }

    fn call(
        &mut self,
        who: &Who,
        call: Call,
        result: Result<i64, std::io::ErrorKind>,
        sample: Option<TcpState>,
    ) {
        let t = self.t + 0.001;
        let record = CallRecord {
            call,
            took: 0.0,
            result: result.map_err(|kind| Errno {
                kind,
                code: None,
                text: format!("{kind:?}"),
            }),
            data: None,
            sample: sample.map(|state| Sample {
                t,
                state: Some(state),
                via: "TCP_INFO",
                timer: None,
                queue: None,
            }),
            child: None,
            unread: None,
            shown: None,
            task: None,
        };
        self.tell(who, What::Call(Box::new(record)));
    }

    fn packet(&mut self, src: &str, dst: &str, flags: &str, seq: u32, ack: u32, len: usize) {
        let f = Flags {
            syn: flags.contains('S'),
            ack: flags.contains('A'),
            fin: flags.contains('F'),
            rst: flags.contains('R'),
            psh: flags.contains('P'),
        };
        let seen = Seen {
            proto: Proto::Tcp,
            src: addr(src),
            dst: addr(dst),
            flags: f,
            seq,
            ack_no: ack,
            len,
        };
        self.tell(&nobody(), What::Packet(seen));
    }

    /// (side, from, to, source) of every state event, in order.
    fn states(&self, side: Side) -> Vec<(TcpState, TcpState, Source)> {
        self.events
            .iter()
            .filter(|e| e.side == side)
            .filter_map(|e| match &e.body {
                Body::State {
                    from, to, source, ..
                } => Some((*from, *to, *source)),
                _ => None,
            })
            .collect()
    }

    fn said(&self, word: &str) -> bool {
        self.events.iter().any(|e| match &e.body {
            Body::Syscall { why, .. } => why.as_deref().is_some_and(|w| w.contains(word)),
            Body::State { detail, .. } => detail.as_deref().is_some_and(|d| d.contains(word)),
            _ => false,
        })
    }
}

fn nobody() -> Who {
    Who::nobody(Side::Server, Proto::Tcp)
}

/// A client socket of ours, connected from CLIENT to SERVER.
fn client(id: u64) -> Who {
    Who {
        side: Side::Client,
        proto: Proto::Tcp,
        // Far from the ids SocketId::next() gives connections born on the wire.
        socket: Some(SocketId(u64::MAX - id)),
        fd: Some(3),
        conn: Some("C1".into()),
        local: Some(addr(CLIENT)),
        remote: Some(addr(SERVER)),
    }
}

use TcpState::*;

/// The peer closes first (the server echoes and closes at once). Without
/// packets: CLOSE-WAIT from the kernel before recv() = 0, then our FIN:
/// LAST-ACK inferred, CLOSED from the kernel. No reset anywhere.
#[test]
fn the_peer_closes_first_without_packets() {
    let mut s = Story::new();
    let c = client(1);
    s.call(
        &c,
        Call::Socket {
            family: Family::Inet,
            stream: true,
        },
        Ok(3),
        None,
    );
    s.call(&c, Call::Connect(addr(SERVER)), Ok(0), Some(Established));
    s.call(&c, Call::Recv(4096), Ok(3), Some(CloseWait));
    s.call(&c, Call::Shutdown(How::Write), Ok(0), Some(Closed));
    s.call(&c, Call::Recv(4096), Ok(0), Some(Closed));
    assert_eq!(
        s.states(Side::Client),
        [
            (Closed, SynSent, Source::Inferred),
            (SynSent, Established, Source::Kernel),
            (Established, CloseWait, Source::Kernel),
            (CloseWait, LastAck, Source::Inferred),
            (LastAck, Closed, Source::Kernel),
        ]
    );
    assert!(!s.said("reset"), "{:#?}", s.events);
    assert!(s.said("LAST-ACK"), "the shutdown() says what its FIN does");
}

/// A whole connection seen on the wire, both ends ours (the tour): each
/// state moves at its packet, and FIN-WAIT-1 → FIN-WAIT-2 → TIME-WAIT.
#[test]
fn both_ends_on_the_wire() {
    let mut s = Story::new();
    let listener = Who {
        side: Side::Server,
        socket: Some(SocketId(u64::MAX - 10)),
        conn: None,
        local: Some(addr(SERVER)),
        remote: None,
        ..nobody()
    };
    s.call(
        &listener,
        Call::Socket {
            family: Family::Inet,
            stream: true,
        },
        Ok(3),
        None,
    );
    s.call(&listener, Call::Listen(16), Ok(0), Some(Listen));
    let c = Who {
        local: None,
        ..client(1)
    };
    s.tell(
        &c,
        What::Begun {
            target: addr(SERVER),
        },
    );
    s.packet(CLIENT, SERVER, "S", 1000, 0, 0);
    s.packet(SERVER, CLIENT, "SA", 5000, 1001, 0);
    s.packet(CLIENT, SERVER, "A", 1001, 5001, 0);
    s.packet(CLIENT, SERVER, "FA", 1001, 5001, 0);
    s.packet(SERVER, CLIENT, "A", 5001, 1002, 0);
    s.packet(SERVER, CLIENT, "FA", 5001, 1002, 0);
    s.packet(CLIENT, SERVER, "A", 1002, 5002, 0);
    let packet = |from, to| (from, to, Source::Packet);
    assert_eq!(
        s.states(Side::Client),
        [
            packet(Closed, SynSent),
            packet(SynSent, Established),
            packet(Established, FinWait1),
            packet(FinWait1, FinWait2),
            packet(FinWait2, TimeWait),
        ]
    );
    let server: Vec<_> = s
        .states(Side::Server)
        .into_iter()
        .filter(|(from, _, _)| *from != Closed)
        .collect();
    assert_eq!(
        server,
        [
            packet(Listen, SynReceived),
            packet(SynReceived, Established),
            packet(Established, CloseWait),
            packet(CloseWait, LastAck),
            packet(LastAck, Closed),
        ]
    );
    // Every packet of the connection carries its label, C1.
    assert!(s
        .events
        .iter()
        .filter(|e| matches!(e.body, Body::Packet { .. }))
        .all(|e| e.conn.as_deref() == Some("C1")));
}

/// Both FINs cross on the wire: CLOSING, then TIME-WAIT when our FIN is acknowledged.
#[test]
fn a_simultaneous_close_passes_closing() {
    let mut s = Story::new();
    let c = client(1);
    s.call(&c, Call::Connect(addr(SERVER)), Ok(0), Some(Established));
    s.packet(CLIENT, SERVER, "FA", 100, 200, 0);
    s.packet(SERVER, CLIENT, "FA", 200, 100, 0);
    s.packet(SERVER, CLIENT, "A", 201, 101, 0);
    let told: Vec<_> = s.states(Side::Client).into_iter().skip(2).collect();
    assert_eq!(
        told,
        [
            (Established, FinWait1, Source::Packet),
            (FinWait1, Closing, Source::Packet),
            (Closing, TimeWait, Source::Packet),
        ]
    );
}

/// An RST ends the connection at the packet, and only then is "reset" said.
#[test]
fn reset_only_with_an_rst() {
    let mut s = Story::new();
    let c = client(1);
    s.call(&c, Call::Connect(addr(SERVER)), Ok(0), Some(Established));
    // The kernel says CLOSED and nothing says why: no story, no reset.
    s.call(&c, Call::Send(3), Ok(3), Some(Closed));
    assert!(!s.said("reset") && !s.said("RST"));
    assert!(s.said("not observed"));

    let mut s = Story::new();
    s.call(&c, Call::Connect(addr(SERVER)), Ok(0), Some(Established));
    s.packet(SERVER, CLIENT, "R", 200, 0, 0);
    assert_eq!(
        s.states(Side::Client).last(),
        Some(&(Established, Closed, Source::Packet))
    );
    assert!(s.said("RST"));
}

/// With TCP_DEFER_ACCEPT, a bare ACK does not complete the server's side:
/// it stays in SYN-RECEIVED until data comes.
#[test]
fn defer_accept_holds_syn_received() {
    let mut s = Story::new();
    let listener = Who {
        side: Side::Server,
        socket: Some(SocketId(u64::MAX - 10)),
        conn: None,
        local: Some(addr(SERVER)),
        remote: None,
        ..nobody()
    };
    s.call(&listener, Call::Listen(4), Ok(0), Some(Listen));
    s.call(
        &listener,
        Call::SetSockOpt(Opt::DeferAccept(5)),
        Ok(0),
        None,
    );
    s.packet(CLIENT, SERVER, "S", 1000, 0, 0);
    s.packet(SERVER, CLIENT, "SA", 5000, 1001, 0);
    s.packet(CLIENT, SERVER, "A", 1001, 5001, 0);
    assert_eq!(
        s.states(Side::Server).last(),
        Some(&(Listen, SynReceived, Source::Packet))
    );
    s.packet(CLIENT, SERVER, "PA", 1001, 5001, 6);
    assert_eq!(
        s.states(Side::Server).last(),
        Some(&(SynReceived, Established, Source::Packet))
    );
}

/// A SYN the kernel drops (full accept queue) makes no connection: the
/// server's side is born only with its SYN-ACK.
#[test]
fn a_dropped_syn_makes_no_connection() {
    let mut s = Story::new();
    let listener = Who {
        side: Side::Server,
        socket: Some(SocketId(u64::MAX - 10)),
        conn: None,
        local: Some(addr(SERVER)),
        remote: None,
        ..nobody()
    };
    s.call(&listener, Call::Listen(0), Ok(0), Some(Listen));
    s.packet(CLIENT, SERVER, "S", 1000, 0, 0);
    assert!(s
        .states(Side::Server)
        .iter()
        .all(|(_, to, _)| *to == Listen));
    s.packet(CLIENT, SERVER, "S", 1000, 0, 0);
    s.packet(SERVER, CLIENT, "SA", 5000, 1001, 0);
    assert_eq!(
        s.states(Side::Server).last(),
        Some(&(Listen, SynReceived, Source::Packet))
    );
}

/// Time never goes back in what the tracker tells, and a connection's
/// stage never goes back either.
#[test]
fn time_and_stage_only_go_forward() {
    let mut s = Story::new();
    let c = client(1);
    s.call(&c, Call::Connect(addr(SERVER)), Ok(0), Some(Established));
    s.call(&c, Call::Shutdown(How::Write), Ok(0), Some(FinWait2));
    s.call(&c, Call::Recv(4096), Ok(5), Some(FinWait2));
    s.call(&c, Call::Recv(4096), Ok(0), Some(TimeWait));
    s.call(&c, Call::Close, Ok(0), Some(TimeWait));
    let times: Vec<f64> = s.events.iter().map(|e| e.t).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let stages: Vec<_> = s.events.iter().map(|e| e.stage).collect();
    assert!(stages.windows(2).all(|w| w[0] <= w[1]), "{stages:?}");
    // The data after our FIN is read in the close stage: the story does not go back.
    assert_eq!(
        s.states(Side::Client).last(),
        Some(&(FinWait2, TimeWait, Source::Kernel))
    );
}

/// The peer's FIN came unseen, just before our shutdown(): the kernel says
/// CLOSED right after it. Only CLOSE-WAIT → LAST-ACK ends there (no reset
/// was seen), so that is the path told, not a FIN-WAIT that never was.
#[test]
fn an_unseen_fin_before_our_shutdown() {
    let mut s = Story::new();
    let c = client(1);
    s.call(&c, Call::Connect(addr(SERVER)), Ok(0), Some(Established));
    s.call(&c, Call::Recv(4096), Ok(3), Some(Established));
    s.call(&c, Call::Shutdown(How::Write), Ok(0), Some(Closed));
    let told: Vec<_> = s.states(Side::Client).into_iter().skip(2).collect();
    assert_eq!(
        told,
        [
            (Established, CloseWait, Source::Inferred),
            (CloseWait, LastAck, Source::Inferred),
            (LastAck, Closed, Source::Kernel),
        ]
    );
    assert!(s.said("LAST-ACK"), "{:#?}", s.events);
}

/// A connection whose close was never told (its evidence lost under load)
/// is forgotten once it has been quiet a while and the kernel's table no
/// longer has it; one the kernel still has is kept, however quiet.
#[test]
fn a_connection_whose_end_was_lost_is_forgotten_once_the_kernel_lets_go() {
    let mut s = Story::new();
    let c = client(1);
    s.call(
        &c,
        Call::Socket {
            family: Family::Inet,
            stream: true,
        },
        Ok(3),
        None,
    );
    s.call(&c, Call::Connect(addr(SERVER)), Ok(0), Some(Established));
    // No close() ever arrives. The kernel still has the connection:
    let has_it = |_: u16| Some(vec![(addr(CLIENT), addr(SERVER))]);
    let quiet = s.t + super::sweep::STALE + 1.0;
    s.tracker.sweep(quiet, &has_it);
    assert_eq!(s.tracker.remembered().0, 1, "kept: the kernel has it");
    // Now the kernel's table has no such connection: forgotten.
    let gone = |_: u16| Some(Vec::new());
    s.tracker.sweep(quiet, &gone);
    assert_eq!(s.tracker.remembered().0, 0, "forgotten");
    // A table that cannot be read forgets nothing.
    let mut t = Story::new();
    t.call(&c, Call::Connect(addr(SERVER)), Ok(0), Some(Established));
    let unknown = |_: u16| None;
    t.tracker.sweep(t.t + super::sweep::STALE + 1.0, &unknown);
    assert_eq!(t.tracker.remembered().0, 1);
}
