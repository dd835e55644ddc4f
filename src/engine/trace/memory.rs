//! Reading a traced program's memory: the buffers and addresses its
//! system calls point at. Only read, never written: sockdemo changes
//! nothing of the program's data.

use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;
use std::io::IoSliceMut;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// At most this many bytes of one call's data are read for the preview.
pub const PREVIEW_BYTES: usize = 256;

/// Up to `len` bytes at `addr` in the memory of `pid` (fewer where the
/// memory ends; empty when it cannot be read).
pub fn bytes(pid: Pid, addr: u64, len: usize) -> Vec<u8> {
    if addr == 0 || len == 0 {
        return Vec::new();
    }
    let mut buf = vec![0u8; len];
    let remote = [RemoteIoVec {
        base: addr as usize,
        len,
    }];
    match process_vm_readv(pid, &mut [IoSliceMut::new(&mut buf)], &remote) {
        Ok(n) => {
            buf.truncate(n);
            buf
        }
        Err(_) => Vec::new(),
    }
}

/// A native-endian number of `N` bytes at `addr`.
fn word<const N: usize>(pid: Pid, addr: u64) -> Option<[u8; N]> {
    bytes(pid, addr, N).try_into().ok()
}

pub fn u32_at(pid: Pid, addr: u64) -> Option<u32> {
    word::<4>(pid, addr).map(u32::from_ne_bytes)
}

pub fn i32_at(pid: Pid, addr: u64) -> Option<i32> {
    word::<4>(pid, addr).map(i32::from_ne_bytes)
}

pub fn u64_at(pid: Pid, addr: u64) -> Option<u64> {
    word::<8>(pid, addr).map(u64::from_ne_bytes)
}

/// The first `max` bytes of the data that `iovcnt` iovecs at `iov` point
/// at, of which the call moved `moved` bytes (readv, writev, sendmsg…).
pub fn gather(pid: Pid, iov: u64, iovcnt: u64, moved: usize, max: usize) -> Vec<u8> {
    let want = moved.min(max);
    let mut out = Vec::with_capacity(want);
    for i in 0..iovcnt.min(64) {
        if out.len() >= want {
            break;
        }
        let (Some(base), Some(len)) = (u64_at(pid, iov + 16 * i), u64_at(pid, iov + 16 * i + 8))
        else {
            break;
        };
        let take = (len as usize).min(want - out.len());
        out.extend(bytes(pid, base, take));
    }
    out
}

/// A `struct sockaddr` of `len` bytes at `addr`: an IPv4 or IPv6 address
/// and port (other families are not the lesson's: None).
pub fn sockaddr(pid: Pid, addr: u64, len: u32) -> Option<SocketAddr> {
    parse_sockaddr(&bytes(pid, addr, (len as usize).min(128)))
}

/// The address family number at the start of a `struct sockaddr`.
pub fn family(raw: &[u8]) -> Option<i32> {
    raw.get(..2)
        .map(|f| u16::from_ne_bytes([f[0], f[1]]) as i32)
}

/// `struct sockaddr_in` or `sockaddr_in6`, as the kernel lays them out
/// (the port and address in network order).
pub fn parse_sockaddr(raw: &[u8]) -> Option<SocketAddr> {
    let port = u16::from_be_bytes(raw.get(2..4)?.try_into().ok()?);
    match family(raw)? {
        libc::AF_INET => {
            let ip: [u8; 4] = raw.get(4..8)?.try_into().ok()?;
            Some(SocketAddrV4::new(Ipv4Addr::from(ip), port).into())
        }
        libc::AF_INET6 => {
            let flow = u32::from_be_bytes(raw.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = raw.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(raw.get(24..28)?.try_into().ok()?);
            Some(SocketAddrV6::new(Ipv6Addr::from(ip), port, flow, scope).into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_sockaddr_as_a_tracer_would() {
        let addr: SocketAddr = "127.0.0.1:8888".parse().unwrap();
        let raw = socket2::SockAddr::from(addr);
        // SAFETY: as_ptr points at `len` initialised bytes of the address.
        let bytes =
            unsafe { std::slice::from_raw_parts(raw.as_ptr().cast::<u8>(), raw.len() as usize) };
        assert_eq!(parse_sockaddr(bytes), Some(addr));
        let v6: SocketAddr = "[::1]:443".parse().unwrap();
        let raw = socket2::SockAddr::from(v6);
        let bytes =
            unsafe { std::slice::from_raw_parts(raw.as_ptr().cast::<u8>(), raw.len() as usize) };
        assert_eq!(parse_sockaddr(bytes), Some(v6));
        // Read through process_vm_readv from ourselves.
        let me = Pid::this();
        let got = sockaddr(me, bytes.as_ptr() as u64, bytes.len() as u32);
        assert_eq!(got, Some(v6));
    }
}
