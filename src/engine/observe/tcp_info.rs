//! `getsockopt(IPPROTO_TCP, TCP_INFO)`: the kernel's view of one socket.
//! sockdemo's own instrument: it is not one of the lesson's calls.

use crate::engine::event::TcpState;

/// Reads `tcpi_state` from `struct tcp_info` (see tcp(7)) for descriptor `fd`.
pub fn state(fd: i64) -> Option<TcpState> {
    // SAFETY: tcp_info is plain old data; zero is a valid value for every field.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: we pass a valid pointer to `info` and its true size; the kernel
    // writes at most `len` bytes and tells us how many it wrote. A stale
    // descriptor only makes the call fail.
    let rc = unsafe {
        libc::getsockopt(
            fd as libc::c_int,
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

/// Bytes received and not yet read by the program (ioctl SIOCINQ, which
/// is FIONREAD on a socket): closing with unread bytes sends an RST.
pub fn unread(fd: i64) -> Option<u32> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer we pass.
    let rc = unsafe { libc::ioctl(fd as libc::c_int, libc::FIONREAD, &mut n) };
    (rc == 0).then_some(n.max(0) as u32)
}
