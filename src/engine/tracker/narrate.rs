//! What a call meant, in a teacher's words, chosen from the evidence: the
//! state the socket was in, what went out on the wire, what the kernel
//! answered. Nothing here is fixed at the call site: the same `close()`
//! is explained differently after a reset, after a shutdown(), or while
//! the peer waits.

use crate::engine::call::{Call, How, Opt};
use crate::engine::event::{Proto, Side, TcpState};
use crate::engine::evidence::Errno;
use crate::t;
use std::net::SocketAddr;

/// What the tracker knows about one call when it explains it.
pub struct CallView<'a> {
    pub call: &'a Call,
    pub result: &'a Result<i64, Errno>,
    pub side: Side,
    pub proto: Proto,
    pub label: Option<&'a str>,
    pub local: Option<SocketAddr>,
    /// The state before the call (after what made it return).
    pub before: TcpState,
    /// The state after the call and the kernel's sample.
    pub after: TcpState,
    /// What this socket put on the wire while the call ran, if packets are
    /// captured: "FIN", "RST", "SYN"…; `None` when nothing was seen.
    pub sent: Option<&'static str>,
    /// Packets are captured for this socket.
    pub captured: bool,
    /// Our FIN had gone out before this call.
    pub fin_before: bool,
    /// This socket never sent a SYN nor listened: no connection ever was.
    pub never_connected: bool,
    /// The peer's FIN has come in.
    pub their_fin: bool,
    /// The peer's FIN came before ours (the peer closed first).
    pub peer_first: bool,
    /// An RST ended the connection (seen, or said by the kernel).
    pub reset: bool,
    /// SO_LINGER was set to 0.
    pub linger0: bool,
    /// O_NONBLOCK was set (and not cleared) on this socket.
    pub nonblocking: bool,
    /// SO_RCVTIMEO or SO_SNDTIMEO was set on this socket.
    pub timeout: bool,
    /// This program shut down reading itself (SHUT_RD or SHUT_RDWR).
    pub shut_rd: bool,
    /// close(): bytes the peer sent that were never read.
    pub unread: Option<u32>,
    /// listen(): (waiting, backlog) as the kernel applies it.
    pub queue: Option<(u32, u32)>,
    /// accept(): how long the connection waited in the accept queue.
    pub queued_for: Option<f64>,
}

impl<'a> CallView<'a> {
    /// A call on no socket (getaddrinfo): only what the call itself says.
    pub fn bare(call: &'a Call, result: &'a Result<i64, Errno>, side: Side, proto: Proto) -> Self {
        CallView {
            call,
            result,
            side,
            proto,
            label: None,
            local: None,
            before: TcpState::Closed,
            after: TcpState::Closed,
            sent: None,
            captured: false,
            fin_before: false,
            never_connected: true,
            their_fin: false,
            peer_first: false,
            reset: false,
            linger0: false,
            nonblocking: false,
            timeout: false,
            shut_rd: false,
            unread: None,
            queue: None,
            queued_for: None,
        }
    }
}

