//! `sockdemo listen`: a TCP server that narrates itself until Ctrl-C.

use crate::cli::{ListenArgs, OutputArgs};
use crate::engine::call::Call;
use crate::engine::capture::{PacketMode, PacketWatch};
use crate::engine::ctx::{Ctx, Gate};
use crate::engine::event::TcpState;
use crate::engine::event::{Proto, Side, Stage};
use crate::engine::evidence::Sample;
use crate::engine::server::{self, ServerConfig, StopHandle};
use crate::engine::sink::Sink;
use crate::engine::{limits, observe};
use crate::render::{self, human::Layout};
use crate::t;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn run(args: &ListenArgs, output: &OutputArgs) -> anyhow::Result<()> {
    // A server runs for hours and serves bursts: its memory must go back,
    // and under load its sockets come before its narration.
    limits::one_heap();
    limits::sockets_first();
    if args.udp {
        return super::udp::listen(args, output);
    }
    let mut settings = output.settings();
    settings.brief_chat = args.chat && !args.verbose;
    let (sink, renderer) = render::start(settings, Layout::Single, Side::Server, None);
    let result =
        super::shared::stepping(sink, output).and_then(|sink| listen(args, &sink, output.packets));
    renderer.finish(output.json, result)
}

fn listen(args: &ListenArgs, sink: &Sink, packets: PacketMode) -> anyhow::Result<()> {
    let mut ctx = Ctx::new(sink, Side::Server, Proto::Tcp);
    if let Some((before, after)) = limits::raise_fd_limit() {
        let max = args.max_clients;
        let mut facts = serde_json::Map::new();
        facts.insert("fd_limit".into(), after.into());
        let raised = if after > before {
            t!(" (raised from {before})", "（已从 {before} 提高）")
        } else {
            String::new()
        };
        ctx.note_with(
            Stage::Listen,
            "limits",
            t!(
                "this process may open {after} file descriptors{raised}: one per socket, so the OS would allow about that many clients; --max-clients ({max}) is the limit this server keeps",
                "本进程最多可以打开 {after} 个文件描述符{raised}：每个套接字占一个，所以操作系统大约允许这么多客户端；本服务器遵守的上限是 --max-clients（{max}）"
            ),
            facts,
        );
    }
    if !observe::KERNEL_STATES {
        ctx.note(
            Stage::Listen,
            "platform",
            crate::cmd::shared::platform_text(),
        );
    }

    let bound = server::bind_listener(sink, SocketAddr::new(args.host, args.port))?;
    // Watch the wire before listen(): no client's SYN can come before it.
    let capture = PacketWatch::start(sink, bound.local.port(), packets)?;
    let listener = bound.listen(args.backlog)?;
    let addr = listener.local;
    ctx.local = Some(addr);
    let mut facts = serde_json::Map::new();
    facts.insert("addr".into(), addr.to_string().into());
    let reach = if addr.ip().is_loopback() {
        t!(
            " Only programs on this machine can reach it; --host 0.0.0.0 opens it to the network.",
            " 只有本机上的程序能连到它；--host 0.0.0.0 会向网络开放。"
        )
    } else {
        String::new()
    };
    let here = super::shared::here(addr);
    ctx.note_with(
        Stage::Listen,
        "ready",
        t!(
            "listening on {addr}. In another terminal: sockdemo connect {here}. Ctrl-C stops.{reach}",
            "正在监听 {addr}。在另一个终端运行：sockdemo connect {here}。按 Ctrl-C 停止。{reach}"
        ),
        facts,
    );
    if addr.ip().is_unspecified() {
        super::shared::announce_addresses(&ctx, addr, listener.only_v6(), "sockdemo connect");
    }

    let stop = StopHandle::new();
    {
        // Ctrl-C (SIGINT) and SIGTERM stop the server; the summary follows.
        let stop = stop.clone();
        super::shared::on_ctrl_c(
            &ctx,
            t!(
                "stopping: no more accept(); each client gets the rest of its echo, then our FIN, and 2 s to close",
                "正在停止：不再 accept()；每个客户端先收到剩下的回显，再收到我们的 FIN，并有 2 秒时间关闭"
            ),
            move || stop.stop(),
        )?;
    }
    let gate: Option<Arc<dyn Gate>> = args.accept_delay.map(|delay| {
        Arc::new(AcceptDelay {
            delay,
            stop: stop.clone(),
        }) as Arc<dyn Gate>
    });
    let cfg = ServerConfig {
        echo: !args.no_echo,
        max_clients: args.max_clients as usize,
        max_per_host: args.max_per_host as usize,
        idle_timeout: args.idle_timeout,
        partial_timeout: args.partial_timeout,
        grace: args.grace,
        gate,
        chat: args
            .chat
            .then(|| Arc::new(crate::engine::server::chat::Room::new())),
        framing: args.framing,
    };
    if let Some(how) = args.framing.explain(addr, !args.no_echo) {
        ctx.note(Stage::Listen, "framing", how);
    }
    if args.chat && !args.verbose {
        ctx.note(
            Stage::Listen,
            "brief",
            crate::t!(
                "on the timeline for people, each chat message is one line: who said what, to how many. --verbose shows the relay's every recv() and send(); --json always has them",
                "在给人看的时间线上，每条聊天消息只占一行：谁说了什么，发给了几个人。--verbose 会显示转发中的每次 recv() 和 send()；--json 总是包含它们"
            ),
        );
    }
    let summary = server::serve(listener, &cfg, &stop);
    if let Some(capture) = capture {
        capture.stop();
    }
    super::shared::summary_note(&ctx, &summary);
    Ok(())
}

