//! `trace` on a machine and a terminal: `--one-cpu` keeps the traced
//! program on the tracer's CPU (so a stop costs a switch on one CPU, not a
//! wake-up of another), without it the program may use every CPU it could
//! before; and Ctrl-C on the terminal ends the program and the trace.
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

/// Ctrl-C on the terminal stops the traced program and the trace: the
/// keystroke reaches the program (it is in the terminal's foreground
/// group), sockdemo waits for it to end, and exits with its status (130
/// for Python's death by SIGINT).
#[test]
fn ctrl_c_on_the_terminal_stops_the_program_and_the_trace() {
    use std::io::Write;
    let program = "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); \
                   print('waiting', flush=True); s.accept()";
    let mut cmd = std::process::Command::new("script");
    cmd.args([
        "-qec",
        &format!(
            "{} trace --packets off --color never -- python3 -u -c \"{program}\"",
            bin()
        ),
        "/dev/null",
    ]);
    cmd.env("LC_ALL", "C.UTF-8").env("TERM", "xterm");
    let mut traced = Running::start(cmd);
    // Its line is out: the program runs (in accept(), or about to be).
    traced.wait_line("the program's line", |l| l.contains("P› waiting"));
    let stdin = traced.stdin.as_mut().expect("the terminal's keyboard");
    stdin.write_all(b"\x03").unwrap();
    stdin.flush().unwrap();
    let (status, lines, _) = traced.finish();
    let all = lines.join("\n");
    assert!(all.contains("killed by SIGINT (exit status 130)"), "{all}");
    assert_eq!(status.code(), Some(130), "sockdemo's own status: {all}");
    assert!(
        all.contains("summary"),
        "the trace ended with its summary: {all}"
    );
}
