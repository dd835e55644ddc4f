//! What the tour and the lessons' demos share: a renderer, a server they
//! can pace, a way to wait for the server, and a view of the kernel's table.
//!
//! A demo decides only *when* each real call is made, so the story reads in
//! order; what each call returns and which state the kernel reports are
//! never scripted.

use crate::cli::OutputArgs;
use crate::engine::call::{Call, How};
use crate::engine::capture::{PacketMode, PacketWatch};
use crate::engine::conn::{Conn, Received};
use crate::engine::ctx::{Ctx, Gate};
use crate::engine::event::{Body, Event, Proto, Side, Stage, TcpState};
use crate::engine::observe::{self, TableEntry};
use crate::engine::recorder::Recorder;
use crate::engine::server::{self, ServerConfig, StopHandle, Summary};
use crate::engine::sink::Sink;
use crate::render::{self, human::Layout, lens::Lens, Renderer};
use crate::t;
use anyhow::{anyhow, Context};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

/// How long a demo waits for its own server before calling it a failure.
const SERVER_PATIENCE: Duration = Duration::from_secs(10);

pub struct Kit {
    pub sink: Sink,
    pub rec: Arc<Recorder>,
    pub pace: Duration,
    /// The narrator's own voice (notes that belong to no socket).
    pub story: Ctx,
    /// Whether to put the packets of each server's port in the timeline.
    pub packets: PacketMode,
    /// Lines drawn so far, and how many had been at the last pause.
    lines: Arc<AtomicU64>,
    paused_at: AtomicU64,
}

/// A stage of this many lines waits one pace; a longer one waits longer
/// (at most [`PAUSE_MAX`] paces): the time to read it, not a fixed beat.
const LINES_PER_PACE: f64 = 15.0;
const PAUSE_MAX: f64 = 4.0;

impl Kit {
    /// A renderer in two columns, and a pace for people (none for JSON or a pipe).
    pub fn start(
        output: &OutputArgs,
        pace: Option<Duration>,
        verbose: Option<bool>,
        lens: Option<Lens>,
    ) -> anyhow::Result<(Kit, Renderer)> {
        // `verbose`: the tour's --verbose; None for a demo, which has none.
        let (has_verbose, verbose) = (verbose.is_some(), verbose.unwrap_or(false));
        let mut settings = output.settings();
        settings.has_verbose = has_verbose;
        settings.explain_once = !verbose;
        // Stepping, the class sees each call as it is made: none is held.
        settings.fold = !verbose && !output.step;
        settings.lens = lens;
        let rec = Recorder::new();
        let (sink, renderer) =
            render::start(settings, Layout::Columns, Side::Server, Some(rec.clone()));
        let default_pace = if settings.terminal && !settings.json {
            Duration::from_millis(1500)
        } else {
            Duration::ZERO
        };
        let sink = super::shared::stepping(sink, output)?;
        let story = Ctx::new(&sink, Side::Server, Proto::Tcp);
        Ok((
            Kit {
                sink,
                rec,
                pace: pace.unwrap_or(default_pace),
                story,
                packets: output.packets,
                lines: renderer.lines(),
                paused_at: AtomicU64::new(0),
            },
            renderer,
        ))
    }

    /// The pause between two steps of a demo: the time to read what the
    /// step showed, and at least a fifth of the pace.
    pub fn pause(&self) {
        self.pause_to_read(self.pace / 5);
    }

    /// The pause where the story moves on to its next stage, so a class
    /// can read what the last one showed: one pace for a short stage, more
    /// for a long one.
    pub fn pause_stage(&self) {
        self.pause_to_read(self.pace);
    }

    /// A pace per [`LINES_PER_PACE`] lines shown since the last pause (at
    /// least `least`, at most [`PAUSE_MAX`] paces); none if nothing was.
    fn pause_to_read(&self, least: Duration) {
        if self.pace.is_zero() {
            return;
        }
        // The stage's last lines reach the screen first (a part the fold
        // holds is told once the story has been quiet a moment).
        let settle = (render::FOLD_QUIET * 2).min(least);
        thread::sleep(settle);
        let now = self.lines.load(Ordering::Relaxed);
        let shown = now.saturating_sub(self.paused_at.swap(now, Ordering::Relaxed));
        if shown == 0 {
            // A stage a demo's lens leaves out: nothing new to read.
            return;
        }
        let to_read = self
            .pace
            .mul_f64((shown as f64 / LINES_PER_PACE).min(PAUSE_MAX));
        thread::sleep(to_read.max(least).saturating_sub(settle));
    }

    pub fn say(&self, stage: Stage, topic: &'static str, text: String) {
        self.story.note(stage, topic, text);
    }

    /// Says, once, when states can only be inferred on this OS.
    pub fn platform_note(&self) {
        if !observe::KERNEL_STATES {
            self.say(
                Stage::Listen,
                "platform",
                crate::cmd::shared::platform_text(),
            );
        }
    }

