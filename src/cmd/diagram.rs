//! `--diagram FILE` for `tour` and `explain --demo`: when the run ends, its
//! timeline is written as a sequence diagram for slides. The drawing is
//! [`crate::render::diagram`]; this is the glue around a run: check the
//! path before it, write the file after it.

use super::kit::Kit;
use crate::engine::errors::UsageError;
use crate::engine::event::Stage;
use crate::render::diagram::Format;
use crate::t;
use anyhow::Context;
use std::path::Path;

/// Runs `run`, then (with a path) writes the diagram of every event it
/// recorded. The folder is checked first, so a typo fails at once rather
/// than after the whole run.
pub fn after(
    path: Option<&Path>,
    kit: &Kit,
    title: &str,
    run: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let Some(path) = path else {
        return run();
    };
    // clap has checked the extension already; this keeps the rule in one place.
    let format = Format::from_path(path).map_err(UsageError)?;
    check_folder(path)?;
    run()?;
    // The run is over: its servers, clients and packet capture have
    // stopped, so the recorder holds every event the timeline showed.
    let text = format.render(&kit.rec.snapshot(), title);
    std::fs::write(path, text)
        .with_context(|| format!("cannot write the diagram to {}", path.display()))?;
    let shown = path.display();
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

/// The folder must exist and the path must not be a folder.
fn check_folder(path: &Path) -> anyhow::Result<()> {
    let shown = path.display();
    if path.is_dir() {
        anyhow::bail!("cannot write the diagram to {shown}: it is a folder");
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        anyhow::bail!(
            "cannot write the diagram to {shown}: the folder {} does not exist",
            parent.display()
        );
    }
    Ok(())
}
