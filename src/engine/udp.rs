//! UDP as the lesson sees it: `socket(SOCK_DGRAM)`, `bind()`, then
//! `sendto()`/`recvfrom()`. No listen, no accept, no handshake, no
//! connection states: one socket talks to every peer, and each datagram
//! arrives whole, with its sender's address, or not at all.

use crate::engine::conn::{Ctx, PREVIEW_CHARS};
use crate::engine::errors::{self, Lesson};
use crate::engine::event::{Dir, Proto, Side, Sink, Stage};
use crate::t;
use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::time::Duration;

/// A narrated UDP socket.
pub struct UdpEndpoint {
    pub sock: UdpSocket,
    pub ctx: Ctx,
    /// How many characters of each incoming datagram to preview.
    pub preview_in: usize,
    /// Each peer's number, in the order they were first heard from: C1,
    /// C2, … by address. (A map, so a server with many peers finds one fast.)
    peers: Mutex<HashMap<SocketAddr, usize>>,
}

impl UdpEndpoint {
    /// socket(AF_INET or AF_INET6, SOCK_DGRAM, IPPROTO_UDP).
    pub fn open(
        sink: &Sink,
        side: Side,
        label: Option<&str>,
        like: SocketAddr,
    ) -> Result<UdpEndpoint, Lesson> {
        let mut ctx = Ctx::new(sink, side, Proto::Udp);
        if let Some(label) = label {
            ctx = ctx.with_conn(label);
        }
        let (domain, family) = match like {
            SocketAddr::V4(_) => (Domain::IPV4, "AF_INET"),
            SocketAddr::V6(_) => (Domain::IPV6, "AF_INET6"),
        };
        let stage = if side == Side::Server {
            Stage::Listen
        } else {
            Stage::Request
        };
        ctx.before("socket");
        let result = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP));
        ctx.syscall(
            stage,
            "socket",
            format!("{family}, SOCK_DGRAM, IPPROTO_UDP"),
            &result,
            crate::engine::fd_number,
            Some(t!(
                "a UDP socket: datagrams, no connection, no handshake",
                "一个 UDP 套接字：数据报，没有连接，也没有握手"
            )),
        );
        let sock = result.map_err(|e| errors::explain("socket", like, &e))?;
        Ok(UdpEndpoint {
            sock: sock.into(),
            ctx,
            preview_in: PREVIEW_CHARS,
            peers: Mutex::new(HashMap::new()),
        })
    }

    /// bind(): name the endpoint, as a TCP server does; then it can receive.
    pub fn bind(&mut self, addr: SocketAddr) -> Result<SocketAddr, Lesson> {
        self.ctx.before("bind");
        let result = SockRef::from(&self.sock).bind(&SockAddr::from(addr));
        let bound = self.sock.local_addr().unwrap_or(addr);
        if result.is_ok() {
            self.ctx.local = Some(bound);
        }
        let (ip, port) = (bound.ip(), bound.port());
        let why = result.is_ok().then(|| {
            t!(
                "the endpoint is named ({ip}, UDP, {port}); no listen() and no accept(): it can receive at once",
                "端点有了名字 ({ip}, UDP, {port})；不需要 listen() 和 accept()：它马上就能接收"
            )
        });
        self.ctx
            .syscall(Stage::Listen, "bind", addr.to_string(), &result, |_| 0, why);
        result.map_err(|e| errors::explain("bind", addr, &e))?;
        Ok(bound)
    }

    /// connect() on UDP: nothing goes on the wire. It only fixes the
    /// default peer (so send() and recv() need no address) and lets the
    /// kernel report an ICMP "port unreachable" as ECONNREFUSED later.
    pub fn connect(&mut self, peer: SocketAddr) -> Result<(), Lesson> {
        self.ctx.before("connect");
        let result = self.sock.connect(peer);
        if result.is_ok() {
            self.ctx.local = self.sock.local_addr().ok();
            self.ctx.remote = Some(peer);
        }
        self.ctx.syscall(
            Stage::Request,
            "connect",
            peer.to_string(),
            &result,
            |_| 0,
            Some(t!(
                "on UDP connect() sends nothing: it only fixes the default peer",
                "在 UDP 上 connect() 什么也不发送：它只是设定默认的对端"
            )),
        );
        result.map_err(|e| errors::explain("connect", peer, &e))
    }

    /// sendto(): one datagram to `to`.
    pub fn send_to(&mut self, bytes: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.ctx.before("sendto");
        let result = self.sock.send_to(bytes, to);
        if self.ctx.local.is_none() {
            // The first sendto() of an unbound socket binds it to an ephemeral port.
            self.ctx.local = self.sock.local_addr().ok();
        }
        let ctx = self.ctx_for(to);
        report_send(
            &ctx,
            "sendto",
            format!("{} bytes, {to}", bytes.len()),
            &result,
            bytes,
        );
        result
    }

    /// send() on a connected UDP socket.
    pub fn send(&self, bytes: &[u8]) -> io::Result<usize> {
        self.ctx.before("send");
        let result = self.sock.send(bytes);
        report_send(
            &self.ctx,
            "send",
            format!("{} bytes", bytes.len()),
            &result,
            bytes,
        );
        result
    }

    /// recvfrom(): the next whole datagram and who sent it. Peers are
    /// numbered C1, C2, … by address, the first time they are heard from.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.ctx.before("recvfrom");
        let result = own_timeout(self.sock.recv_from(buf), "recvfrom")?;
        let ctx = match &result {
            Ok((_, from)) => {
                {
                    let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
                    let next = peers.len() + 1;
                    peers.entry(*from).or_insert(next);
                }
                self.ctx_for(*from)
            }
            Err(_) => self.ctx.clone(),
        };
        ctx.syscall(
            Stage::Transfer,
            "recvfrom",
            "",
            &result,
            |(n, _)| *n as i64,
            None,
        );
        if let Ok((n, _)) = result {
            ctx.data(Stage::Transfer, Dir::In, &buf[..n], self.preview_in);
        }
        result
    }

    /// recv() on a connected UDP socket.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.ctx.before("recv");
        let result = own_timeout(self.sock.recv(buf), "recv")?;
        self.ctx
            .syscall(Stage::Transfer, "recv", "", &result, |n| *n as i64, None);
        if let Ok(n) = result {
            self.ctx
                .data(Stage::Transfer, Dir::In, &buf[..n], self.preview_in);
        }
        result
    }

    /// The identity of events about `peer`: its address, and on a socket
    /// that talks to many peers (no label of its own) the number it was
    /// given when first heard from, so a reply carries the same C1.
    fn ctx_for(&self, peer: SocketAddr) -> Ctx {
        let mut ctx = Ctx {
            remote: Some(peer),
            ..self.ctx.clone()
        };
        if ctx.conn.is_none() {
            let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = peers.get(&peer) {
                ctx = ctx.with_conn(&format!("C{n}"));
            }
        }
        ctx
    }

    /// How many different peers (source addresses) have been heard from.
    pub fn peer_count(&self) -> usize {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn set_read_timeout(&self, limit: Option<Duration>) {
        let _ = self.sock.set_read_timeout(limit);
    }

    /// close(): no FIN, no TIME-WAIT: there was no connection to end.
    pub fn close(self) {
        let UdpEndpoint { sock, ctx, .. } = self;
        ctx.close_socket(
            sock,
            t!(
                "nothing goes on the wire: there is no connection to end",
                "线路上什么也不发送：本来就没有需要结束的连接"
            ),
        );
    }
}

