//! The kernel's socket table through sock_diag netlink (sock_diag(7)).
//!
//! This is what `ss` uses. It sees sockets that no process holds any more
//! (TIME-WAIT) and it is much faster than parsing /proc/net/tcp, because the
//! kernel sends binary records instead of formatting text. No root needed.
//!
//! The messages are small fixed layouts from `<linux/inet_diag.h>`; we write
//! and read them field by field, so no `unsafe` is needed.

use super::{TableEntry, TimerKind};
use crate::engine::event::{Proto, TcpState};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HDRLEN: usize = 16;
/// `struct inet_diag_msg` is 72 bytes: 4 bytes of family/state/timer/retrans,
/// a 48-byte socket id, then expires, rqueue, wqueue, uid, inode.
const INET_DIAG_MSG_LEN: usize = 72;
const INET_DIAG_NOCOOKIE: u32 = !0;
/// `idiag_timer` values: 0 none, 1 retransmit, 2 keepalive, 3 TIME-WAIT,
/// 4 zero-window probe (`net/ipv4/inet_diag.c`, and `ss -o` shows the same).
fn timer_kind(code: u8) -> Option<TimerKind> {
    match code {
        1 => Some(TimerKind::Retransmit),
        2 => Some(TimerKind::Keepalive),
        3 => Some(TimerKind::TimeWait),
        4 => Some(TimerKind::ZeroWindowProbe),
        _ => None,
    }
}

fn protocol_number(proto: Proto) -> u8 {
    match proto {
        Proto::Tcp => libc::IPPROTO_TCP as u8,
        Proto::Udp => libc::IPPROTO_UDP as u8,
    }
}

/// One socket that can be asked questions about the socket table.
fn open() -> io::Result<Socket> {
    // An AF_NETLINK socket talks to the kernel, not to the network.
    Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::DGRAM,
        Some(Protocol::from(NETLINK_SOCK_DIAG)),
    )
}

/// Builds `nlmsghdr` + `inet_diag_req_v2`.
fn request(
    flags: u16,
    family: u8,
    proto: Proto,
    states: u32,
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
) -> Vec<u8> {
    let mut msg = Vec::with_capacity(NLMSG_HDRLEN + 56);
    msg.extend_from_slice(&((NLMSG_HDRLEN + 56) as u32).to_ne_bytes()); // nlmsg_len
    msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes()); // nlmsg_type
    msg.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes()); // nlmsg_flags
    msg.extend_from_slice(&1u32.to_ne_bytes()); // nlmsg_seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: 0 is the kernel
    msg.push(family); // sdiag_family
    msg.push(protocol_number(proto)); // sdiag_protocol: which table, TCP or UDP
    msg.push(0); // idiag_ext: no extra attributes
    msg.push(0); // pad
    msg.extend_from_slice(&states.to_ne_bytes()); // idiag_states: a bit per state
                                                  // struct inet_diag_sockid: ports and addresses in network byte order.
    msg.extend_from_slice(&local.map_or(0, |a| a.port()).to_be_bytes());
    msg.extend_from_slice(&remote.map_or(0, |a| a.port()).to_be_bytes());
    msg.extend_from_slice(&addr_bytes(local.map(|a| a.ip())));
    msg.extend_from_slice(&addr_bytes(remote.map(|a| a.ip())));
    msg.extend_from_slice(&0u32.to_ne_bytes()); // idiag_if
    msg.extend_from_slice(&INET_DIAG_NOCOOKIE.to_ne_bytes());
    msg.extend_from_slice(&INET_DIAG_NOCOOKIE.to_ne_bytes());
    msg
}

fn addr_bytes(ip: Option<IpAddr>) -> [u8; 16] {
    let mut out = [0u8; 16];
    match ip {
        Some(IpAddr::V4(v4)) => out[..4].copy_from_slice(&v4.octets()),
        Some(IpAddr::V6(v6)) => out.copy_from_slice(&v6.octets()),
        None => {}
    }
    out
}