    /// Packets to and from `port` on the timeline, for as long as the
    /// returned watch lives (a port where nothing listens, say).
    pub fn watch(&self, port: u16) -> anyhow::Result<Option<PacketWatch>> {
        PacketWatch::start_as(&self.sink, port, self.packets, Proto::Tcp, Side::Client)
    }

    /// A listener of the demo's own on 127.0.0.1 (a port the OS picks),
    /// with its packets watched for as long as the returned watch lives.
    pub fn listener(
        &self,
        backlog: i32,
    ) -> anyhow::Result<(server::Listener, Option<PacketWatch>)> {
        let bound = server::bind_listener(&self.sink, SocketAddr::from(([127, 0, 0, 1], 0)))?;
        // Watch the wire before listen(): no client's SYN can come before it.
        let capture = PacketWatch::start(&self.sink, bound.local.port(), self.packets)?;
        Ok((bound.listen(backlog)?, capture))
    }

    /// A TCP echo server on 127.0.0.1 (a port the OS picks) whose accept()
    /// and recv() calls wait for [`DemoServer::grant`].
    pub fn server(&self, backlog: i32) -> anyhow::Result<DemoServer> {
        let (listener, capture) = self.listener(backlog)?;
        let addr = listener.local;
        let stop = StopHandle::new();
        let turns = Arc::new(Turns::default());
        let cfg = ServerConfig {
            gate: Some(turns.clone()),
            // The demo's own clients: no class to protect from them.
            idle_timeout: Duration::ZERO,
            partial_timeout: Duration::ZERO,
            ..ServerConfig::default()
        };
        let thread = {
            let stop = stop.clone();
            thread::Builder::new()
                .name("sockdemo-server".into())
                .spawn(move || server::serve(listener, &cfg, &stop))
                .context("cannot start the server thread")?
        };
        Ok(DemoServer {
            addr,
            stop,
            turns,
            thread: Some(thread),
            rec: self.rec.clone(),
            capture,
            stepping: self.sink.stepper().is_some(),
        })
    }

    /// Shows rows of the kernel's socket table, as `ss` would.
    pub fn table(&self, stage: Stage, title: String, rows: &[TableEntry]) {
        self.say(stage, "table", title);
        // TIME-WAIT is explained on its first row; the rows after it say
        // only how long is left.
        let mut explained = false;
        for row in rows {
            let mut facts = serde_json::Map::new();
            facts.insert("state".into(), row.state.name().into());
            let state = row.state.name();
            let detail = match row.state {
                TcpState::Listen => {
                    let (waiting, backlog) = (row.recv_queue, row.send_queue);
                    facts.insert("accept_queue".into(), waiting.into());
                    facts.insert("backlog".into(), backlog.into());
                    t!(
                        "listening; accept queue {waiting} of {backlog}",
                        "监听中；接受队列 {waiting}/{backlog}"
                    )
                }
                TcpState::TimeWait => {
                    let left = row
                        .timer
                        .map_or(0.0, |d| (d.as_secs_f64() * 10.0).round() / 10.0);
                    facts.insert("timer_s".into(), left.into());
                    if std::mem::replace(&mut explained, true) {
                        t!("{left} s left", "还剩 {left} 秒")
                    } else {
                        t!(
                        "{left} s left: the side that closed first waits 2×MSL (Linux: a fixed 60 s; the RFC's MSL of 2 minutes would make 4) so late segments cannot confuse a new connection",
                        "还剩 {left} 秒：先关闭的一方要等待 2×MSL（Linux 固定为 60 秒；按 RFC 的 MSL 为 2 分钟算则是 4 分钟），以免迟到的报文段干扰新连接"
                    )
                    }
                }
                _ => String::new(),
            };
            // Each row is about its own socket: its addresses are the event's.
            let row_ctx = Ctx {
                local: Some(row.local),
                remote: Some(row.remote),
                ..self.story.clone()
            };
            let (local, remote) = (row.local, row.remote);
            row_ctx.note_with(
                stage,
                "table-row",
                format!("{state:<11} {local} ⇄ {remote}  {detail}"),
                facts,
            );
        }
    }

    /// The kernel's rows for the listener at `server` and the connections
    /// between it and `clients` (only these: a port number can be reused,
    /// and an older connection on it may still wait in TIME-WAIT).
    pub fn rows_of(
        &self,
        server: SocketAddr,
        clients: &[SocketAddr],
    ) -> anyhow::Result<Vec<TableEntry>> {
        let rows = observe::dump(server.port())?;
        Ok(rows
            .into_iter()
            .filter(|r| {
                (r.state == TcpState::Listen && r.local == server)
                    || clients.iter().any(|c| {
                        (r.local == *c && r.remote == server)
                            || (r.local == server && r.remote == *c)
                    })
            })
            .collect())
    }
}

/// A demo's server, paced by grants.
pub struct DemoServer {
    pub addr: SocketAddr,
    stop: StopHandle,
    turns: Arc<Turns>,
    thread: Option<thread::JoinHandle<Summary>>,
    rec: Arc<Recorder>,
    capture: Option<PacketWatch>,
    stepping: bool,
}

