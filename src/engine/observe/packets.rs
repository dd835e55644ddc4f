//! Packets on the wire, through an `AF_PACKET` socket (packet(7)).
//!
//! The socket is "cooked" (SOCK_DGRAM): the kernel strips the link-layer
//! header, so every frame starts with its IP header. A classic BPF filter,
//! attached *before* the socket is bound, lets through only TCP and UDP
//! segments to or from one port, so nothing unrelated is ever copied to us.
//! Each frame comes with the kernel's own timestamp (SO_TIMESTAMPNS).
//!
//! Capturing needs CAP_NET_RAW (root, or `setcap cap_net_raw+ep` on the binary).

use crate::engine::event::Proto;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// From <linux/socket.h>, <asm-generic/socket.h> and <linux/if_packet.h>
// (not all of them are in the libc crate for every target).
const SO_ATTACH_FILTER: libc::c_int = 26;
const SO_TIMESTAMPNS: libc::c_int = 35;
const SCM_TIMESTAMPNS: libc::c_int = SO_TIMESTAMPNS;
const PACKET_OUTGOING: u8 = 4;
const ETH_P_ALL: u16 = 0x0003;
const SOL_PACKET: libc::c_int = 263;
const PACKET_STATISTICS: libc::c_int = 6;

/// Bytes of each frame copied to us: the IP and TCP headers at their
/// longest (60 + 60) fit; the payload is only counted, never read.
pub const SNAP: u32 = 128;

/// One TCP segment or UDP datagram, as seen on the wire.
#[derive(Clone, Debug, PartialEq)]
pub struct Packet {
    /// When the kernel saw it (CLOCK_REALTIME).
    pub at: SystemTime,
    pub proto: Proto,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub psh: bool,
    pub seq: u32,
    pub ack_no: u32,
    /// Payload bytes.
    pub len: usize,
    /// The network interface it was seen on.
    pub ifindex: i32,
}

impl Packet {
    /// The flags as tcpdump and the lesson write them: "SYN", "SYN,ACK", "PSH,ACK", "FIN,ACK", "RST".
    pub fn flags(&self) -> String {
        let mut f = Vec::new();
        for (on, name) in [
            (self.syn, "SYN"),
            (self.fin, "FIN"),
            (self.rst, "RST"),
            (self.psh, "PSH"),
            (self.ack, "ACK"),
        ] {
            if on {
                f.push(name);
            }
        }
        f.join(",")
    }
}

/// An open capture for one port.
pub struct Capture {
    fd: OwnedFd,
    loopback: i32,
    /// One frame at a time is read into this buffer.
    buf: Vec<u8>,
}

/// One BPF instruction: (code, jump if true, jump if false, k).
type Insn = (u16, u8, u8, u32);

/// `tcp port P or udp port P`, for frames that start at the IP header
/// (IPv4 without fragments, IPv6 without extension headers), and on the
/// loopback interface (index `lo`) only the outgoing copy of each frame:
/// loopback shows every frame twice, going out and coming in. Only the
/// first [`SNAP`] bytes of a frame are kept. Jumps count instructions
/// forward from the next one, as in every classic BPF program.
fn port_filter(port: u16, lo: u32) -> Vec<Insn> {
    const LDW_ABS: u16 = 0x20; // A = 32-bit word at k (or ancillary data)
    const LDB_ABS: u16 = 0x30; // A = byte at k
    const LDH_ABS: u16 = 0x28; // A = 16-bit word at k
    const LDH_IND: u16 = 0x48; // A = 16-bit word at X + k
    const LDXB_MSH: u16 = 0xb1; // X = 4 * (byte at k & 0xf): the IPv4 header length
    const RSH: u16 = 0x74; // A >>= k
    const JEQ: u16 = 0x15;
    const JSET: u16 = 0x45;
    const RET: u16 = 0x06;
    // Linux's ancillary loads: what the kernel knows of the frame.
    const AD_PKTTYPE: u32 = (-0x1000i32 + 4) as u32;
    const AD_IFINDEX: u32 = (-0x1000i32 + 8) as u32;
    let p = port as u32;
    vec![
        (LDW_ABS, 0, 0, AD_IFINDEX),          // a: A = the interface
        (JEQ, 0, 2, lo),                      // b: loopback → c, else → 0
        (LDW_ABS, 0, 0, AD_PKTTYPE),          // c: A = the direction
        (JEQ, 0, 22, PACKET_OUTGOING as u32), // d: going out → 0, else drop
        (LDB_ABS, 0, 0, 0),                   // 0: A = first byte
        (RSH, 0, 0, 4),                       // 1: A = the IP version
        (JEQ, 0, 10, 4),                      // 2: IPv4 → 3, else → 13
        (LDB_ABS, 0, 0, 9),                   // 3: A = protocol
        (JEQ, 1, 0, 6),                       // 4: TCP → 6
        (JEQ, 0, 16, 17),                     // 5: UDP → 6, else drop
        (LDH_ABS, 0, 0, 6),                   // 6: flags and fragment offset
        (JSET, 14, 0, 0x1fff),                // 7: a later fragment → drop
        (LDXB_MSH, 0, 0, 0),                  // 8: X = IPv4 header length
        (LDH_IND, 0, 0, 0),                   // 9: source port
        (JEQ, 10, 0, p),                      // 10: → accept
        (LDH_IND, 0, 0, 2),                   // 11: destination port
        (JEQ, 8, 9, p),                       // 12: → accept, else drop
        (JEQ, 0, 8, 6),                       // 13: IPv6 → 14, else drop
        (LDB_ABS, 0, 0, 6),                   // 14: next header
        (JEQ, 1, 0, 6),                       // 15: TCP → 17
        (JEQ, 0, 5, 17),                      // 16: UDP → 17, else drop
        (LDH_ABS, 0, 0, 40),                  // 17: source port
        (JEQ, 2, 0, p),                       // 18: → accept
        (LDH_ABS, 0, 0, 42),                  // 19: destination port
        (JEQ, 0, 1, p),                       // 20: → accept, else drop
        (RET, 0, 0, SNAP),                    // 21: accept the headers
        (RET, 0, 0, 0),                       // 22: drop
    ]
}

