//! `--diagram FILE` for `tour` and `explain --demo`: when the run ends, its
//! timeline is written as a sequence diagram for slides. The drawing is
//! [`crate::render::diagram`]; this is the glue around a run: check the
//! path before it, write the file after it ([`replace`], which never
//! writes through a symbolic link).

pub(super) mod replace;

use super::kit::Kit;
use crate::engine::errors::UsageError;
use crate::engine::event::Stage;
use crate::render::diagram::Format;
use crate::t;
use std::path::Path;

/// Runs `run`, then (with a path) writes the diagram of every event it
/// recorded. The folder is checked first, so a typo fails at once rather
/// than after the whole run.
pub fn after(
    path: Option<&Path>,
    pages: bool,
    kit: &Kit,
    title: &str,
    run: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let Some(path) = path else {
        return run();
    };
    // clap has checked the extension already; this keeps the rule in one place.
    let format = Format::from_path(path).map_err(UsageError)?;
    replace::check(path)?;
    run()?;
    // The run is over: its servers, clients and packet capture have
    // stopped, so the recorder holds every event the timeline showed.
    let shown = write(path, format, pages, &kit.rec.snapshot(), title)?;
    kit.say(
        Stage::Close,
        "diagram",
        t!(
            "the sequence diagram of this run is in {shown}",
            "这次运行的时序图已写入 {shown}"
        ),
    );
    Ok(())
}

/// Writes the diagram of `events` to `path`, or with `pages` as
/// `NAME-1.svg`, `NAME-2.svg`… beside it; returns what to tell.
pub fn write(
    path: &Path,
    format: Format,
    pages: bool,
    events: &[crate::engine::event::Event],
    title: &str,
) -> anyhow::Result<String> {
    if !pages {
        replace::write(path, format.render(events, title).as_bytes())?;
        return Ok(path.display().to_string());
    }
    let texts = format.render_pages(events, title);
    let n = texts.len();
    for (k, text) in texts.iter().enumerate() {
        replace::write(&page_path(path, k + 1, n), text.as_bytes())?;
    }
    let first = page_path(path, 1, n).display().to_string();
    let last = page_path(path, n, n).display().to_string();
    Ok(match n {
        1 => first,
        _ => t!(
            "{n} pages, {first} to {last}",
            "共 {n} 页，从 {first} 到 {last}"
        ),
    })
}

/// `tour.svg` → `tour-1.svg`, `tour-2.svg`… (a single page keeps its name).
fn page_path(path: &Path, page: usize, pages: usize) -> std::path::PathBuf {
    if pages == 1 {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map_or_else(Default::default, |s| s.to_string_lossy().into_owned());
    let ext = path
        .extension()
        .map_or_else(Default::default, |e| e.to_string_lossy().into_owned());
    path.with_file_name(format!("{stem}-{page}.{ext}"))
}
