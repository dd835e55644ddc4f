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
    Ok(())
}
