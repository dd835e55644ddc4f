//! How long the server waits for a client: a client that sends nothing
//! (`--idle-timeout`) or leaves a line or frame half-sent
//! (`--partial-timeout`) is closed, so that it cannot hold a place other
//! students need. Each closing is told as the lesson it is.

use crate::engine::conn::Conn;
use crate::engine::event::Stage;
use crate::t;
use std::time::{Duration, Instant};

/// The two limits, and when the client last gave the server something.
pub(super) struct Patience {
    idle: Duration,
    partial: Duration,
    heard: Instant,
    /// When the message now half-received began.
    begun: Option<Instant>,
}

/// Why a client was closed for its silence.
pub(super) enum Silence {
    Idle(Duration),
    Partial(Duration),
}

impl Patience {
    /// `Duration::ZERO` turns a limit off.
    pub fn new(idle: Duration, partial: Duration) -> Patience {
        Patience {
            idle,
            partial,
            heard: Instant::now(),
            begun: None,
        }
    }

    /// The client sent bytes; `partial` says whether a message is now
    /// begun and not finished.
    pub fn heard(&mut self, partial: bool) {
        self.heard = Instant::now();
        self.begun = match (partial, self.begun) {
            (true, Some(since)) => Some(since),
            (true, None) => Some(self.heard),
            (false, _) => None,
        };
    }

    /// When the server stops waiting, if ever.
    pub fn deadline(&self) -> Option<Instant> {
        let idle = (!self.idle.is_zero()).then(|| self.heard + self.idle);
        let partial = match self.begun {
            Some(since) if !self.partial.is_zero() => Some(since + self.partial),
            _ => None,
        };
        match (idle, partial) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The deadline passed: which limit it was.
    pub fn why(&self) -> Silence {
        match self.begun {
            Some(since) if !self.partial.is_zero() && since + self.partial <= Instant::now() => {
                Silence::Partial(self.partial)
            }
            _ => Silence::Idle(self.idle),
        }
    }
}

/// Says why the server closes `conn` now (it is closed when its thread ends).
pub(super) fn tell(conn: &Conn, silence: &Silence) {
    let who = conn.ctx.conn.clone().unwrap_or_else(|| "client".into());
    let (topic, text, secs) = match silence {
        Silence::Idle(limit) => {
            let secs = secs_of(*limit);
            (
                "idle",
                t!(
                    "{who} sent nothing for {secs} s: the server closes it so others can connect (--idle-timeout)",
                    "{who} 已经 {secs} 秒什么也没发：服务器关闭它，好让别人能连上（--idle-timeout）"
                ),
                secs,
            )
        }
        Silence::Partial(limit) => {
            let secs = secs_of(*limit);
            (
                "partial",
                t!(
                    "{who} left a message half-sent for {secs} s: the server closes it, so a half-sent line cannot hold a place (--partial-timeout)",
                    "{who} 把一条消息发了一半，停了 {secs} 秒：服务器关闭它，半截的消息不能一直占着位置（--partial-timeout）"
                ),
                secs,
            )
        }
    };
    let mut facts = serde_json::Map::new();
    facts.insert("seconds".into(), secs.into());
    conn.ctx.note_with(Stage::Close, topic, text, facts);
}

fn secs_of(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

/// Says why the server resets `conn`: its echo could not go out for `limit`
/// (the client sends but does not read; its buffers and ours are full).
pub(super) fn not_reading(conn: &Conn, limit: Duration) {
    let who = conn.ctx.conn.clone().unwrap_or_else(|| "client".into());
    let secs = secs_of(limit);
    let mut facts = serde_json::Map::new();
    facts.insert("seconds".into(), secs.into());
    conn.ctx.note_with(
        Stage::Close,
        "not-reading",
        t!(
            "{who} has read nothing for {secs} s: the echo cannot go out (its receive buffer and our send buffer are full), so the server resets it so others can connect (--idle-timeout)",
            "{who} 已经 {secs} 秒什么也没读：回显发不出去（它的接收缓冲区和我们的发送缓冲区都满了），服务器重置这个连接，好让别人能连上（--idle-timeout）"
        ),
        facts,
    );
}
