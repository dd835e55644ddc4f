//! Every lesson is checked: it parses, both languages have it, every
//! command it tells a student to try is accepted by the real parser, and
//! every demo it names runs to completion on loopback.

mod common;
use clap::Parser;
use common::*;
use sockdemo::cli::Cli;
use sockdemo::lessons::{self, Lang};

/// The topics the course needs, in teaching order.
const TOPICS: [&str; 13] = [
    "socket",
    "triple",
    "three-stages",
    "handshake",
    "tcp-vs-udp",
    "states",
    "many-clients",
    "send-and-flush",
    "framing",
    "closing",
    "errors",
    "ports",
    "trace",
];

/// Splits a command line as a POSIX shell would for simple words and quotes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut started = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                started = true;
            }
            (None, c) if c.is_whitespace() => {
                if started || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (None, c) => word.push(c),
        }
    }
    assert!(quote.is_none(), "unclosed quote in {line:?}");
    if started || !word.is_empty() {
        words.push(word);
    }
    words
}

#[test]
fn every_lesson_parses_in_teaching_order() {
    for lang in Lang::ALL {
        let all = lessons::embedded(lang).unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<&str> = all.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, TOPICS, "{} lessons", lang.code());
        let orders: Vec<u32> = all.iter().map(|l| l.order).collect();
        assert_eq!(
            orders,
            (1..=all.len() as u32).collect::<Vec<_>>(),
            "orders are 1, 2, 3…"
        );
        for l in &all {
            assert!(!l.title.is_empty() && !l.summary.is_empty(), "{}", l.origin);
            assert!(
                l.body.lines().count() > 20,
                "{} is too short to teach",
                l.origin
            );
            assert!(
                l.origin.contains(&format!("{:02}-{}.md", l.order, l.id)),
                "file name matches header: {}",
                l.origin
            );
        }
    }
}

#[test]
fn both_languages_have_the_same_lessons() {
    let en = lessons::embedded(Lang::En).unwrap();
    let zh = lessons::embedded(Lang::Zh).unwrap();
    let key = |l: &lessons::Lesson| (l.id.clone(), l.order, l.demo.clone());
    assert_eq!(
        en.iter().map(key).collect::<Vec<_>>(),
        zh.iter().map(key).collect::<Vec<_>>()
    );
    for (e, z) in en.iter().zip(&zh) {
        assert_ne!(
            e.title, z.title,
            "{}: the Chinese title is Chinese",
            z.origin
        );
        assert!(
            z.body
                .chars()
                .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
            "{} is written in Chinese",
            z.origin
        );
        assert_eq!(
            lessons::try_commands(&e.body).len(),
            lessons::try_commands(&z.body).len(),
            "{} and {} suggest the same number of commands",
            e.origin,
            z.origin
        );
    }
}

