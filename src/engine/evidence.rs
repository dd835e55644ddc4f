//! Evidence: what the engine really saw, each piece with its time.
//!
//! A socket thread records what it did and what the kernel answered; the
//! capture thread records packets. Nothing here decides what to tell: the
//! tracker (see [`crate::engine::tracker`]) turns evidence into events.
//!
//! Three kinds of evidence, as the lesson has three views:
//! 1. a call record: the call the program really made, its real arguments
//!    and its real return value or errno ([`CallRecord`]);
//! 2. a kernel sample: a state read from TCP_INFO or sock_diag, with the
//!    time it was read ([`Sample`]);
//! 3. a packet, with the kernel's own timestamp ([`Seen`]).

use crate::engine::call::Call;
use crate::engine::event::{Dir, Proto, Side, Stage, TcpState};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One socket of this program, for as long as it lives: the tracker's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub u64);

impl SocketId {
    pub fn next() -> SocketId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        SocketId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// Who the evidence is about: which socket, on which side of the story,
/// as far as the engine knows it when it records.
#[derive(Clone, Debug)]
pub struct Who {
    pub side: Side,
    pub proto: Proto,
    /// None for the program as a whole (a note about the run).
    pub socket: Option<SocketId>,
    /// The descriptor number the program uses for the socket.
    pub fd: Option<i64>,
    /// The connection's label (C1, C2…) where the engine has given one.
    pub conn: Option<Arc<str>>,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
}

impl Who {
    /// Evidence about a run or a program as a whole, not one socket.
    pub fn nobody(side: Side, proto: Proto) -> Who {
        Who {
            side,
            proto,
            socket: None,
            fd: None,
            conn: None,
            local: None,
            remote: None,
        }
    }
}

/// One piece of evidence with its time on the timeline's clock.
#[derive(Debug)]
pub struct Evidence {
    /// Seconds since the start: for a call, when it returned; for a sample,
    /// when it was read; for a packet, the kernel's timestamp.
    pub t: f64,
    /// Order of recording, to keep evidence of equal time in order.
    pub seq: u64,
    pub who: Who,
    pub what: What,
}

#[derive(Debug)]
pub enum What {
    /// A socket call and its result.
    Call(Box<CallRecord>),
    /// A call that puts a packet on the wire before it returns has begun
    /// (connect(), or the first sendto() of an unbound UDP socket): its
    /// packets may come before its record, and are known to be its own.
    Begun { target: SocketAddr },
    /// A state read from the kernel outside any call (a listener's accept
    /// queue, a connection looked up after close()).
    Sample(Sample),
    /// A TCP segment or UDP datagram seen on the wire.
    Packet(Seen),
    /// A fact in words (a thread started, a summary, a lesson's remark).
    Note {
        stage: Stage,
        topic: &'static str,
        text: String,
        facts: serde_json::Map<String, serde_json::Value>,
    },
    /// A failure, explained.
    Error {
        stage: Stage,
        code: &'static str,
        error: String,
        text: String,
    },
    /// The socket will make no more calls: its tables may be forgotten.
    Gone,
}

/// A call the program made, as it really returned.
#[derive(Debug)]
pub struct CallRecord {
    pub call: Call,
    /// How long it took (a blocking call waits), in seconds.
    pub took: f64,
    /// The C return value, or the error.
    pub result: Result<i64, Errno>,
    /// The bytes a send or receive moved, previewed.
    pub data: Option<Data>,
    /// The kernel's state of the socket, read right after the call.
    pub sample: Option<Sample>,
    /// accept(): the new socket it returned.
    pub child: Option<Who>,
    /// close(): bytes the peer sent that the program never read.
    pub unread: Option<u32>,
    /// A call of a traced program: the system call by its real name, with
    /// its arguments decoded as strace writes them (the [`Call`] says what
    /// it means to the tracker; this says what was really made).
    pub shown: Option<Shown>,
    /// A call of a traced program: which process and thread made it.
    pub task: Option<crate::engine::event::Task>,
}

/// A traced system call as it was made.
#[derive(Clone, Debug)]
pub struct Shown {
    /// "write", "sendto", "accept4"…
    pub name: &'static str,
    pub args: String,
    /// The call's first argument is not the socket's descriptor (an
    /// epoll_wait, a select): `args` has them all, and no fd is shown.
    pub no_fd: bool,
    /// What the call meant, when the tracer knows it and the tracker
    /// cannot (a close() of one descriptor of several for one socket).
    pub why: Option<String>,
}

impl Shown {
    pub fn new(name: &'static str, args: String) -> Shown {
        Shown {
            name,
            args,
            no_fd: false,
            why: None,
        }
    }
}

/// An error a call returned.
#[derive(Clone, Debug)]
pub struct Errno {
    pub kind: std::io::ErrorKind,
    /// The raw OS error number, where there is one.
    pub code: Option<i32>,
    /// "ECONNREFUSED: Connection refused".
    pub text: String,
}

impl Errno {
    pub fn of(e: &std::io::Error) -> Errno {
        Errno {
            kind: e.kind(),
            code: e.raw_os_error(),
            text: crate::engine::errors::errno_text(e),
        }
    }

    /// The kernel said the connection was reset (an RST arrived, or was sent).
    pub fn is_reset(&self) -> bool {
        matches!(
            self.kind,
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::ConnectionAborted
        )
    }

    /// EAGAIN/EWOULDBLOCK or ETIMEDOUT from a timeout this program set.
    pub fn is_would_block(&self) -> bool {
        matches!(
            self.kind,
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    }
}

/// Bytes moved by one call, as the timeline shows them (escaped).
#[derive(Clone, Debug)]
pub struct Data {
    pub dir: Dir,
    pub bytes: usize,
    pub text: String,
    pub cut: usize,
}

/// What the kernel said about one socket at one moment.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When it was read.
    pub t: f64,
    /// `None`: the kernel's table has no such connection any more.
    pub state: Option<TcpState>,
    /// "TCP_INFO" or "sock_diag".
    pub via: &'static str,
    /// Time left on the socket's timer (TIME-WAIT's countdown).
    pub timer: Option<Duration>,
    /// For a listener: connections waiting for accept(), and the backlog
    /// the kernel applies.
    pub queue: Option<(u32, u32)>,
}

/// A packet, as the capture saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub proto: Proto,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub flags: Flags,
    pub seq: u32,
    pub ack_no: u32,
    /// Payload bytes.
    pub len: usize,
}

/// The flags of a TCP segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub psh: bool,
}

impl Flags {
    /// As tcpdump and the lesson write them: "SYN", "SYN,ACK", "PSH,ACK", "FIN,ACK", "RST".
    pub fn names(&self) -> String {
        let mut f = Vec::new();
        for (on, name) in [
            (self.syn, "SYN"),
            (self.fin, "FIN"),
            (self.rst, "RST"),
            (self.psh, "PSH"),
            (self.ack, "ACK"),
        ] {
            if on {
                f.push(name);
            }
        }
        f.join(",")
    }
}

impl Seen {
    /// A segment that can move a TCP state, or name a new connection:
    /// never dropped when the timeline is busy (data segments may be).
    pub fn matters(&self) -> bool {
        self.proto == Proto::Tcp
            && (self.flags.syn || self.flags.fin || self.flags.rst || self.len == 0)
    }
}
