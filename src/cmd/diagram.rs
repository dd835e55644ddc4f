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
    let text = format.render(&kit.rec.snapshot(), title);
    replace::write(path, text.as_bytes())?;
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
