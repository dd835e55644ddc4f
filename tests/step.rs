//! `--step`: a teacher runs the story one socket call at a time.

mod common;
use common::*;

/// Runs `sockdemo ARGS` on a pseudo-terminal (util-linux `script`) with
/// `keys` typed in, as a teacher at the keyboard would.
#[cfg(target_os = "linux")]
fn on_a_terminal(args: &str, keys: &str) -> Output {
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &format!("{} {args}", bin()), "/dev/null"]);
    cmd.env("LC_ALL", "C.UTF-8")
        .env("TERM", "xterm")
        .env_remove("LANG");
    run(cmd, keys.as_bytes())
}

/// Enter runs each call in turn; the story completes as usual.
#[cfg(target_os = "linux")]
#[test]
fn enter_runs_each_call() {
    let out = on_a_terminal(
        "tour --clients 1 --step --packets off --color never",
        &"\n".repeat(200),
    );
    assert_eq!(out.code(), 0, "{}", out.stdout);
    for call in [
        "socket", "bind", "listen", "connect", "accept", "send", "recv", "shutdown", "close",
    ] {
        assert!(
            out.stdout.contains(&format!("calls {call}()")),
            "no step before {call}():\n{}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("summary: served 1 client"));
    // The prompt comes before the call it announces.
    let prompt = out.stdout.find("next: C1 calls connect()").unwrap();
    let call = out.stdout.find("C1 connect(").unwrap();
    assert!(prompt < call);
}

/// Stepping, every client's every call is shown as it is made: C2's
/// calls are not folded into one line after C1's.
#[cfg(target_os = "linux")]
#[test]
fn stepping_shows_every_clients_calls() {
    let out = on_a_terminal(
        "tour --clients 2 --step --packets off --color never",
        &"\n".repeat(300),
    );
    assert_eq!(out.code(), 0, "{}", out.stdout);
    assert!(
        out.stdout.contains("next: C2 calls connect()"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("C2 connect("), "{}", out.stdout);
    assert!(!out.stdout.contains(" events as C1"), "{}", out.stdout);
    assert!(out.stdout.contains("summary: served 2 clients"));
}

/// q quits cleanly at the next step.
#[cfg(target_os = "linux")]
#[test]
fn q_quits_cleanly() {
    let out = on_a_terminal(
        "tour --clients 1 --step --packets off --color never",
        "\n\nq\n",
    );
    assert_eq!(out.code(), 0, "{}", out.stdout);
    assert!(
        out.stdout.contains("stopped by the teacher"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("summary"), "it stopped before the end");
}

/// Without a terminal there is no one to press Enter: refused, exit 2.
#[test]
fn refused_without_a_terminal() {
    let out = run(sockdemo(&["tour", "--step"]), b"");
    assert_eq!(out.code(), 2);
    assert!(out.stderr.contains("needs a terminal"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "nothing printed before the refusal");
}

/// `trace --step`: the traced program waits at the entry of each socket
/// call, named as the kernel names it, until Enter.
#[cfg(target_os = "linux")]
#[test]
fn trace_step_stops_the_program_before_each_socket_call() {
    let program =
        "import socket; s = socket.socket(); print(s.connect_ex((\"127.0.0.1\", 9))); s.close()";
    let out = on_a_terminal(
        &format!("trace --step --packets off --color never -- python3 -u -c '{program}'"),
        &"\n".repeat(40),
    );
    assert_eq!(out.code(), 0, "{}", out.stdout);
    for call in ["socket", "connect", "close"] {
        let prompt = out
            .stdout
            .find(&format!("calls {call}()"))
            .unwrap_or_else(|| panic!("no step before {call}():\n{}", out.stdout));
        // The call's own line: "  0.142 client  socket(AF_INET, …".
        let made = out
            .stdout
            .find(&format!("client  {call}("))
            .unwrap_or_else(|| panic!("no {call}() line:\n{}", out.stdout));
        assert!(prompt < made, "the prompt before {call}():\n{}", out.stdout);
    }
    assert!(
        out.stdout.contains("P› 111"),
        "ECONNREFUSED, as the program saw it:\n{}",
        out.stdout
    );
}