/// A lesson can never tell a student to type a flag that does not exist.
#[test]
fn every_try_command_is_accepted_by_the_parser() {
    let mut checked = 0;
    for lang in Lang::ALL {
        for l in lessons::embedded(lang).unwrap() {
            let commands = lessons::try_commands(&l.body);
            assert!(!commands.is_empty(), "{} has no ```try block", l.origin);
            for command in commands {
                let words = shell_words(&command);
                assert_eq!(
                    words.first().map(String::as_str),
                    Some("sockdemo"),
                    "{}: {command}",
                    l.origin
                );
                if let Err(e) = Cli::try_parse_from(&words) {
                    panic!("{}: `{command}` is not accepted:\n{e}", l.origin);
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 48, "only {checked} commands");
}

/// Every demo a lesson names exists and runs to completion by itself.
#[test]
fn every_demo_runs_to_completion() {
    let mut demos: Vec<String> = lessons::embedded(Lang::En)
        .unwrap()
        .into_iter()
        .filter_map(|l| l.demo)
        .collect();
    demos.dedup();
    assert!(demos.len() >= 12, "{demos:?}");
    for id in TOPICS {
        let out = run(sockdemo(&["explain", id, "--demo", "--json"]), b"");
        assert_eq!(
            out.code(),
            0,
            "explain {id} --demo failed:\n{}\n{}",
            out.stdout,
            out.stderr
        );
        let events = out.events();
        assert!(
            events.iter().any(|e| e["kind"] == "syscall"),
            "{id}: the demo made socket calls"
        );
    }
}

/// A demo that runs the tour shows its lesson's part of it: the triple
/// demo the names and ports up to CONFIRM, no packets; it says how many
/// events it left out and which command shows them, and its JSON has them.
#[test]
fn a_demo_that_runs_the_tour_shows_its_lessons_part() {
    let args = ["explain", "triple", "--demo", "--color", "never"];
    let out = run(sockdemo(&args), b"");
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let human = &out.stdout;
    assert!(human.contains("3 CONFIRM"), "{human}");
    assert!(human.contains("port "), "each client's own port: {human}");
    // C2 and C3 did what C1 did: one line each, which says where the rest
    // is (explain has no --verbose).
    assert!(human.contains("C3 the same "), "{human}");
    assert!(human.contains("(--json has"), "{human}");
    assert!(!human.contains("--verbose"), "{human}");
    for hidden in ["TRANSFER", "[SYN]", "state CLOSED"] {
        assert!(!human.contains(hidden), "{hidden} in {human}");
    }
    let said = human
        .split("This demo shows only its lesson's part: ")
        .nth(1)
        .expect("the note that says what was left out");
    let left_out: usize = said.split(' ').next().unwrap().parse().unwrap();
    assert!(said.contains("`sockdemo tour`"), "{said}");
    let json = run(sockdemo(&["explain", "triple", "--demo", "--json"]), b"");
    let events = json.events();
    assert!(events.iter().any(|e| e["stage"] == "transfer"));
    assert!(
        events.len() > left_out,
        "{} events in JSON, {left_out} left out",
        events.len()
    );
    // A demo made for its lesson (closing) has no lens and no note.
    let out = run(
        sockdemo(&["explain", "closing", "--demo", "--color", "never"]),
        b"",
    );
    assert!(
        !out.stdout.contains("This demo shows only"),
        "{}",
        out.stdout
    );
}

/// The list, a lesson, an unknown topic with a suggestion, and a teacher's folder.
#[test]
fn explain_command() {
    let out = run(sockdemo(&["explain", "--color", "never"]), b"");
    assert_eq!(out.code(), 0);
    for (n, id) in TOPICS.iter().enumerate() {
        assert!(
            out.stdout.contains(&format!("{:>3}. {id}", n + 1)),
            "list lacks {id}:\n{}",
            out.stdout
        );
    }
    let out = run(
        sockdemo(&["explain", "handshake", "--color", "never", "--lang", "en"]),
        b"",
    );
    assert_eq!(out.code(), 0);
    assert!(
        out.stdout.contains("SYN-ACK") && out.stdout.contains("$ sockdemo"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains('\x1b'));

    let out = run(sockdemo(&["explain", "tcp-vs-upd"]), b"");
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr.contains("Did you mean 'tcp-vs-udp'?"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("What a socket is") && out.stderr.lines().count() <= 3,
        "the suggestion, not the whole list: {}",
        out.stderr
    );
    let out = run(sockdemo(&["explain", "zzzzzz"]), b"");
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr.contains("tcp-vs-udp") && out.stderr.contains("there is no lesson 'zzzzzz'"),
        "nothing close: the list comes with the error: {}",
        out.stderr
    );

    let out = run(
        sockdemo(&["explain", "5", "--lang", "zh", "--color", "never"]),
        b"",
    );
    assert_eq!(out.code(), 0);
    assert!(out
        .stdout
        .chars()
        .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)));

    let dir = std::env::temp_dir().join(format!("sockdemo-lessons-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("en")).unwrap();
    std::fs::write(
        dir.join("en/13-sockets-in-java.md"),
        "---\nformat: 1\nid: sockets-in-java\norder: 13\ntitle: Sockets in Java\nsummary: ServerSocket and Socket.\ndemo: none\n---\n\n# Sockets in Java\n\nOur own lesson.\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("en/01-socket.md"),
        "---\nformat: 1\nid: socket\norder: 1\ntitle: Our socket lesson\nsummary: The teacher's version.\ndemo: socket\n---\n\n# Ours\n",
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    let out = run(
        sockdemo(&[
            "explain",
            "--lessons",
            d,
            "--color",
            "never",
            "--lang",
            "en",
        ]),
        b"",
    );
    assert!(
        out.stdout.contains("sockets-in-java") && out.stdout.contains("Our socket lesson"),
        "{}",
        out.stdout
    );
    let out = run(
        sockdemo(&["explain", "sockets-in-java", "--lessons", d, "--lang", "en"]),
        b"",
    );
    assert!(out.stdout.contains("Our own lesson."));
    std::fs::write(dir.join("en/14-broken.md"), "no header").unwrap();
    let out = run(sockdemo(&["explain", "--lessons", d, "--lang", "en"]), b"");
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr.contains("14-broken.md") && out.stderr.contains("header"),
        "{}",
        out.stderr
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A lesson's `{{sysctl NAME}}` placeholders are filled in when it is
/// shown, in the terminal and in `--json` alike: no raw placeholder ever
/// reaches a student, whatever the machine has in /proc/sys/net.
#[test]
fn no_placeholder_reaches_the_output() {
    let mut with_placeholders = 0;
    for lang in Lang::ALL {
        for l in lessons::embedded(lang).unwrap() {
            with_placeholders += l.body.contains("{{sysctl") as usize;
            let code = lang.code();
            let human = run(
                sockdemo(&["explain", &l.id, "--lang", code, "--color", "never"]),
                b"",
            );
            assert_eq!(human.code(), 0, "{}: {}", l.origin, human.stderr);
            assert!(
                !human.stdout.contains("{{"),
                "{}:\n{}",
                l.origin,
                human.stdout
            );
            let json = run(sockdemo(&["explain", &l.id, "--lang", code, "--json"]), b"");
            let lines = json.events();
            assert_eq!(lines.len(), 1, "{}: {}", l.origin, json.stdout);
            let markdown = lines[0]["markdown"].as_str().unwrap();
            assert!(!markdown.contains("{{"), "{}: {markdown}", l.origin);
            // The JSON carries the same text as the terminal: the same values.
            let human_flat: String = human.stdout.split_whitespace().collect();
            if let Some(value) = this_machines("net/ipv4/tcp_syn_retries") {
                if l.id == "errors" && code == "en" {
                    let sentence = format!("`tcp_syn_retries`is{value}");
                    assert!(human_flat.contains(&sentence), "{}", human.stdout);
                    let json_flat: String = markdown.split_whitespace().collect();
                    assert!(json_flat.contains(&sentence), "{markdown}");
                }
            }
        }
    }
    assert!(
        with_placeholders >= 6,
        "only {with_placeholders} lessons show kernel settings"
    );
    // English and Chinese show the same settings, lesson by lesson.
    let en = lessons::embedded(Lang::En).unwrap();
    let zh = lessons::embedded(Lang::Zh).unwrap();
    for (e, z) in en.iter().zip(&zh) {
        assert_eq!(
            sysctl_names(&e.body),
            sysctl_names(&z.body),
            "{} and {}",
            e.origin,
            z.origin
        );
    }
}

/// The settings a lesson's body names, sorted.
fn sysctl_names(body: &str) -> Vec<&str> {
    let mut names: Vec<&str> = body
        .split("{{sysctl ")
        .skip(1)
        .filter_map(|rest| rest.split_once("}}").map(|(name, _)| name.trim()))
        .collect();
    names.sort();
    names
}

/// A setting of this machine as the lesson shows it, if the file exists.
fn this_machines(path_under_proc_sys: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/sys/{path_under_proc_sys}")).ok()?;
    Some(text.trim().to_string())
}

/// A teacher's lesson may show an allowed setting; any other name is
/// refused when the folder is loaded, so it can never print another file.
#[test]
fn a_teachers_placeholders_are_checked() {
    let dir = std::env::temp_dir().join(format!("sockdemo-sysctl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lesson = |body: &str| {
        format!("---\nformat: 1\nid: queues\norder: 13\ntitle: Queues\nsummary: Ours.\ndemo: none\n---\n\n# Queues\n\n{body}\n")
    };
    std::fs::write(
        dir.join("13-queues.md"),
        lesson("somaxconn here: {{sysctl net.core.somaxconn}}."),
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    let out = run(
        sockdemo(&[
            "explain",
            "queues",
            "--lessons",
            d,
            "--lang",
            "en",
            "--color",
            "never",
        ]),
        b"",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let shown = match this_machines("net/core/somaxconn") {
        Some(value) => format!("somaxconn here: {value}."),
        None => "somaxconn here: (not available on this system).".to_string(),
    };
    assert!(out.stdout.contains(&shown), "{}", out.stdout);

    std::fs::write(
        dir.join("13-queues.md"),
        lesson("{{sysctl kernel.hostname}}"),
    )
    .unwrap();
    let out = run(
        sockdemo(&["explain", "queues", "--lessons", d, "--lang", "en"]),
        b"",
    );
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr.contains("13-queues.md") && out.stderr.contains("may not show"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("{{"), "{}", out.stdout);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shell_words_split_like_a_shell() {
    assert_eq!(
        shell_words("sockdemo connect --send 'hello world' --send \"a b\""),
        [
            "sockdemo",
            "connect",
            "--send",
            "hello world",
            "--send",
            "a b"
        ]
    );
}

/// A teacher's lesson that tries every way a file can drive the terminal
/// or hide text: OSC 52 (write the clipboard), CSI 2J (clear the screen),
/// a bell, a right-to-left override, a zero-width joiner, the emoji
/// presentation selector and byte-order marks, raw and as Markdown
/// character references, in the header, a heading, a paragraph, a list,
/// a table, a link and a code block.
const HOSTILE: &str = concat!(
    "\u{feff}---\nformat: 1\nid: hostile\norder: 20\n",
    "title: Clip\x1b]52;c;ZXZpbA==\x07board \u{202e}txt.exe\n",
    "summary: Clear\x1b[2Jscreen a\u{200d}b \u{2764}\u{fe0f} \u{feff}bom\n",
    "demo: none\n---\n\n",
    "# Head\x1b]52;c;ZXZpbA==\x07ing\n\n",
    "Para \x1b[2J with \u{202e}RLO, a\u{200d}b, \u{2764}\u{fe0f}, \u{feff}BOM, and by reference &#x1b;]52;c;eA==&#7; &#x202E; &#x200D; &#xFE0F; &#xFEFF;.\n\n",
    "- item \x1b[31mred \u{202e}\n\n",
    "| h\u{202e} | c&#x1b;[2J |\n|---|---|\n| \x1b]52;c;eA==\x07 | \u{200d}\u{fe0f} |\n\n",
    "[link](http://example.com/\x1b[2J&#x202e;)\n\n",
    "```\ncode \x1b[2J \u{202e} \u{feff}\n```\n",
);

/// What must never reach stdout raw from [`HOSTILE`].
const FORBIDDEN: [(&str, &str); 7] = [
    ("\x1b]", "OSC"),
    ("\x1b[2J", "CSI 2J"),
    ("\x07", "BEL"),
    ("\u{202e}", "RLO"),
    ("\u{200d}", "ZWJ"),
    ("\u{fe0f}", "VS16"),
    ("\u{feff}", "BOM"),
];

/// The only escape sequences allowed in stdout are the renderer's colours
/// (SGR: `ESC [` digits and `;`, then `m`); nothing forbidden at all.
fn assert_clean(stdout: &[u8], what: &str) {
    for (raw, name) in FORBIDDEN {
        assert!(
            !stdout.windows(raw.len()).any(|w| w == raw.as_bytes()),
            "{what}: a raw {name} in {:?}",
            String::from_utf8_lossy(stdout)
        );
    }
    for (at, _) in stdout.iter().enumerate().filter(|(_, b)| **b == 0x1b) {
        let rest = &stdout[at + 1..];
        let end = rest
            .iter()
            .position(|b| !(b.is_ascii_digit() || *b == b';' || *b == b'['));
        let sgr = rest.first() == Some(&b'[') && end.is_some_and(|e| rest[e] == b'm');
        assert!(
            sgr,
            "{what}: an escape that is not a colour at byte {at}: {:?}",
            String::from_utf8_lossy(&rest[..rest.len().min(12)])
        );
    }
}

/// A folder of lessons of its own for one test, removed when it ends.
struct LessonDir(std::path::PathBuf);

impl LessonDir {
    fn new(name: &str, files: &[(&str, &str)]) -> LessonDir {
        let dir = std::env::temp_dir().join(format!("sockdemo-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (file, text) in files {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        LessonDir(dir)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for LessonDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A teacher's lesson is escaped like network bytes before it reaches the
/// terminal, colours on or off, in the list, the lesson and `--json`: what
/// the file holds is shown as `\x1b` or `\u{202e}`, and the renderer's own
/// colours are the only escape sequences left.
#[test]
fn a_teachers_lesson_cannot_drive_the_terminal() {
    let dir = LessonDir::new("hostile", &[("en/20-hostile.md", HOSTILE)]);
    let d = dir.path();
    for color in ["never", "always"] {
        // The lesson shows its heading (split where a colour changes), the
        // list its title.
        for (args, shown) in [
            (
                vec![
                    "explain",
                    "hostile",
                    "--lessons",
                    d,
                    "--lang",
                    "en",
                    "--color",
                    color,
                ],
                ["Head\\x1b", "52;c;ZXZpbA==\\x07ing"],
            ),
            (
                vec!["explain", "--lessons", d, "--lang", "en", "--color", color],
                ["Clip\\x1b]52;c;ZXZpbA==\\x07board", "\\u{202e}txt.exe"],
            ),
        ] {
            let out = run(sockdemo(&args), b"");
            assert_eq!(out.code(), 0, "{args:?}: {}", out.stderr);
            assert_clean(out.stdout.as_bytes(), &format!("{args:?}"));
            for piece in shown {
                assert!(
                    out.stdout.contains(piece),
                    "{args:?}: {piece:?} in\n{}",
                    out.stdout
                );
            }
        }
    }
    let out = run(
        sockdemo(&["explain", "hostile", "--lessons", d, "--color", "never"]),
        b"",
    );
    for shown in [
        "Para \\x1b[2J with \\u{202e}RLO, a\\u{200d}b, \u{2764}\\u{fe0f}, \\u{feff}BOM",
        "\\x1b]52;c;eA==\\x07 \\u{202e} \\u{200d} \\u{fe0f} \\u{feff}.",
        "code \\x1b[2J \\u{202e} \\u{feff}",
    ] {
        assert!(out.stdout.contains(shown), "{shown:?} in\n{}", out.stdout);
    }

    // JSON would escape a raw ESC as \u001b, but not an RLO or a joiner:
    // its strings carry the same escapes as the terminal's text.
    let out = run(
        sockdemo(&["explain", "hostile", "--lessons", d, "--json"]),
        b"",
    );
    assert_clean(out.stdout.as_bytes(), "--json");
    assert!(!out.stdout.contains("\\u001b"), "{}", out.stdout);
    let lesson = &out.events()[0];
    assert_eq!(
        lesson["title"],
        "Clip\\x1b]52;c;ZXZpbA==\\x07board \\u{202e}txt.exe"
    );
    assert_eq!(
        lesson["summary"],
        "Clear\\x1b[2Jscreen a\\u{200d}b \u{2764}\\u{fe0f} \\u{feff}bom"
    );
    for (raw, name) in FORBIDDEN {
        let text = lesson.to_string() + lesson["markdown"].as_str().unwrap();
        assert!(!text.contains(raw), "a {name} in the JSON's values");
    }
}

/// An error about a teacher's file quotes it escaped too.
#[test]
fn an_error_quotes_a_lesson_escaped() {
    let broken = "---\nformat: 1\nid: bad\x1b[2J\u{202e}\norder: 1\ntitle: t\nsummary: s\n---\n";
    let dir = LessonDir::new("hostile-error", &[("en/01-bad.md", broken)]);
    let out = run(
        sockdemo(&["explain", "--lessons", dir.path(), "--lang", "en"]),
        b"",
    );
    assert_eq!(out.code(), 1);
    assert!(
        out.stderr.contains("id 'bad\\x1b[2J\\u{202e}'"),
        "{}",
        out.stderr
    );
    assert_clean(out.stderr.as_bytes(), "the error");
}

/// Escaping leaves ordinary text alone: a teacher's Chinese lesson, with
/// its full-width punctuation, and every lesson of ours, show exactly what
/// was written.
#[test]
fn ordinary_lessons_are_not_escaped() {
    let paragraph =
        "套接字（socket）是应用程序与传输层之间的接口：“连接”、《协议》，端口——还有🙂和 café。";
    let lesson = format!(
        "---\nformat: 1\nid: zh-demo\norder: 21\ntitle: 套接字与端口\nsummary: 一行摘要；没有转义！\ndemo: none\n---\n\n# 标题\n\n{paragraph}\n\n| 列 | 值 |\n|---|---|\n| 端口 | 八〇八〇 |\n"
    );
    let dir = LessonDir::new("zh", &[("zh/21-zh-demo.md", &lesson)]);
    let out = run(
        sockdemo(&[
            "explain",
            "zh-demo",
            "--lessons",
            dir.path(),
            "--lang",
            "zh",
            "--color",
            "never",
        ]),
        b"",
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(out.stdout.contains(paragraph), "{}", out.stdout);
    assert!(out.stdout.contains("八〇八〇"), "{}", out.stdout);
    assert!(
        !out.stdout.contains("\\u{") && !out.stdout.contains("\\x"),
        "{}",
        out.stdout
    );

    // Our own lessons hold nothing the sanitizer would change.
    for lang in Lang::ALL {
        let folder = format!("{}/lessons/{}", env!("CARGO_MANIFEST_DIR"), lang.code());
        for path in std::fs::read_dir(folder).unwrap() {
            let path = path.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                sockdemo::sanitize::text(&text),
                text,
                "{} would be shown escaped",
                path.display()
            );
        }
    }
}