impl Capture {
    /// Opens a capture of TCP and UDP traffic to or from `port`, on every interface.
    pub fn open(port: u16) -> io::Result<Capture> {
        // SAFETY: plain system calls on a descriptor we own; every pointer
        // passed points to a live value of the size given.
        unsafe {
            // Protocol 0: the socket receives nothing until bind() names a
            // protocol, so no unfiltered frame can slip in before the filter.
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(fd);
            let lo = libc::if_nametoindex(c"lo".as_ptr());
            let mut program: Vec<libc::sock_filter> = port_filter(port, lo)
                .into_iter()
                .map(|(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k })
                .collect();
            let fprog = libc::sock_fprog {
                len: program.len() as u16,
                filter: program.as_mut_ptr(),
            };
            if libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_ATTACH_FILTER,
                (&fprog as *const libc::sock_fprog).cast(),
                size_of::<libc::sock_fprog>() as libc::socklen_t,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            let on: libc::c_int = 1;
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
            let mut addr: libc::sockaddr_ll = zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = ETH_P_ALL.to_be();
            addr.sll_ifindex = 0; // every interface
            if libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(Capture {
                fd,
                loopback: lo as i32,
                buf: vec![0u8; 65536],
            })
        }
    }

    /// Waits at most `wait` for a frame to read; true if one is there.
    pub fn wait(&self, wait: Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = wait.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd, for the duration of the call.
        let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
        match ready {
            r if r > 0 => Ok(true),
            0 => Ok(false),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Frames the kernel had to drop since the last call, because the
    /// capture's buffer was full (PACKET_STATISTICS; reading resets it).
    pub fn drops(&self) -> io::Result<u32> {
        let mut stats = [0u32; 2]; // struct tpacket_stats { tp_packets, tp_drops }
        let mut len = size_of::<[u32; 2]>() as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes into `stats`.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                SOL_PACKET,
                PACKET_STATISTICS,
                stats.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stats[1])
    }

    /// Waits at most `wait` for the next packet of interest.
    pub fn next(&mut self, wait: Duration) -> io::Result<Option<Packet>> {
        let mut control = [0u64; 16];
        let buf = &mut self.buf;
        loop {
            // SAFETY: poll and recvmsg get pointers to live buffers of the sizes given.
            let (n, from, at) = unsafe {
                // With no wait, one non-blocking read; else poll first.
                if !wait.is_zero() {
                    let mut pfd = libc::pollfd {
                        fd: self.fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    let ms = wait.as_millis().min(i32::MAX as u128) as i32;
                    let ready = libc::poll(&mut pfd, 1, ms);
                    if ready < 0 {
                        let e = io::Error::last_os_error();
                        if e.kind() == io::ErrorKind::Interrupted {
                            continue;
                        }
                        return Err(e);
                    }
                    if ready == 0 {
                        return Ok(None);
                    }
                }
                let mut from: libc::sockaddr_ll = zeroed();
                let mut iov = libc::iovec {
                    iov_base: buf.as_mut_ptr().cast(),
                    iov_len: buf.len(),
                };
                let mut msg: libc::msghdr = zeroed();
                msg.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
                msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                msg.msg_iov = &mut iov;
                msg.msg_iovlen = 1;
                msg.msg_control = control.as_mut_ptr().cast();
                msg.msg_controllen = size_of::<[u64; 16]>() as _;
                let n = libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT);
                if n < 0 {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::Interrupted => continue,
                        io::ErrorKind::WouldBlock => return Ok(None),
                        _ => return Err(e),
                    }
                }
                let mut at = SystemTime::now();
                let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
                while !cmsg.is_null() {
                    if (*cmsg).cmsg_level == libc::SOL_SOCKET
                        && (*cmsg).cmsg_type == SCM_TIMESTAMPNS
                    {
                        let ts: libc::timespec =
                            std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                        at = UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
                    }
                    cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
                }
                (n as usize, from, at)
            };
            // On the loopback interface every frame is seen twice, going out
            // and coming in: keep the outgoing copy only (the filter already
            // does). On a real interface both directions are different
            // frames: keep them all.
            if from.sll_ifindex == self.loopback && from.sll_pkttype != PACKET_OUTGOING {
                continue;
            }
            if let Some(packet) = parse(&buf[..n], at, from.sll_ifindex) {
                return Ok(Some(packet));
            }
        }
    }
}