/// `--accept-delay`: before each accept() the server waits, and meanwhile
/// shows the accept queue from the kernel's table. The clients waiting
/// there are already ESTABLISHED: the kernel finished their handshake, and
/// they wait for the program to call accept().
struct AcceptDelay {
    delay: Duration,
    stop: StopHandle,
}

impl Gate for AcceptDelay {
    fn before(&self, ctx: &Ctx, call: &Call) {
        if *call != Call::Accept {
            return;
        }
        let secs = format!("{:.1}", self.delay.as_secs_f64());
        ctx.note(
            Stage::Confirm,
            "accept-delay",
            t!(
                "a client's handshake is done and it waits in the accept queue: the server waits {secs} s before accept() (--accept-delay)",
                "有客户端已经完成握手，在接受队列里等待：服务器在 accept() 之前等待 {secs} 秒（--accept-delay）"
            ),
        );
        let deadline = Instant::now() + self.delay;
        let mut shown: Option<(u32, u32)> = None;
        let mut told = std::collections::HashSet::new();
        loop {
            if let Some(local) = ctx.local {
                let rows = observe::dump(local.port()).unwrap_or_default();
                let queue = rows
                    .iter()
                    .find(|r| r.state == TcpState::Listen && r.local == local)
                    .map(|row| (row.recv_queue, row.send_queue));
                if queue.is_some_and(|(waiting, _)| waiting > 0) && queue != shown {
                    shown = queue;
                    queue_note(ctx, queue.unwrap_or_default());
                }
                // The connections in the queue, as the kernel's table has
                // them: their states are known now, not only at accept().
                for row in rows.iter().filter(|r| r.local.port() == local.port()) {
                    if row.state != TcpState::Listen && told.insert((row.remote, row.state)) {
                        let sample = Sample {
                            t: ctx.sink.elapsed(),
                            state: Some(row.state),
                            via: "sock_diag",
                            timer: None,
                            queue: None,
                        };
                        ctx.sample_queued(row.local, row.remote, sample);
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            // Look at the queue again in a tenth of a second, or stop now.
            if left.is_zero() || !self.stop.sleep(left.min(Duration::from_millis(100))) {
                return;
            }
        }
    }
}

/// The accept queue as the kernel counts it, against the backlog it applies.
fn queue_note(ctx: &Ctx, (waiting, backlog): (u32, u32)) {
    let room = backlog + 1;
    let mut facts = serde_json::Map::new();
    facts.insert("accept_queue".into(), waiting.into());
    facts.insert("backlog".into(), backlog.into());
    ctx.note_with(
        Stage::Confirm,
        "accept-queue",
        t!(
            "accept queue (kernel, sock_diag): {waiting} waiting, handshakes done, no accept() yet; with backlog {backlog}, Linux lets {room} wait",
            "接受队列（内核，sock_diag）：{waiting} 个在等待，握手已完成，还没有 accept()；backlog 为 {backlog} 时，Linux 允许 {room} 个等待"
        ),
        facts,
    );
}
