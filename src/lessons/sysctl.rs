//! This machine's kernel settings inside a lesson's text.
//!
//! Some claims depend on the kernel: how often a SYN is sent again, how
//! long the accept queue may grow, which ports are ephemeral. A lesson says
//! so, and shows the value of the machine it is read on, taken from
//! `/proc/sys/net` when the lesson is shown:
//!
//! ```text
//! Linux caps the backlog at net.core.somaxconn ({{sysctl net.core.somaxconn}} here).
//! ```
//!
//! Only the settings in [`ALLOWED`] may be named. A teacher's folder
//! (`explain --lessons DIR`) goes through the same code, and a lesson must
//! not be a way to print any file of the machine: the path is built from
//! the allow-list, never from the lesson's text. A value is shown only if it
//! looks like what such a setting holds (digits); a missing file (macOS,
//! Windows, a kernel without that setting) or anything else is shown as a
//! phrase in the lesson's language, never as the raw placeholder.

use super::Lang;
use std::io::Read;

/// What a setting's file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// One number: `6`.
    Number,
    /// Two numbers, a range: `32768 60999` (a tab between), shown as `32768-60999`.
    Range,
}

/// The settings a lesson may show: sysctl names under `/proc/sys/net`.
const ALLOWED: [(&str, Shape); 10] = [
    ("net.core.somaxconn", Shape::Number),
    ("net.ipv4.ip_local_port_range", Shape::Range),
    ("net.ipv4.ip_unprivileged_port_start", Shape::Number),
    ("net.ipv4.tcp_fin_timeout", Shape::Number),
    ("net.ipv4.tcp_max_syn_backlog", Shape::Number),
    ("net.ipv4.tcp_retries2", Shape::Number),
    ("net.ipv4.tcp_syn_linear_timeouts", Shape::Number),
    ("net.ipv4.tcp_syn_retries", Shape::Number),
    ("net.ipv4.tcp_synack_retries", Shape::Number),
    ("net.ipv4.tcp_tw_reuse", Shape::Number),
];

/// The names a lesson may use, for messages and documentation.
pub fn allowed_names() -> impl Iterator<Item = &'static str> {
    ALLOWED.iter().map(|(name, _)| *name)
}

/// A placeholder starts with these characters; `{{` followed by anything
/// else is ordinary text (a lesson may quote code that has `{{`).
const OPEN: &str = "{{";
const KEYWORD: &str = "sysctl";
const CLOSE: &str = "}}";

/// One `{{sysctl NAME}}` found in a text.
struct Placeholder {
    /// Byte range of the whole placeholder, braces included.
    start: usize,
    end: usize,
    /// The setting it names, or why it cannot be shown.
    setting: Result<(&'static str, Shape), String>,
}

/// Every placeholder in `text`, in order.
fn placeholders(text: &str) -> Vec<Placeholder> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(OPEN).map(|i| from + i) {
        let after = &text[at + OPEN.len()..];
        let Some(rest) = after.trim_start_matches(' ').strip_prefix(KEYWORD) else {
            from = at + OPEN.len();
            continue;
        };
        let inner_start = text.len() - rest.len();
        let line = &rest[..rest.find('\n').unwrap_or(rest.len())];
        let Some(close) = line.find(CLOSE) else {
            found.push(Placeholder {
                start: at,
                end: inner_start + line.len(),
                setting: Err(format!(
                    "'{}' has no closing '}}}}' on its line",
                    &text[at..inner_start + line.len()]
                )),
            });
            from = inner_start + line.len();
            continue;
        };
        let end = inner_start + close + CLOSE.len();
        let name = line[..close].trim();
        let setting = ALLOWED
            .iter()
            .find(|(allowed, _)| *allowed == name)
            .map(|&(allowed, shape)| (allowed, shape))
            .ok_or_else(|| {
                format!(
                    "'{}' names a setting a lesson may not show; the allowed ones are {}",
                    &text[at..end],
                    allowed_names().collect::<Vec<_>>().join(", ")
                )
            });
        found.push(Placeholder {
            start: at,
            end,
            setting,
        });
        from = end;
    }
    found
}

/// Checks every placeholder in `text`: the first problem, if any.
pub fn check(text: &str) -> Result<(), String> {
    match placeholders(text).into_iter().find_map(|p| p.setting.err()) {
        Some(problem) => Err(problem),
        None => Ok(()),
    }
}

/// Whether `text` has a placeholder at all, well-formed or not.
pub fn has_placeholder(text: &str) -> bool {
    !placeholders(text).is_empty()
}

/// `text` with every placeholder replaced by this machine's value.
pub fn fill(text: &str, lang: Lang) -> String {
    fill_with(text, lang, read_proc)
}

/// [`fill`] with the files read by `read` (given a path under /proc/sys).
pub fn fill_with(text: &str, lang: Lang, read: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for p in placeholders(text) {
        out.push_str(&text[copied..p.start]);
        let value = p.setting.ok().and_then(|(name, shape)| {
            let raw = read(&path_of(name))?;
            sanitize(&raw, shape)
        });
        out.push_str(&value.unwrap_or_else(|| not_available(lang).to_string()));
        copied = p.end;
    }
    out.push_str(&text[copied..]);
    out
}