pub fn why(v: &CallView) -> Option<String> {
    let failed = v.result.as_ref().err();
    Some(match (v.call, failed) {
        (Call::GetAddrInfo(host), None) => {
            let host = crate::sanitize::escape(host.as_bytes());
            t!(
                "a library function, not a system call: /etc/hosts and DNS turn the name {host} into addresses",
                "这是库函数，不是系统调用：通过 /etc/hosts 和 DNS 把名字 {host} 转换成地址"
            )
        }
        (Call::Socket { .. }, None) => socket_why(v),
        (Call::SetSockOpt(opt), None) => option_why(*opt),
        (Call::NonBlocking(true), None) if v.never_connected && v.before == TcpState::Closed => t!(
            "non-blocking: connect() will return at once and the handshake goes on in the kernel, so this program can watch it",
            "非阻塞：connect() 会立刻返回，握手在内核里继续进行，这样本程序可以观察它"
        ),
        (Call::NonBlocking(true), None) => t!(
            "non-blocking: a call that would have to wait (for data, or for room to send) returns EAGAIN at once instead",
            "非阻塞：需要等待的调用（等数据，或等发送空间）会立刻返回 EAGAIN，而不是等待"
        ),
        (Call::NonBlocking(false), None) => t!(
            "blocking again: from now on recv() waits until data comes",
            "恢复阻塞：从现在起 recv() 会一直等到数据到来"
        ),
        (Call::Bind(asked), None) => bind_why(v, *asked),
        (Call::Listen(backlog), None) => listen_why(v, *backlog),
        (Call::Accept, None) => accept_why(v),
        (Call::Connect(_), None) if v.proto == Proto::Udp => t!(
            "on UDP connect() sends nothing: it only fixes the default peer",
            "在 UDP 上 connect() 什么也不发送：它只是设定默认的对端"
        ),
        (Call::Connect(_), None) => t!(
            "SYN out, SYN-ACK back, ACK out: the three-way handshake is complete",
            "发出 SYN，收到 SYN-ACK，再发出 ACK：三次握手完成"
        ),
        (Call::Connect(_), Some(e)) if is_in_progress(e) => in_progress_why(v),
        (Call::Poll { out: true, .. }, None) => match v.result {
            Ok(0) => t!(
                "nothing within the time allowed: no SYN-ACK and no RST came back",
                "在允许的时间内什么也没有：既没有收到 SYN-ACK，也没有收到 RST"
            ),
            _ => t!(
                "writable: the handshake has ended; SO_ERROR says how",
                "可写了：握手已经结束；SO_ERROR 会说明结果"
            ),
        },
        (Call::GetSoError(None), None) => t!(
            "0: no error, the connection is established",
            "0：没有错误，连接已经建立"
        ),
        (Call::GetSoError(Some(_)), None) => t!(
            "the handshake failed with this error",
            "握手以这个错误失败了"
        ),
        (Call::Recv(_), None) if matches!(v.result, Ok(0)) => end_why(v),
        (Call::Shutdown(how), None) => shutdown_why(v, *how),
        (Call::Shutdown(_), Some(e)) if e.kind == std::io::ErrorKind::NotConnected => t!(
            "the socket is not connected any more, so nothing is sent",
            "套接字已经不再连接，所以什么也没有发出"
        ),
        (Call::Close, _) => close_why(v),
        (Call::Send(_) | Call::Recv(_) | Call::SendTo(..) | Call::RecvFrom(_), Some(e))
            if e.is_would_block() =>
        {
            would_block_why(v)
        }
        (Call::Send(_) | Call::Recv(_), Some(e)) if e.is_reset() => t!(
            "the connection was reset: an RST ended it, and the kernel says so on the next call",
            "连接被重置了：一个 RST 结束了它，内核在下一次调用时告知"
        ),
        _ => return None,
    })
}

fn is_in_progress(e: &Errno) -> bool {
    #[cfg(unix)]
    {
        e.code == Some(libc::EINPROGRESS) || e.kind == std::io::ErrorKind::WouldBlock
    }
    #[cfg(not(unix))]
    {
        e.kind == std::io::ErrorKind::WouldBlock
    }
}

fn socket_why(v: &CallView) -> String {
    match (v.proto, v.side) {
        (Proto::Udp, _) => t!(
            "a UDP socket: datagrams, no connection, no handshake",
            "一个 UDP 套接字：数据报，没有连接，也没有握手"
        ),
        (Proto::Tcp, Side::Server) => t!(
            "a new TCP endpoint; the number is how this program names it (a file descriptor)",
            "一个新的 TCP 端点；这个数字是程序称呼它的名字（文件描述符）"
        ),
        // Said when socket() returns: whether bind() comes next is not
        // known yet, so nothing is said about it.
        (Proto::Tcp, Side::Client) => t!(
            "a new TCP endpoint, with no address yet: bind(), or else connect(), gives it one",
            "一个新的 TCP 端点，还没有地址：bind() 会给它一个，没有 bind() 的话 connect() 会给"
        ),
    }
}

