//! The binary: parse the command line, run the command, turn an error into
//! a short message and an exit status. Nothing else here.

use clap::{CommandFactory, Parser};
use sockdemo::cli::Cli;
use sockdemo::engine::errors::Lesson;
use std::process::ExitCode;

fn main() -> ExitCode {
    // A bug in sockdemo should still end in one clear line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("sockdemo: internal error (a bug, please report it): {info}");
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Usage errors exit with 2, --help and --version with 0.
            let _ = e.print();
            if e.kind() == clap::error::ErrorKind::InvalidSubcommand {
                // clap names the unknown word but not the known ones: say what is expected.
                let known: Vec<String> = Cli::command()
                    .get_subcommands()
                    .map(|c| c.get_name().to_string())
                    .collect();
                eprintln!("The commands are: {}.", known.join(", "));
            }
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    match sockdemo::cmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            match err.downcast_ref::<Lesson>() {
                Some(lesson) => {
                    eprintln!("sockdemo: {}", lesson.summary);
                    for line in lesson.explanation.lines() {
                        eprintln!("  {line}");
                    }
                }
                None => eprintln!("sockdemo: {err:#}"),
            }
            ExitCode::from(1)
        }
    }
}
