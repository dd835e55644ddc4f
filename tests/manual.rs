//! `sockdemo completions SHELL` and `sockdemo man`: made from the same
//! definitions as `--help`, so every command appears in both.

mod common;

use common::*;

/// The commands, as `--help` lists them.
const COMMANDS: [&str; 8] = [
    "listen",
    "connect",
    "tour",
    "explain",
    "watch",
    "trace",
    "completions",
    "man",
];

#[test]
fn completions_name_every_command_in_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = run(sockdemo(&["completions", shell]), b"");
        assert_eq!(out.code(), 0, "{shell}: {}", out.stderr);
        for command in COMMANDS {
            assert!(out.stdout.contains(command), "{shell}: no {command}");
        }
        assert!(out.stdout.contains("json"), "{shell}: the options too");
    }
}

#[cfg(unix)]
#[test]
fn the_bash_completion_is_valid_bash() {
    let out = run(sockdemo(&["completions", "bash"]), b"");
    let check = std::process::Command::new("bash")
        .args(["-n", "-c", &out.stdout])
        .status()
        .expect("bash");
    assert!(check.success(), "bash -n rejects the script");
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = run(sockdemo(&["completions", "tcsh"]), b"");
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr.contains("bash"),
        "the shells it knows: {}",
        out.stderr
    );
}

#[test]
fn the_manual_page_is_roff_with_every_command() {
    let out = run(sockdemo(&["man"]), b"");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(".TH sockdemo 1"),
        "{}",
        &out.stdout[..200.min(out.stdout.len())]
    );
    for command in COMMANDS {
        assert!(out.stdout.contains(command), "no {command} in the page");
    }
}

#[test]
fn man_dir_writes_one_page_per_command() {
    let dir = std::env::temp_dir().join(format!("sockdemo-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = run(sockdemo(&["man", &dir.to_string_lossy()]), b"");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let page = |name: &str| std::fs::read_to_string(dir.join(name));
    assert!(page("sockdemo.1").is_ok_and(|p| p.contains(".TH")));
    for command in COMMANDS {
        let text = page(&format!("sockdemo-{command}.1"))
            .unwrap_or_else(|e| panic!("sockdemo-{command}.1: {e}"));
        assert!(text.contains(".SH"), "sockdemo-{command}.1 has sections");
    }
    assert!(page("sockdemo-trace.1").unwrap().contains("wait\\-listen"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The short options are the long ones: `listen -p 0 -j` is
/// `listen --port 0 --json`, `connect -u -s TEXT` is `--udp --send TEXT`.
#[test]
fn short_options_mean_their_long_ones() {
    let mut server = Running::start(sockdemo(&[
        "listen",
        "-p",
        "0",
        "-j",
        "-u",
        "--packets",
        "off",
    ]));
    let ready = server.wait_event("the ready note", |e| e["topic"] == "ready");
    let addr = ready["addr"].as_str().expect("its address").to_string();
    let out = run(
        sockdemo(&[
            "connect",
            "-u",
            "-s",
            "hello",
            "-j",
            "--packets",
            "off",
            &addr,
        ]),
        b"",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let events = out.events();
    assert!(events.iter().all(|e| e["proto"] == "udp"), "UDP throughout");
    assert!(events.iter().any(|e| e["kind"] == "data"
        && e["dir"] == "in"
        && e["text"].as_str().unwrap_or("").starts_with("hello")));
    server.wait_event("the datagram", |e| {
        e["kind"] == "data" && e["text"].as_str().unwrap_or("").starts_with("hello")
    });
    server.terminate();
}

/// `explain TOPIC` on a terminal, with `PAGER` set to `pager`.
#[cfg(target_os = "linux")]
fn lesson_on_a_terminal(pager: &str, extra: &str) -> Output {
    let mut cmd = std::process::Command::new("script");
    cmd.args([
        "-qec",
        &format!("{} explain states --color never {extra}", bin()),
        "/dev/null",
    ]);
    cmd.env("PAGER", pager)
        .env("LC_ALL", "C.UTF-8")
        .env("TERM", "xterm");
    run(cmd, b"")
}

/// A lesson taller than the window goes through $PAGER on a terminal;
/// --no-pager and a pipe get the text itself.
#[cfg(target_os = "linux")]
#[test]
fn a_long_lesson_is_paged_on_a_terminal_only() {
    let pager = "sh -c 'echo PAGED; wc -l'";
    let paged = lesson_on_a_terminal(pager, "");
    assert_eq!(paged.code(), 0, "{}", paged.stdout);
    assert!(paged.stdout.starts_with("PAGED"), "{}", paged.stdout);
    let lines: usize = paged.stdout.lines().nth(1).unwrap().trim().parse().unwrap();
    assert!(lines > 50, "the whole lesson went to the pager: {lines}");
    let straight = lesson_on_a_terminal(pager, "--no-pager");
    assert!(!straight.stdout.contains("PAGED"));
    assert!(straight.stdout.contains("The TCP states"));
    let mut piped = sockdemo(&["explain", "states"]);
    piped.env("PAGER", pager);
    let piped = run(piped, b"");
    assert!(!piped.stdout.contains("PAGED") && piped.stdout.contains("The TCP states"));
}

/// Ctrl-C in an interactive `connect`: the close is narrated as after
/// Ctrl-D (our FIN, the server's, close()), and the exit status is 130.
#[cfg(unix)]
#[test]
fn ctrl_c_closes_an_interactive_connect_with_narration() {
    let (server, addr) = json_server_ready(&["--packets", "off"]);
    let mut client = Running::start(sockdemo(&["connect", "--json", "--packets", "off", &addr]));
    client.wait_event("the prompt to type", |e| e["topic"] == "interactive");
    // SAFETY: kill(2) with our own child's pid and SIGINT (what Ctrl-C sends).
    unsafe {
        libc::kill(client.child.id() as i32, libc::SIGINT);
    }
    client.wait_event("the stopping note", |e| e["topic"] == "stopping");
    let stdin = client.stdin.take(); // still open: only Ctrl-C ends the input
    let (status, lines, _) = client.finish();
    drop(stdin);
    assert_eq!(status.code(), Some(130));
    let events = events_of_lines(&lines);
    let called = |call: &str| {
        events
            .iter()
            .any(|e| e["kind"] == "syscall" && e["call"] == call)
    };
    assert!(called("shutdown"), "our FIN: {lines:?}");
    assert!(called("close"), "the close: {lines:?}");
    server.terminate();
}

/// Every example in every command's --help is a command sockdemo accepts.
#[test]
fn the_examples_in_help_are_valid_commands() {
    use clap::Parser;
    let mut checked = 0;
    // The top level's help first, then each command's.
    for command in std::iter::once("").chain(COMMANDS) {
        let mut args: Vec<&str> = command.split_whitespace().collect();
        args.push("--help");
        let help = run(sockdemo(&args), b"").stdout;
        let Some((_, examples)) = help.split_once("Examples:") else {
            panic!("sockdemo {command} --help has no examples");
        };
        for line in examples
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("sockdemo "))
        {
            // Cut a comment in parentheses and anything after a pipe or a redirection.
            let line = line.split("  (").next().unwrap();
            let line = line.split(['|', '>']).next().unwrap().trim();
            let words = shell_words_of(line);
            sockdemo::cli::Cli::try_parse_from(&words)
                .unwrap_or_else(|e| panic!("`{line}` from `sockdemo {command} --help`: {e}"));
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} examples");
}

/// A line split into words as a shell would (quotes kept together).
fn shell_words_of(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    for c in line.chars() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ' ') => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            _ => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}
