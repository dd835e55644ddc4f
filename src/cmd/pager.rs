//! A lesson longer than the window goes through a pager, as git and bat
//! do: `$PAGER` if it is set, else `less -R` (which keeps the colours).
//! Only on a terminal: a pipe or a file gets the text as it is, and
//! `explain --no-pager` prints it straight.

use std::io::{IsTerminal, Write};
use std::process::{Command, Stdio};

/// Shows `text` through a pager when stdout is a terminal and the text is
/// taller than it. Returns false when no pager was used (print it then).
pub fn show(text: &str) -> bool {
    if !std::io::stdout().is_terminal() {
        return false;
    }
    let rows = terminal_size::terminal_size().map_or(24, |(_, h)| h.0 as usize);
    if text.lines().count() < rows {
        return false;
    }
    let Some(mut pager) = command() else {
        return false;
    };
    let Ok(mut child) = pager.stdin(Stdio::piped()).spawn() else {
        return false;
    };
    if let Some(mut stdin) = child.stdin.take() {
        // The reader may quit before the end (q in less): not an error.
        let _ = stdin.write_all(text.as_bytes());
    }
    let _ = child.wait();
    true
}

/// `$PAGER` split into words (empty: no pager), else `less -R`. `LESS`
/// gets F, X and S unless the user set it: less then quits at once when
/// the text fits, leaves it on the screen, and scrolls wide lines sideways.
fn command() -> Option<Command> {
    let words = match std::env::var("PAGER") {
        Ok(pager) => shell_words::split(&pager).ok()?,
        Err(_) => vec!["less".to_string(), "-R".to_string()],
    };
    let (program, args) = words.split_first()?;
    let mut command = Command::new(program);
    command.args(args);
    if std::env::var_os("LESS").is_none() {
        // S: long lines (a lesson's wide diagram) are not folded but
        // scrolled sideways, so the diagram stays whole.
        command.env("LESS", "FRXS");
    }
    Some(command)
}