/// `net.ipv4.tcp_syn_retries` → `/proc/sys/net/ipv4/tcp_syn_retries`,
/// for the names of [`ALLOWED`] only (they hold no `/` and no `..`).
fn path_of(name: &str) -> String {
    format!("/proc/sys/{}", name.replace('.', "/"))
}

/// The file's first bytes: a setting is a line of a few characters.
fn read_proc(path: &str) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(64)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The value as it may be shown: digits only (a range as `A-B`), or `None`.
fn sanitize(raw: &str, shape: Shape) -> Option<String> {
    let number = |s: &str| {
        (!s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.to_string())
    };
    let words: Vec<&str> = raw.split_ascii_whitespace().collect();
    match (shape, words.as_slice()) {
        (Shape::Number, [one]) => number(one),
        (Shape::Range, [low, high]) => Some(format!("{}-{}", number(low)?, number(high)?)),
        _ => None,
    }
}

/// What a lesson shows where this machine has no such setting.
fn not_available(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "(not available on this system)",
        Lang::Zh => "（本系统上没有这项设置）",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake /proc: the files present and what they hold.
    fn proc(files: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |path: &str| {
            files
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn a_setting_is_replaced_by_its_value() {
        let read = proc(&[
            ("/proc/sys/net/ipv4/tcp_syn_retries", "6\n"),
            ("/proc/sys/net/ipv4/ip_local_port_range", "32768\t60999\n"),
        ]);
        assert_eq!(
            fill_with(
                "retries: {{sysctl net.ipv4.tcp_syn_retries}}; ports {{ sysctl  net.ipv4.ip_local_port_range }}.",
                Lang::En,
                &read
            ),
            "retries: 6; ports 32768-60999."
        );
    }

    #[test]
    fn a_missing_file_is_said_in_the_lessons_language() {
        let read = proc(&[]);
        let text = "linear: {{sysctl net.ipv4.tcp_syn_linear_timeouts}}";
        assert_eq!(
            fill_with(text, Lang::En, &read),
            "linear: (not available on this system)"
        );
        assert_eq!(
            fill_with(text, Lang::Zh, &read),
            "linear: （本系统上没有这项设置）"
        );
    }

    /// Only digits are shown: anything else in the file is not trusted.
    #[test]
    fn values_are_digits_only() {
        for bad in ["", "-1", "6 7", "\x1b[31m6", "12345678901", "six", "6;rm"] {
            let read = move |_: &str| Some(bad.to_string());
            assert_eq!(
                fill_with("{{sysctl net.core.somaxconn}}", Lang::En, read),
                "(not available on this system)",
                "{bad:?}"
            );
        }
        assert_eq!(sanitize("4096\n", Shape::Number).as_deref(), Some("4096"));
        assert_eq!(sanitize("1 2 3", Shape::Range), None);
        assert_eq!(sanitize("1 x", Shape::Range), None);
    }

    /// A name outside the allow-list never reads a file, and is refused by
    /// the check that runs when a lesson is loaded.
    #[test]
    fn only_allowed_settings_are_read() {
        let asked = std::cell::RefCell::new(Vec::new());
        let read = |path: &str| {
            asked.borrow_mut().push(path.to_string());
            Some("1".to_string())
        };
        for text in [
            "{{sysctl kernel.hostname}}",
            "{{sysctl net.ipv4.../../../etc/passwd}}",
            "{{sysctl /etc/passwd}}",
            "{{sysctl}}",
        ] {
            assert_eq!(
                fill_with(text, Lang::En, read),
                "(not available on this system)"
            );
            let problem = check(text).unwrap_err();
            assert!(problem.contains("may not show"), "{text}: {problem}");
        }
        assert!(asked.borrow().is_empty(), "{:?}", asked.borrow());
        assert!(
            check("{{sysctl net.core.somaxconn}} and {{sysctl net.ipv4.tcp_syn_retries}}").is_ok()
        );
    }

    #[test]
    fn every_allowed_name_maps_into_proc_sys_net() {
        for name in allowed_names() {
            let path = path_of(name);
            assert!(path.starts_with("/proc/sys/net/"), "{path}");
            assert!(!name.contains('/') && !name.contains(".."), "{name}");
        }
    }

    /// `{{` that does not start a placeholder is text; an unclosed
    /// placeholder is an error, and is never printed raw.
    #[test]
    fn other_braces_are_text_and_unclosed_placeholders_are_errors() {
        let read = proc(&[]);
        let code = "int[][] a = {{1, 2}}; // {{ not a placeholder";
        assert_eq!(fill_with(code, Lang::En, &read), code);
        assert!(check(code).is_ok());
        let unclosed = "see {{sysctl net.core.somaxconn\nnext line }}";
        assert!(check(unclosed).unwrap_err().contains("no closing"));
        let shown = fill_with(unclosed, Lang::En, &read);
        assert!(!shown.contains("{{"), "{shown}");
        assert!(shown.ends_with("\nnext line }}"), "{shown}");
    }

    /// On the machine running the tests: every allowed setting that exists
    /// is shown as digits.
    #[test]
    fn this_machines_values_are_digits() {
        for name in allowed_names() {
            let shown = fill(&format!("{{{{sysctl {name}}}}}"), Lang::En);
            assert!(
                shown == not_available(Lang::En)
                    || shown.bytes().all(|b| b.is_ascii_digit() || b == b'-'),
                "{name}: {shown}"
            );
        }
    }
}