/// A read timeout is ours (SO_RCVTIMEO), not the network's: it becomes an
/// unnarrated `TimedOut` for the caller; any other result is passed on.
fn own_timeout<T>(result: io::Result<T>, call: &str) -> io::Result<io::Result<T>> {
    match result {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{call}() timed out"),
            ))
        }
        other => Ok(other),
    }
}

/// Reports a send()/sendto() and the datagram it sent.
fn report_send(
    ctx: &Ctx,
    call: &'static str,
    args: String,
    result: &io::Result<usize>,
    bytes: &[u8],
) {
    ctx.syscall(Stage::Transfer, call, args, result, |n| *n as i64, None);
    if let Ok(n) = result {
        ctx.data(Stage::Transfer, Dir::Out, &bytes[..*n], PREVIEW_CHARS);
    }
}

/// The most payload one UDP datagram can carry over IPv4: 65,535 (the
/// 16-bit length) minus the IPv4 header (20) and the UDP header (8).
/// Over IPv6 it is 65,527.
pub const MAX_PAYLOAD_V4: usize = 65_507;

/// Explains a failed UDP call. Two failures mean something else than for
/// TCP: ECONNREFUSED is no RST answering a handshake (there was none) but an
/// ICMP "port unreachable" answering an earlier datagram; and a datagram can
/// be too long, which a byte stream never is.
pub fn explain_failure(call: &str, peer: SocketAddr, e: &io::Error) -> Lesson {
    let mut lesson = errors::explain(call, peer, e);
    let port = peer.port();
    if e.kind() == io::ErrorKind::ConnectionRefused {
        lesson.explanation = t!(
            "The datagram was sent, but the kernel at {peer} answered with an ICMP \"port unreachable\" message; \
             because this UDP socket is connected, the kernel reports it on the next call as ECONNREFUSED. \
             An unconnected UDP socket would never hear of it.\n\
             What to do: start the server first (sockdemo listen --udp --port {port}), or check the address and port you typed.",
            "数据报已经发出，但 {peer} 那边的内核回了一个 ICMP“端口不可达”消息；因为这个 UDP 套接字是已连接的，\
             内核在下一次调用时把它报告为 ECONNREFUSED。未连接的 UDP 套接字永远不会知道这件事。\n\
             怎么办：先启动服务器（sockdemo listen --udp --port {port}），或者检查你输入的地址和端口。"
        );
    } else if is_too_long(e) {
        let max = MAX_PAYLOAD_V4;
        lesson.code = "too-long";
        lesson.explanation = t!(
            "One UDP datagram carries at most {max} bytes over IPv4 (65527 over IPv6): its length field has 16 bits. \
             The kernel refused to send this one (EMSGSIZE). TCP would have cut the bytes into segments; UDP does not \
             split a datagram, so nothing was sent.\n\
             What to do: send less in one datagram (a shorter line).",
            "一个 UDP 数据报在 IPv4 上最多携带 {max} 字节（IPv6 上是 65527）：它的长度字段只有 16 位。\
             内核拒绝发送这个数据报（EMSGSIZE）。TCP 会把字节切成多个报文段；UDP 不拆分数据报，所以什么也没有发出。\n\
             怎么办：一个数据报里少放一些内容（发短一点的行）。"
        );
    }
    lesson
}

