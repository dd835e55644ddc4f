//! Stopping without losing a byte. When the server stops, each client's own
//! thread has already echoed everything it read; it then sends its FIN
//! (shutdown SHUT_WR: "the server will send nothing more") and waits for
//! the client to close its side. Only a client that has not closed when
//! the grace period ends is reset, and the summary counts it.

use super::clients::Stats;
use crate::engine::call::How;
use crate::engine::conn::{Conn, Received};
use crate::engine::event::Stage;
use crate::t;
use std::time::{Duration, Instant};

/// How a client's thread ends its connection.
pub enum Ending {
    /// close(): FIN, or nothing more if both sides have closed.
    Close,
    /// SO_LINGER 0 and close(): an RST, for a client that would not close.
    Reset,
}

/// The server stops: our FIN, then the client's, within `grace`.
pub(super) fn at_stop(conn: &Conn, grace: Duration, stats: &Stats) -> Ending {
    if conn.shutdown(How::Write).is_err() {
        return Ending::Close;
    }
    let deadline = Instant::now() + grace;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // SO_RCVTIMEO: a client that never closes must not hold the stop.
        if left.is_zero() || conn.set_recv_timeout(Some(left)).is_err() {
            return cut(conn, grace, stats);
        }
        match conn.recv(&mut buf) {
            Ok(Received::End) => return Ending::Close,
            // Our FIN has gone: what still comes cannot be echoed.
            Ok(Received::Bytes(n)) => stats.after_fin(n),
            Err(f) if f.is_timeout() => return cut(conn, grace, stats),
            Err(_) => return Ending::Close,
        }
    }
}

fn cut(conn: &Conn, grace: Duration, stats: &Stats) -> Ending {
    stats.cut();
    let who = conn.ctx.conn.clone().unwrap_or_else(|| "client".into());
    let secs = grace.as_secs_f64();
    conn.ctx.note(
        Stage::Close,
        "cut",
        t!(
            "{who} did not close within {secs} s of the server's FIN: its connection is reset",
            "{who} 在服务器发出 FIN 之后 {secs} 秒内没有关闭：这个连接被重置"
        ),
    );
    Ending::Reset
}