fn family_of(addr: &SocketAddr) -> u8 {
    match addr {
        SocketAddr::V4(_) => libc::AF_INET as u8,
        SocketAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn parse_addr(family: u8, raw: &[u8], port_be: &[u8]) -> SocketAddr {
    let port = u16::from_be_bytes([port_be[0], port_be[1]]);
    let ip = if family == libc::AF_INET as u8 {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    } else {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&raw[..16]);
        IpAddr::V6(Ipv6Addr::from(octets))
    };
    SocketAddr::new(ip, port)
}

/// Parses one `inet_diag_msg` from the table of `proto`.
///
/// UDP has no states of its own, but the kernel keeps TCP's numbers in
/// `sk_state` for every socket: an unconnected UDP socket is 7 (TCP_CLOSE)
/// and one that called `connect()` is 1 (TCP_ESTABLISHED). They come back
/// as [`TcpState::Closed`] and [`TcpState::Established`];
/// [`TableEntry::state_name`] names them honestly.
fn parse_entry(m: &[u8], proto: Proto) -> Option<TableEntry> {
    if m.len() < INET_DIAG_MSG_LEN {
        return None;
    }
    let family = m[0];
    let state = TcpState::from_linux(m[1])?;
    let timer = m[2];
    let id = &m[4..52];
    let local = parse_addr(family, &id[4..20], &id[0..2]);
    let remote = parse_addr(family, &id[20..36], &id[2..4]);
    let expires_ms = u32_at(m, 52);
    // An orphaned FIN-WAIT-2 connection lives in the same kind of small
    // "timewait" socket as TIME-WAIT, on the same timer: name it for what it waits for.
    let timer_kind = match timer_kind(timer) {
        Some(TimerKind::TimeWait) if state == TcpState::FinWait2 => Some(TimerKind::FinTimeout),
        kind => kind,
    };
    Some(TableEntry {
        proto,
        state,
        local,
        remote,
        timer: timer_kind.map(|_| Duration::from_millis(expires_ms as u64)),
        timer_kind,
        recv_queue: u32_at(m, 56),
        send_queue: u32_at(m, 60),
    })
}

/// Sends one request and collects every `inet_diag_msg` of the answer.
fn ask(request: &[u8], proto: Proto) -> io::Result<Vec<TableEntry>> {
    let sock = open()?;
    // An unconnected netlink socket sends to the kernel (port id 0).
    sock.send(request)?;
    let mut entries = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = (&sock).read(&mut buf)?;
        if n == 0 {
            return Ok(entries);
        }
        let mut at = 0;
        while at + NLMSG_HDRLEN <= n {
            let len = u32_at(&buf, at) as usize;
            let kind = u16_at(&buf, at + 4);
            if len < NLMSG_HDRLEN || at + len > n {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "short netlink message",
                ));
            }
            let payload = &buf[at + NLMSG_HDRLEN..at + len];
            match kind {
                NLMSG_DONE => return Ok(entries),
                NLMSG_ERROR => {
                    let errno =
                        i32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    if errno == 0 {
                        return Ok(entries);
                    }
                    return Err(io::Error::from_raw_os_error(-errno));
                }
                SOCK_DIAG_BY_FAMILY => entries.extend(parse_entry(payload, proto)),
                _ => {}
            }
            // Messages are aligned to 4 bytes.
            at += (len + 3) & !3;
        }
        // A lookup of one socket (no NLM_F_DUMP) is answered by one message.
        if !entries.is_empty() && request_is_single(request) {
            return Ok(entries);
        }
    }
}

fn request_is_single(request: &[u8]) -> bool {
    u16_at(request, 6) & NLM_F_DUMP == 0
}

