//! One file per subcommand: the glue between the command line, the engine
//! and a renderer.

pub mod connect;
pub mod demos;
pub mod diagram;
pub mod explain;
pub mod kit;
pub mod listen;
pub mod step;
pub mod tour;
pub mod udp;
pub mod watch;

use crate::cli::{Cli, Command};
use crate::t;

pub fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.output.step {
        // Refuse before anything is printed.
        step::Stepper::new()?;
    }
    // JSON is for programs: always English. People get their language.
    crate::i18n::set(if cli.output.json {
        crate::lessons::Lang::En
    } else {
        cli.output.language()
    });
    match &cli.command {
        Command::Listen(args) => listen::run(args, &cli.output),
        Command::Connect(args) => connect::run(args, &cli.output),
        Command::Tour(args) => tour::run(args, &cli.output),
        Command::Explain(args) => explain::run(args, &cli.output),
        Command::Watch(args) => watch::run(args, &cli.output),
    }
}

/// The sink, asking the teacher before every socket call when `--step` is on.
pub(crate) fn stepping(
    sink: crate::engine::event::Sink,
    output: &crate::cli::OutputArgs,
) -> anyhow::Result<crate::engine::event::Sink> {
    Ok(if output.step {
        sink.with_stepper(std::sync::Arc::new(step::Stepper::new()?))
    } else {
        sink
    })
}

/// Ctrl-C (SIGINT) and SIGTERM: say why, then `stop()`. A second Ctrl-C
/// leaves at once (exit status 130), in case stopping hangs.
pub(crate) fn on_ctrl_c(
    ctx: &crate::engine::conn::Ctx,
    why: String,
    stop: impl Fn() + Send + 'static,
) -> anyhow::Result<()> {
    let ctx = ctx.clone();
    let asked = std::sync::atomic::AtomicBool::new(false);
    ctrlc::set_handler(move || {
        if asked.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(130);
        }
        ctx.note(crate::engine::event::Stage::Close, "stopping", why.clone());
        stop();
    })?;
    Ok(())
}

/// How to reach `addr` from this machine: a server on every interface
/// (0.0.0.0, ::) is reached through loopback.
pub(crate) fn here(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// Said once where the kernel cannot be asked about states.
pub(crate) fn platform_text() -> String {
    t!(
        "this OS does not let sockdemo read TCP states from the kernel: the states shown are inferred from the protocol",
        "这个操作系统不允许 sockdemo 从内核读取 TCP 状态：下面显示的状态都是根据协议推断的"
    )
}

/// The summary of a server run, as a note with its numbers as facts.
pub(crate) fn summary_note(ctx: &crate::engine::conn::Ctx, s: &crate::engine::server::Summary) {
    let mut facts = serde_json::Map::new();
    facts.insert("clients".into(), s.clients.into());
    facts.insert("refused".into(), s.refused.into());
    facts.insert("peak".into(), s.peak.into());
    facts.insert("bytes_in".into(), s.bytes_in.into());
    facts.insert("bytes_out".into(), s.bytes_out.into());
    ctx.note_with(
        crate::engine::event::Stage::Close,
        "summary",
        {
            let (clients, peak, refused, bytes_in, bytes_out) = (s.clients, s.peak, s.refused, s.bytes_in, s.bytes_out);
            let noun = if clients == 1 { "client" } else { "clients" };
            t!(
                "summary: served {clients} {noun} (at most {peak} at once, {refused} refused); {bytes_in} bytes in, {bytes_out} bytes out",
                "总结：服务了 {clients} 个客户端（同时最多 {peak} 个，拒绝 {refused} 个）；收到 {bytes_in} 字节，发出 {bytes_out} 字节"
            )
        },
        facts,
    );
}
