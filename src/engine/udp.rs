//! UDP as the lesson sees it: `socket(SOCK_DGRAM)`, `bind()`, then
//! `sendto()`/`recvfrom()`. No listen, no accept, no handshake, no
//! connection states: one socket talks to every peer, and each datagram
//! arrives whole, with its sender's address, or not at all.

use crate::engine::call::{Call, Family, Returns};
use crate::engine::ctx::{preview, Ctx, Failed, PREVIEW_CHARS};
use crate::engine::errors::{self, Lesson};
use crate::engine::event::{Dir, Proto, Side};
use crate::engine::evidence::Errno;
use crate::engine::sink::{now_ns, Sink};
use crate::t;
use socket2::{SockAddr, Socket};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A narrated UDP socket.
pub struct UdpEndpoint {
    pub sock: Socket,
    pub ctx: Ctx,
    /// How many characters of each incoming datagram to preview.
    pub preview_in: usize,
    /// Whether any datagram has come (a connected socket has one peer).
    heard: AtomicBool,
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
        let sock = ctx.socket(Family::of(&like), false)?;
        Ok(UdpEndpoint {
            sock,
            ctx,
            preview_in: PREVIEW_CHARS,
            heard: AtomicBool::new(false),
        })
    }

    /// bind(): name the endpoint, as a TCP server does; then it can receive.
    pub fn bind(&mut self, addr: SocketAddr) -> Result<SocketAddr, Lesson> {
        Ok(self.ctx.bind(&self.sock, addr)?)
    }

    /// connect() on UDP: nothing goes on the wire. It only fixes the
    /// default peer (so send() and recv() need no address) and lets the
    /// kernel report an ICMP "port unreachable" as ECONNREFUSED later.
    pub fn connect(&mut self, peer: SocketAddr) -> Result<(), Lesson> {
        self.ctx.remote = Some(peer);
        let sock = &self.sock;
        self.ctx
            .naming(sock, Call::Connect(peer), || {
                sock.connect(&SockAddr::from(peer))
            })
            .map_err(|f| f.lesson())
    }

    /// sendto(): one datagram to `to`.
    pub fn send_to(&mut self, bytes: &[u8], to: SocketAddr) -> Result<usize, Failed> {
        if self.ctx.local.is_none() {
            // The first sendto() of an unbound socket binds it to an
            // ephemeral port: its datagram names the address.
            self.ctx.begun(to);
        }
        let ctx = self.ctx_for(to);
        let sock = &self.sock;
        let result = ctx.send_call(Call::SendTo(bytes.len(), to), bytes, |b| {
            sock.send_to(b, &SockAddr::from(to))
        });
        if self.ctx.local.is_none() {
            self.ctx.local = self.sock.local_addr().ok().and_then(|a| a.as_socket());
        }
        result
    }

    /// send() on a connected UDP socket.
    pub fn send(&self, bytes: &[u8]) -> Result<usize, Failed> {
        self.ctx
            .send_call(Call::Send(bytes.len()), bytes, |b| self.sock.send(b))
    }

    /// recvfrom(): the next whole datagram and who sent it. Peers are
    /// numbered C1, C2, … by address, the first time they are heard from.
    pub fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddr), Failed> {
        let call = Call::RecvFrom(buf.len());
        self.ctx.before(&call);
        let start = now_ns();
        let result = recv_from(&self.sock, buf);
        let (who, data) = match &result {
            Ok((n, from)) => {
                self.heard.store(true, Ordering::Relaxed);
                let data = preview(Dir::In, &buf[..*n], self.preview_in);
                (self.ctx_for(*from).who(), Some(data))
            }
            Err(_) => (self.ctx.who(), None),
        };
        let ret = result.as_ref().map(Returns::ret).map_err(Errno::of);
        self.ctx.record_call(who, call.clone(), start, ret, data);
        result.map_err(|error| Failed {
            call,
            error,
            addr: self
                .ctx
                .local
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
        })
    }

    /// recv() on a connected UDP socket.
    pub fn recv(&self, buf: &mut [u8]) -> Result<usize, Failed> {
        let sock = &self.sock;
        self.ctx
            .recv_call(Call::Recv(buf.len()), buf, self.preview_in, |b| {
                io::Read::read(&mut &*sock, b)
            })
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
            if let Some(local) = ctx.local {
                ctx.conn = Some(ctx.sink.labels().assign(ctx.scope(), local, peer));
            }
        }
        ctx
    }

    /// How many peers (source addresses) have been heard from: on a socket
    /// with many peers, the numbers C1, C2, … given out (a peer forgotten
    /// for want of room and heard again counts again, as its new number says).
    pub fn peer_count(&self) -> usize {
        if self.ctx.conn.is_some() {
            return usize::from(self.heard.load(Ordering::Relaxed));
        }
        self.ctx.sink.labels().numbered(self.ctx.scope()) as usize
    }

    /// setsockopt(SO_RCVTIMEO): a receive gives up after `limit` (EAGAIN).
    pub fn set_read_timeout(&self, limit: Option<Duration>) -> Result<(), Failed> {
        use crate::engine::call::Opt;
        self.ctx
            .call(Call::SetSockOpt(Opt::RecvTimeout(limit)), || {
                self.sock.set_read_timeout(limit)
            })
    }

    /// close(): no FIN, no TIME-WAIT: there was no connection to end.
    pub fn close(self) {
        self.ctx.close(self.sock);
    }
}

/// recvfrom() on a socket2 socket, into an initialised buffer.
fn recv_from(sock: &Socket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    // SAFETY: socket2 writes at most buf.len() bytes; u8 and MaybeUninit<u8>
    // have the same layout, and the bytes are initialised already.
    let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
    let (n, from) = sock.recv_from(uninit)?;
    let from = from
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP address"))?;
    Ok((n, from))
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
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (from1, events) = crate::engine::timeline::collect(|sink| {
            let mut server = UdpEndpoint::open(sink, Side::Server, None, lo).unwrap();
            let addr = server.bind(lo).unwrap();
            let mut client = UdpEndpoint::open(sink, Side::Client, Some("C1"), lo).unwrap();
            client.send_to(b"one", addr).unwrap();
            client.send_to(b"two", addr).unwrap();
            let mut buf = [0u8; 64];
            let (n1, from1) = server.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n1], b"one");
            let (n2, from2) = server.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n2], b"two");
            assert_eq!(from1, from2);
            drop((server, client));
            from1
        });
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
