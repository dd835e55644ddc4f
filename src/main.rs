//! The binary: parse the command line, run the command, turn an error into
//! a short message and an exit status. Nothing else here.
//!
//! Exit status (docs/teachers.md): 0 after a run that ended by itself, 130
//! after Ctrl-C (SIGINT), 143 after SIGTERM (128 + the signal's number, as
//! a shell reports a death by signal), 1 after an error, 2 for a usage
//! error. Whatever happened to stdout or stderr: every print here ignores a
//! failed write, so a closed stderr (`2>&-`, or `2>&1 | head -1` once head
//! has gone) cannot turn a status into a panic (101) or an abort (134).

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser};
use sockdemo::cli::Cli;
use sockdemo::engine::errors::UsageError;
use sockdemo::render::output::to_stderr;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    // A bug in sockdemo should still end in one clear line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        to_stderr(&format!(
            "sockdemo: internal error (a bug, please report it): {info}"
        ));
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(mut e) => {
            let no_tip = e.get(ContextKind::SuggestedSubcommand).is_none()
                && e.get(ContextKind::Suggested).is_none();
            if e.kind() == ErrorKind::InvalidSubcommand && no_tip {
                // clap names an unknown command but not the known ones (unless one is
                // close to what was typed): say what is expected.
                let known: Vec<String> = Cli::command()
                    .get_subcommands()
                    .map(|c| format!("'{}'", c.get_name()))
                    .collect();
                let tip = format!("the commands are {}", known.join(", "));
                e.insert(
                    ContextKind::Suggested,
                    ContextValue::StyledStrs(vec![tip.into()]),
                );
            }
            // Usage errors exit with 2, --help and --version with 0. clap's
            // print returns the write's error instead of panicking: ignored.
            let _ = e.print();
            if e.use_stderr() && std::env::args().any(|a| a == "--json" || a == "-j") {
                // Graders reading JSON Lines see the usage error too.
                let text = e.render().to_string();
                let first = text
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("error: ");
                let line = serde_json::json!({
                    "t": 0.0, "kind": "error", "code": "usage", "error": first, "text": text.trim_end(),
                });
                to_stdout(&line.to_string());
            }
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    match sockdemo::cmd::run(cli) {
        Ok(()) if sockdemo::cmd::shared::chosen_exit().is_some() => {
            // `trace` ends with its program's status.
            let status = sockdemo::cmd::shared::chosen_exit().unwrap_or(0);
            ExitCode::from(status.clamp(0, 255) as u8)
        }
        Ok(()) => match sockdemo::cmd::shared::stopped_by() {
            // Stopped by a signal, cleanly: say which, as a shell would.
            Some(signal) => ExitCode::from(128u8.saturating_add(signal as u8)),
            None => ExitCode::SUCCESS,
        },
        Err(err) if err.downcast_ref::<UsageError>().is_some() => {
            // The same shape as clap's own usage errors.
            let command = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
            let help = match command {
                Some(command) => format!("sockdemo {command} --help"),
                None => "sockdemo --help".to_string(),
            };
            to_stderr(&format!(
                "error: {err}\n\nFor more information, try '{help}'."
            ));
            if std::env::args().any(|a| a == "--json" || a == "-j") {
                let line = serde_json::json!({ "t": 0.0, "kind": "error", "code": "usage", "error": err.to_string(), "text": "" });
                to_stdout(&line.to_string());
            }
            ExitCode::from(2)
        }
        Err(err) => {
            let text = match sockdemo::engine::errors::lesson_of(&err) {
                Some(lesson) => {
                    let mut text = format!("sockdemo: {}", lesson.summary);
                    for line in lesson.explanation.lines() {
                        text.push_str(&format!("\n  {line}"));
                    }
                    text
                }
                None => format!("sockdemo: {err:#}"),
            };
            to_stderr(&text);
            ExitCode::from(1)
        }
    }
}

/// A line on stdout, ignoring a failed write (the reader went away): that
/// must not change the exit status.
fn to_stdout(line: &str) {
    let _ = std::io::stdout()
        .lock()
        .write_all(format!("{line}\n").as_bytes());
}
