//! One file per subcommand: the glue between the command line, the engine
//! and a renderer.

pub mod connect;
pub mod demos;
pub mod diagram;
pub mod explain;
pub mod kit;
pub mod listen;
pub mod manual;
pub mod pager;
pub mod shared;
pub mod step;
pub mod tour;
pub mod trace;
pub mod udp;
pub mod watch;

use crate::cli::{Cli, Command};

pub fn run(mut cli: Cli) -> anyhow::Result<()> {
    // The command's own --packets and --step, where it has them, travel
    // with the other output options.
    if let Some(teach) = cli.command.teach() {
        cli.output.packets = teach.packets;
        cli.output.step = teach.step;
    }
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
        Command::Trace(args) => trace::run(args, &cli.output),
        Command::Completions { shell } => manual::completions(*shell),
        Command::Man { dir } => manual::man(dir.as_deref()),
    }
}
