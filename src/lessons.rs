//! Lessons are data: one Markdown file per lesson and language under
//! `lessons/en` and `lessons/zh`, embedded in the binary at build time.
//! A teacher's folder (`--lessons DIR`) can add lessons or replace ours.
//!
//! Each file starts with a small header (see docs/lesson-format.md):
//!
//! ```text
//! ---
//! format: 1
//! id: tcp-vs-udp
//! order: 5
//! title: TCP and UDP
//! summary: A connection and a stream, or no connection and datagrams.
//! demo: tcp-vs-udp
//! ---
//! ```
//!
//! Where a claim depends on the kernel, the body may show this machine's
//! setting with `{{sysctl NAME}}`, filled in when the lesson is shown
//! ([`sysctl`], which holds the allow-list of names).
//!
//! A teacher's folder may hold anything, even a file copied from the web
//! with an escape sequence in it (OSC 52 writes to the clipboard, CSI 2J
//! clears the screen) or a right-to-left override. So every text a lesson
//! carries is cleaned by [`crate::sanitize::text`] as it is read, the same
//! rules as network bytes: title, summary and body, ours and a teacher's
//! alike, for the terminal and for `--json`. Markdown can still make such a
//! character from plain ASCII (`&#27;`), so the renderer cleans what the
//! parser hands it again ([`crate::render::markdown`]).

pub mod sysctl;

use crate::sanitize;
use include_dir::{include_dir, Dir};
use std::fmt;
use std::path::Path;

/// The lessons shipped with sockdemo.
static EMBEDDED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/lessons");

/// The header format this build understands.
pub const FORMAT: u32 = 1;

/// The language of a lesson and of the narration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// English
    En,
    /// Simplified Chinese (简体中文)
    Zh,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }

    pub const ALL: [Lang; 2] = [Lang::En, Lang::Zh];

    /// The language asked for by the environment: LC_ALL, then
    /// LC_MESSAGES, then LANG (the order POSIX gives them), "zh…" means Chinese.
    pub fn from_env() -> Lang {
        Lang::from_vars(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with the variables looked up by `get`.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Lang {
        for var in ["LC_ALL", "LC_MESSAGES", "LANG"] {
            match get(var) {
                // The first variable that is set decides, as for setlocale(3).
                Some(value) if !value.is_empty() => {
                    return if value.starts_with("zh") {
                        Lang::Zh
                    } else {
                        Lang::En
                    };
                }
                _ => {}
            }
        }
        Lang::En
    }
}

/// One lesson in one language.
#[derive(Clone, Debug)]
pub struct Lesson {
    pub id: String,
    pub order: u32,
    pub title: String,
    pub summary: String,
    /// The live demonstration `explain ID --demo` runs, if any.
    pub demo: Option<String>,
    pub lang: Lang,
    /// The Markdown after the header.
    pub body: String,
    /// Where it came from, for error messages: "embedded:en/05-tcp-vs-udp.md" or a path.
    pub origin: String,
}

impl Lesson {
    /// The body as the student sees it: every `{{sysctl NAME}}` replaced by
    /// this machine's value, read now (see [`sysctl`]), and that value
    /// cleaned like the rest.
    pub fn shown_body(&self) -> String {
        sanitize::text(&sysctl::fill(&self.body, self.lang)).into_owned()
    }
}

/// A lesson file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LessonError {
    pub origin: String,
    pub problem: String,
}

impl fmt::Display for LessonError {
    /// The problem quotes the file (a header line, a value) and the origin
    /// is a file name: both are cleaned before they reach the terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (origin, problem) = (sanitize::text(&self.origin), sanitize::text(&self.problem));
        write!(f, "{origin}: {problem}")
    }
}

impl std::error::Error for LessonError {}

