//! The tracer's loop: start the programs under ptrace, wait for each stop
//! of each thread, and hand socket calls to [`calls`](super::calls).
//!
//! Every stop is answered at once, and every thread is let go, however
//! the program ends: sockdemo exits only when all its tracees have, and
//! PTRACE_O_EXITKILL kills them if sockdemo itself dies.

use super::calls::Pending;
use super::{filter, output, spawn, summary, Ended, Options, Program, Tracer};
use crate::engine::event::Stage;
use crate::engine::sink::Sink;
use crate::t;
use nix::errno::Errno;
use nix::sys::ptrace::{self, Event};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::sync::Mutex;
use syscalls::Sysno;

/// One thread of a traced program.
struct Thread {
    /// Its process (thread group): descriptors belong to the process.
    pid: u32,
    /// A call stopped at its entry, whose exit is awaited.
    pending: Option<Pending>,
}

/// A program started by the trace.
pub(super) struct Started {
    pub program: Program,
    pub pid: u32,
    /// Its exit status (128 + n when killed by signal n), once it ended.
    pub status: Option<i32>,
}

/// The programs' process ids, for a signal to be passed on to them.
static RUNNING: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Passes `signal` on to every traced program still running.
pub fn pass_on(signal: i32) {
    let Ok(sig) = Signal::try_from(signal) else {
        return;
    };
    for pid in RUNNING.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let _ = nix::sys::signal::kill(Pid::from_raw(*pid), sig);
    }
}

pub fn run(sink: &Sink, programs: &[Program], options: Options) -> anyhow::Result<Ended> {
    let bpf = filter::program()?;
    let mut tracer = Tracer {
        sink,
        table: Default::default(),
        packets: options.packets,
        captures: HashMap::new(),
        listening: false,
        sides: HashMap::new(),
        watch: super::watch::Watch::start(sink),
        epolls: HashMap::new(),
        forked: Default::default(),
        pumps: output::Pumps::new(),
    };
    let mut threads: HashMap<u32, Thread> = HashMap::new();
    let mut started: Vec<Started> = Vec::new();
    if options.one_cpu {
        // The programs, forked from this thread, inherit its CPU.
        one_cpu()?;
    }
    let mut next = 0;
    loop {
        // The first program at once; the others at once too, or, with
        // --wait-listen, once a program listens.
        while next < programs.len() && (next == 0 || !options.wait_listen || tracer.listening) {
            start(
                &mut tracer,
                &programs[next],
                &bpf,
                &mut threads,
                &mut started,
            )?;
            next += 1;
        }
        match waitpid(None, Some(WaitPidFlag::__WALL)) {
            Err(Errno::ECHILD) => break,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(status) => {
                let ended = handle(&mut tracer, &mut threads, &mut started, status);
                if ended && next < programs.len() && started.iter().all(|s| s.status.is_some()) {
                    // The server ended without listening: its clients
                    // would only be refused. They are not started.
                    tracer.not_started(&programs[next..]);
                    next = programs.len();
                }
            }
        }
    }
    RUNNING.lock().unwrap_or_else(|p| p.into_inner()).clear();
    // The programs' last lines, before the summary.
    tracer.pumps.finish();
    summary::tell(&tracer, &started);
    let status = started
        .iter()
        .filter_map(|s| s.status)
        .find(|s| *s != 0)
        .unwrap_or(0);
    drop(tracer);
    Ok(Ended { status })
}

