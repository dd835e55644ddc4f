//! Two ways to end a connection: the polite close (FIN each way, TIME-WAIT
//! on the side that closed first) and the abortive one (SO_LINGER 0: RST).

use super::Kit;
use crate::engine::event::{Body, Stage};
use crate::t;

pub fn run(kit: &Kit) -> anyhow::Result<()> {
    kit.platform_note();
    kit.say(
        Stage::Listen,
        "demo",
        t!(
            "C1 closes politely: shutdown(SHUT_WR) sends FIN, the server reads the end and closes, C1 ends in TIME-WAIT.",
            "C1 礼貌地关闭：shutdown(SHUT_WR) 发出 FIN，服务器读到流的结尾后关闭，C1 最后停在 TIME-WAIT。"
        ),
    );
    let server = kit.server(4)?;
    let c1 = server.connect_client(&kit.sink, "C1")?;
    kit.pause();
    c1.send_all(b"bye\n")?;
    server.echo(&c1, 4)?;
    kit.pause();
    let c1_addr = c1.ctx.local;
    server.close_from_client(c1)?;
    kit.pause();

    kit.say(
        Stage::Listen,
        "demo",
        t!(
            "C2 closes abortively: with SO_LINGER set to 0, close() sends a reset (RST) instead of FIN.",
            "C2 强行关闭：把 SO_LINGER 设为 0 后，close() 发出的是复位（RST）而不是 FIN。"
        ),
    );
    let c2 = server.connect_client(&kit.sink, "C2")?;
    kit.pause();
    c2.send_all(b"bye\n")?;
    server.echo(&c2, 4)?;
    kit.pause();
    let c2_addr = c2.ctx.local;
    c2.close_with_reset();
    // The server's next recv() meets the reset.
    server.grant("C2");
    server.wait("C2", "see the reset", |e| {
        matches!(&e.body, Body::Error { .. })
    })?;
    kit.pause();

    let clients: Vec<_> = [c1_addr, c2_addr].into_iter().flatten().collect();
    if let Ok(rows) = kit.rows_of(server.addr, &clients) {
        kit.table(
                Stage::Close,
            t!(
                "the kernel's table now: C1's connection waits in TIME-WAIT; C2's is simply gone (a reset leaves no TIME-WAIT)",
                "现在内核的套接字表：C1 的连接停在 TIME-WAIT；C2 的连接直接消失了（复位不留下 TIME-WAIT）"
            ),
            &rows,
        );
    }
    server.finish()?;
    Ok(())
}
