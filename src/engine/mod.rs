//! The socket engine. It makes the socket calls and records what really
//! happened as evidence; the tracker turns the evidence into events. It
//! never prints, and the renderers never touch a socket.
//!
//! ```text
//! server.rs, client.rs, conn.rs, udp*.rs ─┐ call records (ctx.rs: Ctx::call)
//! observe/ (TCP_INFO, sock_diag) ─────────┤ kernel samples
//! capture.rs (AF_PACKET) ─────────────────┤ packets
//!                                         ▼
//!                      sink.rs ─► timeline.rs (time order) ─► tracker/ ─► Event
//! ```

pub mod call;
pub mod capture;
pub mod client;
pub mod conn;
pub mod ctx;
pub mod errors;
pub mod event;
pub mod evidence;
pub mod framing;
pub mod labels;
pub mod limits;
pub mod observe;
pub mod recorder;
pub mod server;
pub mod sink;
pub mod timeline;
pub mod trace;
pub mod tracker;
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
