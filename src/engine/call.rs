//! The socket calls a program makes, as data: [`Call`] names one call and
//! its arguments, the way the man pages (and strace) write them.
//!
//! A call is performed with [`Ctx::call`](crate::engine::ctx::Ctx::call),
//! which records it with its real result; this file only says what each
//! call is called and how its arguments read.

use std::net::SocketAddr;
use std::time::Duration;

/// The address family of a new socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Inet,
    Inet6,
}

impl Family {
    pub fn of(addr: &SocketAddr) -> Family {
        match addr {
            SocketAddr::V4(_) => Family::Inet,
            SocketAddr::V6(_) => Family::Inet6,
        }
    }

    pub fn domain(self) -> socket2::Domain {
        match self {
            Family::Inet => socket2::Domain::IPV4,
            Family::Inet6 => socket2::Domain::IPV6,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::Inet => "AF_INET",
            Family::Inet6 => "AF_INET6",
        }
    }
}

/// A socket option set with setsockopt().
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opt {
    /// SO_REUSEADDR: bind() may reuse a port whose old connections wait in TIME-WAIT.
    ReuseAddr,
    /// SO_LINGER: `Some(0)` makes close() abort the connection.
    Linger(Option<Duration>),
    /// SO_RCVTIMEO: a receive gives up after this long (EAGAIN).
    RecvTimeout(Option<Duration>),
    /// SO_SNDTIMEO: a send gives up after this long (EAGAIN).
    SendTimeout(Option<Duration>),
    /// TCP_DEFER_ACCEPT (Linux): complete a connection only when data comes.
    DeferAccept(i32),
}

/// How shutdown() closes: reading, writing, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    Read,
    Write,
    Both,
}

impl How {
    pub fn std(self) -> std::net::Shutdown {
        match self {
            How::Read => std::net::Shutdown::Read,
            How::Write => std::net::Shutdown::Write,
            How::Both => std::net::Shutdown::Both,
        }
    }

    fn name(self) -> &'static str {
        match self {
            How::Read => "SHUT_RD",
            How::Write => "SHUT_WR",
            How::Both => "SHUT_RDWR",
        }
    }
}

/// One socket call with its arguments.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    /// getaddrinfo(3): a library function that turns a name into addresses.
    GetAddrInfo(String),
    Socket {
        family: Family,
        stream: bool,
    },
    SetSockOpt(Opt),
    /// getsockopt(SO_ERROR): how a non-blocking connect() ended. The value
    /// the kernel gave back: `None` for 0, else the error's C name.
    GetSoError(Option<String>),
    /// fcntl(F_SETFL, O_NONBLOCK) on or off.
    NonBlocking(bool),
    Bind(SocketAddr),
    Listen(i32),
    Accept,
    Connect(SocketAddr),
    /// poll() for one socket: POLLOUT (writable) or POLLIN (readable).
    Poll {
        out: bool,
        timeout: Option<Duration>,
    },
    Send(usize),
    Recv(usize),
    SendTo(usize, SocketAddr),
    RecvFrom(usize),
    Shutdown(How),
    Close,
}

