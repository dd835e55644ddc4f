//! The client side of the lesson: `socket()` → `connect()`, then the
//! conversation (`send()`/`recv()`), then `shutdown()` and `close()`.

use crate::engine::conn::{Conn, Ctx, StateTracker, PREVIEW_CHARS};
use crate::engine::errors::{self, Lesson};
use crate::engine::event::{Proto, Side, Sink, Source, Stage, TcpState};
use crate::engine::{fd_number, observe};
use crate::t;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
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
    let (domain, family) = match target {
        SocketAddr::V4(_) => (Domain::IPV4, "AF_INET"),
        SocketAddr::V6(_) => (Domain::IPV6, "AF_INET6"),
    };

    // 1. socket(): a client needs no bind(); the OS names it at connect().
    ctx.before("socket");
    let result = Socket::new(domain, Type::STREAM, Some(Protocol::TCP));
    ctx.syscall(
        Stage::Request,
        "socket",
        format!("{family}, SOCK_STREAM, IPPROTO_TCP"),
        &result,
        fd_number,
        Some(t!(
            "a new TCP endpoint; no bind(): the OS will give it an address and port at connect()",
            "一个新的 TCP 端点；不用 bind()：操作系统会在 connect() 时给它分配地址和端口"
        )),
    );
    let sock = result.map_err(|e| errors::explain("socket", target, &e))?;
    let tracker = StateTracker::new(TcpState::Closed);

    // 2. connect(): the request. The kernel sends SYN and connect() returns
    //    once the SYN-ACK has come back and our ACK has gone out.
    ctx.before("connect");
    let result = connect_watching(&sock, target, timeout, &ctx, &tracker);
    let why = match &result {
        Ok(()) => t!(
            "SYN out, SYN-ACK back, ACK out: the three-way handshake is complete",
            "发出 SYN，收到 SYN-ACK，再发出 ACK：三次握手完成"
        ),
        Err(_) => t!("the handshake did not complete", "握手没有完成"),
    };
    if result.is_ok() {
        ctx.local = sock.local_addr().ok().and_then(|a| a.as_socket());
    }
    let seen = tracker.read(&ctx, &sock);
    ctx.syscall(
        Stage::Request,
        "connect",
        target.to_string(),
        &result,
        |_| 0,
        Some(why),
    );
    if let Err(e) = result {
        // A refused connect leaves the socket CLOSED (the RST ended SYN-SENT);
        // a timed-out one may still be in SYN-SENT, retransmitting its SYN.
        // An unreachable network is refused before any SYN leaves: no SYN-SENT.
        let syn_went_out = matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::ConnectionReset
        );
        if syn_went_out && observe::tcp_state(&sock) != Some(TcpState::SynSent) {
            tracker.move_to(
                &ctx,
                Stage::Request,
                TcpState::SynSent,
                Source::Inferred,
                None,
                None,
            );
        }
        tracker.update(&ctx, Stage::Request, &sock, Some(TcpState::Closed));
        return Err(errors::explain("connect", target, &e));
    }
    tracker.report(&ctx, Stage::Confirm, seen, Some(TcpState::Established));
    if let Some(local) = ctx.local {
        let mut facts = serde_json::Map::new();
        facts.insert(
            "tuple".into(),
            serde_json::json!(["tcp", local.to_string(), target.to_string()]),
        );
        ctx.note_with(
            Stage::Confirm,
            "tuple",
            {
                let port = local.port();
                t!(
                    "the OS gave this client the ephemeral port {port}; 5-tuple (TCP, {local}, {target})",
                    "操作系统给这个客户端分配了临时端口 {port}；五元组 (TCP, {local}, {target})"
                )
            },
            facts,
        );
    }
    Ok(Conn::new(sock, ctx, tracker, PREVIEW_CHARS))
}

/// connect(), watching the kernel while it waits: a connect that takes a
/// while (the SYN-ACK is slow or the SYN was dropped) is seen in SYN-SENT.
#[cfg(unix)]
fn connect_watching(
    sock: &Socket,
    target: SocketAddr,
    timeout: Option<Duration>,
    ctx: &Ctx,
    tracker: &StateTracker,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::time::Instant;
    // Non-blocking: connect() sends the SYN and returns at once (EINPROGRESS).
    sock.set_nonblocking(true)?;
    let started = match sock.connect(&SockAddr::from(target)) {
        Ok(()) => Ok(()),
        Err(e)
            if e.raw_os_error() == Some(libc::EINPROGRESS)
                || e.kind() == std::io::ErrorKind::WouldBlock =>
        {
            let deadline = timeout.map(|t| Instant::now() + t);
            let mut seen_syn_sent = false;
            loop {
                let slice = match deadline {
                    Some(d) => d
                        .saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(100)),
                    None => Duration::from_millis(100),
                };
                let mut pfd = libc::pollfd {
                    fd: sock.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, for the duration of the call.
                let ready = unsafe { libc::poll(&mut pfd, 1, slice.as_millis() as i32) };
                if ready > 0 {
                    // Writable: the handshake ended. SO_ERROR says how.
                    break match sock.take_error()? {
                        Some(e) => Err(e),
                        None => Ok(()),
                    };
                }
                if ready < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    break Err(e);
                }
                // Still waiting: ask the kernel where the socket is.
                if !seen_syn_sent && observe::tcp_state(sock) == Some(TcpState::SynSent) {
                    seen_syn_sent = true;
                    tracker.move_to(
                        ctx,
                        Stage::Request,
                        TcpState::SynSent,
                        Source::Kernel,
                        Some("TCP_INFO"),
                        Some(t!(
                            "connect() is still waiting for a SYN-ACK; the kernel resends the SYN",
                            "connect() 还在等 SYN-ACK；内核会重发 SYN"
                        )),
                    );
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connection timed out",
                    ));
                }
            }
        }
        Err(e) => Err(e),
    };
    sock.set_nonblocking(false)?;
    started
}

#[cfg(not(unix))]
fn connect_watching(
    sock: &Socket,
    target: SocketAddr,
    timeout: Option<Duration>,
    _ctx: &Ctx,
    _tracker: &StateTracker,
) -> std::io::Result<()> {
    match timeout {
        Some(limit) => sock.connect_timeout(&SockAddr::from(target), limit),
        None => sock.connect(&SockAddr::from(target)),
    }
}

/// Gives up waiting for a reply after this long (SO_RCVTIMEO).
pub fn set_reply_timeout(conn: &Conn, limit: Option<Duration>) {
    let _ = conn.sock.set_read_timeout(limit);
}
