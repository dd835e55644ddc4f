//! The UDP server of `sockdemo listen --udp`, in the order the calls are made:
//!
//! 1. `socket(SOCK_DGRAM)` make an endpoint for datagrams,
//! 2. `bind()`   give it its (address, UDP, port) triple; it can receive at once,
//! 3. `recvfrom()` in a loop: one whole datagram and its sender's address,
//! 4. `sendto()` the same bytes back to that address (the echo).
//!
//! Compare [`crate::engine::server`]: no `listen()`, no `accept()`, no thread
//! per client. There are no connections, so ONE socket serves every peer,
//! and the only thing that tells peers apart is the address each datagram
//! carries. As with the TCP server, the socket is made by [`open`] and handed
//! to [`serve`], so tests can bind port 0 and learn the port from the events.

use crate::engine::ctx::Failed;
use crate::engine::errors::Lesson;
use crate::engine::event::{Side, Stage};
use crate::engine::server::StopHandle;
use crate::engine::sink::Sink;
use crate::engine::udp::{self, UdpEndpoint};
use crate::t;
use std::io;
use std::net::SocketAddr;

/// The receive buffer: 64 KiB, the most a UDP datagram can carry (its
/// length field is 16 bits; IPv4 leaves 65,507 bytes of payload, IPv6
/// 65,527). A datagram longer than the buffer would be cut and the rest
/// thrown away (recvfrom() returns one datagram, never half of one), so the
/// buffer is as large as any datagram, and memory stays this one buffer.
pub const MAX_DATAGRAM: usize = 64 * 1024;

/// What the server did, reported when it stops.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UdpSummary {
    /// Different source addresses heard from (C1, C2, …).
    pub peers: u64,
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// socket(SOCK_DGRAM) → bind(), each reported, then a note on what TCP
/// would need here and UDP does not.
pub fn open(sink: &Sink, addr: SocketAddr) -> Result<UdpEndpoint, Lesson> {
    let mut endpoint = UdpEndpoint::open(sink, Side::Server, None, addr)?;
    endpoint.bind(addr)?;
    endpoint.ctx.note(
        Stage::Listen,
        "connectionless",
        t!(
            "a TCP server would go on with listen() and accept(), one new socket per client. UDP needs neither: \
             there is no handshake for the kernel to complete, no connection to take, no connection state. \
             This ONE socket serves every peer: each recvfrom() returns one whole datagram and the address that sent it, \
             and sendto() names the address to answer",
            "TCP 服务器接下来还要调用 listen() 和 accept()，每个客户端一个新套接字。UDP 两者都不需要：\
             没有需要内核完成的握手，没有可以接受的连接，也没有连接状态。这一个套接字服务所有对端：\
             每次 recvfrom() 返回一个完整的数据报和发送它的地址，sendto() 则指明要回复的地址"
        ),
    );
    Ok(endpoint)
}

/// Receives datagrams until `stop` is called, echoing each to its sender
/// when `echo` is on; then closes the socket.
pub fn serve(mut endpoint: UdpEndpoint, echo: bool, stop: &StopHandle) -> UdpSummary {
    let mut summary = UdpSummary::default();
    // On the heap: 64 KiB is a lot for a stack, and it is the only buffer.
    let mut buf = vec![0u8; MAX_DATAGRAM];
    // Wait for a datagram (or the stop) before each recvfrom(), so a
    // blocked recvfrom() never has to be woken (see `StopHandle`).
    while stop.wait_readable(&endpoint.sock) {
        let (n, from) = match endpoint.recv_from(&mut buf) {
            Ok(got) => got,
            Err(failed) => {
                if report_error(&endpoint, &failed) {
                    continue;
                }
                break;
            }
        };
        summary.datagrams_in += 1;
        summary.bytes_in += n as u64;
        if echo {
            // The reply goes to the address the datagram came from: that
            // address is all the server knows about its peer.
            match endpoint.send_to(&buf[..n], from) {
                Ok(sent) => {
                    summary.datagrams_out += 1;
                    summary.bytes_out += sent as u64;
                }
                Err(failed) => {
                    if !report_error(&endpoint, &failed) {
                        break;
                    }
                }
            }
        }
    }
    stop.forget(&endpoint.sock);
    summary.peers = endpoint.peer_count() as u64;
    endpoint.close();
    summary
}

/// Reports a failed call as an error event. True when the server can go
/// on: a peer that went away is that peer's problem, not the server's.
fn report_error(endpoint: &UdpEndpoint, failed: &Failed) -> bool {
    let e = &failed.error;
    let lesson = udp::explain_failure(failed.call.name(), failed.addr, e);
    // Windows reports an ICMP "port unreachable" (an echo to a client that
    // has gone) even on an unconnected socket, as a reset on the next call.
    let survivable = matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    );
    let explanation = lesson.explanation.replace('\n', " ");
    let text = if survivable {
        t!(
            "{explanation} The server goes on receiving from its other peers.",
            "{explanation} 服务器继续接收其他对端的数据报。"
        )
    } else {
        explanation
    };
    endpoint
        .ctx
        .error(Stage::Transfer, lesson.code, lesson.summary, text);
    survivable
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::event::{Body, Proto};
    use std::net::UdpSocket;
    use std::time::Duration;

    /// Two peers, told apart only by their addresses; each gets its own
    /// datagram back, and the summary counts both.
    #[test]
    fn one_socket_serves_every_peer() {
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (summary, events) = crate::engine::timeline::collect(|sink| {
            let endpoint = open(sink, lo).unwrap();
            let addr = endpoint.ctx.local.unwrap();
            let stop = StopHandle::new();
            let server = {
                let stop = stop.clone();
                std::thread::spawn(move || serve(endpoint, true, &stop))
            };
            let mut buf = [0u8; 64];
            for text in [&b"one"[..], b"two"] {
                let peer = UdpSocket::bind(lo).unwrap();
                peer.set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                peer.send_to(text, addr).unwrap();
                let (n, from) = peer.recv_from(&mut buf).unwrap();
                assert_eq!((&buf[..n], from), (text, addr));
            }
            stop.stop();
            server.join().unwrap()
        });
        assert_eq!(
            summary,
            UdpSummary {
                peers: 2,
                datagrams_in: 2,
                datagrams_out: 2,
                bytes_in: 6,
                bytes_out: 6
            }
        );
        assert!(events.iter().all(|e| e.proto == Proto::Udp));
        let calls: Vec<_> = events
            .iter()
            .filter_map(|e| match &e.body {
                Body::Syscall { call, .. } => Some((*call, e.conn.as_deref())),
                _ => None,
            })
            .collect();
        assert_eq!(
            calls,
            [
                ("socket", None),
                ("bind", None),
                ("recvfrom", Some("C1")),
                ("sendto", Some("C1")),
                ("recvfrom", Some("C2")),
                ("sendto", Some("C2")),
                ("close", None),
            ]
        );
    }
}
