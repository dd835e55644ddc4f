//! What the trace says about whole programs: each start and end, and the
//! summary when all have ended.

use super::ptrace::Started;
use super::sockets::SockRef;
use super::{Program, Tracer};
use crate::engine::event::{Proto, Side, Stage};
use crate::engine::evidence::{What, Who};
use crate::t;

impl Tracer<'_> {
    fn program_note(
        &self,
        tag: &str,
        topic: &'static str,
        text: String,
        facts: serde_json::Map<String, serde_json::Value>,
    ) {
        let what = What::Note {
            stage: match (topic, tag) {
                ("started", "S") => Stage::Listen,
                ("started", _) => Stage::Request,
                _ => Stage::Close,
            },
            topic,
            text,
            facts,
        };
        self.sink.record(super::program_who(tag), what);
    }

    /// A program was started under the trace.
    pub(super) fn started(&self, program: &Program, pid: u32) {
        let (tag, command) = (&program.tag, shell_words(&program.argv));
        let mut facts = serde_json::Map::new();
        facts.insert("program".into(), tag.as_str().into());
        facts.insert("pid".into(), pid.into());
        facts.insert("command".into(), command.clone().into());
        self.program_note(
            tag,
            "started",
            t!(
                "{tag}: started {command} (pid {pid}); its socket calls are followed with ptrace",
                "{tag}：启动了 {command}（pid {pid}）；用 ptrace 跟踪它的套接字调用"
            ),
            facts,
        );
    }

    /// --wait-listen: the server ended before it listened, so these
    /// programs were never started.
    pub(super) fn not_started(&self, programs: &[Program]) {
        let tags: Vec<&str> = programs.iter().map(|p| p.tag.as_str()).collect();
        let tags = tags.join(", ");
        let mut facts = serde_json::Map::new();
        facts.insert("programs".into(), serde_json::json!(tags));
        let what = What::Note {
            stage: Stage::Close,
            topic: "not-started",
            text: t!(
                "S ended before it listened (or bound a UDP socket), so {tags} were not started (--wait-listen): see why S ended above",
                "S 在开始监听（或绑定 UDP 套接字）之前就结束了，所以 {tags} 没有启动（--wait-listen）：S 结束的原因见上文"
            ),
            facts,
        };
        self.sink.record(super::program_who("S"), what);
    }

    /// A program has ended, by exit or by a signal.
    pub(super) fn ended(&self, program: &Program, pid: u32, status: i32) {
        let tag = &program.tag;
        let mut facts = serde_json::Map::new();
        facts.insert("program".into(), tag.as_str().into());
        facts.insert("pid".into(), pid.into());
        facts.insert("status".into(), status.into());
        let text = if status > 128 {
            let n = status - 128;
            let name = nix::sys::signal::Signal::try_from(n)
                .map_or_else(|_| n.to_string(), |s| s.as_str().to_string());
            facts.insert("signal".into(), name.clone().into());
            t!(
                "{tag}: the program was killed by {name} (exit status {status})",
                "{tag}：程序被 {name} 杀死（退出状态 {status}）"
            )
        } else {
            t!(
                "{tag}: the program exited with status {status}",
                "{tag}：程序退出，状态 {status}"
            )
        };
        self.program_note(tag, "exited", text, facts);
    }

    /// The program exited while it still had this socket open: the
    /// kernel closed it, as close() would have.
    pub(super) fn exited_with(&self, sock: &SockRef) {
        let s = sock.borrow();
        let who = s.who(s.fd);
        let sample = self.sample_of(&s, None);
        drop(s);
        if let Some(sample) = sample {
            sock.borrow_mut().last_state = sample.state;
            self.sink.record(who.clone(), What::Sample(sample));
        }
        self.note(
            who.clone(),
            Stage::Close,
            "exit-close",
            t!(
                "the program ended with this socket still open: the kernel closed it, as close() would",
                "程序结束时这个套接字还开着：内核把它关闭了，就像 close() 一样"
            ),
        );
        self.watch.forget(sock.borrow().id);
        self.sink.record(who, What::Gone);
    }
}