/// Looks up one connection by its exact 4 addresses (the kernel's
/// `inet_diag_find_one`). `Ok(None)` means the kernel has no such socket.
pub fn find(local: SocketAddr, remote: SocketAddr) -> io::Result<Option<TableEntry>> {
    let req = request(
        0,
        family_of(&local),
        Proto::Tcp,
        !0,
        Some(local),
        Some(remote),
    );
    match ask(&req, Proto::Tcp) {
        // For a connection that no longer exists the kernel's lookup falls
        // back to the listener on that port: keep only an exact match.
        Ok(entries) => Ok(entries
            .into_iter()
            .find(|e| e.local == local && e.remote == remote)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// All TCP sockets (IPv4 and IPv6) with `port` at either end.
pub fn dump(port: u16) -> io::Result<Vec<TableEntry>> {
    dump_all(Some(port), Proto::Tcp)
}

/// Every socket of `proto` (IPv4 and IPv6), or only those with `port` at
/// either end. The kernel sends the whole table and we filter it here: a
/// table of a few thousand sockets is a few hundred kilobytes, read in
/// about a millisecond.
pub fn dump_all(port: Option<u16>, proto: Proto) -> io::Result<Vec<TableEntry>> {
    let mut all = Vec::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        let req = request(NLM_F_DUMP, family, proto, !0, None, None);
        all.extend(
            ask(&req, proto)?.into_iter().filter(|e| {
                port.is_none_or(|port| e.local.port() == port || e.remote.port() == port)
            }),
        );
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream, UdpSocket};

    /// The table shows a listener we made, with the state LISTEN.
    #[test]
    fn dump_sees_our_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let rows = dump(addr.port()).unwrap();
        assert!(
            rows.iter()
                .any(|r| r.local == addr && r.state == TcpState::Listen),
            "{rows:?}"
        );
    }

    /// A connection is found by its 4 addresses, from both ends, and an
    /// unknown one is not.
    #[test]
    fn find_one_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let c = find(client.local_addr().unwrap(), client.peer_addr().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(c.state, TcpState::Established);
        let s = find(server.local_addr().unwrap(), server.peer_addr().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(s.remote, client.local_addr().unwrap());
        let nobody: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(find(nobody, client.local_addr().unwrap()).unwrap(), None);
    }

    /// After the client closes first, its side stays in TIME-WAIT with a timer.
    #[test]
    fn time_wait_has_a_timer() {
        let listener = TcpListener::bind("[::1]:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let (local, remote) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
        drop(client);
        // Reading EOF proves the client's FIN arrived; closing sends ours.
        let mut buf = [0u8; 1];
        assert_eq!((&server).read(&mut buf).unwrap(), 0);
        drop(server);
        let tw = find(local, remote).unwrap().expect("TIME-WAIT entry");
        assert_eq!(tw.state, TcpState::TimeWait);
        let left = tw.timer.expect("TIME-WAIT timer");
        assert!(
            left > Duration::from_secs(1) && left <= Duration::from_secs(60),
            "{left:?}"
        );
    }

    /// UDP sockets come from their own table: a bound socket is reported
    /// with TCP's number for CLOSE (unconnected), a connected one with
    /// ESTABLISHED's. TCP and UDP number their ports separately, so other
    /// programs' TCP sockets (and other tests', and TIME-WAIT leftovers) may
    /// use our port number too: rows are picked by the exact addresses of
    /// the sockets made here, never by the port alone. To show that each
    /// dump keeps to its own table, the test also holds a TCP listener on
    /// the very address of the UDP socket (and while it does, no other TCP
    /// listener can be there).
    #[test]
    fn udp_dump_sees_bound_and_connected_sockets() {
        let (server, listener) = udp_and_tcp_on_one_address();
        let addr = server.local_addr().unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(addr).unwrap();
        let client_addr = client.local_addr().unwrap();
        // An unconnected socket has no peer: the kernel reports 0.0.0.0:0.
        let no_peer: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let rows_at = |rows: &[TableEntry], local: SocketAddr, remote: SocketAddr| {
            rows.iter()
                .filter(|r| r.local == local && r.remote == remote)
                .cloned()
                .collect::<Vec<_>>()
        };

        let udp = dump_all(Some(addr.port()), Proto::Udp).unwrap();
        let bound = rows_at(&udp, addr, no_peer);
        assert_eq!(
            bound.len(),
            1,
            "only the UDP socket, not the TCP listener, at {addr}: {udp:?}"
        );
        let bound = &bound[0];
        assert_eq!(bound.proto, Proto::Udp);
        assert_eq!(bound.state, TcpState::Closed);
        assert_eq!(bound.state_name(), "UNCONNECTED");
        assert_eq!(bound.timer, None);
        let connected = rows_at(&udp, client_addr, addr);
        assert_eq!(connected.len(), 1, "the client {client_addr}: {udp:?}");
        assert_eq!(connected[0].state, TcpState::Established);
        assert_eq!(connected[0].state_name(), "CONNECTED");

        let tcp = dump(addr.port()).unwrap();
        let ours = rows_at(&tcp, listener.local_addr().unwrap(), no_peer);
        assert_eq!(ours.len(), 1, "only the TCP listener at {addr}: {tcp:?}");
        assert_eq!(
            (ours[0].proto, ours[0].state),
            (Proto::Tcp, TcpState::Listen)
        );
        assert!(
            rows_at(&tcp, client_addr, addr).is_empty(),
            "the UDP client is not in TCP's table: {tcp:?}"
        );
    }

    /// A UDP socket and a TCP listener on one address, 127.0.0.1:P. The
    /// kernel picks P for UDP; TCP's port P is nearly always free as well,
    /// and if it is not, another P is tried.
    fn udp_and_tcp_on_one_address() -> (UdpSocket, TcpListener) {
        for _ in 0..100 {
            let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
                return (udp, tcp);
            }
        }
        panic!("no port was free for both UDP and TCP in 100 tries");
    }

    /// A datagram nobody has read yet is counted in the receive queue.
    #[test]
    fn udp_receive_queue_counts_unread_datagrams() {
        let server = UdpSocket::bind("[::1]:0").unwrap();
        let addr = server.local_addr().unwrap();
        let client = UdpSocket::bind("[::1]:0").unwrap();
        client.send_to(b"hello", addr).unwrap();
        // Loopback delivers within the send call, but ask a few times in
        // case another CPU is still handing the datagram over.
        let queued = (0..1000).find_map(|_| {
            let rows = dump_all(Some(addr.port()), Proto::Udp).unwrap();
            rows.into_iter()
                .find(|r| r.local == addr && r.recv_queue > 0)
        });
        let row = queued.expect("the datagram in the receive queue");
        // UDP's queues count the kernel's memory for the datagram, not its 5 bytes.
        assert!(row.recv_queue >= 5, "{row:?}");
    }

    /// Without a port, the dump lists the whole table, ours included.
    #[test]
    fn dump_all_without_a_port() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let rows = dump_all(None, Proto::Tcp).unwrap();
        let row = rows.iter().find(|r| r.local == addr).expect("our listener");
        assert_eq!(row.state, TcpState::Listen);
        assert!(row.send_queue > 0, "a listener's backlog: {row:?}");
    }
}