fn option_why(opt: Opt) -> String {
    match opt {
        Opt::ReuseAddr => t!(
            "lets bind() reuse a port whose old connections wait in TIME-WAIT",
            "让 bind() 能重用一个旧连接还停在 TIME-WAIT 的端口"
        ),
        Opt::Linger(Some(d)) if d.is_zero() => t!(
            "linger 0: close() will abort the connection: no waiting for unsent data, no FIN (tcp(7): an RST instead)",
            "linger 设为 0：close() 会中止连接：不等未发出的数据，也不发 FIN（tcp(7)：改发 RST）"
        ),
        Opt::Linger(_) => t!(
            "how close() treats unsent data",
            "close() 如何处理还没发出的数据"
        ),
        Opt::RecvTimeout(Some(d)) => {
            let secs = format!("{:.1}", d.as_secs_f64());
            t!(
                "a receive waits at most {secs} s, then fails with EAGAIN instead of waiting for ever",
                "一次接收最多等待 {secs} 秒，然后以 EAGAIN 失败，而不是一直等下去"
            )
        }
        Opt::RecvTimeout(None) => t!(
            "a receive waits as long as it takes",
            "接收会一直等待"
        ),
        Opt::SendTimeout(_) => t!(
            "a send to a peer that does not read gives up after this long, instead of waiting for ever",
            "向不读数据的对端发送时，最多等这么久就放弃，而不是一直等下去"
        ),
        Opt::DeferAccept(secs) => t!(
            "hold a new connection in SYN-RECEIVED until its first data arrives; Linux turns the {secs} s into SYN-ACK retransmissions, then completes it anyway",
            "新连接在第一批数据到达之前一直停在 SYN-RECEIVED；Linux 把这 {secs} 秒换算成若干次 SYN-ACK 重传，之后无论如何都会完成连接"
        ),
    }
}

fn bind_why(v: &CallView, asked: SocketAddr) -> String {
    let bound = v.local.unwrap_or(asked);
    let (ip, port, proto) = (bound.ip(), bound.port(), v.proto.upper());
    match (asked.port(), v.proto) {
        (0, Proto::Udp) | (_, Proto::Udp) => t!(
            "the endpoint is named ({ip}, UDP, {port}); no listen() and no accept(): it can receive at once",
            "端点有了名字 ({ip}, UDP, {port})；不需要 listen() 和 accept()：它马上就能接收"
        ),
        (0, _) => t!(
            "the endpoint is named: ({ip}, {proto}, {port}) (port chosen by the OS)",
            "端点有了名字：({ip}, {proto}, {port})（端口由操作系统选定）"
        ),
        _ => t!(
            "the endpoint is named: ({ip}, {proto}, {port})",
            "端点有了名字：({ip}, {proto}, {port})"
        ),
    }
}

fn listen_why(v: &CallView, asked: i32) -> String {
    let port = v.local.map_or(0, |a| a.port());
    match v.queue {
        // The kernel's own figure for the backlog (sock_diag's wqueue of a listener).
        Some((_, applied)) => {
            let fit = applied as u64 + 1;
            let capped = if applied < asked.max(0) as u32 {
                t!(
                    " (asked {asked}; the kernel caps it at net.core.somaxconn)",
                    "（请求的是 {asked}；内核用 net.core.somaxconn 封顶）"
                )
            } else {
                String::new()
            };
            let connections = if fit == 1 { "connection" } else { "connections" };
            t!(
                "the kernel now completes handshakes on port {port} by itself; its backlog is {applied}{capped}, and Linux lets backlog + 1 = {fit} finished {connections} wait for accept()",
                "从现在起内核自己在端口 {port} 上完成握手；它的 backlog 是 {applied}{capped}，Linux 允许 backlog + 1 = {fit} 个已建立的连接排队等待 accept()"
            )
        }
        None => t!(
            "the kernel now completes handshakes on port {port} by itself; finished connections wait for accept() (about {asked}: each OS caps and rounds it its own way)",
            "从现在起内核自己在端口 {port} 上完成握手；已建立的连接排队等待 accept()（大约 {asked} 个：每个操作系统有自己的上限和取整方式）"
        ),
    }
}

fn accept_why(v: &CallView) -> String {
    let who = v.label.unwrap_or("the client");
    let waited = match v.queued_for {
        Some(s) if s >= 0.1 => {
            let s = format!("{s:.1}");
            t!(
                " It had waited {s} s in the accept queue, handshake done.",
                " 它已经在接受队列里等了 {s} 秒，握手早已完成。"
            )
        }
        _ => String::new(),
    };
    t!(
        "a new socket just for {who}; the listening socket stays in LISTEN for the next client.{waited}",
        "一个只属于 {who} 的新套接字；监听套接字仍处于 LISTEN，等待下一个客户端。{waited}"
    )
}

