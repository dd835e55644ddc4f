//! What the `sockdemo trace` tests share: the small programs under
//! `tests/programs`, a scratch folder per test, free ports, a bounded run
//! of `sockdemo trace --json` read as events, and the check that a run left
//! no process behind.

pub mod packets;
pub mod strace_log;

use crate::common::{parse_lines, Output, EXIT_PATIENCE, PATIENCE};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The folder of the test programs (Python, C, Java).
pub fn programs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs")
}

/// A folder of its own for one test, removed when the test ends. Its path
/// is in the command line of every program the test runs from it (they
/// are copied or compiled into it), so it also finds what a run left behind.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("sockdemo-trace-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("make a scratch folder");
        Scratch { dir }
    }

    /// A file in the folder, as a string for a command line.
    pub fn path(&self, file: &str) -> String {
        self.dir
            .join(file)
            .to_str()
            .expect("UTF-8 path")
            .to_string()
    }

    /// Copies `tests/programs/python/NAME` here; returns its path.
    pub fn python(&self, name: &str) -> String {
        let to = self.path(name);
        std::fs::copy(programs_dir().join("python").join(name), &to).expect("copy a program");
        to
    }

    /// Compiles `tests/programs/c/NAME.c` with `cc`; returns the program's path.
    pub fn c_program(&self, name: &str) -> String {
        need("cc");
        let exe = self.path(name);
        let source = programs_dir().join("c").join(format!("{name}.c"));
        let out = Command::new("cc")
            .args(["-O1", "-Wall", "-Werror", "-o", &exe])
            .arg(&source)
            .output()
            .expect("run cc");
        assert!(
            out.status.success(),
            "cc {}: {}",
            source.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        exe
    }

    /// Compiles the Java programs (`tests/programs/java/*.java`) into this
    /// folder with `javac`; returns the class path.
    pub fn java_classes(&self) -> String {
        need("javac");
        need("java");
        let dir = programs_dir().join("java");
        let mut sources: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("the Java programs")
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "java"))
            .collect();
        sources.sort();
        let out = Command::new("javac")
            .arg("-d")
            .arg(&self.dir)
            .args(&sources)
            .output()
            .expect("run javac");
        assert!(
            out.status.success(),
            "javac: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.dir.to_str().unwrap().to_string()
    }

    /// The marker of this test's processes: the folder's path.
    pub fn marker(&self) -> &str {
        self.dir.to_str().unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Fails clearly when a tool the tests run is missing (.ci/run installs them).
pub fn need(tool: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
    assert!(
        found,
        "{tool} is not installed: the trace tests run it (.ci/run installs it)"
    );
}

/// A TCP port that no socket on 127.0.0.1 or ::1 uses now, for a server
/// the test starts with the port on its command line. It is taken below
/// the kernel's ephemeral range, so no connect() elsewhere on the machine
/// can be given it before the server binds it, and each call of this
/// process gives another one.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let below: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (first, span) = (below.saturating_sub(12000).max(1024), 11000u16);
    // Start where this process's id says, so two test runs at once differ.
    let _ = NEXT.compare_exchange(
        0,
        (std::process::id() % u32::from(span)) as u16,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let port = first + NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let v4 = std::net::TcpListener::bind(("127.0.0.1", port));
        let v6 = std::net::TcpListener::bind(("::1", port));
        if v4.is_ok() && v6.is_ok() {
            return port;
        }
    }
    panic!("no free port below {below}");
}

/// One finished `sockdemo trace --json` run.
pub struct Traced {
    pub out: Output,
    /// stdout as it came, byte for byte.
    pub raw: Vec<u8>,
    pub events: Vec<Value>,
}

impl Traced {
    /// The "started" note of program `tag` ("P", "S", "C1"…).
    pub fn started(&self, tag: &str) -> &Value {
        self.note("started", tag)
    }

    /// The process id of program `tag`.
    pub fn pid(&self, tag: &str) -> u64 {
        self.started(tag)["pid"]
            .as_u64()
            .expect("pid in a started note")
    }

    /// The "exited" note of program `tag`.
    pub fn exited(&self, tag: &str) -> &Value {
        self.note("exited", tag)
    }

    fn note(&self, topic: &str, tag: &str) -> &Value {
        self.events
            .iter()
            .find(|e| e["kind"] == "note" && e["topic"] == topic && e["program"] == tag)
            .unwrap_or_else(|| panic!("no {topic} note for {tag}:\n{}", self.out.stdout))
    }

    /// The summary note: one, after every program's "exited" note. (A
    /// note about what the output or the capture dropped may follow it.)
    pub fn summary(&self) -> &Value {
        let at: Vec<usize> = (0..self.events.len())
            .filter(|i| self.events[*i]["topic"] == "summary")
            .collect();
        assert_eq!(at.len(), 1, "one summary:\n{}", self.out.stdout);
        let last_exit = self.events.iter().rposition(|e| e["topic"] == "exited");
        assert!(last_exit < Some(at[0]), "the summary comes before an exit");
        &self.events[at[0]]
    }

    /// Did the timeline leave out events it had no room for ("dropped",
    /// "lost")? Bytes-moving calls and their data may then be missing.
    pub fn dropped_any(&self) -> bool {
        self.events
            .iter()
            .any(|e| e["topic"] == "dropped" || e["topic"] == "lost")
    }

