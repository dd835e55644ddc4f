//! `sockdemo trace`: the timeline of a program that is not ours.
//!
//! The program runs under ptrace(2), as under strace: the kernel stops it
//! at each socket call (a seccomp filter chooses which, see [`filter`]),
//! sockdemo reads the call's arguments and result, reads the socket's
//! state from the kernel, and records them as the same evidence its own
//! calls make. From there on nothing differs: the tracker, the packets,
//! the renderers are the ones `listen` and `connect` use.
//!
//! Linux only (ptrace, seccomp, pidfd_getfd); elsewhere `trace` says so.

#[cfg(target_os = "linux")]
mod calls;
#[cfg(target_os = "linux")]
mod filter;
#[cfg(target_os = "linux")]
mod lifecycle;
#[cfg(target_os = "linux")]
mod memory;
#[cfg(target_os = "linux")]
mod mistakes;
#[cfg(target_os = "linux")]
mod output;
#[cfg(target_os = "linux")]
mod ptrace;
#[cfg(target_os = "linux")]
mod sockets;
#[cfg(target_os = "linux")]
mod spawn;
#[cfg(target_os = "linux")]
mod summary;
#[cfg(target_os = "linux")]
mod waits;
#[cfg(target_os = "linux")]
mod watch;

use crate::engine::capture::PacketMode;
use crate::engine::sink::Sink;

/// Who speaks for a program as a whole: the server S, or a client.
#[cfg(target_os = "linux")]
fn program_who(tag: &str) -> crate::engine::evidence::Who {
    use crate::engine::event::{Proto, Side};
    let side = if tag == "S" {
        Side::Server
    } else {
        Side::Client
    };
    crate::engine::evidence::Who::nobody(side, Proto::Tcp)
}

/// Passes a signal sockdemo received on to the traced programs.
#[cfg(target_os = "linux")]
pub fn pass_on(signal: i32) {
    ptrace::pass_on(signal);
}

#[cfg(not(target_os = "linux"))]
pub fn pass_on(_signal: i32) {}

/// One program to run and follow.
#[derive(Clone, Debug)]
pub struct Program {
    /// "S", "C1"…: how its output lines are marked.
    pub tag: String,
    pub argv: Vec<String>,
}

/// How to trace.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub packets: PacketMode,
    /// Start each program after the first only once the first listens.
    pub wait_listen: bool,
    /// Run the programs and the tracer on one CPU (see `--one-cpu`).
    pub one_cpu: bool,
}

/// How the traced programs ended: the exit status `trace` itself returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ended {
    pub status: i32,
}

/// Runs `programs` (one after the other, the next once the first listens
/// when `wait_listen`) and narrates their sockets until all have exited.
#[cfg(target_os = "linux")]
pub fn run(sink: &Sink, programs: &[Program], options: Options) -> anyhow::Result<Ended> {
    ptrace::run(sink, programs, options)
}

#[cfg(not(target_os = "linux"))]
pub fn run(_sink: &Sink, _programs: &[Program], _options: Options) -> anyhow::Result<Ended> {
    Err(crate::engine::errors::UsageError(crate::t!(
        "trace is Linux-only: it follows a program with ptrace and reads its sockets' states from the Linux kernel. On this machine, run the program next to `sockdemo listen` or `sockdemo connect` instead",
        "trace 只能在 Linux 上使用：它用 ptrace 跟踪程序，并从 Linux 内核读取套接字的状态。在这台机器上，请把程序和 `sockdemo listen` 或 `sockdemo connect` 一起运行"
    ))
    .into())
}

/// The state of a trace: the sockets of the traced programs, the ports
/// being captured, and where evidence goes.
#[cfg(target_os = "linux")]
pub(crate) struct Tracer<'a> {
    sink: &'a Sink,
    table: sockets::Table,
    packets: PacketMode,
    captures: std::collections::HashMap<u16, Option<crate::engine::capture::PacketWatch>>,
    /// A traced program has a listening socket (for --wait-listen).
    listening: bool,
    /// With several programs, the side each process speaks for (the first
    /// program is the server); its children speak for the same side.
    sides: std::collections::HashMap<u32, crate::engine::event::Side>,
    /// Looks at the TCP sockets between the program's calls.
    watch: watch::Watch,
    /// (process, epoll descriptor) → our sockets it watches.
    epolls: std::collections::HashMap<(u32, i32), Vec<i32>>,
    /// Processes whose descriptors were copied from their parent's.
    forked: std::collections::HashSet<u32>,
    /// The threads that read the programs' output.
    pumps: output::Pumps,
}

#[cfg(target_os = "linux")]
impl Tracer<'_> {
    /// The side a new socket of process `pid` starts on: its program's
    /// (with several programs), or the client's until it listens.
    fn side_of(&self, pid: u32) -> crate::engine::event::Side {
        self.sides
            .get(&pid)
            .copied()
            .unwrap_or(crate::engine::event::Side::Client)
    }

    /// Captures the packets of `port`, from now on (once per port).
    fn watch_port(&mut self, port: u16) {
        if port == 0 || self.captures.contains_key(&port) {
            return;
        }
        use crate::engine::capture::PacketWatch;
        use crate::engine::event::{Proto, Side};
        let watch = PacketWatch::start_as(self.sink, port, self.packets, Proto::Tcp, Side::Client)
            .ok()
            .flatten();
        self.captures.insert(port, watch);
    }
}
