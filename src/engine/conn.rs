//! A connected TCP socket as the lesson sees it: every call it makes is
//! reported, and after each call the kernel is asked for the socket's state.

use crate::engine::event::{Body, Dir, Event, Proto, Side, Sink, Source, Stage, TcpState};
use crate::engine::observe;
use crate::render::sanitize;
use crate::t;
use socket2::Socket;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex};

/// How much of each chunk of data an event previews. The rest is counted.
pub const PREVIEW_CHARS: usize = 64;

/// Asked before every narrated socket call is made, and may hold it back.
///
/// The tour uses it to let each side speak in turn (holding only accept()
/// and recv()); `--step` uses it to wait for the teacher. It only delays
/// *when* a real call is made, never what it returns.
pub trait Gate: Send + Sync {
    fn before(&self, ctx: &Ctx, call: &'static str);
}

/// Who is speaking: the identity stamped on every event of one socket.
#[derive(Clone)]
pub struct Ctx {
    pub sink: Sink,
    pub side: Side,
    pub proto: Proto,
    pub conn: Option<Arc<str>>,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    pub gate: Option<Arc<dyn Gate>>,
}

impl Ctx {
    pub fn new(sink: &Sink, side: Side, proto: Proto) -> Ctx {
        Ctx {
            sink: sink.clone(),
            side,
            proto,
            conn: None,
            local: None,
            remote: None,
            gate: None,
        }
    }

    /// Lets the gate, if any, hold back the call about to be made.
    pub fn before(&self, call: &'static str) {
        // The demo's pacing first (it may hold the call for a while), then
        // the teacher's step (which asks at the moment the call is due).
        if let Some(gate) = &self.gate {
            gate.before(self, call);
        }
        if let Some(stepper) = self.sink.stepper() {
            stepper.before(self, call);
        }
    }

    pub fn with_conn(&self, conn: &str) -> Ctx {
        Ctx {
            conn: Some(conn.into()),
            ..self.clone()
        }
    }

    pub fn emit(&self, stage: Stage, body: Body) {
        self.sink.emit(Event {
            t: 0.0,
            side: self.side,
            stage,
            proto: self.proto,
            local: self.local,
            remote: self.remote,
            conn: self.conn.clone(),
            body,
        });
    }

    /// Reports a socket call. `ret` extracts the number the C call returns
    /// (a descriptor, a byte count, or 0).
    pub fn syscall<T>(
        &self,
        stage: Stage,
        call: &'static str,
        args: impl Into<String>,
        result: &io::Result<T>,
        ret: impl FnOnce(&T) -> i64,
        why: Option<String>,
    ) {
        let (ok, ret, error) = match result {
            Ok(v) => (true, Some(ret(v)), None),
            Err(e) => (false, Some(-1), Some(crate::engine::errors::errno_text(e))),
        };
        self.emit(
            stage,
            Body::Syscall {
                call,
                args: args.into(),
                ok,
                ret,
                error,
                why,
            },
        );
    }

    /// close(): frees the descriptor (dropping the socket does the call)
    /// and reports it, with `why` for what goes on the wire.
    pub fn close_socket<S>(&self, sock: S, why: String) {
        self.before("close");
        drop(sock);
        self.syscall(Stage::Close, "close", "", &Ok(()), |_| 0, Some(why));
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
        self.emit(
            stage,
            Body::Note {
                topic,
                text: text.into(),
                facts,
            },
        );
    }

    /// Reports a failure. `code` is a stable word for scripts ("reset", "fd-limit", …).
    pub fn error(
        &self,
        stage: Stage,
        code: &'static str,
        error: impl Into<String>,
        text: impl Into<String>,
    ) {
        let body = Body::Error {
            code,
            error: error.into(),
            text: text.into(),
        };
        self.emit(stage, body);
    }

    pub fn data(&self, stage: Stage, dir: Dir, bytes: &[u8], preview_chars: usize) {
        let (text, cut) = sanitize::preview(bytes, preview_chars);
        self.emit(
            stage,
            Body::Data {
                dir,
                bytes: bytes.len(),
                text,
                cut,
            },
        );
    }

