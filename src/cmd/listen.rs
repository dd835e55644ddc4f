//! `sockdemo listen`: a TCP server that narrates itself until Ctrl-C.

use crate::cli::{ListenArgs, OutputArgs};
use crate::engine::capture::{PacketMode, PacketWatch};
use crate::engine::conn::{Ctx, Gate};
use crate::engine::event::{Proto, Side, Sink, Stage};
use crate::engine::server::{self, ServerConfig, StopHandle};
use crate::engine::{limits, observe};
use crate::render::{self, human::Layout};
use crate::t;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn run(args: &ListenArgs, output: &OutputArgs) -> anyhow::Result<()> {
    if args.udp {
        return super::udp::listen(args, output);
    }
    let settings = output.settings();
    let (sink, renderer) = render::start(settings, Layout::Single, Side::Server, None);
    let result = super::stepping(sink, output).and_then(|sink| listen(args, &sink, output.packets));
    renderer.finish(output.json, result)
}

fn listen(args: &ListenArgs, sink: &Sink, packets: PacketMode) -> anyhow::Result<()> {
    let mut ctx = Ctx::new(sink, Side::Server, Proto::Tcp);
    if let Some((before, after)) = limits::raise_fd_limit() {
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
                "this process may open {after} file descriptors{raised}: one per socket, so at most about that many clients",
                "本进程最多可以打开 {after} 个文件描述符{raised}：每个套接字占一个，所以客户端数也大约以此为限"
            ),
            facts,
        );
    }
    if !observe::KERNEL_STATES {
        ctx.note(Stage::Listen, "platform", crate::cmd::platform_text());
    }

    let listener =
        server::open_listener(sink, SocketAddr::new(args.host, args.port), args.backlog)?;
    let addr = listener.local;
    ctx.local = Some(addr);
    let capture = PacketWatch::start(sink, addr.port(), packets)?;
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
    let here = super::here(addr);
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
        announce_addresses(&ctx, addr, listener.only_v6(), "sockdemo connect");
    }

    let stop = StopHandle::new(&listener);
    {
        // Ctrl-C (SIGINT) and SIGTERM stop the server; the summary follows.
        let stop = stop.clone();
        super::on_ctrl_c(
            &ctx,
            t!(
                "stopping: no more accept(); each client gets our FIN and a moment to finish",
                "正在停止：不再 accept()；每个客户端都会收到我们的 FIN，并有一点时间收尾"
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
        gate,
        chat: args
            .chat
            .then(|| Arc::new(crate::engine::server::chat::Room::new())),
        framing: args.framing,
        ..ServerConfig::default()
    };
    if let Some(how) = args.framing.explain(addr, !args.no_echo) {
        ctx.note(Stage::Listen, "framing", how);
    }
    let summary = server::serve(listener, &cfg, &stop);
    if let Some(capture) = capture {
        capture.stop();
    }
    super::summary_note(&ctx, &summary);
    Ok(())
}

/// `--accept-delay`: the server waits before each accept(), and meanwhile
/// shows the accept queue from the kernel's table. Clients that connect now
/// are already ESTABLISHED: the kernel finished their handshake, and they
/// wait in the queue for the program to call accept().
struct AcceptDelay {
    delay: Duration,
    stop: StopHandle,
}

impl Gate for AcceptDelay {
    fn before(&self, ctx: &Ctx, call: &'static str) {
        if call != "accept" {
            return;
        }
        let secs = format!("{:.1}", self.delay.as_secs_f64());
        ctx.note(
            Stage::Confirm,
            "accept-delay",
            t!(
                "waiting {secs} s before accept() (--accept-delay): a client that connects now completes its handshake with the kernel and waits in the accept queue",
                "在 accept() 之前等待 {secs} 秒（--accept-delay）：现在连接的客户端会和内核完成握手，然后在接受队列里等待"
            ),
        );
        let deadline = Instant::now() + self.delay;
        let mut shown: Option<(u32, u32)> = None;
        while Instant::now() < deadline && !self.stop.is_stopping() {
            if let Some(local) = ctx.local {
                let queue = observe::dump(local.port()).ok().and_then(|rows| {
                    rows.iter()
                        .find(|r| {
                            r.state == crate::engine::event::TcpState::Listen && r.local == local
                        })
                        .map(|r| (r.recv_queue, r.send_queue))
                });
                if queue.is_some_and(|(waiting, _)| waiting > 0) && queue != shown {
                    shown = queue;
                    let (waiting, backlog) = queue.unwrap_or_default();
                    let mut facts = serde_json::Map::new();
                    facts.insert("accept_queue".into(), waiting.into());
                    facts.insert("backlog".into(), backlog.into());
                    ctx.note_with(
                        Stage::Confirm,
                        "accept-queue",
                        t!(
                            "accept queue (kernel, sock_diag): {waiting} of {backlog}: handshakes done, no accept() yet",
                            "接受队列（内核，sock_diag）：{waiting}/{backlog}：握手已完成，还没有 accept()"
                        ),
                        facts,
                    );
                }
            }
            std::thread::sleep(
                Duration::from_millis(100).min(deadline.saturating_duration_since(Instant::now())),
            );
        }
    }
}

/// For `--host 0.0.0.0` or `::`: every address of this machine, and the exact
/// command a student on the network should type for each.
pub(crate) fn announce_addresses(
    ctx: &Ctx,
    addr: SocketAddr,
    only_v6: Option<bool>,
    connect: &str,
) {
    let port = addr.port();
    let ipv6 = addr.is_ipv6();
    if ipv6 {
        // On Linux an IPv6 socket bound to :: also takes IPv4 clients unless
        // IPV6_V6ONLY is set (net.ipv6.bindv6only decides the default).
        let text = match only_v6 {
            Some(true) => t!(
                "IPV6_V6ONLY is on: only IPv6 clients can connect; IPv4 clients need a second server on 0.0.0.0",
                "IPV6_V6ONLY 已打开：只有 IPv6 客户端能连接；IPv4 客户端需要另一个监听 0.0.0.0 的服务器"
            ),
            _ => t!(
                "IPV6_V6ONLY is off: IPv4 clients are accepted too, and appear as IPv4-mapped IPv6 addresses such as ::ffff:192.0.2.7",
                "IPV6_V6ONLY 未打开：IPv4 客户端也能连接，它们会显示为 IPv4 映射的 IPv6 地址，例如 ::ffff:192.0.2.7"
            ),
        };
        ctx.note(Stage::Listen, "dual-stack", text);
    }
    let accepts_v4 = !ipv6 || only_v6 != Some(true);
    let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
    let mut told = 0;
    for iface in interfaces
        .iter()
        .filter(|i| !i.is_loopback() && !i.is_link_local())
    {
        let ip = iface.ip();
        if (ip.is_ipv4() && !accepts_v4) || (ip.is_ipv6() && !ipv6) {
            continue;
        }
        let target = SocketAddr::new(ip, port);
        let name = &iface.name;
        let command = format!("{connect} {target}");
        let mut facts = serde_json::Map::new();
        facts.insert("interface".into(), name.clone().into());
        facts.insert("ip".into(), ip.to_string().into());
        facts.insert("command".into(), command.clone().into());
        ctx.note_with(
            Stage::Listen,
            "address",
            t!(
                "on {name}: {ip}. Students on that network type: {command}",
                "网络接口 {name}：{ip}。同一网络上的学生输入：{command}"
            ),
            facts,
        );
        told += 1;
    }
    if told == 0 {
        ctx.note(
            Stage::Listen,
            "address",
            t!(
                "this machine has no network address besides loopback: only programs on it can connect",
                "这台机器除了回环地址之外没有别的网络地址：只有本机上的程序能连接"
            ),
        );
    }
}
