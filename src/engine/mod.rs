//! The socket engine: it makes the socket calls and reports each one as an
//! [`event::Event`]. It never prints; the renderers never touch a socket.

pub mod capture;
pub mod client;
pub mod conn;
pub mod errors;
pub mod event;
pub mod framing;
pub mod limits;
pub mod observe;
pub mod server;
pub mod udp;
pub mod udp_server;

/// The number the OS uses for a socket: a file descriptor on Unix, a
/// SOCKET handle on Windows.
pub fn fd_number(sock: &socket2::Socket) -> i64 {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        sock.as_raw_fd() as i64
    }
    #[cfg(windows)]
    {
        use std::os::windows::io::AsRawSocket;
        sock.as_raw_socket() as i64
    }
}
