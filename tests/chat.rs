//! `listen --chat`: a class chat over real sockets.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

/// A student: the connection and a line reader on it.
struct Student {
    out: TcpStream,
    lines: BufReader<TcpStream>,
}

impl Student {
    fn join(addr: &str) -> Student {
        let out = TcpStream::connect(addr).unwrap();
        out.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut s = Student {
            lines: BufReader::new(out.try_clone().unwrap()),
            out,
        };
        let welcome = s.line();
        assert!(welcome.starts_with("* welcome, you are C"), "{welcome}");
        s
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.lines
            .read_line(&mut line)
            .expect("a line within the time limit");
        line
    }

    /// The next `n` chat lines, skipping announcements ("* …").
    fn chat_lines(&mut self, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        while got.len() < n {
            let line = self.line();
            assert!(!line.is_empty(), "the server closed early; got {got:?}");
            if !line.starts_with('*') {
                got.push(line.trim_end().to_string());
            }
        }
        got
    }
}

/// Every line reaches every other student exactly once, in the order its
/// sender sent it, and never comes back to its sender.
#[test]
fn every_line_reaches_every_other_student_once_in_order() {
    let (server, addr) = json_server(&["--chat", "--packets", "off"]);
    let mut students: Vec<Student> = (0..3).map(|_| Student::join(&addr)).collect();
    // Each student sends five lines, all at once, from its own thread.
    let writers: Vec<_> = students
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut out = s.out.try_clone().unwrap();
            std::thread::spawn(move || {
                for j in 1..=5 {
                    out.write_all(format!("line {j} from student {i}\n").as_bytes())
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    for (me, student) in students.iter_mut().enumerate() {
        let got = student.chat_lines(10);
        for other in (0..3).filter(|o| *o != me) {
            let label = format!("C{}", other + 1);
            let theirs: Vec<&String> = got
                .iter()
                .filter(|l| l.starts_with(&format!("{label}: ")))
                .collect();
            let expected: Vec<String> = (1..=5)
                .map(|j| format!("{label}: line {j} from student {other}"))
                .collect();
            assert_eq!(
                theirs,
                expected.iter().collect::<Vec<_>>(),
                "student {me} got {got:?}"
            );
        }
        assert!(
            !got.iter()
                .any(|l| l.contains(&format!("from student {me}"))),
            "no echo to the sender"
        );
    }
    drop(students);
    let (_, lines, _) = server.terminate();
    let events = parse_lines(&lines.join("\n"));
    assert_eq!(
        events.iter().filter(|e| e["topic"] == "chat").count(),
        15,
        "the teacher sees every line"
    );
    assert_eq!(
        events.iter().filter(|e| e["topic"] == "chat-join").count(),
        3
    );
}

/// A student who floods is slowed down, told so, and the others get only
/// what the limit lets through.
#[test]
fn a_flood_is_rate_limited_and_the_student_is_told() {
    let (mut server, addr) = json_server(&["--chat", "--packets", "off"]);
    let mut quiet = Student::join(&addr);
    let mut loud = Student::join(&addr);
    let flood: String = (1..=40).map(|j| format!("spam {j}\n")).collect();
    loud.out.write_all(flood.as_bytes()).unwrap();
    let warning = loop {
        let line = loud.line();
        if line.contains("slow down") {
            break line;
        }
        assert!(!line.is_empty(), "the loud student was told to slow down");
    };
    assert!(warning.starts_with('*'));
    server.wait_event("the rate-limit note", |e| e["topic"] == "rate-limit");
    // The loud student leaves. Its thread handles the whole flood before it
    // reads the end of the stream, so "* C2 left" comes after every line
    // the limit let through.
    drop(loud);
    let mut passed = Vec::new();
    loop {
        let line = quiet.line();
        assert!(!line.is_empty(), "the quiet student saw C2 leave");
        if line.starts_with("C2: spam") {
            passed.push(line.trim_end().to_string());
        }
        if line.starts_with("* C2 left") {
            break;
        }
    }
    let expected: Vec<String> = (1..=passed.len())
        .map(|j| format!("C2: spam {j}"))
        .collect();
    assert_eq!(passed, expected, "the first lines pass, in order");
    let passed = passed.len();
    assert!((10..40).contains(&passed), "{passed} of 40 lines passed");
}

/// Escape sequences from one student reach the others escaped.
#[test]
fn escape_sequences_are_passed_on_escaped() {
    let (server, addr) = json_server(&["--chat", "--packets", "off"]);
    let mut a = Student::join(&addr);
    let mut b = Student::join(&addr);
    b.out.write_all(b"\x1b[2Jboo\x07\n").unwrap();
    let got = a.chat_lines(1);
    assert_eq!(got, ["C2: \\x1b[2Jboo\\x07"]);
    drop(server);
}