    /// The syscall events of process `pid`, in order.
    pub fn calls_of(&self, pid: u64) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["kind"] == "syscall" && e["pid"] == pid)
            .collect()
    }

    /// The syscall events named `call`.
    pub fn calls_named(&self, call: &str) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["kind"] == "syscall" && e["call"] == call)
            .collect()
    }

    /// The lines program `tag` wrote to `stream`, as the output notes tell
    /// them (without the "P› " mark).
    pub fn output(&self, tag: &str, stream: &str) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["topic"] == "output" && e["program"] == tag && e["stream"] == stream)
            .map(|e| {
                let text = e["text"].as_str().unwrap();
                text.split_once("› ")
                    .map_or(text, |(_, line)| line)
                    .to_string()
            })
            .collect()
    }

    /// Every process id the trace names: the programs' and those of the
    /// processes that made calls (forked children).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .events
            .iter()
            .filter_map(|e| e["pid"].as_u64())
            .map(|p| p as u32)
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Fails unless sockdemo exited with `code` and said nothing alarming.
    pub fn assert_exit(&self, code: i32) {
        assert_eq!(
            self.out.code(),
            code,
            "sockdemo's exit status\nstderr: {}\nstdout:\n{}",
            self.out.stderr,
            self.out.stdout
        );
        assert!(
            !self.out.stderr.contains("panicked"),
            "sockdemo panicked: {}",
            self.out.stderr
        );
    }
}

/// Runs `sockdemo trace --json ARGS` to its end (stdin empty), bounded in
/// time: past EXIT_PATIENCE it and everything under it is killed, and the
/// test fails.
pub fn trace(args: &[&str]) -> Traced {
    let mut all = vec!["trace", "--json"];
    all.extend_from_slice(args);
    let (out, raw) = run_to_end(crate::common::sockdemo(&all), EXIT_PATIENCE);
    let events = parse_lines(&out.stdout);
    Traced { out, raw, events }
}

/// A server and a client, traced together: `--run SERVER --run CLIENT
/// --wait-listen`, with `extra` options first.
pub fn trace_pair(server: &[String], client: &[String], extra: &[&str]) -> Traced {
    let (server, client) = (command_line(server), command_line(client));
    let mut args = extra.to_vec();
    args.extend(["--run", &server, "--run", &client, "--wait-listen"]);
    trace(&args)
}

/// A command line for --run (each word quoted for the shell).
pub fn command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to its end with stdin closed, bounded by `limit`: past it,
/// `cmd` and all its descendants are killed and the test fails. Returns
/// the output and stdout's raw bytes.
pub fn run_to_end(mut cmd: Command, limit: Duration) -> (Output, Vec<u8>) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let status = exit_within(&mut child, limit);
    let raw = out.join().unwrap();
    let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    let output = Output {
        status,
        stdout: String::from_utf8_lossy(&raw).into_owned(),
        stderr,
    };
    (output, raw)
}

fn drain(mut from: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        bytes
    })
}

/// Waits for `child` to exit, at most `limit`; then kills it and all its
/// descendants (a traced program stopped for good would outlive a killed
/// tracer) and fails.
pub fn exit_within(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            kill_tree(child.id());
            let _ = child.wait();
            panic!("process {} did not end within {limit:?}", child.id());
        }
        // A child's exit has no event to wait on; this only paces the poll.
        thread::park_timeout(Duration::from_millis(5));
    }
}

/// SIGKILLs process `root` and all its descendants (found first, so that
/// none is handed to init before it is seen).
pub fn kill_tree(root: u32) {
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(processes().filter(|p| p.ppid == parent).map(|p| p.pid));
        i += 1;
    }
    for pid in tree {
        // SAFETY: kill(2) with a pid and a signal number.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
}

/// One process in /proc.
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    /// R, S, D, Z, t…
    pub state: char,
    pub cmdline: String,
}

/// The processes in /proc now (those that vanish while read are skipped).
pub fn processes() -> impl Iterator<Item = Proc> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) state ppid …": comm may hold spaces and parentheses.
            let after = &stat[stat.rfind(')')? + 2..];
            let mut fields = after.split(' ');
            let state = fields.next()?.chars().next()?;
            let ppid = fields.next()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            Some(Proc {
                pid,
                ppid,
                state,
                cmdline,
            })
        })
}

/// After a run has ended: no process whose command line has `marker` is
/// left, and none of `pids` is left as a zombie. The kernel and init finish
/// an exit a moment after the tracer has seen it, so this waits for that,
/// at most PATIENCE.
pub fn assert_no_leftovers(marker: &str, pids: &[u32]) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left: Vec<String> = processes()
            .filter(|p| {
                let ours = !p.cmdline.is_empty() && p.cmdline.contains(marker);
                let zombie = p.state == 'Z' && pids.contains(&p.pid);
                ours || zombie
            })
            .map(|p| format!("{} ({}) {}", p.pid, p.state, p.cmdline))
            .collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            for p in processes().filter(|p| p.cmdline.contains(marker)) {
                kill_tree(p.pid);
            }
            panic!("processes left behind by the trace:\n{}", left.join("\n"));
        }
        // Their end has no event to wait on here; this only paces the poll.
        thread::park_timeout(Duration::from_millis(10));
    }
}

/// Waits (bounded) until process `pid` is blocked in system call `nr`
/// (read from /proc/PID/syscall: the call a sleeping process is in).
pub fn wait_in_syscall(pid: u32, nr: i64, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        if now.split_whitespace().next() == Some(&nr.to_string()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} never blocked in {what} (now: {now:?})"
        );
        // Entering a call has no event to wait on; this only paces the poll.
        thread::park_timeout(Duration::from_millis(5));
    }
}
