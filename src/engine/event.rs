//! The one type everything else talks about: [`Event`]. Plain data.
//!
//! The engine gathers evidence (calls, kernel samples, packets); the
//! tracker turns it into events; the renderers turn the same events into a
//! timeline for people, JSON Lines for graders, or a diagram, so the views
//! can never disagree.

use serde::{Serialize, Serializer};
use std::net::SocketAddr;
use std::sync::Arc;

/// Which program in the story made the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Server,
    Client,
}

/// The stages of the classic lesson (the server listens, the client
/// requests, the connection is confirmed) plus data transfer and closing.
/// They are ordered: a connection only ever moves forward through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
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

    /// The stage of the lesson a socket in this state is in.
    pub fn stage(self) -> Stage {
        match self {
            TcpState::Listen => Stage::Listen,
            TcpState::SynSent => Stage::Request,
            TcpState::SynReceived | TcpState::Established => Stage::Confirm,
            _ => Stage::Close,
        }
    }
}

/// How a state became known. `Kernel` and `Packet` are observed (asked of
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
    /// A socket call and its real result, named as in the man pages.
    Syscall {
        call: &'static str,
        /// The descriptor the call was made on (for accept(): the listener's).
        #[serde(skip_serializing_if = "Option::is_none")]
        fd: Option<i64>,
        args: String,
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        ret: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// The system call the kernel saw, where it is not `call` (on Linux
        /// `recv` is the system call `recvfrom`, `accept` is `accept4`).
        #[serde(skip_serializing_if = "Option::is_none")]
        syscall: Option<&'static str>,
        /// How long the call took, in seconds (a blocking call waits).
        #[serde(serialize_with = "round_micros")]
        took: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        why: Option<String>,
    },
    /// A TCP state change, stamped with the time of the evidence that moved it.
    State {
        from: TcpState,
        to: TcpState,
        source: Source,
        /// How it was seen: "TCP_INFO", "sock_diag" or "packets".
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
        /// Left out where the segment has no ACK flag (its field means nothing).
        #[serde(skip_serializing_if = "Option::is_none")]
        ack: Option<u32>,
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

/// The process and thread of a traced program that made a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Task {
    pub pid: u32,
    pub tid: u32,
}

/// One thing that happened, with everything needed to place it in the story.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Seconds since the program started: when the evidence happened.
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
    /// `trace`: the process and thread whose call this event tells.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    #[serde(flatten)]
    pub body: Body,
}

impl Event {
    /// Events that must be shown even when the output is far behind: the
    /// address to connect to, the summary, and the error that ends a command.
    pub fn is_essential(&self) -> bool {
        match &self.body {
            Body::Note { topic, .. } => matches!(*topic, "ready" | "summary"),
            // The error that ends a command belongs to no connection.
            Body::Error { .. } => self.conn.is_none() && self.local.is_none(),
            _ => false,
        }
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