/// Starts one program, stopped at its exec until it is followed.
fn start(
    tracer: &mut Tracer,
    program: &Program,
    bpf: &seccompiler::BpfProgram,
    threads: &mut HashMap<u32, Thread>,
    started: &mut Vec<Started>,
) -> anyhow::Result<()> {
    let Some((exe, args)) = program.argv.split_first() else {
        anyhow::bail!("no program to run");
    };
    // Found first, so that a typo is a clear usage error, not a failed exec.
    let path = which::which(exe).map_err(|_| {
        crate::engine::errors::UsageError(t!(
            "cannot find the program {exe:?}: no such file, or not executable, or not in PATH. Check its name (python3, java, ./client…)",
            "找不到程序 {exe:?}：没有这个文件，或者它不可执行，或者不在 PATH 中。请检查名字（python3、java、./client……）"
        ))
    })?;
    let opts = ptrace::Options::PTRACE_O_TRACESYSGOOD
        | ptrace::Options::PTRACE_O_TRACECLONE
        | ptrace::Options::PTRACE_O_TRACEFORK
        | ptrace::Options::PTRACE_O_TRACEVFORK
        | ptrace::Options::PTRACE_O_TRACEEXEC
        | ptrace::Options::PTRACE_O_TRACESECCOMP
        | ptrace::Options::PTRACE_O_EXITKILL;
    let mut argv = vec![exe.clone()];
    argv.extend(args.iter().cloned());
    let child = spawn::traced(&path, &argv, bpf, opts).map_err(|failure| match failure {
        spawn::Failure::Exec => crate::engine::errors::UsageError(t!(
            "cannot run {exe}: the system could not execute it (a script whose #! interpreter is missing, or a program for another machine)",
            "无法运行 {exe}：系统无法执行它（脚本的 #! 解释器不存在，或者是为别的机器编译的程序）"
        ))
        .into(),
        spawn::Failure::Refused(e) => anyhow::anyhow!(t!(
            "cannot trace {exe}: {e}. This system does not let a program follow its child with ptrace (kernel.yama.ptrace_scope is 3, or 2 for a user without CAP_SYS_PTRACE, or a container forbids ptrace or seccomp); strace would fail the same way",
            "无法跟踪 {exe}：{e}。这个系统不允许程序用 ptrace 跟踪自己的子进程（kernel.yama.ptrace_scope 为 3，或者为 2 而用户没有 CAP_SYS_PTRACE，或者容器禁止了 ptrace 或 seccomp）；strace 也会同样失败"
        )),
        spawn::Failure::Other(e) => e.context(t!("cannot start {exe}", "无法启动 {exe}")),
    })?;
    let pid = child.pid;
    tracer
        .pumps
        .follow(tracer.sink, program, pid, child.stdout, child.stderr);
    threads.insert(pid, Thread { pid, pending: None });
    RUNNING
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(pid as i32);
    if programs_are_several(program) {
        tracer
            .sides
            .insert(pid, super::program_who(&program.tag).side);
    }
    tracer.started(program, pid);
    started.push(Started {
        program: program.clone(),
        pid,
        status: None,
    });
    ptrace::cont(Pid::from_raw(pid as i32), None)?;
    Ok(())
}

