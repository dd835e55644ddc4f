//! `sockdemo listen`: a TCP server that narrates itself until Ctrl-C.

use crate::cli::{ListenArgs, OutputArgs};
use crate::engine::conn::Ctx;
use crate::engine::event::{Proto, Side, Sink, Stage};
use crate::engine::server::{self, ServerConfig, StopHandle};
use crate::engine::{limits, observe};
use crate::render::{self, human::Layout, Settings};
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
            format!(" (raised from {before})")
        } else {
            String::new()
        };
        ctx.note_with(
            Stage::Listen,
            "limits",
            format!("this process may open {after} file descriptors{raised}: one per socket, so at most about that many clients"),
            facts,
        );
    }
    if !observe::KERNEL_STATES {
        ctx.note(Stage::Listen, "platform", "this OS does not let sockdemo read TCP states from the kernel: the states shown are inferred from the protocol");
    }

    let listener =
        server::open_listener(sink, SocketAddr::new(args.host, args.port), args.backlog)?;
    let addr = listener.local;
    ctx.local = Some(addr);
    let mut facts = serde_json::Map::new();
    facts.insert("addr".into(), addr.to_string().into());
    let reach = if addr.ip().is_loopback() {
        " Only programs on this machine can reach it; --host 0.0.0.0 opens it to the network."
    } else {
        ""
    };
    ctx.note_with(
        Stage::Listen,
        "ready",
        format!("listening on {addr}. In another terminal: sockdemo connect {addr}. Ctrl-C stops.{reach}"),
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
                "stopping: no more accept(); each client gets our FIN and a moment to finish",
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
