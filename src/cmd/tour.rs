//! `sockdemo tour`: the whole lesson in one process and one timeline.
//!
//! One server S and clients C1, C2, C3 on 127.0.0.1. The tour decides only
//! *when* each real call is made (so the story reads in order); what each
//! call returns and which state the kernel reports are never scripted.

use crate::cli::{OutputArgs, TourArgs};
use crate::engine::client;
use crate::engine::conn::{Conn, Ctx, Gate, Received};
use crate::engine::event::{Body, Event, Proto, Recorder, Side, Sink, Stage, TcpState};
use crate::engine::observe;
use crate::engine::server::{self, ServerConfig, StopHandle};
use crate::render::{self, human::Layout, Settings};
use crate::t;
use anyhow::{anyhow, Context};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

/// How long the tour waits for its own server before it calls it a failure.
const SERVER_PATIENCE: Duration = Duration::from_secs(10);

pub fn run(args: &TourArgs, output: &OutputArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(output.json, output.color);
    let recorder = Recorder::new();
    let (sink, renderer) = render::start(
        settings,
        Layout::Columns,
        Side::Server,
        Some(recorder.clone()),
    );
    let default_pace = if settings.terminal && !settings.json {
        Duration::from_millis(300)
    } else {
        Duration::ZERO
    };
    let pace = args.pace.unwrap_or(default_pace);
    let result = tour(args.clients, pace, &sink, &recorder);
    renderer.finish(output.json, result)
}

/// Waits until the server has reported an event about `conn` that `wanted` accepts.
fn wait_server(
    rec: &Recorder,
    conn: &str,
    what: &str,
    wanted: impl Fn(&Event) -> bool,
) -> anyhow::Result<()> {
    rec.wait_for(SERVER_PATIENCE, |e| {
        e.side == Side::Server && e.conn.as_deref() == Some(conn) && wanted(e)
    })
    .map(|_| ())
    .ok_or_else(|| {
        anyhow!(
            "the tour's own server did not {what} for {conn} within {} s",
            SERVER_PATIENCE.as_secs()
        )
    })
}

/// Lets the server make its next blocking call only when the tour says so,
/// so that each side's part of the story is told before the other reacts.
/// Without it the server, already waiting in accept() or recv(), would often
/// print its reaction before the client had finished printing its action.
#[derive(Default)]
struct Turns {
    state: Mutex<(HashMap<String, u32>, bool)>,
    changed: Condvar,
}

impl Turns {
    /// One more call for `conn` ("" is the listening socket).
    fn grant(&self, conn: &str) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *state.0.entry(conn.to_string()).or_default() += 1;
        self.changed.notify_all();
    }

    /// From now on nothing waits (the tour is ending).
    fn open_all(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
        self.changed.notify_all();
    }
}

