//! The lessons' live demonstrations. Each runs real sockets on loopback
//! with the engine, narrated like `tour`, and exits by itself. What a demo
//! decides is only the order of the calls; every result is the kernel's.

mod closing;
mod errors;
mod flush;
mod framing;
mod handshake;
mod ports;
mod udp;

use super::kit::Kit;
use crate::cli::OutputArgs;
use crate::engine::call::Family;
use crate::engine::ctx::Ctx;
use crate::engine::errors::{Lesson, UsageError};
use crate::engine::event::{Proto, Side, Stage};
use crate::render::lens::Lens;
use crate::t;
use std::path::Path;

/// A demo: its name (as lessons write it in their header) and what it runs.
type Demo = fn(&Kit) -> anyhow::Result<()>;

/// Every demo a lesson may name in its header.
pub const DEMOS: &[(&str, Demo)] = &[
    ("socket", |kit| super::tour::tour(kit, 1)),
    ("triple", |kit| super::tour::tour(kit, 3)),
    ("three-stages", |kit| super::tour::tour(kit, 1)),
    ("handshake", handshake::run),
    ("tcp-vs-udp", udp::tcp_vs_udp),
    ("states", |kit| super::tour::tour(kit, 1)),
    ("many-clients", |kit| super::tour::tour(kit, 5)),
    ("send-and-flush", flush::run),
    ("framing", framing::run),
    ("closing", closing::run),
    ("errors", errors::run),
    ("ports", ports::run),
];

/// Runs the demo `name`; with `diagram`, writes its sequence diagram there at the end.
pub fn run(
    name: &str,
    output: &OutputArgs,
    diagram: Option<&Path>,
    pages: bool,
) -> anyhow::Result<()> {
    let Some((_, demo)) = DEMOS.iter().find(|(n, _)| *n == name) else {
        let known: Vec<&str> = DEMOS.iter().map(|(n, _)| *n).collect();
        return Err(UsageError(format!(
            "no demo is called '{name}' (known: {})",
            known.join(", ")
        ))
        .into());
    };
    if let Some(path) = diagram {
        // A bad path fails before the timeline starts, not after its header.
        super::diagram::replace::check(path)?;
    }
    let (kit, renderer) = Kit::start(output, None, None, lens_of(name))?;
    let title = format!("sockdemo explain {name} --demo");
    let result = super::diagram::after(diagram, pages, &kit, &title, || demo(&kit));
    renderer.finish(output.json, result)
}

/// The part of the story a lesson's demo shows: for the demos that run
/// the tour, and the handshake's (its connections also transfer and
/// close, which the tour shows). The others are made for their lesson.
fn lens_of(demo: &str) -> Option<Lens> {
    let all = (Stage::Listen, Stage::Close);
    let to_confirm = (Stage::Listen, Stage::Confirm);
    let (stages, packets, states, whole) = match demo {
        // Sockets and descriptors: the calls that make and free them.
        "socket" => (all, false, false, "sockdemo tour --clients 1"),
        // (IP, protocol, port): the names, each client's own port.
        "triple" => (to_confirm, false, false, "sockdemo tour"),
        // Listen, request, confirm.
        "three-stages" => (to_confirm, true, true, "sockdemo tour --clients 1"),
        // The states, and the calls that move them.
        "states" => (all, false, true, "sockdemo tour --clients 1"),
        // The handshake: what the kernel does before accept() returns.
        "handshake" => (to_confirm, true, true, "sockdemo tour --clients 1"),
        // A socket and a thread for each client.
        "many-clients" => (to_confirm, false, false, "sockdemo tour --clients 5"),
        _ => return None,
    };
    Some(Lens {
        stages,
        packets,
        states,
        whole,
    })
}

/// A failure the demo causes on purpose: shown as an error event with its
/// explanation, on the side (and for the client) that met it; the demo goes on.
pub(crate) fn show_failure(kit: &Kit, who: Option<&str>, lesson: &Lesson) {
    let ctx = match who {
        Some(label) => Ctx {
            side: Side::Client,
            ..kit.story.with_conn(label)
        },
        None => kit.story.clone(),
    };
    ctx.error(
        Stage::Close,
        lesson.code,
        lesson.summary.clone(),
        lesson.explanation.clone(),
    );
}

/// A port on 127.0.0.1 that nothing listens on, found in view: a socket
/// bound to port 0 (the OS picks a free port), then closed. Its calls are
/// on the timeline like every other call the demo makes.
pub(crate) fn free_port(kit: &Kit) -> anyhow::Result<std::net::SocketAddr> {
    kit.say(
        Stage::Request,
        "demo",
        t!(
            "First a port nobody listens on: bind() to port 0 lets the OS pick a free one, and close() frees it again.",
            "先找一个没有人监听的端口：bind() 到端口 0 让操作系统选一个空闲端口，close() 再把它释放。"
        ),
    );
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let mut ctx = Ctx::new(&kit.sink, Side::Client, Proto::Tcp);
    let probe = ctx.socket(Family::of(&any), true)?;
    let addr = ctx.bind(&probe, any)?;
    ctx.close(probe);
    Ok(addr)
}
