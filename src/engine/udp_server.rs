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

use crate::engine::errors::Lesson;
use crate::engine::event::{Side, Sink, Stage};
use crate::engine::udp::{self, UdpEndpoint};
use crate::t;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The receive buffer: 64 KiB, the most a UDP datagram can carry (its
/// length field is 16 bits; IPv4 leaves 65,507 bytes of payload, IPv6
/// 65,527). A datagram longer than the buffer would be cut and the rest
/// thrown away (recvfrom() returns one datagram, never half of one), so the
/// buffer is as large as any datagram, and memory stays this one buffer.
pub const MAX_DATAGRAM: usize = 64 * 1024;

/// How often a waiting server looks at its stop flag.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// Stops a running [`serve`] from another thread (Ctrl-C, a test).
#[derive(Clone, Default)]
pub struct UdpStop {
    stopping: Arc<AtomicBool>,
}

impl UdpStop {
    pub fn new() -> UdpStop {
        UdpStop::default()
    }

    /// Asks the server to stop; it notices within 100 ms.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

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
pub fn serve(mut endpoint: UdpEndpoint, echo: bool, stop: &UdpStop) -> UdpSummary {
    let mut summary = UdpSummary::default();
    // On the heap: 64 KiB is a lot for a stack, and it is the only buffer.
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while wait_for_datagram(&endpoint, stop) {
        let (n, from) = match endpoint.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => continue,
            Err(e) => {
                if report_error(&endpoint, "recvfrom", &e) {
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
                Err(e) => {
                    if !report_error(&endpoint, "sendto", &e) {
                        break;
                    }
                }
            }
        }
    }
    summary.peers = endpoint.peer_count() as u64;
    endpoint.close();
    summary
}

/// Waits until a datagram is waiting to be read (true) or `stop` is called
/// (false).
///
/// A blocked recvfrom() does not notice a flag. The TCP server wakes its
/// accept() by connecting to itself; a datagram sent to ourselves would
/// wake recvfrom() too, but it would arrive as one more peer (C3…) in the
/// story. So the server waits with a read timeout (SO_RCVTIMEO) and looks
/// at the flag between waits. It waits with MSG_PEEK, which leaves the
/// datagram in the queue and is not narrated: the narrated recvfrom() is
/// made once, when there is something to read, instead of once per timeout
/// (with `--step`, every one of those would ask the teacher again).
fn wait_for_datagram(endpoint: &UdpEndpoint, stop: &UdpStop) -> bool {
    endpoint.set_read_timeout(Some(STOP_CHECK));
    // One byte is enough to know a datagram is there; the peek may report
    // it as cut short (or, on Windows, as too long), which is fine: the
    // datagram itself stays whole in the queue for recvfrom().
    let mut probe = [0u8; 1];
    while !stop.is_stopping() {
        match endpoint.sock.peek_from(&mut probe) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            // A datagram, or an error that recvfrom() will meet and report.
            _ => return true,
        }
    }
    false
}

/// Reports a failed call as an error event. True when the server can go
/// on: a peer that went away is that peer's problem, not the server's.
fn report_error(endpoint: &UdpEndpoint, call: &str, e: &io::Error) -> bool {
    let peer = endpoint
        .ctx
        .remote
        .or(endpoint.ctx.local)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let lesson = udp::explain_failure(call, peer, e);
    // Windows reports an ICMP "port unreachable" (an echo to a client that
    // has gone) even on an unconnected socket, as a reset on the next call.
    let survivable = matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    );
    endpoint
        .ctx
        .error(Stage::Transfer, lesson.code, lesson.summary, {
            let explanation = lesson.explanation.replace('\n', " ");
            if survivable {
                t!(
                    "{explanation} The server goes on receiving from its other peers.",
                    "{explanation} 服务器继续接收其他对端的数据报。"
                )
            } else {
                explanation
            }
        });
    survivable
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::event::{Body, Proto};
    use std::net::UdpSocket;

    /// Two peers, told apart only by their addresses; each gets its own
    /// datagram back, and the summary counts both.
    #[test]
    fn one_socket_serves_every_peer() {
        let (sink, rx) = Sink::new(1000);
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let endpoint = open(&sink, lo).unwrap();
        let addr = endpoint.sock.local_addr().unwrap();
        let stop = UdpStop::new();
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
        let summary = server.join().unwrap();
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
        drop(sink);
        let events: Vec<_> = rx.try_iter().collect();
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
