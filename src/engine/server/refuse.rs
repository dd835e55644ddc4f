//! Over `--max-clients`: the client is told why, politely, and closed.

use super::clients::CLIENT_STACK;
use crate::engine::call::How;
use crate::engine::conn::{Conn, Received};
use crate::engine::event::Stage;
use crate::t;
use std::thread;
use std::time::Duration;

/// Says "server full" to `conn` and closes it, on a short-lived thread so
/// the accept loop is not held up.
pub(super) fn refuse(conn: Conn, max: usize) {
    let who = conn.ctx.conn.clone().unwrap_or_else(|| "client".into());
    let are = if max == 1 { "client is" } else { "clients are" };
    conn.ctx.note(
        Stage::Confirm,
        "refused",
        t!(
            "{who} refused: {max} {are} being served already (--max-clients)",
            "拒绝 {who}：已经在为 {max} 个客户端服务（--max-clients）"
        ),
    );
    let goodbye = move || {
        let text = format!("sockdemo: server full ({max} clients); try again later\n");
        let _ = conn.send_all(text.as_bytes());
        let _ = conn.shutdown(How::Write);
        // Read what the client sent until it closes: closing with unread
        // bytes would send a reset (RST) instead of our polite FIN.
        let _ = conn.set_recv_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 512];
        while let Ok(Received::Bytes(_)) = conn.recv(&mut buf) {}
        conn.close();
    };
    let _ = thread::Builder::new()
        .name("sockdemo-refuse".into())
        .stack_size(CLIENT_STACK)
        .spawn(goodbye);
}