/// Parses an IP packet carrying TCP or UDP. The frame may be cut short
/// after its headers ([`SNAP`]): the payload's length comes from the
/// headers, not from the bytes at hand.
pub fn parse(bytes: &[u8], at: SystemTime, ifindex: i32) -> Option<Packet> {
    use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
    let sliced = LaxSlicedPacket::from_ip(bytes).ok()?;
    // The IP payload's length as the IP header states it.
    let (src_ip, dst_ip, ip_payload) = match sliced.net? {
        LaxNetSlice::Ipv4(v4) => {
            let h = v4.header();
            let payload = (h.total_len() as usize).checked_sub(h.ihl() as usize * 4)?;
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                payload,
            )
        }
        LaxNetSlice::Ipv6(v6) => {
            let h = v6.header();
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                h.payload_length() as usize,
            )
        }
        _ => return None,
    };
    let mut p = Packet {
        at,
        proto: Proto::Tcp,
        src: SocketAddr::new(src_ip, 0),
        dst: SocketAddr::new(dst_ip, 0),
        syn: false,
        ack: false,
        fin: false,
        rst: false,
        psh: false,
        seq: 0,
        ack_no: 0,
        len: 0,
        ifindex,
    };
    match sliced.transport? {
        TransportSlice::Tcp(tcp) => {
            p.src.set_port(tcp.source_port());
            p.dst.set_port(tcp.destination_port());
            (p.syn, p.ack, p.fin, p.rst, p.psh) =
                (tcp.syn(), tcp.ack(), tcp.fin(), tcp.rst(), tcp.psh());
            (p.seq, p.ack_no) = (tcp.sequence_number(), tcp.acknowledgment_number());
            p.len = ip_payload.checked_sub(tcp.header_len())?;
        }
        TransportSlice::Udp(udp) => {
            p.proto = Proto::Udp;
            p.src.set_port(udp.source_port());
            p.dst.set_port(udp.destination_port());
            p.len = (udp.length() as usize).checked_sub(8)?;
        }
        _ => return None,
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made IPv4 SYN from 127.0.0.1:40000 to 127.0.0.1:8888.
    #[test]
    fn parses_a_syn() {
        let mut frame = vec![
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        frame.extend_from_slice(&40000u16.to_be_bytes());
        frame.extend_from_slice(&8888u16.to_be_bytes());
        frame.extend_from_slice(&1000u32.to_be_bytes());
        frame.extend_from_slice(&0u32.to_be_bytes());
        frame.extend_from_slice(&[0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        let p = parse(&frame, UNIX_EPOCH, 1).unwrap();
        assert_eq!(p.flags(), "SYN");
        assert_eq!(
            (p.src.port(), p.dst.port(), p.seq, p.len),
            (40000, 8888, 1000, 0)
        );
    }

    /// A 1000-byte segment cut after its headers, as the filter keeps it:
    /// its length comes from the IP header.
    #[test]
    fn a_frame_cut_after_its_headers_keeps_its_length() {
        let total: u16 = 20 + 20 + 1000;
        let mut frame = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        frame[2..4].copy_from_slice(&total.to_be_bytes());
        frame.extend_from_slice(&8888u16.to_be_bytes());
        frame.extend_from_slice(&40000u16.to_be_bytes());
        frame.extend_from_slice(&7u32.to_be_bytes());
        frame.extend_from_slice(&9u32.to_be_bytes());
        frame.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        frame.extend_from_slice(&[b'x'; 40]); // all that SNAP leaves of the payload
        let p = parse(&frame, UNIX_EPOCH, 1).unwrap();
        assert_eq!(p.flags(), "PSH,ACK");
        assert_eq!((p.seq, p.ack_no, p.len), (7, 9, 1000));
    }

    /// Runs a classic BPF program the way the kernel would (the few
    /// instructions the filter uses), so the filter itself is tested.
    fn run_filter(prog: &[Insn], pkt: &[u8]) -> u32 {
        run_filter_on(prog, pkt, ETH0, 0)
    }

    const ETH0: u32 = 2;
    const LO: u32 = 1;

    /// As the kernel runs it for a frame seen on interface `ifindex` with
    /// packet type `pkttype` (0: to us, 4: going out).
    fn run_filter_on(prog: &[Insn], pkt: &[u8], ifindex: u32, pkttype: u32) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let byte = |k: usize| pkt.get(k).map(|b| *b as u32);
        let half = |k: usize| Some(((*pkt.get(k)? as u32) << 8) | *pkt.get(k + 1)? as u32);
        loop {
            let (code, jt, jf, k) = prog[pc];
            pc += 1;
            match code {
                0x20 if k == (-0x1000i32 + 4) as u32 => a = pkttype,
                0x20 if k == (-0x1000i32 + 8) as u32 => a = ifindex,
                0x30 => {
                    a = match byte(k as usize) {
                        Some(v) => v,
                        None => return 0,
                    }
                }
                0x28 => {
                    a = match half(k as usize) {
                        Some(v) => v,
                        None => return 0,
                    }
                }
                0x48 => {
                    a = match half((x + k) as usize) {
                        Some(v) => v,
                        None => return 0,
                    }
                }
                0xb1 => {
                    x = match byte(k as usize) {
                        Some(v) => 4 * (v & 0xf),
                        None => return 0,
                    }
                }
                0x74 => a >>= k,
                0x15 => pc += if a == k { jt as usize } else { jf as usize },
                0x45 => pc += if a & k != 0 { jt as usize } else { jf as usize },
                0x06 => return k,
                other => panic!("unexpected instruction {other:#x}"),
            }
        }
    }

    fn ipv4(proto: u8, sport: u16, dport: u16, frag: u16) -> Vec<u8> {
        let mut f = vec![0x45, 0, 0, 40, 0, 0];
        f.extend_from_slice(&frag.to_be_bytes());
        f.extend_from_slice(&[64, proto, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0; 16]);
        f
    }

    fn ipv6(next: u8, sport: u16, dport: u16) -> Vec<u8> {
        let mut f = vec![0x60, 0, 0, 0, 0, 20, next, 64];
        f.extend_from_slice(&[0; 32]);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0; 16]);
        f
    }

    #[test]
    fn the_filter_keeps_only_our_port() {
        let prog = port_filter(8888, LO);
        let kept = |pkt: Vec<u8>| run_filter(&prog, &pkt) > 0;
        assert_eq!(
            run_filter(&prog, &ipv4(6, 40000, 8888, 0)),
            SNAP,
            "headers only"
        );
        assert!(
            run_filter_on(&prog, &ipv4(6, 40000, 8888, 0), LO, 4) > 0,
            "loopback, going out"
        );
        assert_eq!(
            run_filter_on(&prog, &ipv4(6, 40000, 8888, 0), LO, 0),
            0,
            "loopback's second copy, coming in"
        );
        assert_eq!(
            run_filter_on(&prog, &ipv4(6, 40000, 8889, 0), LO, 4),
            0,
            "loopback, another port"
        );
        assert!(kept(ipv4(6, 40000, 8888, 0)), "TCP to the port");
        assert!(
            kept(ipv4(6, 8888, 40000, 0x4000)),
            "TCP from the port (don't-fragment set)"
        );
        assert!(kept(ipv4(17, 5353, 8888, 0)), "UDP to the port");
        assert!(!kept(ipv4(6, 40000, 8889, 0)), "another port");
        assert!(!kept(ipv4(1, 8888, 8888, 0)), "ICMP");
        assert!(!kept(ipv4(6, 40000, 8888, 0x0010)), "a later fragment");
        assert!(
            kept(ipv6(6, 40000, 8888)) && kept(ipv6(17, 8888, 1)),
            "IPv6 TCP and UDP"
        );
        assert!(
            !kept(ipv6(6, 1, 2)) && !kept(ipv6(58, 8888, 8888)),
            "IPv6 other port, ICMPv6"
        );
        for (i, (code, jt, jf, _)) in prog.iter().enumerate() {
            if code & 0x07 == 0x05 {
                assert!(
                    i + 1 + ((*jt).max(*jf) as usize) < prog.len(),
                    "jump past the end at {i}"
                );
            }
        }
    }
}
