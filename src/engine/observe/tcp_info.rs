//! `getsockopt(IPPROTO_TCP, TCP_INFO)`: the kernel's view of one socket.

use crate::engine::event::TcpState;
use socket2::Socket;
use std::os::fd::AsRawFd;

/// Reads `tcpi_state` from `struct tcp_info` (see tcp(7)).
pub fn state(sock: &Socket) -> Option<TcpState> {
    // SAFETY: tcp_info is plain old data; zero is a valid value for every field.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: we pass a valid pointer to `info` and its true size; the kernel
    // writes at most `len` bytes and tells us how many it wrote.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 || len < 1 {
        return None;
    }
    TcpState::from_linux(info.tcpi_state)
}