/// Parses one lesson file. Its text comes out cleaned (see the module's
/// comment): what the header or the body holds that a terminal would obey
/// or hide is written out as an escape, `\x1b` or `\u{202e}`.
pub fn parse(origin: &str, lang: Lang, text: &str) -> Result<Lesson, LessonError> {
    let fail = |problem: String| LessonError {
        origin: origin.to_string(),
        problem,
    };
    // A leading byte-order mark is the editor's, not the teacher's: dropped.
    // Windows line ends are line ends; any other CR is escaped below.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = text.replace("\r\n", "\n");
    let text = sanitize::text(&text);
    let rest = text
        .strip_prefix("---\n")
        .ok_or_else(|| fail("a lesson starts with a header between two '---' lines".into()))?;
    let end = rest
        .find("\n---")
        .ok_or_else(|| fail("the header has no closing '---' line".into()))?;
    let (header, body) = (&rest[..end], &rest[end + 4..]);
    let body = body.trim_start_matches('\n').to_string();

    let (mut format, mut id, mut order, mut title, mut summary, mut demo) =
        (None, None, None, None, None, None);
    for (n, line) in header.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once(':').ok_or_else(|| {
            fail(format!(
                "header line {}: expected 'key: value', got '{line}'",
                n + 2
            ))
        })?;
        let value = value.trim().to_string();
        match key.trim() {
            "format" => {
                format = Some(
                    value
                        .parse::<u32>()
                        .map_err(|_| fail(format!("format '{value}' is not a number")))?,
                )
            }
            "id" => id = Some(value),
            "order" => {
                order = Some(
                    value
                        .parse::<u32>()
                        .map_err(|_| fail(format!("order '{value}' is not a number")))?,
                )
            }
            "title" => title = Some(value),
            "summary" => summary = Some(value),
            "demo" => demo = (!value.is_empty() && value != "none").then_some(value),
            other => {
                return Err(fail(format!(
                    "unknown header key '{other}' (known: format, id, order, title, summary, demo)"
                )))
            }
        }
    }
    let format = format.ok_or_else(|| fail("the header needs 'format: 1'".into()))?;
    if format != FORMAT {
        return Err(fail(format!(
            "format {format} is not understood by this sockdemo (it reads format {FORMAT})"
        )));
    }
    // Placeholders are filled in the body only, so a header must not have one.
    for value in [&title, &summary].into_iter().flatten() {
        if sysctl::has_placeholder(value) {
            return Err(fail(format!(
                "'{value}': a {{{{sysctl …}}}} placeholder belongs in the body, not the header"
            )));
        }
    }
    sysctl::check(&body).map_err(fail)?;
    let id = id.ok_or_else(|| fail("the header needs an 'id'".into()))?;
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(fail(format!(
            "id '{id}' must be lowercase letters, digits and '-'"
        )));
    }
    Ok(Lesson {
        id,
        order: order.ok_or_else(|| fail("the header needs an 'order'".into()))?,
        title: title.ok_or_else(|| fail("the header needs a 'title'".into()))?,
        summary: summary.ok_or_else(|| fail("the header needs a 'summary'".into()))?,
        demo,
        lang,
        body,
        origin: origin.to_string(),
    })
}

/// The embedded lessons of one language, in teaching order.
pub fn embedded(lang: Lang) -> Result<Vec<Lesson>, LessonError> {
    let mut lessons = Vec::new();
    if let Some(dir) = EMBEDDED.get_dir(lang.code()) {
        for file in dir.files() {
            if file.path().extension().is_some_and(|e| e == "md") {
                let origin = format!("embedded:{}", file.path().display());
                let text = file.contents_utf8().ok_or_else(|| LessonError {
                    origin: origin.clone(),
                    problem: "not UTF-8".into(),
                })?;
                lessons.push(parse(&origin, lang, text)?);
            }
        }
    }
    lessons.sort_by_key(|l| l.order);
    Ok(lessons)
}

/// A teacher's lessons from `dir` (`dir/en/*.md`, `dir/zh/*.md`, or
/// `*.md` directly in `dir` for the chosen language).
pub fn from_dir(dir: &Path, lang: Lang) -> Result<Vec<Lesson>, LessonError> {
    let sub = dir.join(lang.code());
    let folder = if sub.is_dir() { sub } else { dir.to_path_buf() };
    let entries = std::fs::read_dir(&folder).map_err(|e| LessonError {
        origin: folder.display().to_string(),
        problem: format!("cannot read this folder: {e}"),
    })?;
    let mut lessons = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "md")
            && path.file_name().is_none_or(|n| n != "README.md")
        {
            let origin = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| LessonError {
                origin: origin.clone(),
                problem: e.to_string(),
            })?;
            lessons.push(parse(&origin, lang, &text)?);
        }
    }
    Ok(lessons)
}

