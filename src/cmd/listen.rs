//! `sockdemo listen`: a TCP server that narrates itself until Ctrl-C.

use crate::cli::{ListenArgs, OutputArgs};
use crate::engine::conn::Ctx;
use crate::engine::event::{Proto, Side, Sink, Stage};
use crate::engine::server::{self, ServerConfig, StopHandle};
use crate::engine::{limits, observe};
use crate::render::{self, human::Layout, Settings};
use crate::t;
use std::net::SocketAddr;

pub fn run(args: &ListenArgs, output: &OutputArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(output.json, output.color);
    let (sink, renderer) = render::start(settings, Layout::Single, Side::Server, None);
    let result = listen(args, &sink);
    renderer.finish(output.json, result)
}

fn listen(args: &ListenArgs, sink: &Sink) -> anyhow::Result<()> {
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
    ctx.note_with(
        Stage::Listen,
        "ready",
        t!(
            "listening on {addr}. In another terminal: sockdemo connect {addr}. Ctrl-C stops.{reach}",
            "正在监听 {addr}。在另一个终端运行：sockdemo connect {addr}。按 Ctrl-C 停止。{reach}"
        ),
        facts,
    );

    let stop = StopHandle::new(&listener);
    {
        let (stop, ctx) = (stop.clone(), ctx.clone());
        // Ctrl-C (SIGINT) and SIGTERM: stop accepting, say goodbye to every
        // client, print the summary. A second Ctrl-C leaves at once.
        ctrlc::set_handler(move || {
            if stop.is_stopping() {
                std::process::exit(130);
            }
            ctx.note(
                Stage::Close,
                "stopping",
                t!(
                    "stopping: no more accept(); each client gets our FIN and a moment to finish",
                    "正在停止：不再 accept()；每个客户端都会收到我们的 FIN，并有一点时间收尾"
                ),
            );
            stop.stop();
        })?;
    }
    let cfg = ServerConfig {
        echo: !args.no_echo,
        max_clients: args.max_clients as usize,
        ..ServerConfig::default()
    };
    let summary = server::serve(listener, &cfg, &stop);
    super::summary_note(&ctx, &summary);
    Ok(())
}
