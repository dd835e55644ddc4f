//! Errors are lessons too: each failure a socket call can meet is explained
//! by what happened on the network and what to do about it.

use crate::t;
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

/// The C name of an error ("ECONNREFUSED"), or the OS's words without one.
pub fn errno_name_of(e: &io::Error) -> String {
    match e.raw_os_error().and_then(errno_name) {
        Some(name) => name.to_string(),
        None => e.to_string(),
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
            libc::EMSGSIZE => "EMSGSIZE",
            libc::EINVAL => "EINVAL",
            libc::EBADF => "EBADF",
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
    let ip = addr.ip();
    let summary = format!("{call}({addr}) failed: {}", errno_text(e));
    let (code, explanation) = match e.kind() {
        io::ErrorKind::ConnectionRefused => (
            "refused",
            t!(
                "Nothing is listening on {addr}. Your SYN reached that machine, and its kernel \
                 answered with a reset (RST): no socket is in LISTEN on port {port}.\n\
                 What to do: start the server first (sockdemo listen --port {port}), or check the \
                 address and port you typed.",
                "{addr} 上没有程序在监听。你的 SYN 到达了那台机器，它的内核用一个复位报文（RST）作答：\
                 端口 {port} 上没有处于 LISTEN 的套接字。\n\
                 怎么办：先启动服务器（sockdemo listen --port {port}），或者检查你输入的地址和端口。"
            ),
        ),
        io::ErrorKind::AddrInUse => (
            "addr-in-use",
            t!(
                "Another socket already owns port {port} on this address, most likely another \
                 server that is still running.\n\
                 SO_REUSEADDR (which sockdemo sets) lets a new server bind a port whose old \
                 connections linger in TIME-WAIT; it does not let two servers listen on the \
                 same address and port.\n\
                 What to do: stop the other server, or pick another port (--port 0 lets the OS choose).",
                "这个地址上的端口 {port} 已经被另一个套接字占用，多半是另一个仍在运行的服务器。\n\
                 SO_REUSEADDR（sockdemo 会设置它）允许新服务器绑定旧连接还停在 TIME-WAIT 的端口；\
                 它不允许两个服务器监听同一个地址和端口。\n\
                 怎么办：停掉另一个服务器，或者换一个端口（--port 0 让操作系统来选）。"
            ),
        ),
        io::ErrorKind::PermissionDenied if port != 0 && port < 1024 => (
            "permission",
            t!(
                "Ports below 1024 are privileged: only root (or a program with \
                 CAP_NET_BIND_SERVICE) may bind them, so that no ordinary user can pose as a \
                 system service on port {port}.\n\
                 What to do: use a port of 1024 or above, such as --port 8888.",
                "1024 以下的端口是特权端口：只有 root（或拥有 CAP_NET_BIND_SERVICE 能力的程序）\
                 才能绑定，这样普通用户就无法在端口 {port} 上冒充系统服务。\n\
                 怎么办：使用 1024 或更大的端口，例如 --port 8888。"
            ),
        ),
        io::ErrorKind::PermissionDenied => (
            "permission",
            t!(
                "The operating system refused this call for this user.\n\
                 What to do: check the address, or run with the needed permission.",
                "操作系统拒绝了这个用户的这次调用。\n\
                 怎么办：检查地址，或者用所需的权限运行。"
            ),
        ),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => (
            "timeout",
            t!(
                "No answer came from {addr} in time. Your SYN was sent (and sent again, if the \
                 wait was long enough), but no SYN-ACK and no reset came back: a firewall may \
                 drop it, the host may be down or unreachable, or the server's accept queue is full.\n\
                 What to do: check the address and that the server is running. --timeout SECS \
                 chooses how long to wait; without it the kernel gives up after about two minutes.",
                "{addr} 没有及时应答。你的 SYN 已经发出（等得够久的话还会重发），\
                 但既没有收到 SYN-ACK 也没有收到复位：可能被防火墙丢弃，主机可能关机或不可达，\
                 或者服务器的接受队列已满。\n\
                 怎么办：检查地址，确认服务器在运行。--timeout 秒数 决定等多久；不加它的话，内核大约两分钟后才放弃。"
            ),
        ),
        io::ErrorKind::ConnectionReset => (
            "reset",
            t!(
                "The peer reset the connection: a segment with the RST flag arrived, which tears the \
                 connection down at once, and any data still in flight is lost. A program that closes \
                 with unread data, or with SO_LINGER set to 0, causes this; so does a machine that \
                 restarted and no longer knows the connection.\n\
                 What to do: look at the other side's output for why it stopped; connect again.",
                "对端重置了连接：收到一个带 RST 标志的报文段，它立刻拆除连接，还在路上的数据都会丢失。\
                 程序在还有未读数据时关闭、把 SO_LINGER 设为 0 后关闭，都会造成这种情况；\
                 重启过、已经不认识这个连接的机器也会这样回答。\n\
                 怎么办：看看对端的输出，弄清它为什么停下；然后重新连接。"
            ),
        ),
        io::ErrorKind::BrokenPipe => (
            "broken-pipe",
            t!(
                "You wrote to a connection the peer has already closed (it answered with a reset), so \
                 the kernel refused the write (EPIPE).\n\
                 What to do: read the end of the stream before you write again; connect again.",
                "你向一个对端已经关闭的连接写数据（对端用复位作答），所以内核拒绝了这次写（EPIPE）。\n\
                 怎么办：再写之前先读到流的结尾；然后重新连接。"
            ),
        ),
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => (
            "unreachable",
            t!(
                "There is no route to {addr}: the network or a router answered that the host or its \
                 network cannot be reached (ICMP \"unreachable\"), or this machine has no route there.\n\
                 What to do: check the address, and that this machine is on the same network \
                 (ip route shows where packets go).",
                "没有通往 {addr} 的路由：网络或路由器回答说主机或它所在的网络无法到达（ICMP“不可达”），\
                 或者本机根本没有去那里的路由。\n\
                 怎么办：检查地址，确认本机在同一个网络里（ip route 可以看到数据包往哪里走）。"
            ),
        ),
        io::ErrorKind::AddrNotAvailable => (
            "addr-not-available",
            t!(
                "{ip} is not an address of this machine, so no socket can be bound to it.\n\
                 What to do: use 127.0.0.1 (this machine only), 0.0.0.0 (every interface), or one \
                 of the addresses `ip addr` shows.",
                "{ip} 不是本机的地址，所以不能把套接字绑定到它上面。\n\
                 怎么办：使用 127.0.0.1（仅本机）、0.0.0.0（所有网络接口），或 `ip addr` 列出的某个地址。"
            ),
        ),
        io::ErrorKind::NotConnected => (
            "not-connected",
            t!(
                "The socket is not connected (any more): the connection was reset or closed, or it was never made. \
                 Nothing was sent.\n\
                 What to do: look above for how the connection ended; connect again.",
                "这个套接字（已经）没有连接：连接被重置或关闭了，或者从来没有建立。什么也没有发出。\n\
                 怎么办：看看上面连接是怎样结束的；然后重新连接。"
            ),
        ),
        _ if is_fd_limit(e) => (
            "fd-limit",
            t!(
                "This process has reached its limit of open file descriptors: every socket is one.\n\
                 What to do: raise the limit (ulimit -n) or serve fewer clients at once (--max-clients).",
                "本进程打开的文件描述符已达上限：每个套接字都占一个。\n\
                 怎么办：提高上限（ulimit -n），或者同时服务更少的客户端（--max-clients）。"
            ),
        ),
        _ => (
            "io",
            t!(
                "The operating system refused this call.\nWhat to do: check the address and try again.",
                "操作系统拒绝了这次调用。\n怎么办：检查地址后再试一次。"
            ),
        ),
    };
    Lesson {
        summary,
        explanation,
        code,
    }
}

/// `--timeout` ran out before the handshake ended: this program's own
/// limit, so there is no errno to show, only what did not come back.
pub fn timed_out(addr: SocketAddr, limit: std::time::Duration) -> Lesson {
    let secs = format!("{:.1}", limit.as_secs_f64());
    let timeout = io::Error::from(io::ErrorKind::TimedOut);
    let mut lesson = explain("connect", addr, &timeout);
    lesson.summary = t!(
        "connect({addr}) timed out: no answer within {secs} s (--timeout)",
        "connect({addr}) 超时：{secs} 秒内没有应答（--timeout）"
    );
    lesson
}

/// A host name that did not resolve to any address.
pub fn unresolved(host: &str, e: &io::Error) -> Lesson {
    Lesson {
        summary: format!("getaddrinfo({host}) failed: {e}"),
        explanation: t!(
            "The name \"{host}\" could not be turned into an IP address, so there is nowhere to \
             send a SYN. Names are looked up through /etc/hosts and DNS before any socket call.\n\
             What to do: check the spelling, or type an address such as 127.0.0.1 or [::1].",
            "名字“{host}”无法转换成 IP 地址，所以 SYN 无处可发。在任何套接字调用之前，\
             名字会先通过 /etc/hosts 和 DNS 查找。\n\
             怎么办：检查拼写，或者直接输入地址，例如 127.0.0.1 或 [::1]。"
        ),
        code: "resolve",
    }
}

/// The lesson a command's error carries, if it is one: a failure explained
/// already, or a failed socket call (explained now).
pub fn lesson_of(err: &anyhow::Error) -> Option<Lesson> {
    if let Some(lesson) = err.downcast_ref::<Lesson>() {
        return Some(Lesson {
            summary: lesson.summary.clone(),
            explanation: lesson.explanation.clone(),
            code: lesson.code,
        });
    }
    err.downcast_ref::<crate::engine::ctx::Failed>()
        .map(crate::engine::ctx::Failed::lesson)
}