/// The lessons to show: ours, with a teacher's folder laid over them (a
/// lesson with the same id replaces ours; a new id is added).
pub fn load(lang: Lang, teacher_dir: Option<&Path>) -> Result<Vec<Lesson>, LessonError> {
    let mut lessons = embedded(lang)?;
    if let Some(dir) = teacher_dir {
        for lesson in from_dir(dir, lang)? {
            match lessons.iter_mut().find(|l| l.id == lesson.id) {
                Some(ours) => *ours = lesson,
                None => lessons.push(lesson),
            }
        }
    }
    lessons.sort_by_key(|l| l.order);
    Ok(lessons)
}

/// The commands a lesson tells the student to try: every line of a fenced
/// code block whose info string is `try`.
pub fn try_commands(body: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut inside = false;
    for line in body.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            inside = !inside && trimmed.trim_start_matches('`').trim() == "try";
            continue;
        }
        if inside && !trimmed.is_empty() && !trimmed.starts_with('#') {
            commands.push(trimmed.to_string());
        }
    }
    commands
}

/// The closest lesson id to what was typed, for "did you mean".
pub fn suggest<'a>(typed: &str, lessons: &'a [Lesson]) -> Option<&'a str> {
    lessons
        .iter()
        .map(|l| (strsim::jaro_winkler(typed, &l.id), l.id.as_str()))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "---\nformat: 1\nid: demo-one\norder: 3\ntitle: A title\nsummary: One line.\ndemo: none\n---\n\n# Body\n\n```try\nsockdemo tour\n# a comment\n```\n";

    #[test]
    fn parses_a_header() {
        let l = parse("x.md", Lang::En, GOOD).unwrap();
        assert_eq!(
            (l.id.as_str(), l.order, l.title.as_str(), l.demo.as_deref()),
            ("demo-one", 3, "A title", None)
        );
        assert!(l.body.starts_with("# Body"));
        assert_eq!(try_commands(&l.body), ["sockdemo tour"]);
    }

    #[test]
    fn rejects_broken_headers() {
        for (text, words) in [
            ("# no header", "starts with a header"),
            ("---\nformat: 1\nid: a\n", "closing"),
            (
                "---\nformat: 2\nid: a\norder: 1\ntitle: t\nsummary: s\n---\n",
                "format 2",
            ),
            (
                "---\nformat: 1\nid: A b\norder: 1\ntitle: t\nsummary: s\n---\n",
                "lowercase",
            ),
            (
                "---\nformat: 1\nid: a\ntitle: t\nsummary: s\n---\n",
                "order",
            ),
            (
                "---\nformat: 1\nid: a\norder: 1\ntitle: t\nsummary: s\ncolour: red\n---\n",
                "unknown header key",
            ),
            (
                "---\nformat: 1\nid: a\norder: 1\ntitle: {{sysctl net.core.somaxconn}}\nsummary: s\n---\n",
                "belongs in the body",
            ),
            (
                "---\nformat: 1\nid: a\norder: 1\ntitle: t\nsummary: s\n---\nsee {{sysctl kernel.hostname}}\n",
                "may not show",
            ),
        ] {
            let err = parse("x.md", Lang::En, text).unwrap_err();
            assert!(err.problem.contains(words), "{text:?}: {err}");
        }
    }

    #[test]
    fn language_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(Lang::from_vars(env(&[])), Lang::En);
        assert_eq!(Lang::from_vars(env(&[("LANG", "zh_CN.UTF-8")])), Lang::Zh);
        assert_eq!(
            Lang::from_vars(env(&[("LANG", "zh_CN.UTF-8"), ("LC_ALL", "C")])),
            Lang::En
        );
        assert_eq!(
            Lang::from_vars(env(&[("LANG", "en_US.UTF-8"), ("LC_MESSAGES", "zh_TW")])),
            Lang::Zh
        );
        assert_eq!(
            Lang::from_vars(env(&[("LC_ALL", ""), ("LANG", "zh_CN")])),
            Lang::Zh
        );
    }
}