/// EMSGSIZE: a datagram longer than the protocol (or the socket) allows.
fn is_too_long(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(libc::EMSGSIZE)
    }
    #[cfg(windows)]
    {
        // WSAEMSGSIZE
        e.raw_os_error() == Some(10040)
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = e;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two datagrams stay two, each with its sender, and the events say so.
    #[test]
    fn datagrams_keep_their_boundaries() {
        let (sink, rx) = Sink::new(1000);
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut server = UdpEndpoint::open(&sink, Side::Server, None, lo).unwrap();
        let addr = server.bind(lo).unwrap();
        let mut client = UdpEndpoint::open(&sink, Side::Client, Some("C1"), lo).unwrap();
        client.send_to(b"one", addr).unwrap();
        client.send_to(b"two", addr).unwrap();
        let mut buf = [0u8; 64];
        let (n1, from1) = server.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n1], b"one");
        let (n2, from2) = server.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n2], b"two");
        assert_eq!(from1, from2);
        drop((server, client));
        drop(sink);
        let events: Vec<_> = rx.try_iter().collect();
        let recvs: Vec<_> = events
            .iter()
            .filter(|e| {
                matches!(
                    &e.body,
                    crate::engine::event::Body::Syscall {
                        call: "recvfrom",
                        ..
                    }
                )
            })
            .collect();
        assert_eq!(recvs.len(), 2);
        assert!(recvs.iter().all(|e| e.conn.as_deref() == Some("C1")
            && e.proto == Proto::Udp
            && e.remote == Some(from1)));
    }
}
