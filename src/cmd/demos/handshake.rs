//! The handshake is finished by the kernel before accept() returns: the
//! demo holds the server's accept() back and shows the kernel's table
//! while the connection waits, already ESTABLISHED, in the accept queue.

use super::Kit;
use crate::engine::client;
use crate::engine::event::Stage;
use crate::t;
use std::time::Duration;

pub fn run(kit: &Kit) -> anyhow::Result<()> {
    kit.say(
        Stage::Listen,
        "demo",
        t!(
            "The handshake demo: the server listens but does not call accept() yet. Watch where the connection is before accept() returns.",
            "握手演示：服务器在监听，但先不调用 accept()。看看在 accept() 返回之前，连接在哪里。"
        ),
    );
    kit.platform_note();
    let server = kit.server(4)?;
    kit.pause();
    let conn = client::connect(&kit.sink, server.addr, Some(Duration::from_secs(5)), "C1")?;
    kit.pause();
    let clients: Vec<_> = conn.ctx.local.into_iter().collect();
    if let Ok(rows) = kit.rows_of(server.addr, &clients) {
        kit.table(
                Stage::Confirm,
            t!(
                "before accept(): the kernel's table. The handshake is done, both ends are ESTABLISHED, and the connection waits in the listener's accept queue:",
                "accept() 之前内核的套接字表：握手已经完成，两端都是 ESTABLISHED，连接在监听套接字的接受队列里等待："
            ),
            &rows,
        );
    }
    kit.pause();
    server.accept("C1")?;
    if let Ok(rows) = kit.rows_of(server.addr, &clients) {
        kit.table(
            Stage::Confirm,
            t!(
                "after accept(): the queue is empty; the server now holds the connection's socket",
                "accept() 之后：队列空了；服务器现在持有这个连接的套接字"
            ),
            &rows,
        );
    }
    kit.pause();
    conn.send_all(b"hello\n")?;
    server.echo(&conn, 6)?;
    kit.pause();
    server.close_from_client(conn)?;
    server.finish()?;
    #[cfg(target_os = "linux")]
    {
        kit.pause();
        held_syn_sent(kit)?;
        kit.pause();
        held_syn_received(kit)?;
    }
    Ok(())
}

/// SYN-SENT lasts microseconds on loopback. Held on purpose: a server whose
/// accept queue is full (listen(0), one connection waiting) makes its kernel
/// drop the next SYN, and that client waits, retransmitting, in SYN-SENT.
#[cfg(target_os = "linux")]
fn held_syn_sent(kit: &Kit) -> anyhow::Result<()> {
    use crate::engine::event::{Body, Side, TcpState};
    kit.say(
        Stage::Listen,
        "held",
        t!(
            "Holding SYN-SENT on purpose: this server calls listen(0) and never accept(), so its accept queue fills with C2, and the kernel drops C3's SYN.",
            "刻意留住 SYN-SENT：这个服务器调用 listen(0) 且不调用 accept()，接受队列被 C2 占满后，内核会丢掉 C3 的 SYN。"
        ),
    );
    let (full, _capture) = kit.listener(0)?;
    let c2 = client::connect(&kit.sink, full.local, Some(Duration::from_secs(5)), "C2")?;
    kit.pause();
    let waiting = {
        let (sink, addr) = (kit.sink.clone(), full.local);
        std::thread::spawn(move || client::connect(&sink, addr, Some(Duration::from_secs(5)), "C3"))
    };
    // Wait (bounded) until C3's connect() has seen SYN-SENT in the kernel.
    let held = kit.rec.wait_for(Duration::from_secs(3), |e| {
        e.side == Side::Client
            && e.conn.as_deref() == Some("C3")
            && matches!(
                &e.body,
                Body::State {
                    to: TcpState::SynSent,
                    ..
                }
            )
    });
    if held.is_some() {
        kit.say(
            Stage::Request,
            "held",
            t!(
                "C3 is held in SYN-SENT (as the kernel reports it): its SYN was dropped, and it will be sent again after about 1 s. A deliberately held state: normally it lasts microseconds.",
                "C3 被留在 SYN-SENT（内核报告的状态）：它的 SYN 被丢掉了，大约 1 秒后会重发。这是刻意留住的状态：平时它只持续几微秒。"
            ),
        );
    }
    kit.pause();
    // Make room: accept C2. C3's retransmitted SYN is then answered.
    let served2 = full.accept_one()?;
    let c3 = waiting
        .join()
        .map_err(|_| anyhow::anyhow!("C3's thread failed"))??;
    let served3 = full.accept_one()?;
    for conn in [c2, c3, served2, served3] {
        conn.close();
    }
    full.close();
    Ok(())
}

/// SYN-RECEIVED is held with TCP_DEFER_ACCEPT: the server's kernel keeps
/// the connection half-open until the client's first data arrives.
#[cfg(target_os = "linux")]
fn held_syn_received(kit: &Kit) -> anyhow::Result<()> {
    use crate::engine::conn::Received;
    kit.say(
        Stage::Listen,
        "held",
        t!(
            "Holding SYN-RECEIVED on purpose: with TCP_DEFER_ACCEPT the server's kernel ignores the client's last ACK until data comes with it (on Linux, or until its SYN-ACK retransmissions run out, about 7 s for 5).",
            "刻意留住 SYN-RECEIVED：设置 TCP_DEFER_ACCEPT 后，服务器内核会忽略客户端最后那个不带数据的 ACK，直到数据到来（在 Linux 上，或者直到 SYN-ACK 重传次数用完，5 秒约为 7 秒）。"
        ),
    );
    let (listener, _capture) = kit.listener(4)?;
    listener.defer_accept(5)?;
    let c4 = client::connect(
        &kit.sink,
        listener.local,
        Some(Duration::from_secs(5)),
        "C4",
    )?;
    kit.pause();
    let clients: Vec<_> = c4.ctx.local.into_iter().collect();
    if let Ok(rows) = kit.rows_of(listener.local, &clients) {
        kit.table(
            Stage::Confirm,
            t!(
                "the kernel's table: C4 thinks it is ESTABLISHED, while the server's side is held in SYN-RECEIVED (deliberately, by TCP_DEFER_ACCEPT):",
                "内核的套接字表：C4 认为自己已经 ESTABLISHED，而服务器这一端被留在 SYN-RECEIVED（由 TCP_DEFER_ACCEPT 刻意留住）："
            ),
            &rows,
        );
    }
    kit.pause();
    c4.send_all(b"hello\n")?;
    // The data completes the handshake on the server's side: accept() returns.
    let served = listener.accept_one()?;
    let mut buf = [0u8; 64];
    let _ = served
        .recv(&mut buf)
        .map(|r| matches!(r, Received::Bytes(_)));
    c4.close();
    served.close();
    listener.close();
    Ok(())
}