    fn state(
        &self,
        stage: Stage,
        from: TcpState,
        to: TcpState,
        source: Source,
        via: Option<&'static str>,
        detail: Option<String>,
    ) {
        // A state belongs to the stage it is part of, whichever call
        // revealed it: CLOSE-WAIT is closing, even if seen after a send().
        let stage = match to {
            TcpState::Listen => Stage::Listen,
            TcpState::SynSent => Stage::Request,
            TcpState::SynReceived => Stage::Confirm,
            TcpState::Established if from != TcpState::Established => Stage::Confirm,
            TcpState::Established => stage,
            _ => Stage::Close,
        };
        self.emit(
            stage,
            Body::State {
                from,
                to,
                source,
                via,
                detail,
            },
        );
    }
}

/// What the kernel said about a socket at one moment: the state, how it
/// was asked, and a detail such as the TIME-WAIT timer. `None` where the
/// kernel cannot be asked (not Linux).
pub struct Observation(Option<(TcpState, &'static str, Option<String>)>);

/// How long a state waits for the packet capture to confirm it.
const WIRE_PATIENCE: std::time::Duration = std::time::Duration::from_millis(100);

/// The last known TCP state of one socket, and the rules for reporting changes.
pub struct StateTracker {
    last: Mutex<TcpState>,
}

impl StateTracker {
    pub fn new(initial: TcpState) -> StateTracker {
        StateTracker {
            last: Mutex::new(initial),
        }
    }

    pub fn last(&self) -> TcpState {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the kernel for the state of `sock` and reports any change.
    ///
    /// `expected` is what the protocol says should have happened; it is
    /// reported (marked inferred) only where the kernel cannot be asked.
    pub fn update(&self, ctx: &Ctx, stage: Stage, sock: &Socket, expected: Option<TcpState>) {
        let seen = self.read(ctx, sock);
        self.report(ctx, stage, seen, expected);
    }

    /// Asks the kernel now, to report later. Call it right after a socket
    /// call, before narrating it: on loopback the peer reacts within
    /// microseconds, and a state read late may already have moved on.
    pub fn read(&self, ctx: &Ctx, sock: &Socket) -> Observation {
        Observation(observe::tcp_state(sock).map(|state| {
            // When a socket we hold reaches TIME-WAIT, Linux hands the
            // connection to a small "timewait" socket and marks ours CLOSED.
            // The socket table still has the truth, so ask it.
            if state == TcpState::Closed && self.last() != TcpState::SynSent {
                if let (Some(local), Some(remote)) = (ctx.local, ctx.remote) {
                    if let Ok(Some(entry)) = observe::find(local, remote) {
                        return (entry.state, "sock_diag", timer_detail(&entry));
                    }
                }
            }
            (state, "TCP_INFO", None)
        }))
    }

    /// Reports what [`read`](Self::read) saw, or `expected` as inferred
    /// where the kernel could not be asked.
    pub fn report(&self, ctx: &Ctx, stage: Stage, seen: Observation, expected: Option<TcpState>) {
        match seen.0 {
            Some((state, via, detail)) => {
                self.move_to(ctx, stage, state, Source::Kernel, Some(via), detail)
            }
            None => {
                if let Some(state) = expected {
                    self.move_to(ctx, stage, state, Source::Inferred, None, None);
                }
            }
        }
    }

    /// After close() there is no descriptor to ask: look the connection up
    /// in the kernel's table instead. Absent means the kernel forgot it (CLOSED).
    pub fn after_close(&self, ctx: &Ctx, stage: Stage, expected: TcpState) {
        if !observe::KERNEL_STATES {
            self.move_to(ctx, stage, expected, Source::Inferred, None, None);
            return;
        }
        let (Some(local), Some(remote)) = (ctx.local, ctx.remote) else {
            return;
        };
        match observe::find(local, remote) {
            Ok(Some(entry)) if entry.state == self.last() => {
                if let Some(detail) = timer_detail(&entry) {
                    ctx.note(stage, "lingers", {
                        let state = entry.state.name();
                        t!(
                            "the kernel keeps this connection in {state} after close(): {detail}",
                            "close() 之后内核仍把这个连接保持在 {state}：{detail}"
                        )
                    });
                }
            }
            Ok(Some(entry)) => self.move_to(
                ctx,
                stage,
                entry.state,
                Source::Kernel,
                Some("sock_diag"),
                timer_detail(&entry),
            ),
            Ok(None) => self.move_to(
                ctx,
                stage,
                TcpState::Closed,
                Source::Kernel,
                Some("sock_diag"),
                Some(t!(
                    "gone from the kernel's socket table",
                    "已从内核的套接字表中消失"
                )),
            ),
            // The table could not be asked (no descriptor left?): say only
            // what the protocol implies, marked as such.
            Err(_) => self.move_to(ctx, stage, expected, Source::Inferred, None, None),
        }
    }

    /// Reports `last → to`, with the states the protocol puts in between.
    pub fn move_to(
        &self,
        ctx: &Ctx,
        stage: Stage,
        to: TcpState,
        source: Source,
        via: Option<&'static str>,
        detail: Option<String>,
    ) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if *last == to {
            return;
        }
        // A socket we still hold that the kernel calls CLOSED was not closed
        // by us: a reset ended it, and no states came in between.
        let reset = to == TcpState::Closed && via == Some("TCP_INFO");
        let mut between = if reset {
            Vec::new()
        } else {
            TcpState::inferred_between(*last, to).to_vec()
        };
        // FIN-WAIT-2 is skipped when the peer's FIN carries the ACK of ours;
        // only the packets can tell whether it happened.
        let wire = |state| match (ctx.local, ctx.remote) {
            (Some(local), Some(remote)) => ctx.sink.wire_shows(local, remote, state, WIRE_PATIENCE),
            _ => false,
        };
        if (*last, to) == (TcpState::FinWait1, TcpState::TimeWait) && wire(TcpState::FinWait2) {
            between.push(TcpState::FinWait2);
        }
        for between in between {
            // Seen in the packets, or only deduced from the protocol.
            let (source, via) = if wire(between) {
                (Source::Packet, Some("packets"))
            } else {
                (Source::Inferred, None)
            };
            ctx.state(stage, *last, between, source, via, None);
            *last = between;
        }
        ctx.state(stage, *last, to, source, via, detail);
        *last = to;
    }
}

fn timer_detail(entry: &observe::TableEntry) -> Option<String> {
    match (entry.state, entry.timer) {
        (TcpState::TimeWait, Some(left)) => {
            let left = format!("{:.1}", left.as_secs_f64());
            Some(t!(
                "timer {left} s left of 60 s",
                "计时器：60 秒中还剩 {left} 秒"
            ))
        }
        _ => None,
    }
}

/// One end of a TCP connection, client or server side.
pub struct Conn {
    pub sock: Socket,
    pub ctx: Ctx,
    pub tracker: StateTracker,
    /// How many characters of incoming data to preview.
    pub preview_in: usize,
    /// Set when this program ended the connection itself (shutdown
    /// SHUT_RDWR), so that the next recv() = 0 is not blamed on the peer.
    pub ended_here: std::sync::atomic::AtomicBool,
}

impl Conn {
    pub fn new(sock: Socket, ctx: Ctx, tracker: StateTracker, preview_in: usize) -> Conn {
        Conn {
            sock,
            ctx,
            tracker,
            preview_in,
            ended_here: Default::default(),
        }
    }
}

/// What one recv() brought.
pub enum Received {
    Bytes(usize),
    /// recv() returned 0: the peer sent FIN and will send nothing more.
    End,
}

impl Conn {
    /// recv(): waits for bytes from the peer and reports them.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        let stage_of = |n: &usize| {
            if *n == 0 {
                Stage::Close
            } else {
                Stage::Transfer
            }
        };
        self.ctx.before("recv");
        let result = loop {
            match (&self.sock).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        if let Err(e) = &result {
            if is_timeout(e) {
                // A read timeout is ours (SO_RCVTIMEO), not the network's.
                return Err(io::Error::new(io::ErrorKind::TimedOut, "recv() timed out"));
            }
        }
        let seen = self.tracker.read(&self.ctx, &self.sock);
        let stage = result.as_ref().map_or(Stage::Transfer, stage_of);
        let why = match &result {
            Ok(0) if self.tracker.last() == TcpState::Closed => Some(t!(
                "0 bytes: the connection is already gone (it was reset); there is nothing more to read",
                "0 字节：连接已经不在了（被重置了）；没有更多可读的了"
            )),
            Ok(0) if self.ended_here.load(std::sync::atomic::Ordering::Relaxed) => Some(t!(
                "0 bytes: this program shut the connection down itself",
                "0 字节：是本程序自己关闭了这个连接"
            )),
            Ok(0) => Some(t!(
                "0 bytes: end of stream. The peer sent FIN: it will send nothing more",
                "0 字节：流结束。对端发来了 FIN：它不会再发送任何数据"
            )),
            _ => None,
        };
        self.ctx
            .syscall(stage, "recv", "", &result, |n| *n as i64, why);
        match result {
            Ok(0) => {
                let expected = peer_fin_state(self.tracker.last());
                self.tracker
                    .report(&self.ctx, Stage::Close, seen, Some(expected));
                Ok(Received::End)
            }
            Ok(n) => {
                self.ctx
                    .data(Stage::Transfer, Dir::In, &buf[..n], self.preview_in);
                self.tracker.report(&self.ctx, Stage::Transfer, seen, None);
                Ok(Received::Bytes(n))
            }
            Err(e) => {
                self.tracker.report(&self.ctx, Stage::Transfer, seen, None);
                Err(e)
            }
        }
    }

    /// send() until every byte is in the kernel's send buffer. send() may
    /// take fewer bytes than offered when the buffer is full, so loop.
    pub fn send_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            self.ctx.before("send");
            let result = loop {
                match (&self.sock).write(bytes) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            self.ctx.syscall(
                Stage::Transfer,
                "send",
                format!("{} bytes", bytes.len()),
                &result,
                |n| *n as i64,
                None,
            );
            match result {
                Ok(n) => {
                    self.ctx
                        .data(Stage::Transfer, Dir::Out, &bytes[..n], PREVIEW_CHARS);
                    bytes = &bytes[n..];
                }
                Err(e) => {
                    self.tracker
                        .update(&self.ctx, Stage::Transfer, &self.sock, None);
                    return Err(if is_timeout(&e) {
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            "send() timed out: the peer is not reading",
                        )
                    } else {
                        e
                    });
                }
            }
        }
        self.tracker
            .update(&self.ctx, Stage::Transfer, &self.sock, None);
        Ok(())
    }

