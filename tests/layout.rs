//! The timeline fits the terminal it is shown on, from a 40-column pane
//! to a 160-column window: no line is wider than the terminal, and no call
//! is split from its result ("setsockopt(…) =" / "0").
#![cfg(target_os = "linux")]

mod common;

use common::*;

/// The tour on a pseudo-terminal `cols` wide (util-linux `script`).
fn tour_at(cols: usize) -> String {
    tour_with(cols, "off")
}

/// The tour on a pseudo-terminal `cols` wide, with `--packets packets`.
fn tour_with(cols: usize, packets: &str) -> String {
    let mut cmd = std::process::Command::new("script");
    cmd.args([
        "-qec",
        &format!(
            "stty cols {cols} rows 40; {} tour --color never --packets {packets} --pace 0",
            bin()
        ),
        "/dev/null",
    ]);
    cmd.env("LC_ALL", "C.UTF-8").env("TERM", "xterm");
    let out = run(cmd, b"");
    assert_eq!(out.code(), 0, "{}", out.stdout);
    out.stdout.replace("\r\n", "\n")
}

#[test]
fn the_tour_fits_every_width_and_keeps_calls_with_their_results() {
    for cols in [40, 60, 80, 100, 160] {
        let text = tour_at(cols);
        assert!(text.contains("summary"), "{cols}: the whole tour");
        for line in text.lines() {
            let width = textwrap::core::display_width(line);
            assert!(width <= cols, "{cols} columns, a line of {width}: {line:?}");
            let body = line.trim();
            assert!(
                !(body.starts_with("= ") || body == "0" || body == "= 0"),
                "{cols} columns: a result apart from its call: {line:?}"
            );
        }
        // Each call line ends with its result on the same line.
        assert!(
            text.lines()
                .any(|l| l.contains("SO_REUSEADDR") || l.contains(") = 0")),
            "{cols}"
        );
    }
}

/// A lesson's diagram is never rewrapped: where it is wider than the
/// window it is shown whole, after a line that says so.
#[test]
fn a_wide_lesson_diagram_is_whole_with_a_word_when_the_window_is_narrow() {
    let lesson = |cols: usize| {
        let mut cmd = std::process::Command::new("script");
        cmd.args([
            "-qec",
            &format!(
                "stty cols {cols} rows 40; {} explain handshake --no-pager --color never",
                bin()
            ),
            "/dev/null",
        ]);
        cmd.env("LC_ALL", "C.UTF-8").env("TERM", "xterm");
        run(cmd, b"").stdout.replace("\r\n", "\n")
    };
    let narrow = lesson(50);
    assert!(narrow.contains("columns wide"), "{narrow}");
    // The diagram's own line, whole.
    assert!(narrow
        .lines()
        .any(|l| l.contains("SYN-SENT     ---- SYN  seq=x ---------------->    SYN-RECEIVED")));
    let wide = lesson(120);
    assert!(!wide.contains("columns wide"), "it fits at 120");
}

/// The tour explains each kind of call the first time: C2's and C3's
/// socket() are shown bare; --verbose explains every one.
#[test]
fn the_tour_explains_each_kind_of_call_once_unless_verbose() {
    let explained = |extra: &[&str]| {
        let mut args = vec![
            "tour",
            "--color",
            "never",
            "--packets",
            "off",
            "--pace",
            "none",
        ];
        args.extend_from_slice(extra);
        let out = run(sockdemo(&args), b"");
        assert_eq!(out.code(), 0, "{}", out.stderr);
        let calls = out.stdout.matches("socket(AF_INET").count();
        let whys = out.stdout.matches("with no address yet").count();
        (calls, whys)
    };
    assert_eq!(
        explained(&[]),
        (2, 1),
        "the server's socket and C1's, explained once; C2 and C3 did the same, one line each"
    );
    assert_eq!(explained(&["--verbose"]), (4, 3), "each client's explained");
}

/// The default tour (3 clients), as a class sees it: about a screen per
/// stage at 60 and 100 columns, the later clients told in one line each.
#[test]
fn the_default_tour_shows_about_a_screen_per_stage() {
    for cols in [60, 100] {
        let text = tour_with(cols, "auto");
        let mut stages: Vec<(String, usize)> = Vec::new();
        for line in text.lines() {
            if line.starts_with("── ") {
                stages.push((line.to_string(), 0));
            } else if let Some(stage) = stages.last_mut() {
                stage.1 += 1;
            }
        }
        assert_eq!(stages.len(), 5, "{cols} columns: five stages\n{text}");
        for (heading, lines) in &stages {
            assert!(
                *lines <= 64,
                "{cols} columns: {lines} lines in {heading}\n{text}"
            );
        }
        assert_eq!(text.matches(" events as C1 (").count(), 6, "{text}");
    }
}

/// --pace takes a name or seconds, and says what it takes when it is neither.
#[test]
fn pace_takes_names_or_seconds() {
    for pace in ["slow", "normal", "fast", "none", "0.2"] {
        let out = run(
            sockdemo(&["tour", "-c", "1", "--pace", pace, "--help"]),
            b"",
        );
        assert_eq!(out.code(), 0, "--pace {pace}: {}", out.stderr);
    }
    let out = run(sockdemo(&["tour", "--pace", "quick"]), b"");
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr.contains("slow, normal, fast, none"),
        "{}",
        out.stderr
    );
}