impl Gate for Turns {
    fn before(&self, ctx: &Ctx, _call: &'static str) {
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

fn is_call(e: &Event, name: &str) -> bool {
    matches!(&e.body, Body::Syscall { call, .. } if *call == name)
}

fn tour(clients: u16, pace: Duration, sink: &Sink, rec: &Arc<Recorder>) -> anyhow::Result<()> {
    let story = Ctx::new(sink, Side::Server, Proto::Tcp);
    story.note(
        Stage::Listen,
        "tour",
        t!(
            "The tour: one server S and {clients} clients on this machine (127.0.0.1). Every line is a real socket \
             call or the kernel's own answer; a state marked inferred was deduced, not observed.",
            "导览：一台服务器 S 和 {clients} 个客户端，都在本机（127.0.0.1）上。每一行都是真实的套接字调用\
             或内核自己的回答；标为“推断”的状态是推导出来的，不是观测到的。"
        ),
    );
    if !observe::KERNEL_STATES {
        story.note(Stage::Listen, "platform", crate::cmd::platform_text());
    }

    // Stage 1: the server listens. Port 0: the OS picks a free port.
    let listener = server::open_listener(sink, SocketAddr::from(([127, 0, 0, 1], 0)), 16)?;
    let addr = listener.local;
    let stop = StopHandle::new(&listener);
    let turns = Arc::new(Turns::default());
    let server_thread = {
        let stop = stop.clone();
        let cfg = ServerConfig {
            gate: Some(turns.clone()),
            ..ServerConfig::default()
        };
        thread::Builder::new()
            .name("sockdemo-server".into())
            .spawn(move || server::serve(listener, &cfg, &stop))
            .context("cannot start the server thread")?
    };
    let result = talk(clients, pace, addr, sink, rec, &turns);
    turns.open_all();
    stop.stop();
    let summary = server_thread
        .join()
        .map_err(|_| anyhow!("the tour's server thread failed"))?;
    result?;
    crate::cmd::summary_note(&story, &summary);
    Ok(())
}

fn talk(
    clients: u16,
    pace: Duration,
    addr: SocketAddr,
    sink: &Sink,
    rec: &Arc<Recorder>,
    turns: &Turns,
) -> anyhow::Result<()> {
    let pause = || thread::sleep(pace);
    let mut conns: Vec<Conn> = Vec::new();

    // Stages 2 and 3, one client at a time: the client requests, the
    // server confirms and hands the new socket to a thread of its own.
    for i in 1..=clients {
        pause();
        let label = format!("C{i}");
        let conn = client::connect(sink, addr, Some(Duration::from_secs(5)), &label)?;
        // The handshake is already complete: the connection waits in the
        // accept queue until the server calls accept().
        turns.grant("");
        wait_server(rec, &label, "start a thread", |e| {
            matches!(
                &e.body,
                Body::Note {
                    topic: "thread",
                    ..
                }
            )
        })?;
        conns.push(conn);
    }

    // Transfer: each client sends a line; its server thread echoes it.
    let mut buf = vec![0u8; 4096];
    for conn in &conns {
        pause();
        let label = conn.ctx.conn.clone().unwrap_or_default();
        let message = format!("hello from {label}\n");
        conn.send_all(message.as_bytes())?;
        turns.grant(&label);
        wait_server(rec, &label, "echo", |e| is_call(e, "send"))?;
        let mut echoed = 0;
        while echoed < message.len() {
            match conn.recv(&mut buf)? {
                Received::Bytes(n) => echoed += n,
                Received::End => return Err(anyhow!("the server closed {label} early")),
            }
        }
    }

    // Close: the client half-closes, the server reads end-of-stream
    // (CLOSE-WAIT) and closes, the client reads it and ends in TIME-WAIT.
    let client_addrs: Vec<SocketAddr> = conns.iter().filter_map(|c| c.ctx.local).collect();
    for conn in conns {
        pause();
        let label = conn.ctx.conn.clone().unwrap_or_default();
        conn.shutdown_write()?;
        turns.grant(&label);
        wait_server(rec, &label, "close", |e| {
            matches!(
                &e.body,
                Body::State {
                    to: TcpState::Closed,
                    ..
                }
            )
        })?;
        loop {
            if let Received::End = conn.recv(&mut buf)? {
                break;
            }
        }
        conn.close();
    }

    // The kernel's own table for this port, as `ss` would show it.
    pause();
    let story = Ctx::new(sink, Side::Server, Proto::Tcp);
    // Only this tour's sockets: a port number can be reused, and an older
    // connection on the same port may still wait in TIME-WAIT.
    let ours = |row: &observe::TableEntry| {
        (row.state == TcpState::Listen && row.local == addr)
            || client_addrs.iter().any(|c| {
                (row.local == *c && row.remote == addr) || (row.local == addr && row.remote == *c)
            })
    };
    match observe::dump(addr.port())
        .map(|rows| rows.into_iter().filter(|r| ours(r)).collect::<Vec<_>>())
    {
        Ok(rows) => {
            story.note(Stage::Close, "table", {
                let port = addr.port();
                t!(
                    "the kernel's socket table for port {port} (sock_diag), after every close():",
                    "所有 close() 之后，内核中端口 {port} 的套接字表（sock_diag）："
                )
            });
            for row in rows {
                let mut facts = serde_json::Map::new();
                facts.insert("state".into(), row.state.name().into());
                let timer = match row.timer {
                    Some(left) if row.state == TcpState::TimeWait => {
                        facts.insert(
                            "timer_s".into(),
                            ((left.as_secs_f64() * 10.0).round() / 10.0).into(),
                        );
                        format!(", {:.1} s left", left.as_secs_f64())
                    }
                    _ => String::new(),
                };
                let explain = match row.state {
                    TcpState::Listen => t!(
                        "the server's listening socket, still open",
                        "服务器的监听套接字，仍然打开着"
                    ),
                    TcpState::TimeWait => {
                        t!(
                            "the side that closed first waits (60 s on Linux, the RFC's 2×MSL) so that late segments cannot confuse a new connection",
                            "先关闭的一方要等待（Linux 上是 60 秒，即 RFC 中的 2×MSL），以免迟到的报文段干扰新的连接"
                        )
                    }
                    _ => String::new(),
                };
                // Each row is about its own socket: its addresses are the event's.
                let row_ctx = Ctx {
                    local: Some(row.local),
                    remote: Some(row.remote),
                    ..story.clone()
                };
                row_ctx.note_with(
                    Stage::Close,
                    "table-row",
                    format!(
                        "{:<11} {} ⇄ {}{timer}  {explain}",
                        row.state.name(),
                        row.local,
                        row.remote
                    ),
                    facts,
                );
            }
        }
        Err(e) => story.note(
            Stage::Close,
            "table",
            format!("the kernel's socket table is not available here: {e}"),
        ),
    }
    Ok(())
}
