//! JSON Lines: one event per line, the schema in docs/events.md.

use crate::engine::event::Event;

pub fn line(event: &Event) -> String {
    let mut text = serde_json::to_string(event)
        .unwrap_or_else(|e| format!("{{\"kind\":\"error\",\"error\":\"{e}\"}}"));
    text.push('\n');
    text
}