/// Answers one stop. Returns true when a started program has ended.
fn handle(
    tracer: &mut Tracer,
    threads: &mut HashMap<u32, Thread>,
    started: &mut [Started],
    status: WaitStatus,
) -> bool {
    match status {
        WaitStatus::PtraceEvent(pid, _, event) if event == Event::PTRACE_EVENT_SECCOMP as i32 => {
            let tid = pid.as_raw() as u32;
            let pending = entry(tracer, threads, pid);
            let want_exit = pending.is_some();
            if let Some(thread) = threads.get_mut(&tid) {
                thread.pending = pending;
            }
            let _ = if want_exit {
                ptrace::syscall(pid, None)
            } else {
                ptrace::cont(pid, None)
            };
        }
        WaitStatus::PtraceSyscall(pid) => {
            let tid = pid.as_raw() as u32;
            if let Some(thread) = threads.get_mut(&tid) {
                if let (Some(p), Ok(info)) = (thread.pending.take(), syscall_info(pid).ok_or(())) {
                    if info.op == libc::PTRACE_SYSCALL_INFO_EXIT {
                        // SAFETY: op says the exit member is the one filled in.
                        let rval = unsafe { info.u.exit.sval };
                        let owner = thread.pid;
                        tracer.exit(owner, tid, p, rval);
                    }
                }
            }
            let _ = ptrace::cont(pid, None);
        }
        WaitStatus::PtraceEvent(pid, _, event) => {
            let tid = pid.as_raw() as u32;
            let is_new = event == Event::PTRACE_EVENT_FORK as i32
                || event == Event::PTRACE_EVENT_VFORK as i32
                || event == Event::PTRACE_EVENT_CLONE as i32;
            if is_new {
                if let Ok(new) = ptrace::getevent(pid) {
                    born(tracer, threads, tid, new as u32);
                }
            } else if event == Event::PTRACE_EVENT_EXEC as i32 {
                exec(tracer, threads, tid);
            }
            let _ = ptrace::cont(pid, None);
        }
        WaitStatus::Stopped(pid, signal) => {
            let tid = pid.as_raw() as u32;
            // A new thread or child starts with a SIGSTOP of ptrace's own,
            // sometimes before its parent's event says who it is.
            let fresh = signal == Signal::SIGSTOP && !threads.contains_key(&tid);
            if fresh {
                let owner = thread_group(tid).unwrap_or(tid);
                threads.insert(
                    tid,
                    Thread {
                        pid: owner,
                        pending: None,
                    },
                );
                // A new process whose parent's fork event is not read yet:
                // its descriptors are its parent's before it runs.
                if owner == tid {
                    if let Some(parent) = parent_of(tid) {
                        forked(tracer, threads, parent, tid);
                    }
                }
            }
            let pass = (!fresh).then_some(signal);
            let _ = ptrace::cont(pid, pass);
        }
        WaitStatus::Exited(pid, code) => return gone(tracer, threads, started, pid, code),
        WaitStatus::Signaled(pid, signal, _) => {
            return gone(tracer, threads, started, pid, 128 + signal as i32)
        }
        _ => {}
    }
    false
}

/// A seccomp stop: the entry of a filtered call.
fn entry(tracer: &mut Tracer, threads: &HashMap<u32, Thread>, pid: Pid) -> Option<Pending> {
    let info = syscall_info(pid)?;
    if info.op != libc::PTRACE_SYSCALL_INFO_SECCOMP {
        return None;
    }
    // SAFETY: op says the seccomp member is the one filled in.
    let (nr, args) = unsafe { (info.u.seccomp.nr, info.u.seccomp.args) };
    let owner = threads.get(&(pid.as_raw() as u32))?.pid;
    tracer.entry(owner, Sysno::new(nr as usize)?, args)
}

/// A new thread or process: a thread shares its process's descriptors, a
/// new process starts with a copy of them.
fn born(tracer: &mut Tracer, threads: &mut HashMap<u32, Thread>, parent_tid: u32, new: u32) {
    let Some(parent) = threads.get(&parent_tid).map(|t| t.pid) else {
        return;
    };
    let owner = thread_group(new).unwrap_or(new);
    if owner != parent {
        forked(tracer, threads, parent, owner);
    }
    threads
        .entry(new)
        .and_modify(|t| t.pid = owner)
        .or_insert(Thread {
            pid: owner,
            pending: None,
        });
}

/// A new process `child` of `parent`: it starts with a copy of its
/// parent's descriptors. Done once, by whichever comes first: the
/// parent's fork event, or the child's own first stop (they may come in
/// either order, and the child may make a call before the event is read).
fn forked(tracer: &mut Tracer, threads: &HashMap<u32, Thread>, parent: u32, child: u32) {
    if !threads.values().any(|t| t.pid == parent) || !tracer.forked.insert(child) {
        return;
    }
    tracer.table.fork(parent, child);
    if let Some(side) = tracer.sides.get(&parent).copied() {
        tracer.sides.insert(child, side);
    }
}

