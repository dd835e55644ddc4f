//! The kernel's own answers about sockets.
//!
//! * [`tcp_state`] asks about a socket we still hold a descriptor for,
//!   with `getsockopt(TCP_INFO)` (Linux, tcp(7)).
//! * [`find`], [`dump`] and [`dump_all`] ask the kernel's socket table
//!   through a sock_diag netlink socket (Linux, sock_diag(7)). That table
//!   still holds sockets no program owns any more, such as a connection in
//!   TIME-WAIT. TCP and UDP have a table each.
//!
//! Elsewhere (macOS, Windows) these return `None`/empty, and the engine says
//! once that the states it shows there are inferred.

use crate::engine::event::{Proto, TcpState};
use serde::Serialize;
use socket2::Socket;
use std::net::SocketAddr;
use std::time::Duration;

#[cfg(target_os = "linux")]
mod diag;
#[cfg(target_os = "linux")]
pub mod packets;
#[cfg(target_os = "linux")]
mod tcp_info;

/// True where sockdemo can read states from the kernel.
pub const KERNEL_STATES: bool = cfg!(target_os = "linux");

/// One row of the kernel's socket table.
#[derive(Clone, Debug, PartialEq)]
pub struct TableEntry {
    /// Which table the row comes from.
    pub proto: Proto,
    /// The kernel's state number, read as TCP's. UDP keeps TCP's numbers
    /// too: `Closed` is an unconnected UDP socket, `Established` a connected
    /// one (see [`TableEntry::state_name`]).
    pub state: TcpState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Time left on the socket's timer (for TIME-WAIT, until it disappears).
    pub timer: Option<Duration>,
    /// Which timer `timer` is; `None` when no timer runs.
    pub timer_kind: Option<TimerKind>,
    /// On a listener: connections waiting for accept(). Otherwise: bytes
    /// received but not yet read by the program (for UDP: the kernel's
    /// memory for the unread datagrams, a little more than their bytes).
    pub recv_queue: u32,
    /// On a listener: the backlog. Otherwise: bytes sent but not yet
    /// acknowledged (for UDP: memory for datagrams not yet handed to the network).
    pub send_queue: u32,
}

impl TableEntry {
    /// The state as a person should read it. TCP's states keep the RFC's
    /// names. A UDP socket has no states, only "bound" or "connect()ed to
    /// one peer", which the kernel stores as TCP's CLOSE and ESTABLISHED:
    /// we call them `UNCONNECTED` and `CONNECTED` (`ss` says UNCONN and ESTAB).
    pub fn state_name(&self) -> &'static str {
        match (self.proto, self.state) {
            (Proto::Udp, TcpState::Closed) => "UNCONNECTED",
            (Proto::Udp, TcpState::Established) => "CONNECTED",
            (_, state) => state.name(),
        }
    }

    /// A listener: its queues are the accept queue and the backlog.
    pub fn is_listener(&self) -> bool {
        self.proto == Proto::Tcp && self.state == TcpState::Listen
    }
}

/// The timer the kernel runs on a socket (`idiag_timer`; `ss -o` shows it
/// as `timer:(on|keepalive|timewait|persist,…)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimerKind {
    /// Data or a SYN was sent and not acknowledged: when it fires, send again.
    Retransmit,
    /// SO_KEEPALIVE: when it fires, probe an idle peer.
    Keepalive,
    /// The TIME-WAIT countdown: when it fires, the connection is forgotten.
    TimeWait,
    /// A FIN-WAIT-2 connection whose program has closed it: if the peer
    /// never closes, the kernel forgets it after `tcp_fin_timeout` (60 s).
    /// (The kernel runs it on the same timer as TIME-WAIT.)
    FinTimeout,
    /// The peer's window is zero: when it fires, probe whether it opened.
    ZeroWindowProbe,
}

impl TimerKind {
    pub fn name(self) -> &'static str {
        match self {
            TimerKind::Retransmit => "retransmit",
            TimerKind::Keepalive => "keepalive",
            TimerKind::TimeWait => "time-wait",
            TimerKind::FinTimeout => "fin-timeout",
            TimerKind::ZeroWindowProbe => "zero-window-probe",
        }
    }
}

/// The TCP state of a socket we hold, by its descriptor, as the kernel reports it.
pub fn tcp_state_of(fd: i64) -> Option<TcpState> {
    #[cfg(target_os = "linux")]
    {
        tcp_info::state(fd)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = fd;
        None
    }
}

/// The TCP state of a socket we hold.
pub fn tcp_state(sock: &Socket) -> Option<TcpState> {
    tcp_state_of(crate::engine::fd_number(sock))
}

/// Bytes the peer sent that the program has not read yet (Linux).
pub fn unread(fd: i64) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        tcp_info::unread(fd)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = fd;
        None
    }
}

/// The kernel's row for the listener at `local`, if it is still listening.
pub fn listener(local: SocketAddr) -> std::io::Result<Option<TableEntry>> {
    Ok(dump(local.port())?
        .into_iter()
        .find(|r| r.state == TcpState::Listen && r.local == local))
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

/// Every socket of `proto` whose local or remote port is `port`, or every
/// socket of `proto` when `port` is `None`.
pub fn dump_all(port: Option<u16>, proto: Proto) -> std::io::Result<Vec<TableEntry>> {
    #[cfg(target_os = "linux")]
    {
        diag::dump_all(port, proto)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (port, proto);
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "the kernel socket table (sock_diag) is Linux-only",
        ))
    }
}
