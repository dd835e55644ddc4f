//! The kernel's own answers about sockets.
//!
//! * [`tcp_state`] asks about a socket we still hold a descriptor for,
//!   with `getsockopt(TCP_INFO)` (Linux, tcp(7)).
//! * [`find`] and [`dump`] ask the kernel's socket table through a
//!   sock_diag netlink socket (Linux, sock_diag(7)). That table still holds
//!   sockets no program owns any more, such as a connection in TIME-WAIT.
//!
//! Elsewhere (macOS, Windows) these return `None`/empty, and the engine says
//! once that the states it shows there are inferred.

use crate::engine::event::TcpState;
use socket2::Socket;
use std::net::SocketAddr;
use std::time::Duration;

#[cfg(target_os = "linux")]
mod diag;
#[cfg(target_os = "linux")]
mod tcp_info;

/// True where sockdemo can read states from the kernel.
pub const KERNEL_STATES: bool = cfg!(target_os = "linux");

/// One row of the kernel's socket table.
#[derive(Clone, Debug, PartialEq)]
pub struct TableEntry {
    pub state: TcpState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Time left on the socket's timer (for TIME-WAIT, until it disappears).
    pub timer: Option<Duration>,
    /// On a listener: connections waiting for accept(). Otherwise: bytes
    /// received but not yet read by the program.
    pub recv_queue: u32,
    /// On a listener: the backlog. Otherwise: bytes sent but not yet acknowledged.
    pub send_queue: u32,
}

/// The TCP state of a socket we hold, as the kernel reports it.
pub fn tcp_state(sock: &Socket) -> Option<TcpState> {
    #[cfg(target_os = "linux")]
    {
        tcp_info::state(sock)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = sock;
        None
    }
}

/// The kernel's entry for the TCP connection `local` ⇄ `remote`:
/// `Ok(None)` when the kernel has no such connection, `Err` when it could
/// not be asked (for instance: no descriptor left for the netlink socket).
pub fn find(local: SocketAddr, remote: SocketAddr) -> std::io::Result<Option<TableEntry>> {
    #[cfg(target_os = "linux")]
    {
        diag::find(local, remote)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (local, remote);
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "the kernel socket table (sock_diag) is Linux-only",
        ))
    }
}

/// Every TCP socket whose local or remote port is `port`.
pub fn dump(port: u16) -> std::io::Result<Vec<TableEntry>> {
    #[cfg(target_os = "linux")]
    {
        diag::dump(port)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = port;
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "the kernel socket table (sock_diag) is Linux-only",
        ))
    }
}