/// The parent process of `pid`, from /proc.
fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// exec(): the process keeps only its descriptors without close-on-exec.
fn exec(tracer: &mut Tracer, threads: &mut HashMap<u32, Thread>, tid: u32) {
    let Some(pid) = threads.get(&tid).map(|t| t.pid) else {
        return;
    };
    // The other threads are gone; the one that exec'd now has the pid.
    threads.retain(|_, t| t.pid != pid);
    threads.insert(pid, Thread { pid, pending: None });
    let open = |fd: i32| std::fs::symlink_metadata(format!("/proc/{pid}/fd/{fd}")).is_ok();
    for sock in tracer.table.drop_process(pid, open) {
        let who = sock.borrow().who(sock.borrow().fd);
        tracer.note(
            who.clone(),
            Stage::Close,
            "exec",
            t!(
                "exec() closed this socket: it was marked close-on-exec (SOCK_CLOEXEC)",
                "exec() 关闭了这个套接字：它带有 close-on-exec 标记（SOCK_CLOEXEC）"
            ),
        );
        tracer.watch.forget(sock.borrow().id);
        tracer.sink.record(who, crate::engine::evidence::What::Gone);
    }
}

/// A program of several (tagged S, C1…) rather than one alone (P).
fn programs_are_several(program: &Program) -> bool {
    program.tag != "P"
}

/// A thread has ended; if it was a process, its sockets close with it.
fn gone(
    tracer: &mut Tracer,
    threads: &mut HashMap<u32, Thread>,
    started: &mut [Started],
    pid: Pid,
    status: i32,
) -> bool {
    let tid = pid.as_raw() as u32;
    let owner = threads.remove(&tid).map_or(tid, |t| t.pid);
    // The last thread of a process (not always its first) takes its
    // descriptors with it.
    if !threads.values().any(|t| t.pid == owner) {
        for sock in tracer.table.drop_process(owner, |_| false) {
            tracer.exited_with(&sock);
        }
        super::sockets::process_gone(owner);
    }
    match started.iter_mut().find(|s| s.pid == tid) {
        Some(program) => {
            program.status = Some(status);
            RUNNING
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|p| *p != tid as i32);
            tracer.ended(&program.program, tid, status);
            true
        }
        None => false,
    }
}

/// PTRACE_GET_SYSCALL_INFO (Linux 5.3): the call a stopped thread is in,
/// with its number and arguments, or its result, on every architecture.
/// (The kernel copies at most the size passed in `addr`; nix's wrapper
/// passes 0, so the call is made here.)
fn syscall_info(pid: Pid) -> Option<libc::ptrace_syscall_info> {
    // SAFETY: all-zero bytes are a valid ptrace_syscall_info.
    let mut info: libc::ptrace_syscall_info = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::ptrace_syscall_info>();
    // SAFETY: the kernel writes at most `size` bytes into `info`.
    let rc = unsafe {
        libc::ptrace(
            libc::PTRACE_GET_SYSCALL_INFO,
            pid.as_raw(),
            size as *mut libc::c_void,
            &mut info as *mut libc::ptrace_syscall_info as *mut libc::c_void,
        )
    };
    (rc > 0).then_some(info)
}

/// `--one-cpu`: this thread (the tracer) stays on the CPU it runs on now,
/// and so will the programs it forks. Each stop of a traced program is
/// then a switch between two threads of one CPU, not a wake-up of
/// another CPU, which is most of what a stop costs (on a virtual machine
/// above all). The price: the program's own threads share one CPU.
fn one_cpu() -> anyhow::Result<()> {
    // SAFETY: sched_getcpu has no arguments; the cpu_set_t is ours, all
    // zeros is a valid empty set, and its true size is passed.
    unsafe {
        let cpu = libc::sched_getcpu();
        anyhow::ensure!(cpu >= 0, "--one-cpu: cannot tell which CPU this is");
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            anyhow::bail!("--one-cpu: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The process (thread group) a thread belongs to, from /proc.
fn thread_group(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}
