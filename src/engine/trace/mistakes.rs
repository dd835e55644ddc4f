//! The classic mistakes of a student's socket program, explained when the
//! evidence shows them (and only then):
//!
//! * a failed call whose errno has a network story: ECONNREFUSED (nobody
//!   listens), EADDRINUSE (with what holds the port: a TIME-WAIT left by
//!   the last run, or a listener), ETIMEDOUT (SYNs unanswered);
//! * framing that does not match: a 2- or 4-byte length read out of text
//!   (`readUTF` against `writeBytes`), or a length prefix shown as text;
//! * one send() is not one recv(): the peer's calls arrived merged or split.
//!
//! The mistakes that show as waiting (a request never flushed, a socket
//! left in CLOSE-WAIT) are the watchdog's (see `watch`).

use super::sockets::SockRef;
use super::Tracer;
use crate::engine::event::{Stage, TcpState};
use crate::engine::evidence::{What, Who};
use crate::engine::observe;
use crate::t;
use std::net::SocketAddr;

impl Tracer<'_> {
    /// Says what a failed call means on the network, where the errno has
    /// a story worth telling.
    pub(super) fn failed(
        &self,
        who: &Who,
        name: &str,
        target: Option<SocketAddr>,
        errno: i32,
        reuse_addr: bool,
    ) {
        let (code, text) = match (errno, target) {
            (libc::ECONNREFUSED, Some(addr)) => {
                let port = addr.port();
                (
                    "refused",
                    t!(
                        "nothing listens on {addr}: the SYN reached the machine and its kernel answered with RST. Is the server running, on port {port}? Is the port the one the server printed?",
                        "{addr} 上没有程序在监听：SYN 到达了那台机器，它的内核用 RST 作答。服务器在运行吗？端口是 {port} 吗？和服务器打印的端口一致吗？"
                    ),
                )
            }
            (libc::ETIMEDOUT, Some(addr)) if name == "connect" => (
                "timeout",
                t!(
                    "no answer from {addr}: the kernel sent the SYN again and again and gave up. A firewall drops it, or no machine has that address",
                    "{addr} 没有回应：内核一次又一次重发 SYN，最后放弃了。可能是防火墙丢弃了它，或者没有机器使用那个地址"
                ),
            ),
            (libc::EADDRINUSE, Some(addr)) => ("addr-in-use", self.port_holders(addr, reuse_addr)),
            _ => return,
        };
        let what = What::Error {
            stage: Stage::Request,
            code,
            error: format!("{name}() failed: {}", super::calls::errno_name(errno)),
            text,
        };
        self.sink.record(who.clone(), what);
    }

    /// Who holds `addr`'s port, from the kernel's table: the evidence for
    /// an EADDRINUSE.
    fn port_holders(&self, addr: SocketAddr, reuse_addr: bool) -> String {
        let port = addr.port();
        let rows = observe::dump(port).unwrap_or_default();
        let mine = |l: &SocketAddr| l.port() == port;
        if let Some(l) = rows
            .iter()
            .find(|r| r.state == TcpState::Listen && mine(&r.local))
        {
            let at = l.local;
            return t!(
                "another socket is listening on {at}: a server is still running there (an earlier run of this program?). Stop it, or use another port",
                "另一个套接字正在 {at} 上监听：那里还有服务器在运行（也许是这个程序上一次运行留下的？）。停掉它，或者换一个端口"
            );
        }
        let waiting: Vec<_> = rows
            .iter()
            .filter(|r| r.state == TcpState::TimeWait && mine(&r.local))
            .collect();
        if let (Some(first), true) = (waiting.first(), reuse_addr) {
            let n = waiting.len();
            let left = first
                .timer
                .map_or(String::new(), |d| format!(" ({} s left)", d.as_secs()));
            return t!(
                "port {port} is held by {n} connection(s) in TIME-WAIT{left}. This socket has SO_REUSEADDR, but Linux lets bind() pass a TIME-WAIT connection only if the socket that left it had SO_REUSEADDR too (an earlier run without it?): wait until it ends, or use another port; from now on each run can restart at once",
                "端口 {port} 被 {n} 个处于 TIME-WAIT 的连接占着{left}。这个套接字设置了 SO_REUSEADDR，但 Linux 只有在留下 TIME-WAIT 的那个套接字也设置了 SO_REUSEADDR 时才让 bind() 通过（也许是上一次没有设置它的运行？）：等它结束，或者换一个端口；从此以后每次运行都能立刻重启"
            );
        }
        if let Some(first) = waiting.first() {
            let n = waiting.len();
            let (l, r) = (first.local, first.remote);
            let left = first
                .timer
                .map_or(String::new(), |d| format!(", {} s left", d.as_secs()));
            return t!(
                "port {port} is held by {n} connection(s) in TIME-WAIT from an earlier run ({l} ⇄ {r}{left}): the side that closed first waits there for up to 60 s. Set SO_REUSEADDR on the listening socket before bind(): it may then reuse the port (it never lets two servers listen on it)",
                "端口 {port} 被上一次运行留下的 {n} 个处于 TIME-WAIT 的连接占着（{l} ⇄ {r}{left}）：先关闭的一方要在那里最多等 60 秒。在 bind() 之前给监听套接字设置 SO_REUSEADDR：这样就能重用这个端口（它从不允许两个服务器同时监听）"
            );
        }
        t!(
            "another socket owns port {port} on this address",
            "这个地址上的端口 {port} 已经被另一个套接字占用"
        )
    }

    /// After a receive of `got` bytes (having asked for `asked`): does the
    /// length the program asks for next come out of text? Checked when the
    /// next receive on the socket asks for its length.
    pub(super) fn framing_asked(&self, sock: &SockRef, who: &Who, asked: usize) {
        let mut s = sock.borrow_mut();
        if asked <= 4 {
            // Still reading the length, a byte or a few at a time.
            return;
        }
        let prefix = std::mem::take(&mut s.small_reads);
        if prefix.len() != 2 && prefix.len() != 4 {
            return;
        }
        let printable = prefix.iter().all(|b| (0x20..0x7f).contains(b));
        let length = prefix.iter().fold(0usize, |n, b| n << 8 | *b as usize);
        if !printable || asked != length || s.said_framing {
            return;
        }
        s.said_framing = true;
        drop(s);
        let text_of = crate::sanitize::escape(&prefix);
        let n = prefix.len();
        self.sink.record(
            who.clone(),
            What::Note {
                stage: Stage::Transfer,
                topic: "framing-mismatch",
                text: t!(
                    "the program read {n} bytes \"{text_of}\" and now asks for {asked} bytes: it takes a {n}-byte length from the start of plain text. The peer sent text without a length (writeBytes, print, send), and this side reads frames (readUTF, readInt): both sides must frame messages the same way",
                    "程序读了 {n} 个字节 \"{text_of}\"，现在要读 {asked} 个字节：它把普通文本开头的 {n} 个字节当成了长度。对方发送的是不带长度的文本（writeBytes、print、send），而这一方按帧读取（readUTF、readInt）：两边必须用同样的方式给消息分帧"
                ),
                facts: serde_json::Map::new(),
            },
        );
    }

    /// A receive returned `bytes`: keep what a length read would be
    /// (at most 4 bytes, read in reads of at most 4), and check whether
    /// the data starts with a length that a text reader will show.
    pub(super) fn framing_got(&self, sock: &SockRef, who: &Who, asked: usize, bytes: &[u8]) {
        let mut s = sock.borrow_mut();
        if asked <= 4 && s.small_reads.len() + bytes.len() <= 4 {
            s.small_reads.extend_from_slice(bytes);
            return;
        }
        s.small_reads.clear();
        // A text reader got a writeUTF frame: 2 bytes of length, then text.
        let framed = bytes.len() > 2
            && usize::from(u16::from_be_bytes([bytes[0], bytes[1]])) == bytes.len() - 2
            && bytes[0] < 0x20
            && bytes[2..]
                .iter()
                .all(|b| *b >= 0x20 || *b == b'\n' || *b == b'\r');
        if !framed || s.said_framing {
            return;
        }
        s.said_framing = true;
        drop(s);
        let n = bytes.len() - 2;
        let (a, b) = (bytes[0], bytes[1]);
        self.sink.record(
            who.clone(),
            What::Note {
                stage: Stage::Transfer,
                topic: "framing-mismatch",
                text: t!(
                    "these bytes start with \\x{a:02x}\\x{b:02x}: a 2-byte length ({n}) and then {n} bytes of text, as writeUTF sends them. This side reads them as plain bytes, so the length shows up as two odd characters: read with readUTF, or have the peer send plain text",
                    "这些字节以 \\x{a:02x}\\x{b:02x} 开头：这是 2 字节的长度（{n}），后面是 {n} 字节的文本，正是 writeUTF 的发送方式。这一方把它们当普通字节读，所以长度显示成两个奇怪的字符：请用 readUTF 读取，或者让对方发送普通文本"
                ),
                facts: serde_json::Map::new(),
            },
        );
    }

    /// One send() is not one recv(): when both ends are traced, compares
    /// what this receive got with the sizes of the peer's sends.
    pub(super) fn boundaries(&self, sock: &SockRef, who: &Who, got: usize, asked: usize) {
        let (local, remote) = {
            let s = sock.borrow();
            match (s.local, s.remote, s.proto) {
                (Some(l), Some(r), crate::engine::event::Proto::Tcp) => (l, r),
                _ => return,
            }
        };
        let same = |a: SocketAddr, b: SocketAddr| {
            crate::engine::labels::canonical(a) == crate::engine::labels::canonical(b)
        };
        let Some(peer) = self.table.all.iter().find(|p| {
            let p = p.borrow();
            p.local.is_some_and(|l| same(l, remote)) && p.remote.is_some_and(|r| same(r, local))
        }) else {
            return;
        };
        let mut p = peer.borrow_mut();
        let mut left = got;
        let mut sends = Vec::new();
        while left > 0 {
            let Some(front) = p.unreceived.front_mut() else {
                break;
            };
            let take = left.min(*front);
            sends.push((take, *front));
            *front -= take;
            left -= take;
            if *front == 0 {
                p.unreceived.pop_front();
            }
        }
        drop(p);
        if left > 0 {
            // Bytes arrived whose send() has not been told yet (the two
            // programs' stops came in another order): the count is lost
            // for this connection, and nothing is claimed from it.
            sock.borrow_mut().said_boundaries = true;
            peer.borrow_mut().unreceived.clear();
            return;
        }
        // A piece of one send() is news only when the program asked for
        // more than it got (reading 1 byte at a time is asking for pieces).
        let whole = sends.len() == 1 && (sends[0].0 == sends[0].1 || got >= asked);
        if sends.is_empty() || whole || sock.borrow().said_boundaries {
            return;
        }
        sock.borrow_mut().said_boundaries = true;
        let text = if sends.len() > 1 {
            let n = sends.len();
            let parts: Vec<String> = sends.iter().map(|(take, _)| take.to_string()).collect();
            let parts = parts.join(" + ");
            t!(
                "this recv() got {got} bytes: the bytes of {n} send() calls of the peer ({parts}) arrived together. TCP is a stream of bytes: it keeps no message boundaries, so a reader must find them itself (a length, or a newline)",
                "这次 recv() 收到 {got} 字节：对方 {n} 次 send() 的数据（{parts}）一起到达了。TCP 是字节流，不保留消息边界，读的一方必须自己找出边界（用长度，或者换行符）"
            )
        } else {
            let (take, of) = sends[0];
            t!(
                "this recv() got {take} bytes of a send() of {of} bytes: the rest comes in later receives. TCP is a stream of bytes: one send() is not one recv(), so read until the message is complete",
                "这次 recv() 只收到一次 {of} 字节 send() 中的 {take} 字节：其余的会在后面的接收中到达。TCP 是字节流：一次 send() 不等于一次 recv()，要一直读到消息完整为止"
            )
        };
        self.sink.record(
            who.clone(),
            What::Note {
                stage: Stage::Transfer,
                topic: "message-boundaries",
                text,
                facts: serde_json::Map::new(),
            },
        );
    }
}