/// A server whose accepted connections were all served by the thread
/// that accepted them: one thread for every client, said once at the end.
fn one_thread(tracer: &Tracer) {
    let mut by_acceptor: std::collections::BTreeMap<u32, (usize, bool)> = Default::default();
    for s in &tracer.table.all {
        let s = s.borrow();
        if let Some(acceptor) = s.accepted_by {
            let entry = by_acceptor.entry(acceptor).or_insert((0, true));
            entry.0 += 1;
            entry.1 &= s.threads.iter().all(|t| *t == acceptor);
        }
    }
    for (tid, (n, alone)) in by_acceptor {
        if n < 2 || !alone {
            continue;
        }
        let mut facts = serde_json::Map::new();
        facts.insert("thread".into(), tid.into());
        facts.insert("clients".into(), n.into());
        let what = What::Note {
            stage: Stage::Close,
            topic: "one-thread",
            text: t!(
                "the same thread ({tid}) accepted all {n} clients and made every call on them: one thread serves everyone, in turn (a loop, or select/poll/epoll), not a thread per client",
                "同一个线程（{tid}）接受了全部 {n} 个客户端，并完成了它们上面的所有调用：一个线程轮流服务所有人（循环，或 select/poll/epoll），而不是每个客户端一个线程"
            ),
            facts,
        };
        tracer
            .sink
            .record(Who::nobody(Side::Server, Proto::Tcp), what);
    }
}

/// The summary of the whole trace, when every program has ended.
pub(super) fn tell(tracer: &Tracer, started: &[Started]) {
    one_thread(tracer);
    let all = &tracer.table.all;
    let sockets = all.len();
    let connections: Vec<_> = all
        .iter()
        .filter(|s| {
            let s = s.borrow();
            s.proto == Proto::Tcp && s.remote.is_some()
        })
        .collect();
    let bytes_out: u64 = all.iter().map(|s| s.borrow().bytes_out).sum();
    let bytes_in: u64 = all.iter().map(|s| s.borrow().bytes_in).sum();
    let mut ended = serde_json::Map::new();
    let mut endings = Vec::new();
    for c in &connections {
        let c = c.borrow();
        // The kernel's table has the last word: TIME-WAIT outlives the
        // program; a connection it no longer has ended CLOSED.
        let now = match (c.local, c.remote) {
            (Some(l), Some(r)) => match crate::engine::observe::find(l, r) {
                Ok(Some(entry)) => Some(entry.state),
                Ok(None) => Some(crate::engine::event::TcpState::Closed),
                Err(_) => c.last_state,
            },
            _ => c.last_state,
        };
        let state = now.map_or("unknown", |s| s.name());
        let name = match (&c.label, c.side) {
            (Some(l), Side::Server) => format!("{l} (server side)"),
            (Some(l), Side::Client) => l.to_string(),
            (None, _) => format!("fd {}", c.fd),
        };
        endings.push(format!("{name} {state}"));
        ended.insert(name, state.into());
    }
    let mut facts = serde_json::Map::new();
    facts.insert("sockets".into(), sockets.into());
    facts.insert("connections".into(), connections.len().into());
    facts.insert("bytes_out".into(), bytes_out.into());
    facts.insert("bytes_in".into(), bytes_in.into());
    facts.insert("ended".into(), ended.into());
    facts.insert(
        "status".into(),
        started
            .iter()
            .map(|s| (s.program.tag.clone(), serde_json::json!(s.status)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    );
    let n = connections.len();
    let endings = if endings.is_empty() {
        String::new()
    } else {
        let list = endings.join(", ");
        t!(
            "; states at the end (sock_diag): {list}",
            "；结束时的状态（sock_diag）：{list}"
        )
    };
    let (s_noun, c_noun) = (
        if sockets == 1 { "socket" } else { "sockets" },
        if n == 1 {
            "connection end"
        } else {
            "connection ends"
        },
    );
    let text = t!(
        "summary: {sockets} {s_noun} opened, {n} TCP {c_noun}; {bytes_out} bytes sent, {bytes_in} bytes received{endings}",
        "总结：打开了 {sockets} 个套接字，{n} 个 TCP 连接端；发送 {bytes_out} 字节，接收 {bytes_in} 字节{endings}"
    );
    let what = What::Note {
        stage: Stage::Close,
        topic: "summary",
        text,
        facts,
    };
    tracer
        .sink
        .record(Who::nobody(Side::Client, Proto::Tcp), what);
}

/// The command as a person would type it (quoted where needed).
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            let a = crate::sanitize::text(a).into_owned();
            if plain {
                a
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
