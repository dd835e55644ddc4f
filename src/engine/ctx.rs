//! Who is speaking, and how a socket call is made: [`Ctx::call`] performs
//! one call, records it with its real result and the kernel's answer
//! about the socket right after it, and hands back an error that is
//! already a lesson. So a call site in the lesson reads as one line.

use crate::engine::call::{Call, Family, Returns};
use crate::engine::errors::{self, Lesson};
use crate::engine::event::{Dir, Proto, Side, Stage};
use crate::engine::evidence::{CallRecord, Data, Errno, Sample, SocketId, What, Who};
use crate::engine::observe;
use crate::engine::sink::{now_ns, Sink};
use socket2::{Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// Asked before every socket call is made, and may hold it back.
///
/// The tour uses it to let each side speak in turn (holding only accept()
/// and recv()); `--step` uses it to wait for the teacher. It only delays
/// *when* a real call is made, never what it returns.
pub trait Gate: Send + Sync {
    fn before(&self, ctx: &Ctx, call: &Call);

    /// A traced program is stopped at the entry of the system call `name`
    /// (trace): the same question, with the call's real name.
    fn before_syscall(&self, _ctx: &Ctx, _stage: crate::engine::event::Stage, _name: &str) {}
}

/// The identity stamped on the evidence of one socket (or of the program).
#[derive(Clone)]
pub struct Ctx {
    pub sink: Sink,
    pub side: Side,
    pub proto: Proto,
    /// This socket, once socket() has made it.
    pub socket: Option<SocketId>,
    pub fd: Option<i64>,
    pub conn: Option<Arc<str>>,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    pub gate: Option<Arc<dyn Gate>>,
}

/// A call that failed: which call, and what the kernel said.
#[derive(Debug)]
pub struct Failed {
    pub call: Call,
    pub error: io::Error,
    /// The address the call was about (for the explanation).
    pub addr: SocketAddr,
}

impl Failed {
    /// What the failure means on the network, and what to do.
    pub fn lesson(&self) -> Lesson {
        errors::explain(self.call.name(), self.addr, &self.error)
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.lesson().summary)
    }
}

impl std::error::Error for Failed {}

impl From<Failed> for Lesson {
    fn from(failed: Failed) -> Lesson {
        failed.lesson()
    }
}

impl Ctx {
    pub fn new(sink: &Sink, side: Side, proto: Proto) -> Ctx {
        Ctx {
            sink: sink.clone(),
            side,
            proto,
            socket: None,
            fd: None,
            conn: None,
            local: None,
            remote: None,
            gate: None,
        }
    }

    pub fn with_conn(&self, conn: &str) -> Ctx {
        Ctx {
            conn: Some(conn.into()),
            ..self.clone()
        }
    }

    pub fn who(&self) -> Who {
        Who {
            side: self.side,
            proto: self.proto,
            socket: self.socket,
            fd: self.fd,
            conn: self.conn.clone(),
            local: self.local,
            remote: self.remote,
        }
    }

    /// Lets the gate, if any, hold back the call about to be made.
    pub fn before(&self, call: &Call) {
        // The demo's pacing first (it may hold the call for a while), then
        // the teacher's step (which asks at the moment the call is due).
        if let Some(gate) = &self.gate {
            gate.before(self, call);
        }
        if let Some(stepper) = self.sink.stepper() {
            stepper.before(self, call);
        }
    }

    /// Performs one socket call `f` and records it: the call, its real
    /// result or errno, how long it took, and the socket's state right after.
    pub fn call<T: Returns>(
        &self,
        call: Call,
        f: impl FnOnce() -> io::Result<T>,
    ) -> Result<T, Failed> {
        self.before(&call);
        let start = now_ns();
        let result = f();
        let ret = result.as_ref().map(Returns::ret).map_err(Errno::of);
        self.record_call(self.who(), call.clone(), start, ret, None);
        result.map_err(|error| self.failed(call, error))
    }

