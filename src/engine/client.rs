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
    let result = match timeout {
        Some(limit) => sock.connect_timeout(&SockAddr::from(target), limit),
        None => sock.connect(&SockAddr::from(target)),
    };
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
        if observe::tcp_state(&sock) != Some(TcpState::SynSent) {
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

/// Gives up waiting for a reply after this long (SO_RCVTIMEO).
pub fn set_reply_timeout(conn: &Conn, limit: Option<Duration>) {
    let _ = conn.sock.set_read_timeout(limit);
}