impl Call {
    /// The name the lesson (and the man pages) use.
    pub fn name(&self) -> &'static str {
        match self {
            Call::GetAddrInfo(_) => "getaddrinfo",
            Call::Socket { .. } => "socket",
            Call::SetSockOpt(_) => "setsockopt",
            Call::GetSoError(_) => "getsockopt",
            Call::NonBlocking(_) => "fcntl",
            Call::Bind(_) => "bind",
            Call::Listen(_) => "listen",
            Call::Accept => "accept",
            Call::Connect(_) => "connect",
            Call::Poll { .. } => "poll",
            Call::Send(_) => "send",
            Call::Recv(_) => "recv",
            Call::SendTo(..) => "sendto",
            Call::RecvFrom(_) => "recvfrom",
            Call::Shutdown(_) => "shutdown",
            Call::Close => "close",
        }
    }

    /// The system call the kernel sees, where it differs from [`name`](Self::name):
    /// on Linux the C library makes `send()` the system call `sendto`, and
    /// Rust's `accept()` is `accept4` (so the new socket is closed on exec).
    pub fn syscall(&self) -> Option<&'static str> {
        if !cfg!(target_os = "linux") {
            return None;
        }
        match self {
            Call::Send(_) => Some("sendto"),
            Call::Recv(_) => Some("recvfrom"),
            Call::Accept => Some("accept4"),
            _ => None,
        }
    }

    /// The arguments as a person would write them (the descriptor is shown apart).
    pub fn args(&self) -> String {
        // On Linux, Rust asks for SOCK_CLOEXEC in the type, in the same call.
        let cloexec = if cfg!(target_os = "linux") {
            "|SOCK_CLOEXEC"
        } else {
            ""
        };
        match self {
            Call::GetAddrInfo(host) => format!("\"{}\"", crate::sanitize::escape(host.as_bytes())),
            Call::Socket {
                family,
                stream: true,
            } => format!("{}, SOCK_STREAM{cloexec}, IPPROTO_TCP", family.name()),
            Call::Socket {
                family,
                stream: false,
            } => format!("{}, SOCK_DGRAM{cloexec}, IPPROTO_UDP", family.name()),
            Call::SetSockOpt(opt) => match opt {
                Opt::ReuseAddr => "SOL_SOCKET, SO_REUSEADDR, 1".into(),
                Opt::Linger(None) => "SOL_SOCKET, SO_LINGER, {off}".into(),
                Opt::Linger(Some(d)) => {
                    format!("SOL_SOCKET, SO_LINGER, {{on, {} s}}", d.as_secs())
                }
                Opt::RecvTimeout(None) => "SOL_SOCKET, SO_RCVTIMEO, 0 (none)".into(),
                Opt::RecvTimeout(Some(d)) => {
                    format!("SOL_SOCKET, SO_RCVTIMEO, {} s", seconds(*d))
                }
                Opt::SendTimeout(None) => "SOL_SOCKET, SO_SNDTIMEO, 0 (none)".into(),
                Opt::SendTimeout(Some(d)) => {
                    format!("SOL_SOCKET, SO_SNDTIMEO, {} s", seconds(*d))
                }
                Opt::DeferAccept(s) => format!("IPPROTO_TCP, TCP_DEFER_ACCEPT, {s}"),
            },
            Call::GetSoError(value) => {
                format!(
                    "SOL_SOCKET, SO_ERROR, [{}]",
                    value.as_deref().unwrap_or("0")
                )
            }
            Call::NonBlocking(true) => "F_SETFL, O_NONBLOCK".into(),
            Call::NonBlocking(false) => "F_SETFL, blocking".into(),
            Call::Bind(addr) | Call::Connect(addr) => addr.to_string(),
            Call::Listen(backlog) => format!("backlog={backlog}"),
            Call::Accept | Call::Close => String::new(),
            Call::Poll { out, timeout } => {
                let what = if *out { "POLLOUT" } else { "POLLIN" };
                match timeout {
                    Some(d) => format!("{what}, {} ms", d.as_millis()),
                    None => format!("{what}, no timeout"),
                }
            }
            Call::Send(n) => format!("{n} bytes"),
            Call::Recv(n) | Call::RecvFrom(n) => format!("up to {n} bytes"),
            Call::SendTo(n, to) => format!("{n} bytes, {to}"),
            Call::Shutdown(how) => how.name().into(),
        }
    }

    /// The stage of the lesson this call belongs to, on its own (the
    /// tracker may place it later, never earlier, than its connection is).
    pub fn stage(&self, server: bool) -> crate::engine::event::Stage {
        use crate::engine::event::Stage;
        match self {
            Call::Socket { .. } | Call::SetSockOpt(_) | Call::Bind(_) if server => Stage::Listen,
            Call::Listen(_) => Stage::Listen,
            Call::Accept | Call::Poll { out: true, .. } | Call::GetSoError(_) => Stage::Confirm,
            Call::Send(_) | Call::Recv(_) | Call::SendTo(..) | Call::RecvFrom(_) => Stage::Transfer,
            Call::Poll { out: false, .. } => Stage::Transfer,
            Call::Shutdown(_) | Call::Close => Stage::Close,
            Call::SetSockOpt(Opt::Linger(_)) => Stage::Close,
            _ => Stage::Request,
        }
    }
}

fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s}")
    }
}

/// What a call returns, as the C call's return value.
pub trait Returns {
    /// The number the C call returns: a descriptor, a byte count, or 0.
    fn ret(&self) -> i64;
}

impl Returns for () {
    fn ret(&self) -> i64 {
        0
    }
}

impl Returns for usize {
    fn ret(&self) -> i64 {
        *self as i64
    }
}

impl Returns for i32 {
    fn ret(&self) -> i64 {
        *self as i64
    }
}

impl Returns for socket2::Socket {
    fn ret(&self) -> i64 {
        crate::engine::fd_number(self)
    }
}

impl Returns for (usize, SocketAddr) {
    fn ret(&self) -> i64 {
        self.0 as i64
    }
}

impl Returns for Vec<SocketAddr> {
    /// getaddrinfo() returns 0 on success; the addresses come in a list.
    fn ret(&self) -> i64 {
        0
    }
}
