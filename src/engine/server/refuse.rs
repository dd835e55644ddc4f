//! A client over a limit is told why and closed at once, in the accept
//! loop, without a thread and without waiting: so the limits bound the
//! server's threads and descriptors, whatever the refused clients do.

use crate::engine::call::How;
use crate::engine::conn::{Conn, Received};
use crate::engine::event::Stage;
use crate::t;
use std::net::IpAddr;

/// Which limit a client met.
pub(super) enum Refusal {
    /// `--max-clients`: this many are served already.
    Full(usize),
    /// `--max-per-host`: this many are served from its address already.
    Host(IpAddr, usize),
}

/// How many reads a refusal makes of what the client had already sent.
const DRAIN_READS: usize = 8;

/// Says why to `conn` and closes it, never waiting for it.
pub(super) fn refuse(conn: Conn, why: Refusal) {
    let who = conn.ctx.conn.clone().unwrap_or_else(|| "client".into());
    let (note, line) = match why {
        Refusal::Full(max) => {
            let are = if max == 1 { "client is" } else { "clients are" };
            (
                t!(
                    "{who} refused: {max} {are} being served already (--max-clients)",
                    "拒绝 {who}：已经在为 {max} 个客户端服务（--max-clients）"
                ),
                format!("sockdemo: server full ({max} clients); try again later\n"),
            )
        }
        Refusal::Host(ip, max) => (
            t!(
                "{who} refused: {max} connections from {ip} are being served already (--max-per-host), so one address cannot take the places of the class",
                "拒绝 {who}：来自 {ip} 的 {max} 个连接已经在服务中（--max-per-host），一个地址不能占满全班的位置"
            ),
            format!("sockdemo: too many connections from {ip} ({max}); close one and try again\n"),
        ),
    };
    conn.ctx.note(Stage::Confirm, "refused", note);
    // Non-blocking from here: nothing in the accept loop may wait for a client.
    if conn.set_nonblocking(true).is_ok() {
        // One send(): what the kernel takes now is the whole goodbye.
        let _ = conn.send_once(line.as_bytes());
        let _ = conn.shutdown(How::Write);
        // Take what had already arrived: closing with unread bytes would
        // answer with a reset (RST) instead of our polite FIN.
        let mut buf = [0u8; 4096];
        for _ in 0..DRAIN_READS {
            if !matches!(conn.recv(&mut buf), Ok(Received::Bytes(_))) {
                break;
            }
        }
    }
    conn.close();
}