    /// shutdown(SHUT_WR): a half-close. Our FIN tells the peer we are done
    /// sending, while we can still read what it has left to say.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.ctx.before("shutdown");
        let result = self.sock.shutdown(Shutdown::Write);
        let seen = self.tracker.read(&self.ctx, &self.sock);
        self.ctx.syscall(
            Stage::Close,
            "shutdown",
            "SHUT_WR",
            &result,
            |_| 0,
            Some(t!(
                "half-close: sends FIN, \"I will send nothing more\"; we can still read",
                "半关闭：发出 FIN，意思是“我不会再发送了”；我们仍然可以读"
            )),
        );
        let expected = match self.tracker.last() {
            TcpState::CloseWait => TcpState::LastAck,
            _ => TcpState::FinWait2,
        };
        self.tracker
            .report(&self.ctx, Stage::Close, seen, Some(expected));
        result
    }

    /// close(): gives the descriptor back. The connection itself may live on
    /// in the kernel (TIME-WAIT), which is looked up afterwards.
    pub fn close(self) {
        let expected = match self.tracker.last() {
            TcpState::CloseWait => TcpState::Closed,
            TcpState::TimeWait => TcpState::TimeWait,
            TcpState::Closed => TcpState::Closed,
            _ => TcpState::FinWait1,
        };
        let why = match self.tracker.last() {
            TcpState::CloseWait => t!(
                "our FIN goes out (LAST-ACK); the peer's ACK ends the connection",
                "发出我们的 FIN（LAST-ACK）；对端的 ACK 结束这个连接"
            ),
            TcpState::TimeWait => t!(
                "the descriptor is freed; the kernel keeps the connection in TIME-WAIT",
                "文件描述符被释放；内核把连接保持在 TIME-WAIT"
            ),
            TcpState::Closed => t!("the descriptor is freed", "文件描述符被释放"),
            _ => t!(
                "the descriptor is freed and our FIN goes out",
                "文件描述符被释放，并发出我们的 FIN"
            ),
        };
        let Conn {
            sock, ctx, tracker, ..
        } = self;
        ctx.close_socket(sock, why);
        tracker.after_close(&ctx, Stage::Close, expected);
    }
}

