//! docs/events.md is the schema of `--json`: every field that real runs
//! emit (the tour, a demo, listen and connect, UDP, trace) is named in it,
//! and every field of its tables of common and per-kind fields is seen in
//! those runs.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;

fn schema() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/events.md"))
        .expect("docs/events.md")
}

/// Every key of every event of these runs.
fn emitted() -> BTreeSet<String> {
    let mut runs: Vec<Vec<Value>> = Vec::new();
    let json_of = |args: &[&str]| run(sockdemo(args), b"").events();
    runs.push(json_of(&[
        "tour",
        "--json",
        "--clients",
        "2",
        "--pace",
        "0",
    ]));
    runs.push(json_of(&["explain", "closing", "--demo", "--json"]));
    runs.push(json_of(&["explain", "errors", "--demo", "--json"]));
    runs.push(json_of(&["explain", "tcp-vs-udp", "--demo", "--json"]));
    let (server, addr) = json_server_ready(&[]);
    runs.push(json_of(&["connect", "--json", "--send", "hello", &addr]));
    runs.push(json_of(&[
        "connect",
        "--json",
        "--send",
        "x",
        "127.0.0.1:9",
    ]));
    let (_, lines, _) = server.terminate();
    runs.push(events_of_lines(&lines));
    #[cfg(target_os = "linux")]
    runs.push(json_of(&[
        "trace",
        "--json",
        "--",
        "python3",
        "-c",
        "import socket,threading\n\
         s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen()\n\
         c=socket.create_connection(s.getsockname()); a,_=s.accept()\n\
         t=threading.Thread(target=lambda: a.sendall(a.recv(10))); t.start()\n\
         c.sendall(b'hi'); print(c.recv(10)); t.join(); c.close(); a.close(); s.close()",
    ]));
    let mut keys = BTreeSet::new();
    for events in runs {
        assert!(!events.is_empty(), "a run printed no events");
        for e in events {
            if let Value::Object(map) = e {
                keys.extend(map.keys().cloned());
            }
        }
    }
    keys
}

/// The field names in the first column of the field tables under `heading`
/// (up to the next heading of the same level).
fn table_fields(doc: &str, heading: &str) -> Vec<String> {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"));
    let rest = &doc[start + heading.len()..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    // Only the tables whose header is "| field | …".
    let mut fields = Vec::new();
    let mut in_table = false;
    for line in rest[..end].lines() {
        if line.starts_with("| field ") {
            in_table = true;
        } else if !line.starts_with('|') {
            in_table = false;
        } else if in_table {
            if let Some(name) = line.strip_prefix("| `").and_then(|l| l.split('`').next()) {
                fields.push(name.to_string());
            }
        }
    }
    fields
}

#[test]
fn every_field_emitted_is_documented_and_the_documented_ones_are_emitted() {
    let doc = schema();
    let keys = emitted();
    let undocumented: Vec<&String> = keys
        .iter()
        .filter(|k| !doc.contains(&format!("`{k}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "fields not in docs/events.md: {undocumented:?}"
    );
    for heading in [
        "## Fields every event has",
        "## `\"kind\":\"syscall\"`",
        "## `\"kind\":\"state\"`",
        "## `\"kind\":\"data\"`",
    ] {
        let fields = table_fields(&doc, heading);
        assert!(!fields.is_empty(), "{heading}: a table of fields");
        let missing: Vec<&String> = fields.iter().filter(|f| !keys.contains(*f)).collect();
        assert!(
            missing.is_empty(),
            "{heading}: documented, never emitted: {missing:?}"
        );
    }
}
