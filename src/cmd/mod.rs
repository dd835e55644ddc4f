//! One file per subcommand: the glue between the command line, the engine
//! and a renderer.

pub mod connect;
pub mod demos;
pub mod explain;
pub mod listen;
pub mod tour;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Listen(args) => listen::run(args, &cli.output),
        Command::Connect(args) => connect::run(args, &cli.output),
        Command::Tour(args) => tour::run(args, &cli.output),
        Command::Explain(args) => explain::run(args, &cli.output),
    }
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
        format!(
            "summary: served {} {} (at most {} at once, {} refused); {} bytes in, {} bytes out",
            s.clients,
            if s.clients == 1 { "client" } else { "clients" },
            s.peak,
            s.refused,
            s.bytes_in,
            s.bytes_out
        ),
        facts,
    );
}