impl DemoServer {
    /// Lets the server make one more blocking call for `conn` ("" is the
    /// listening socket's accept()).
    pub fn grant(&self, conn: &str) {
        self.turns.grant(conn);
    }

    /// Waits until the server has reported an event about `conn` that `wanted` accepts.
    pub fn wait(
        &self,
        conn: &str,
        what: &str,
        wanted: impl Fn(&Event) -> bool,
    ) -> anyhow::Result<()> {
        // With --step the teacher may take as long as the class needs.
        let patience = if self.stepping {
            Duration::from_secs(24 * 3600)
        } else {
            SERVER_PATIENCE
        };
        self.rec
            .wait_for(patience, |e| {
                e.side == Side::Server && e.conn.as_deref() == Some(conn) && wanted(e)
            })
            .map(|_| ())
            .ok_or_else(|| {
                anyhow!(
                    "the demo's own server did not {what} for {conn} within {} s",
                    patience.as_secs()
                )
            })
    }

    /// A client `label` connects (socket, connect: the request) and the
    /// server accepts it (the confirmation), in that order.
    pub fn connect_client(&self, sink: &Sink, label: &str) -> anyhow::Result<Conn> {
        let conn =
            crate::engine::client::connect(sink, self.addr, Some(Duration::from_secs(5)), label)?;
        // The handshake is already complete: the connection waits in the
        // accept queue until the server calls accept().
        self.accept(label)?;
        Ok(conn)
    }

    /// Lets the server accept `label` and waits for its thread.
    pub fn accept(&self, label: &str) -> anyhow::Result<()> {
        self.grant("");
        self.wait(label, "start a thread", |e| {
            matches!(
                &e.body,
                Body::Note {
                    topic: "thread",
                    ..
                }
            )
        })
    }

    /// Lets the server read and echo, then reads the echo of `sent` bytes.
    pub fn echo(&self, conn: &Conn, sent: usize) -> anyhow::Result<()> {
        let label = conn.ctx.conn.clone().unwrap_or_default();
        self.grant(&label);
        self.wait(&label, "echo", |e| is_call(e, "send"))?;
        let mut buf = vec![0u8; 4096];
        let mut echoed = 0;
        while echoed < sent {
            match conn.recv(&mut buf)? {
                Received::Bytes(n) => echoed += n,
                Received::End => return Err(anyhow!("the server closed {label} early")),
            }
        }
        Ok(())
    }

    /// The client closes first: shutdown(SHUT_WR), the server reads the end
    /// and closes (CLOSE-WAIT), the client reads it (TIME-WAIT) and closes.
    pub fn close_from_client(&self, conn: Conn) -> anyhow::Result<()> {
        let label = conn.ctx.conn.clone().unwrap_or_default();
        conn.shutdown(How::Write)?;
        self.grant(&label);
        self.wait(&label, "close", |e| {
            matches!(
                &e.body,
                Body::State {
                    to: TcpState::Closed,
                    ..
                }
            )
        })?;
        let mut buf = [0u8; 512];
        while let Received::Bytes(_) = conn.recv(&mut buf)? {}
        conn.close();
        Ok(())
    }

    /// Stops the server and returns its summary.
    pub fn finish(mut self) -> anyhow::Result<Summary> {
        self.turns.open_all();
        self.stop.stop();
        let summary = self
            .thread
            .take()
            .map_or(Err(anyhow!("no server thread")), |t| {
                t.join()
                    .map_err(|_| anyhow!("the demo's server thread failed"))
            });
        // The last packets (the final ACKs) go into the timeline before the summary.
        if let Some(capture) = self.capture.take() {
            capture.stop();
        }
        summary
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        // A demo that failed half-way must not leave its server waiting.
        self.turns.open_all();
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn is_call(e: &Event, name: &str) -> bool {
    matches!(&e.body, Body::Syscall { call, .. } if *call == name)
}

/// Lets the server make its next blocking call only when the demo says so,
/// so that each side's part of the story is told before the other reacts.
/// Without it the server, already waiting in accept() or recv(), would often
/// print its reaction before the client had finished printing its action.
#[derive(Default)]
pub struct Turns {
    state: Mutex<(HashMap<String, u32>, bool)>,
    changed: Condvar,
}

impl Turns {
    /// One more call for `conn` ("" is the listening socket).
    pub fn grant(&self, conn: &str) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *state.0.entry(conn.to_string()).or_default() += 1;
        self.changed.notify_all();
    }

    /// From now on nothing waits (the demo is ending).
    pub fn open_all(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
        self.changed.notify_all();
    }
}

impl Gate for Turns {
    fn before(&self, ctx: &Ctx, call: &Call) {
        // Only the calls that wait for the other side are paced; the rest
        // (send, shutdown, close) follow at once, as in any server.
        if !matches!(call, Call::Accept | Call::Recv(_)) {
            return;
        }
        let key = ctx.conn.as_deref().unwrap_or("").to_string();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if state.1 {
                return;
            }
            if let Some(n) = state.0.get_mut(&key).filter(|n| **n > 0) {
                *n -= 1;
                return;
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}
