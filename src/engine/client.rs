//! The client side of the lesson: `socket()` → `connect()`, then the
//! conversation (`send()`/`recv()`, in [`Conn`]), then `shutdown()` and `close()`.
//!
//! The connect is non-blocking, so that the handshake can be watched while
//! it happens: `connect()` returns at once (EINPROGRESS) with the SYN on
//! its way, `poll()` waits until the socket is writable (the handshake
//! ended), and `getsockopt(SO_ERROR)` says how it ended.

use crate::engine::call::{Call, Family};
use crate::engine::conn::Conn;
use crate::engine::ctx::{Ctx, Failed};
use crate::engine::errors::{self, Lesson};
use crate::engine::event::{Proto, Side, Stage};
use crate::engine::sink::Sink;
use crate::t;
use socket2::{SockAddr, Socket};
#[cfg(unix)]
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// socket() and connect() to `target`, reported as connection `label` (C1…).
pub fn connect(
    sink: &Sink,
    target: SocketAddr,
    timeout: Option<Duration>,
    label: &str,
) -> Result<Conn, Lesson> {
    let mut ctx = Ctx::new(sink, Side::Client, Proto::Tcp).with_conn(label);
    ctx.remote = Some(target);

    // 1. socket(): a client needs no bind(); the OS names it at connect().
    let sock = ctx.socket(Family::of(&target), true)?;
    // 2. connect(): the request. The kernel sends SYN; the SYN-ACK and our
    //    ACK complete the three-way handshake (see `handshake`).
    if let Err(failed) = handshake(&ctx, &sock, target, timeout) {
        let lesson = match &failed {
            Ended::Failed(f) => f.lesson(),
            Ended::TimedOut(limit) => errors::timed_out(target, *limit),
        };
        // The SYN left from an address of its own: with it, the kernel's
        // table can say where the connection ended after close().
        ctx.local = sock.local_addr().ok().and_then(|a| a.as_socket());
        ctx.local = ctx.local.filter(|a| a.port() != 0);
        ctx.close(sock);
        return Err(lesson);
    }
    ctx.local = sock.local_addr().ok().and_then(|a| a.as_socket());
    if let (Some(local), Some(conn)) = (ctx.local, ctx.conn.clone()) {
        // The other end (a server in this process) will call it the same.
        sink.labels().name(local, target, &conn);
        tuple_note(&ctx, local, target);
    }
    Ok(Conn::new(sock, ctx))
}

/// How a connect() did not succeed.
enum Ended {
    Failed(Failed),
    /// `--timeout` ran out with no answer (this program's limit, not an errno).
    #[cfg_attr(not(unix), allow(dead_code))]
    TimedOut(Duration),
}

impl From<Failed> for Ended {
    fn from(f: Failed) -> Ended {
        Ended::Failed(f)
    }
}

/// Non-blocking connect(), poll() until the handshake ends, SO_ERROR.
#[cfg(unix)]
fn handshake(
    ctx: &Ctx,
    sock: &Socket,
    target: SocketAddr,
    timeout: Option<Duration>,
) -> Result<(), Ended> {
    ctx.call(Call::NonBlocking(true), || sock.set_nonblocking(true))?;
    // Its SYN may be seen on the wire before connect() returns.
    ctx.begun(target);
    match ctx.call(Call::Connect(target), || {
        sock.connect(&SockAddr::from(target))
    }) {
        Ok(()) => {}
        Err(f) if in_progress(&f.error) => {
            let wait = Call::Poll { out: true, timeout };
            let ready = ctx.call(wait, || poll_writable(sock, timeout))?;
            if ready == 0 {
                return Err(Ended::TimedOut(timeout.unwrap_or_default()));
            }
            let error = sock.take_error().map_err(|e| ctx_failed(ctx, e))?;
            let value = error.as_ref().map(errors::errno_name_of);
            ctx.call(Call::GetSoError(value), || Ok(()))?;
            if let Some(e) = error {
                return Err(Ended::Failed(Failed {
                    call: Call::Connect(target),
                    error: e,
                    addr: target,
                }));
            }
        }
        Err(f) => return Err(f.into()),
    }
    ctx.call(Call::NonBlocking(false), || sock.set_nonblocking(false))?;
    Ok(())
}

/// Elsewhere: one blocking connect(), with the timeout if there is one.
#[cfg(not(unix))]
fn handshake(
    ctx: &Ctx,
    sock: &Socket,
    target: SocketAddr,
    timeout: Option<Duration>,
) -> Result<(), Ended> {
    ctx.begun(target);
    let addr = SockAddr::from(target);
    ctx.call(Call::Connect(target), || match timeout {
        Some(limit) => sock.connect_timeout(&addr, limit),
        None => sock.connect(&addr),
    })?;
    Ok(())
}

#[cfg(unix)]
fn ctx_failed(ctx: &Ctx, error: io::Error) -> Ended {
    Ended::Failed(Failed {
        call: Call::GetSoError(None),
        error,
        addr: ctx
            .remote
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
    })
}

#[cfg(unix)]
fn in_progress(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINPROGRESS) || e.kind() == io::ErrorKind::WouldBlock
}

/// poll(POLLOUT): 1 once the socket is writable (the handshake ended), 0
/// when `timeout` ran out first.
#[cfg(unix)]
fn poll_writable(sock: &Socket, timeout: Option<Duration>) -> io::Result<i32> {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
    loop {
        // SAFETY: one valid pollfd, for the duration of the call.
        let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
        if ready >= 0 {
            return Ok(ready);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The 5-tuple that names the new connection.
fn tuple_note(ctx: &Ctx, local: SocketAddr, target: SocketAddr) {
    let mut facts = serde_json::Map::new();
    facts.insert(
        "tuple".into(),
        serde_json::json!(["tcp", local.to_string(), target.to_string()]),
    );
    let port = local.port();
    ctx.note_with(
        Stage::Confirm,
        "tuple",
        t!(
            "the OS gave this client the ephemeral port {port}; 5-tuple (TCP, {local}, {target})",
            "操作系统给这个客户端分配了临时端口 {port}；五元组 (TCP, {local}, {target})"
        ),
        facts,
    );
}
