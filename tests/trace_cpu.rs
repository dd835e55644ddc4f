//! `trace --one-cpu` keeps the traced program on the tracer's CPU (so a
//! stop costs a switch on one CPU, not a wake-up of another); without it
//! the program may use every CPU it could before.
#![cfg(target_os = "linux")]

mod common;

use common::*;

/// The CPUs the traced program may run on, as it reports them itself.
fn cpus_seen(extra: &[&str]) -> Vec<u64> {
    let mut args = vec!["trace", "--json", "--packets", "off"];
    args.extend_from_slice(extra);
    args.extend([
        "--",
        "python3",
        "-u",
        "-c",
        "import os; print(sorted(os.sched_getaffinity(0)))",
    ]);
    let out = run(sockdemo(&args), b"");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let events = out.events();
    let line = events
        .iter()
        .find(|e| e["kind"] == "note" && e["topic"] == "output")
        .and_then(|e| e["text"].as_str())
        .expect("the program's line")
        .trim_start_matches("P› ")
        .to_string();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"))
}

#[test]
fn one_cpu_keeps_the_program_on_one_cpu_and_the_default_keeps_them_all() {
    // What the same program says when it is not traced.
    let plain = std::process::Command::new("python3")
        .args(["-c", "import os; print(sorted(os.sched_getaffinity(0)))"])
        .output()
        .expect("python3");
    let ours: Vec<u64> = serde_json::from_slice(&plain.stdout).expect("a list of CPUs");
    let all = cpus_seen(&[]);
    assert_eq!(all, ours, "by default, every CPU it may use untraced");
    let one = cpus_seen(&["--one-cpu"]);
    assert_eq!(one.len(), 1, "one CPU: {one:?}");
    assert!(all.contains(&one[0]));
}