fn in_progress_why(v: &CallView) -> String {
    let syn = if v.sent == Some("SYN") {
        t!("the SYN went out", "SYN 已经发出")
    } else {
        t!("the kernel sends the SYN", "内核发出 SYN")
    };
    let now = match v.after {
        TcpState::Established => t!(
            "; on loopback the whole handshake was already over when it returned",
            "；在回环接口上，它返回时整个握手已经结束了"
        ),
        TcpState::SynSent => t!(
            "; no SYN-ACK yet: the socket waits in SYN-SENT",
            "；还没有 SYN-ACK：套接字停在 SYN-SENT 等待"
        ),
        _ => String::new(),
    };
    t!(
        "not an error: a non-blocking connect() returns at once (EINPROGRESS) while {syn}{now}",
        "不是错误：非阻塞的 connect() 立刻返回（EINPROGRESS），同时{syn}{now}"
    )
}

fn end_why(v: &CallView) -> String {
    if v.their_fin {
        t!(
            "0 bytes: end of stream. The peer sent FIN: it will send nothing more",
            "0 字节：流结束。对端发来了 FIN：它不会再发送任何数据"
        )
    } else if v.shut_rd {
        t!(
            "0 bytes: this program shut down its own reading (shutdown), not the peer",
            "0 字节：是本程序自己关闭了读方向（shutdown），不是对端"
        )
    } else if v.reset {
        t!(
            "0 bytes: the connection was already reset (see above); there is nothing more to read",
            "0 字节：连接早已被重置（见上文）；没有更多可读的了"
        )
    } else {
        t!(
            "0 bytes: end of stream; nothing more will come",
            "0 字节：流结束；不会再有数据"
        )
    }
}

fn shutdown_why(v: &CallView, how: How) -> String {
    if how == How::Read {
        return t!(
            "stops this program's reading; nothing goes on the wire",
            "停止本程序的读；线路上什么也不发送"
        );
    }
    if !fin_now(v) {
        return if v.fin_before {
            t!(
                "our FIN went out earlier: nothing more is sent; this program's recv() will return 0",
                "我们的 FIN 早就发出了：不再发送什么；本程序的 recv() 将返回 0"
            )
        } else {
            t!(
                "nothing to send: the connection has already ended",
                "没有可发送的：连接已经结束"
            )
        };
    }
    match (v.peer_first, how == How::Both) {
        (true, _) => t!(
            "our FIN goes out after the peer's: LAST-ACK, and the peer's ACK ends the connection",
            "我们的 FIN 在对端的之后发出：进入 LAST-ACK，对端的 ACK 结束连接"
        ),
        (false, false) => t!(
            "half-close: our FIN goes out, \"I will send nothing more\"; we can still read",
            "半关闭：发出我们的 FIN，意思是“我不会再发送了”；我们仍然可以读"
        ),
        (false, true) => t!(
            "our FIN goes out, and this program's own recv() will return 0",
            "发出我们的 FIN，本程序自己的 recv() 也会返回 0"
        ),
    }
}

/// Did our FIN go out with this call? Seen on the wire, or (without
/// packets) the state the call found is one that sends it.
fn fin_now(v: &CallView) -> bool {
    let could = !v.fin_before
        && matches!(
            v.before,
            TcpState::Established | TcpState::CloseWait | TcpState::SynReceived
        );
    // Seen leaving, or the kernel moved the socket on with this call (the
    // FIN itself may leave a moment after the call returns).
    could && (!v.captured || v.sent == Some("FIN") || v.after != v.before)
}

