//! Errors are lessons too: each failure a socket call can meet is explained
//! by what happened on the network and what to do about it.

use std::fmt;
use std::io;
use std::net::SocketAddr;

/// A failure that ends a command, with its explanation.
#[derive(Debug)]
pub struct Lesson {
    /// One line: which call failed and how ("connect(127.0.0.1:8888): connection refused").
    pub summary: String,
    /// What happened on the network, and what to do.
    pub explanation: String,
    /// A stable word for scripts ("refused", "addr-in-use", ...).
    pub code: &'static str,
}

impl fmt::Display for Lesson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary)
    }
}

impl std::error::Error for Lesson {}

/// A command line that names something that does not exist (an unknown
/// lesson): exit status 2, like any usage error.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The C name of an error and the OS's words for it: "ECONNREFUSED: Connection refused".
pub fn errno_text(e: &io::Error) -> String {
    let name = e.raw_os_error().and_then(errno_name);
    let text = e.to_string();
    // io::Error's Display adds " (os error 111)"; the name says it better.
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    match name {
        Some(name) => format!("{name}: {text}"),
        None => text,
    }
}

fn errno_name(code: i32) -> Option<&'static str> {
    #[cfg(unix)]
    {
        Some(match code {
            libc::ECONNREFUSED => "ECONNREFUSED",
            libc::EADDRINUSE => "EADDRINUSE",
            libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
            libc::EACCES => "EACCES",
            libc::EPERM => "EPERM",
            libc::ETIMEDOUT => "ETIMEDOUT",
            libc::ECONNRESET => "ECONNRESET",
            libc::EPIPE => "EPIPE",
            libc::EMFILE => "EMFILE",
            libc::ENFILE => "ENFILE",
            libc::ENETUNREACH => "ENETUNREACH",
            libc::EHOSTUNREACH => "EHOSTUNREACH",
            libc::EINPROGRESS => "EINPROGRESS",
            libc::EAGAIN => "EAGAIN",
            libc::EINTR => "EINTR",
            libc::ECONNABORTED => "ECONNABORTED",
            libc::ENOTCONN => "ENOTCONN",
            libc::ENOBUFS => "ENOBUFS",
            libc::ENOMEM => "ENOMEM",
            _ => return None,
        })
    }
    #[cfg(not(unix))]
    {
        let _ = code;
        None
    }
}

/// True when the OS refused because this process or the system ran out of descriptors.
pub fn is_fd_limit(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// Explains a failed socket call. `call` is its name, `addr` the address it was about.
pub fn explain(call: &str, addr: SocketAddr, e: &io::Error) -> Lesson {
    let port = addr.port();
    let summary = format!("{call}({addr}) failed: {}", errno_text(e));
    let (code, explanation) = match e.kind() {
        io::ErrorKind::ConnectionRefused => (
            "refused",
            format!(
                "Nothing is listening on {addr}. Your SYN reached that machine, and its kernel \
                 answered with a reset (RST): no socket is in LISTEN on port {port}.\n\
                 What to do: start the server first (sockdemo listen --port {port}), or check the \
                 address and port you typed."
            ),
        ),
        io::ErrorKind::AddrInUse => (
            "addr-in-use",
            format!(
                "Another socket already owns port {port} on this address, most likely another \
                 server that is still running.\n\
                 SO_REUSEADDR (which sockdemo sets) lets a new server bind a port whose old \
                 connections linger in TIME-WAIT; it does not let two servers listen on the \
                 same address and port.\n\
                 What to do: stop the other server, or pick another port (--port 0 lets the OS choose)."
            ),
        ),
        io::ErrorKind::PermissionDenied => (
            "permission",
            if port != 0 && port < 1024 {
                format!(
                    "Ports below 1024 are privileged: only root (or a program with \
                     CAP_NET_BIND_SERVICE) may bind them, so that no ordinary user can pose as a \
                     system service on port {port}.\n\
                     What to do: use a port of 1024 or above, such as --port 8888."
                )
            } else {
                "The operating system refused this call for this user.\n\
                 What to do: check the address, or run with the needed permission."
                    .to_string()
            },
        ),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => (
            "timeout",
            format!(
                "No answer came from {addr} in time. Your SYN was sent (and sent again, if the \
                 wait was long enough), but no SYN-ACK and no reset came back: a firewall may drop it, the host may be \
                 down or unreachable, or the server's accept queue is full.\n\
                 What to do: check the address and that the server is running; --timeout SECS \
                 waits longer."
            ),
        ),
        io::ErrorKind::ConnectionReset => (
            "reset",
            "The peer reset the connection: a segment with the RST flag arrived, which tears the \
             connection down at once, and any data still in flight is lost. A program that closes \
             with unread data, or with SO_LINGER set to 0, or that crashed, causes this.\n\
             What to do: look at the other side's output for why it stopped; connect again."
                .to_string(),
        ),
        io::ErrorKind::BrokenPipe => (
            "broken-pipe",
            "You wrote to a connection the peer has already closed (it answered with a reset), so \
             the kernel refused the write (EPIPE).\n\
             What to do: read the end of the stream before you write again; connect again."
                .to_string(),
        ),
        io::ErrorKind::AddrNotAvailable => (
            "addr-not-available",
            format!(
                "{} is not an address of this machine, so no socket can be bound to it.\n\
                 What to do: use 127.0.0.1 (this machine only), 0.0.0.0 (every interface), or one \
                 of the addresses `ip addr` shows.",
                addr.ip()
            ),
        ),
        _ if is_fd_limit(e) => (
            "fd-limit",
            "This process has reached its limit of open file descriptors: every socket is one.\n\
             What to do: raise the limit (ulimit -n) or serve fewer clients at once (--max-clients)."
                .to_string(),
        ),
        _ => (
            "io",
            "The operating system refused this call.\nWhat to do: check the address and try again."
                .to_string(),
        ),
    };
    Lesson {
        summary,
        explanation,
        code,
    }
}

/// A host name that did not resolve to any address.
pub fn unresolved(host: &str, e: &io::Error) -> Lesson {
    Lesson {
        summary: format!("getaddrinfo({host}) failed: {e}"),
        explanation: format!(
            "The name \"{host}\" could not be turned into an IP address, so there is nowhere to \
             send a SYN. Names are looked up through /etc/hosts and DNS before any socket call.\n\
             What to do: check the spelling, or type an address such as 127.0.0.1 or [::1]."
        ),
        code: "resolve",
    }
}
