//! TCP and UDP side by side: TCP's handshake and byte stream (two send()s
//! read by one recv()), UDP's datagrams (two sendto()s, two recvfrom()s),
//! and what "nobody is listening" looks like for each.

use super::{free_port, show_failure, Kit};
use crate::engine::client;
use crate::engine::event::{Body, Side, Stage};
use crate::engine::observe;
use crate::engine::udp::{self, UdpEndpoint};
use crate::t;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub fn tcp_vs_udp(kit: &Kit) -> anyhow::Result<()> {
    kit.platform_note();
    tcp_part(kit)?;
    kit.pause();
    udp_part(kit)?;
    kit.pause();
    refused_part(kit)
}

/// Two send() calls, one recv(): the receiver sees bytes, not messages.
/// (The framing demo uses it too.)
pub fn two_sends_one_recv(kit: &Kit) -> anyhow::Result<()> {
    let server = kit.server(4)?;
    let conn = server.connect_client(&kit.sink, "C1")?;
    kit.pause();
    conn.send_all(b"one")?;
    conn.send_all(b"two")?;
    // Let the server read only once both pieces are in its receive queue,
    // as the kernel's table shows (a busy server reads late all the time).
    if let Some(local) = conn.ctx.local {
        wait_queued(server.addr, local, 6);
    }
    kit.pause();
    server.echo(&conn, 6)?;
    // What the server's first recv() for this connection really returned.
    let first_read = kit.rec.snapshot().iter().rev().find_map(|e| match &e.body {
        Body::Syscall {
            call: "recv",
            ok: true,
            ret: Some(n),
            ..
        } if e.side == Side::Server && e.local == Some(server.addr) && *n > 0 => Some(*n),
        _ => None,
    });
    let text = match first_read {
        Some(6) => t!(
            "two send() calls, and the server's one recv() above returned all 6 bytes: TCP is a stream of bytes and keeps no message boundaries",
            "两次 send()，服务器上面的一次 recv() 就读到了全部 6 个字节：TCP 是字节流，不保留消息边界"
        ),
        Some(n) => t!(
            "two send() calls; this time the server's first recv() returned {n} bytes. Either way the receiver sees bytes, not the sender's messages",
            "两次 send()；这一次服务器的第一次 recv() 读到了 {n} 个字节。无论哪种情况，接收方看到的都是字节，而不是发送方的消息"
        ),
        None => String::new(),
    };
    if !text.is_empty() {
        kit.say(Stage::Transfer, "stream", text);
    }
    kit.pause();
    server.close_from_client(conn)?;
    server.finish()?;
    Ok(())
}

/// Waits (at most 2 s) until the kernel holds `bytes` unread bytes on the
/// server's side of `server` ⇄ `client`.
fn wait_queued(server: SocketAddr, client: SocketAddr, bytes: u32) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match observe::find(server, client) {
            Ok(Some(row)) if row.recv_queue >= bytes => return,
            Ok(_) => std::thread::sleep(Duration::from_millis(1)),
            Err(_) => return,
        }
    }
}

fn tcp_part(kit: &Kit) -> anyhow::Result<()> {
    kit.say(
        Stage::Listen,
        "demo",
        t!(
            "TCP first: a connection (the three-way handshake) before any data, then a stream of bytes.",
            "先看 TCP：在任何数据之前要先建立连接（三次握手），然后是一个字节流。"
        ),
    );
    two_sends_one_recv(kit)
}

fn udp_part(kit: &Kit) -> anyhow::Result<()> {
    kit.say(
        Stage::Listen,
        "demo",
        t!(
            "Now UDP: no listen(), no accept(), no handshake. The first thing on the wire is the datagram itself.",
            "再看 UDP：没有 listen()，没有 accept()，也没有握手。线路上出现的第一样东西就是数据报本身。"
        ),
    );
    let lo = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut server = UdpEndpoint::open(&kit.sink, Side::Server, None, lo)?;
    let addr = server.bind(lo)?;
    let capture = crate::engine::capture::PacketWatch::start(&kit.sink, addr.port(), kit.packets)?;
    kit.pause();
    let mut client = UdpEndpoint::open(&kit.sink, Side::Client, Some("C1"), lo)?;
    client.send_to(b"one", addr)?;
    client.send_to(b"two", addr)?;
    kit.pause();
    server.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 2048];
    let mut datagrams = 0;
    for _ in 0..2 {
        if server.recv_from(&mut buf).is_ok() {
            datagrams += 1;
        }
    }
    kit.say(
        Stage::Transfer,
        "datagrams",
        t!(
            "two sendto() calls, {datagrams} recvfrom() calls: each datagram arrives whole, with its own boundaries and its sender's address",
            "两次 sendto()，{datagrams} 次 recvfrom()：每个数据报都完整到达，保留自己的边界，并带着发送方的地址"
        ),
    );
    kit.pause();
    client.close();
    server.close();
    if let Some(capture) = capture {
        capture.stop();
    }
    Ok(())
}

fn refused_part(kit: &Kit) -> anyhow::Result<()> {
    kit.say(
        Stage::Request,
        "demo",
        t!(
            "Nobody listening: TCP is refused at connect(); UDP sends without complaint and may hear about it later.",
            "没有人监听时：TCP 在 connect() 时就被拒绝；UDP 照样发出，之后才可能得知。"
        ),
    );
    let closed = free_port(kit)?;
    let _capture = kit.watch(closed.port())?;
    if let Err(lesson) = client::connect(&kit.sink, closed, Some(Duration::from_secs(2)), "C2") {
        show_failure(kit, Some("C2"), &lesson);
    }
    kit.pause();
    let mut udp = UdpEndpoint::open(&kit.sink, Side::Client, Some("C3"), closed)?;
    udp.connect(closed)?;
    udp.send(b"ping")?;
    udp.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 64];
    match udp.recv(&mut buf) {
        Err(f) if f.error.kind() == std::io::ErrorKind::ConnectionRefused => {
            show_failure(
                kit,
                Some("C3"),
                &udp::explain_failure("recv", closed, &f.error),
            );
        }
        Err(e) => kit.say(
            Stage::Transfer,
            "no-reply",
            t!(
                "no ICMP error came back in time ({e}): UDP promises nothing",
                "没有及时收到 ICMP 错误（{e}）：UDP 什么也不保证"
            ),
        ),
        Ok(_) => {}
    }
    udp.close();
    Ok(())
}