fn close_why(v: &CallView) -> String {
    if v.proto == Proto::Udp {
        return t!(
            "nothing goes on the wire: there is no connection to end",
            "线路上什么也不发送：本来就没有需要结束的连接"
        );
    }
    if v.before == TcpState::Listen {
        return t!(
            "the port is free again; no new clients can connect",
            "端口重新空闲；新的客户端无法再连接"
        );
    }
    if v.sent == Some("RST") || v.linger0 || v.unread.is_some_and(|n| n > 0) {
        return abort_why(v);
    }
    if fin_now(v) {
        return match (v.peer_first, v.after) {
            (true, TcpState::Closed) => t!(
                "the descriptor is freed and our FIN goes out after the peer's; its ACK ended the connection (LAST-ACK, then CLOSED)",
                "文件描述符被释放，我们的 FIN 在对端的之后发出；对端的 ACK 结束了连接（LAST-ACK，然后 CLOSED）"
            ),
            (true, _) => t!(
                "the descriptor is freed and our FIN goes out after the peer's (LAST-ACK): the peer's ACK will end the connection",
                "文件描述符被释放，我们的 FIN 在对端的之后发出（LAST-ACK）：对端的 ACK 将结束连接"
            ),
            (false, _) => t!(
                "the descriptor is freed and our FIN goes out; the kernel finishes the close on its own",
                "文件描述符被释放，并发出我们的 FIN；内核自己完成剩下的关闭"
            ),
        };
    }
    match v.before {
        TcpState::Closed if v.never_connected => t!(
            "the descriptor is freed; no connection was ever made",
            "文件描述符被释放；从来没有建立过连接"
        ),
        TcpState::Closed if v.reset => t!(
            "the descriptor is freed; the connection was already gone (reset)",
            "文件描述符被释放；连接早已不在了（被重置）"
        ),
        TcpState::Closed => t!(
            "the descriptor is freed; the connection had already ended",
            "文件描述符被释放；连接早已结束"
        ),
        TcpState::TimeWait => t!(
            "the descriptor is freed; the kernel keeps the connection in TIME-WAIT",
            "文件描述符被释放；内核把连接保持在 TIME-WAIT"
        ),
        TcpState::SynSent => t!(
            "the descriptor is freed; the connection attempt is abandoned",
            "文件描述符被释放；放弃这次连接尝试"
        ),
        _ if v.fin_before => t!(
            "the descriptor is freed; our FIN went out earlier (shutdown), and the kernel finishes the close on its own",
            "文件描述符被释放；我们的 FIN 早先已经发出（shutdown），内核自己完成剩下的关闭"
        ),
        _ => t!("the descriptor is freed", "文件描述符被释放"),
    }
}

fn abort_why(v: &CallView) -> String {
    let seen = if v.sent == Some("RST") {
        t!(" (seen on the wire)", "（在线路上看到了）")
    } else if v.captured {
        String::new()
    } else {
        t!(
            " (tcp(7) says so; capture packets to see it)",
            "（tcp(7) 是这样说的；抓包才能看到）"
        )
    };
    match v.unread {
        Some(n) if n > 0 && !v.linger0 => t!(
            "{n} bytes the peer sent were never read: closing with unread data makes Linux answer with an RST instead of FIN{seen}",
            "对端发来的 {n} 字节从没被读取：带着未读数据关闭，Linux 会发 RST 而不是 FIN{seen}"
        ),
        _ => t!(
            "an abortive close (SO_LINGER 0): an RST instead of FIN, unsent data is dropped, and no TIME-WAIT{seen}",
            "强行关闭（SO_LINGER 0）：发出 RST 而不是 FIN，未发出的数据被丢弃，也没有 TIME-WAIT{seen}"
        ),
    }
}

/// EAGAIN from a send or a receive: why the kernel did not wait.
fn would_block_why(v: &CallView) -> String {
    let sending = matches!(v.call, Call::Send(_) | Call::SendTo(..));
    match (v.nonblocking, v.timeout, sending) {
        (true, _, false) => t!(
            "nothing to read yet, and the socket is non-blocking: the kernel returns EAGAIN at once instead of waiting",
            "还没有可读的数据，而套接字是非阻塞的：内核立刻返回 EAGAIN，而不是等待"
        ),
        (true, _, true) => t!(
            "no room in the send buffer, and the socket is non-blocking: the kernel returns EAGAIN at once instead of waiting",
            "发送缓冲区没有空间，而套接字是非阻塞的：内核立刻返回 EAGAIN，而不是等待"
        ),
        (false, true, false) => t!(
            "nothing came within the time this program allows (SO_RCVTIMEO): the kernel returns EAGAIN",
            "在本程序允许的时间内（SO_RCVTIMEO）什么也没有来：内核返回 EAGAIN"
        ),
        (false, true, true) => t!(
            "the send buffer stayed full for the time this program allows (SO_SNDTIMEO): the kernel returns EAGAIN",
            "在本程序允许的时间内（SO_SNDTIMEO）发送缓冲区一直是满的：内核返回 EAGAIN"
        ),
        (false, false, _) => t!(
            "EAGAIN: the call could not go on without waiting, and this socket does not wait (non-blocking, or a timeout)",
            "EAGAIN：这个调用不等待就无法继续，而这个套接字不等待（非阻塞，或设置了超时）"
        ),
    }
}