    /// send(): like [`call`](Self::call), with a preview of the bytes sent.
    pub fn send_call(
        &self,
        call: Call,
        bytes: &[u8],
        f: impl FnOnce(&[u8]) -> io::Result<usize>,
    ) -> Result<usize, Failed> {
        self.before(&call);
        let start = now_ns();
        let result = f(bytes);
        if matches!(result, Ok(n) if n > 0) && self.sink.shedding() {
            // The narration is far behind: bytes moved are the first to go.
            self.sink.shed();
            return result.map_err(|error| self.failed(call, error));
        }
        let data = result
            .as_ref()
            .ok()
            .map(|n| preview(Dir::Out, &bytes[..*n], PREVIEW_CHARS));
        let ret = result.as_ref().map(Returns::ret).map_err(Errno::of);
        self.record_call(self.who(), call.clone(), start, ret, data);
        result.map_err(|error| self.failed(call, error))
    }

    /// recv(): like [`call`](Self::call), with a preview of the bytes
    /// received (at most `shown` characters).
    pub fn recv_call(
        &self,
        call: Call,
        buf: &mut [u8],
        shown: usize,
        f: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> Result<usize, Failed> {
        self.before(&call);
        let start = now_ns();
        let result = f(buf);
        if matches!(result, Ok(n) if n > 0) && self.sink.shedding() {
            self.sink.shed();
            return result.map_err(|error| self.failed(call, error));
        }
        let data = match &result {
            Ok(n) if *n > 0 => Some(preview(Dir::In, &buf[..*n], shown)),
            _ => None,
        };
        let ret = result.as_ref().map(Returns::ret).map_err(Errno::of);
        self.record_call(self.who(), call.clone(), start, ret, data);
        result.map_err(|error| self.failed(call, error))
    }

    /// accept(): the new socket, and the identity it will speak with: its
    /// own addresses, descriptor and label (C1, C2… in this listener's count).
    pub fn accept(
        &self,
        f: impl FnOnce() -> io::Result<(Socket, SockAddr)>,
    ) -> Result<(Socket, Ctx), Failed> {
        let call = Call::Accept;
        self.before(&call);
        let start = now_ns();
        let result = f();
        let child = result
            .as_ref()
            .ok()
            .map(|(sock, peer)| self.child(sock, peer));
        let ret = result.as_ref().map(|(s, _)| s.ret()).map_err(Errno::of);
        let (sink, who) = (self.sink.clone(), self.who());
        let child_who = child.as_ref().map(Ctx::who);
        sink.record_with(who, |t| {
            let sample = child.as_ref().and_then(|c| c.sample_now(&Call::Accept, t));
            What::Call(Box::new(CallRecord {
                call: Call::Accept,
                took: elapsed_since(start),
                result: ret,
                data: None,
                sample,
                child: child_who,
                unread: None,
                shown: None,
                task: None,
            }))
        });
        match (result, child) {
            (Ok((sock, _)), Some(child)) => Ok((sock, child)),
            (Err(error), _) => Err(self.failed(call, error)),
            (Ok(_), None) => unreachable!("a child identity exists for every accepted socket"),
        }
    }

    /// The identity of a socket accept() returned.
    fn child(&self, sock: &Socket, peer: &SockAddr) -> Ctx {
        let local = sock
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .or(self.local);
        let remote = peer.as_socket();
        let conn = match (local, remote) {
            (Some(l), Some(r)) => Some(self.sink.labels().assign(self.scope(), l, r)),
            _ => None,
        };
        Ctx {
            socket: Some(SocketId::next()),
            fd: Some(crate::engine::fd_number(sock)),
            conn,
            local,
            remote,
            ..self.clone()
        }
    }

    /// socket(): makes the endpoint; from now on this Ctx speaks for it.
    pub fn socket(&mut self, family: Family, stream: bool) -> Result<Socket, Failed> {
        self.socket = Some(SocketId::next());
        let (ty, protocol) = if stream {
            (Type::STREAM, Protocol::TCP)
        } else {
            (Type::DGRAM, Protocol::UDP)
        };
        let call = Call::Socket { family, stream };
        let sock = self.call(call, || Socket::new(family.domain(), ty, Some(protocol)))?;
        self.fd = Some(crate::engine::fd_number(&sock));
        Ok(sock)
    }

    /// bind(): names the endpoint (port 0: the OS picks one); this Ctx
    /// learns the address it got.
    pub fn bind(&mut self, sock: &Socket, addr: SocketAddr) -> Result<SocketAddr, Failed> {
        self.naming(sock, Call::Bind(addr), || sock.bind(&SockAddr::from(addr)))?;
        Ok(self.local.unwrap_or(addr))
    }

    /// A call that gives the socket its address (bind(), or connect() on
    /// UDP): the record carries the address it got.
    pub fn naming(
        &mut self,
        sock: &Socket,
        call: Call,
        f: impl FnOnce() -> io::Result<()>,
    ) -> Result<(), Failed> {
        self.before(&call);
        let start = now_ns();
        let result = f();
        if result.is_ok() {
            self.local = sock
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .or(self.local);
        }
        let ret = result.as_ref().map(Returns::ret).map_err(Errno::of);
        self.record_call(self.who(), call.clone(), start, ret, None);
        result.map_err(|error| self.failed(call, error))
    }

    /// A call that puts packets on the wire before it returns is about to
    /// be made to `target`: they are this socket's.
    pub fn begun(&self, target: SocketAddr) {
        self.sink.record(self.who(), What::Begun { target });
    }

    /// Whose numbering this socket's peers get (C1, C2…).
    pub fn scope(&self) -> u64 {
        self.socket.map_or(0, |s| s.0)
    }

    /// close(): frees the descriptor (dropping the socket does the call)
    /// and records it, with the bytes left unread and what the kernel's
    /// table says about the connection afterwards.
    pub fn close<S>(&self, sock: S) {
        let call = Call::Close;
        self.before(&call);
        // The state close() finds decides what it sends: read it first.
        self.sample_state();
        let unread = match (self.proto, self.fd) {
            (Proto::Tcp, Some(fd)) => observe::unread(fd),
            _ => None,
        };
        let start = now_ns();
        drop(sock);
        let who = self.who();
        self.sink.record_with(who, |t| {
            What::Call(Box::new(CallRecord {
                sample: self.sample_now(&Call::Close, t),
                call: Call::Close,
                took: elapsed_since(start),
                result: Ok(0),
                data: None,
                child: None,
                unread,
                shown: None,
                task: None,
            }))
        });
    }

    /// Records a call made elsewhere (by a helper that needs the result to
    /// know who it was about, as recvfrom() does).
    pub(crate) fn record_call(
        &self,
        who: Who,
        call: Call,
        start: u64,
        result: Result<i64, Errno>,
        data: Option<Data>,
    ) {
        self.sink.record_with(who, |t| {
            let sample = self.sample_now(&call, t);
            What::Call(Box::new(CallRecord {
                call,
                took: elapsed_since(start),
                result,
                data,
                sample,
                child: None,
                unread: None,
                shown: None,
                task: None,
            }))
        });
    }

    /// The kernel's state of this socket now, where it can be asked and
    /// the call could have changed it.
    fn sample_now(&self, call: &Call, _t: f64) -> Option<Sample> {
        if self.proto != Proto::Tcp || !observe::KERNEL_STATES {
            return None;
        }
        let read = |state, via, timer, queue| Sample {
            t: self.sink.elapsed(),
            state,
            via,
            timer,
            queue,
        };
        match call {
            Call::Close => match (self.local, self.remote) {
                (Some(local), Some(remote)) => match observe::find(local, remote) {
                    Ok(Some(entry)) => {
                        Some(read(Some(entry.state), "sock_diag", entry.timer, None))
                    }
                    Ok(None) => Some(read(None, "sock_diag", None, None)),
                    Err(_) => None,
                },
                (Some(local), None) => {
                    let listening = observe::listener(local).ok()?;
                    Some(match listening {
                        Some(entry) => read(Some(entry.state), "sock_diag", None, None),
                        None => read(None, "sock_diag", None, None),
                    })
                }
                _ => None,
            },
            Call::Listen(_) => {
                let entry = observe::listener(self.local?).ok().flatten()?;
                let queue = Some((entry.recv_queue, entry.send_queue));
                Some(read(Some(entry.state), "sock_diag", None, queue))
            }
            Call::Socket { .. }
            | Call::SetSockOpt(_)
            | Call::NonBlocking(_)
            | Call::Bind(_)
            | Call::GetAddrInfo(_) => None,
            _ => {
                let state = observe::tcp_state_of(self.fd?)?;
                // When a socket we hold reaches TIME-WAIT, Linux hands the
                // connection to a small "timewait" socket and marks ours
                // CLOSED; the kernel's table still has the truth.
                if state == crate::engine::event::TcpState::Closed {
                    if let (Some(local), Some(remote)) = (self.local, self.remote) {
                        if let Ok(Some(entry)) = observe::find(local, remote) {
                            return Some(read(Some(entry.state), "sock_diag", entry.timer, None));
                        }
                    }
                }
                Some(read(Some(state), "TCP_INFO", None, None))
            }
        }
    }

    fn failed(&self, call: Call, error: io::Error) -> Failed {
        let addr = match &call {
            Call::Bind(a) | Call::Connect(a) | Call::SendTo(_, a) => *a,
            _ => self
                .remote
                .or(self.local)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
        };
        Failed { call, error, addr }
    }

    pub fn note(&self, stage: Stage, topic: &'static str, text: impl Into<String>) {
        self.note_with(stage, topic, text, serde_json::Map::new());
    }

    pub fn note_with(
        &self,
        stage: Stage,
        topic: &'static str,
        text: impl Into<String>,
        facts: serde_json::Map<String, serde_json::Value>,
    ) {
        let what = What::Note {
            stage,
            topic,
            text: text.into(),
            facts,
        };
        self.sink.record(self.who(), what);
    }

    /// Reports a failure. `code` is a stable word for scripts ("reset", "fd-limit", …).
    pub fn error(
        &self,
        stage: Stage,
        code: &'static str,
        error: impl Into<String>,
        text: impl Into<String>,
    ) {
        let what = What::Error {
            stage,
            code,
            error: error.into(),
            text: text.into(),
        };
        self.sink.record(self.who(), what);
    }

    /// The kernel's state of this socket now, as evidence of its own
    /// (before a call whose meaning depends on it: shutdown(), close()).
    pub fn sample_state(&self) {
        if self.proto != Proto::Tcp || !observe::KERNEL_STATES {
            return;
        }
        if let Some(sample) = self.sample_now(&Call::Recv(0), 0.0) {
            self.sample(sample);
        }
    }

    /// A state read from the kernel outside any call (the accept queue
    /// while a server waits, say).
    pub fn sample(&self, sample: Sample) {
        self.sink.record(self.who(), What::Sample(sample));
    }

    /// A connection of this listener's, read from the kernel's table while
    /// it waits in the accept queue (the program has no socket for it yet).
    pub fn sample_queued(&self, local: SocketAddr, remote: SocketAddr, sample: Sample) {
        let who = Who {
            socket: None,
            fd: None,
            conn: None,
            local: Some(local),
            remote: Some(remote),
            ..self.who()
        };
        self.sink.record(who, What::Sample(sample));
    }

    /// This socket will make no more calls.
    pub fn gone(&self) {
        self.sink.record(self.who(), What::Gone);
    }
}

/// How much of each chunk of data an event previews. The rest is counted.
pub const PREVIEW_CHARS: usize = 64;

/// Bytes as the timeline shows them: escaped, at most `shown` characters.
pub fn preview(dir: Dir, bytes: &[u8], shown: usize) -> Data {
    let (text, cut) = crate::sanitize::preview(bytes, shown);
    Data {
        dir,
        bytes: bytes.len(),
        text,
        cut,
    }
}

fn elapsed_since(start: u64) -> f64 {
    now_ns().saturating_sub(start) as f64 / 1e9
}