impl Conn {
    /// setsockopt(SO_LINGER, {on, 0}) then close(): an abortive close. The
    /// kernel sends a reset (RST) instead of FIN, drops unsent data, and
    /// keeps no TIME-WAIT; the peer's next call fails with ECONNRESET.
    pub fn close_with_reset(self) {
        self.ctx.before("setsockopt");
        let result = self.sock.set_linger(Some(std::time::Duration::ZERO));
        self.ctx.syscall(
            Stage::Close,
            "setsockopt",
            "SOL_SOCKET, SO_LINGER, {on, 0 s}",
            &result,
            |_| 0,
            Some(t!(
                "linger 0: close() will not wait for unsent data and will not say goodbye with FIN",
                "linger 设为 0：close() 不再等待未发出的数据，也不用 FIN 道别"
            )),
        );
        let Conn {
            sock, ctx, tracker, ..
        } = self;
        ctx.close_socket(
            sock,
            t!(
                "an RST goes out instead of FIN: the connection ends at once, with no TIME-WAIT",
                "发出的是 RST 而不是 FIN：连接立刻结束，没有 TIME-WAIT"
            ),
        );
        tracker.after_close(&ctx, Stage::Close, TcpState::Closed);
    }
}

/// The state a socket enters when the peer's FIN arrives.
fn peer_fin_state(last: TcpState) -> TcpState {
    match last {
        TcpState::FinWait1 | TcpState::FinWait2 => TcpState::TimeWait,
        _ => TcpState::CloseWait,
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
