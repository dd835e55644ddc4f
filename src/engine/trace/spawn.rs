//! Starting a program under ptrace, by hand: fork, then in the child
//! PTRACE_TRACEME and a stop, so that the tracer sets its options (and
//! with them PTRACE_O_TRACESECCOMP) before the child installs the seccomp
//! filter and execs.
//!
//! Why not `std::process::Command`: its child reports a failed exec by
//! writing to a pipe while the parent waits in `spawn()`. Under the
//! filter that write is a traced call, and nothing could answer its stop
//! (the tracer is the thread waiting in `spawn()`): the trace would hang.
//! Here a failed exec ends the child with status 127, as a shell says
//! "cannot execute", and the tracer sees it.

use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A program started and stopped at its first instruction, followed.
pub struct Spawned {
    pub pid: u32,
    pub stdout: File,
    pub stderr: File,
}

/// Why a program could not be started.
pub enum Failure {
    /// exec() failed in the child (exit status 127): a missing `#!`
    /// interpreter, or not a program for this machine.
    Exec,
    /// The system refused ptrace or seccomp.
    Refused(nix::Error),
    Other(anyhow::Error),
}

impl From<nix::Error> for Failure {
    fn from(e: nix::Error) -> Failure {
        Failure::Other(e.into())
    }
}

/// Starts `path` with `argv` (argv[0] as typed), its stdout and stderr
/// into pipes, and stops it at its exec, followed with `options`.
pub fn traced(
    path: &Path,
    argv: &[String],
    filter: &seccompiler::BpfProgram,
    options: ptrace::Options,
) -> Result<Spawned, Failure> {
    // Everything the child needs is made before fork: after it, in a
    // process with threads, the child may only make system calls.
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|e| Failure::Other(e.into()))?;
    let c_args: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|e| Failure::Other(e.into()))?;
    let mut arg_ptrs: Vec<*const libc::c_char> = c_args.iter().map(|a| a.as_ptr()).collect();
    arg_ptrs.push(std::ptr::null());
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // SAFETY: the child branch below makes only async-signal-safe system
    // calls (dup2, ptrace, raise, prctl, seccomp, execv, _exit) on data
    // prepared before the fork, and never returns.
    match unsafe { fork() }? {
        ForkResult::Child => unsafe { child(&c_path, &arg_ptrs, &out_w, &err_w, filter) },
        ForkResult::Parent { child } => {
            drop((out_w, err_w));
            follow(child, options)?;
            Ok(Spawned {
                pid: child.as_raw() as u32,
                stdout: File::from(out_r),
                stderr: File::from(err_r),
            })
        }
    }
}

/// The child, between fork and exec.
///
/// # Safety
/// Called only in the child of a fork; never returns.
unsafe fn child(
    path: &CString,
    argv: &[*const libc::c_char],
    out: &OwnedFd,
    err: &OwnedFd,
    filter: &seccompiler::BpfProgram,
) -> ! {
    libc::dup2(out.as_raw_fd(), 1);
    libc::dup2(err.as_raw_fd(), 2);
    if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
        libc::_exit(125);
    }
    // Wait here until the tracer has set its options.
    libc::raise(libc::SIGSTOP);
    if seccompiler::apply_filter(filter).is_err() {
        libc::_exit(126);
    }
    libc::execv(path.as_ptr(), argv.as_ptr());
    libc::_exit(127)
}

/// In the parent: the child's stop before exec, the options, then its exec.
fn follow(child: Pid, options: ptrace::Options) -> Result<(), Failure> {
    match waitpid(child, Some(WaitPidFlag::__WALL))? {
        WaitStatus::Stopped(_, Signal::SIGSTOP) => {}
        WaitStatus::Exited(_, 125) => return Err(Failure::Refused(nix::Error::EPERM)),
        other => {
            return Err(Failure::Other(anyhow::anyhow!(
                "the program did not stop before exec ({other:?})"
            )))
        }
    }
    ptrace::setoptions(child, options)?;
    ptrace::cont(child, None)?;
    loop {
        match waitpid(child, Some(WaitPidFlag::__WALL))? {
            // Exec'd: stopped at the new program's first instruction.
            WaitStatus::PtraceEvent(_, _, e) if e == ptrace::Event::PTRACE_EVENT_EXEC as i32 => {
                return Ok(())
            }
            WaitStatus::Exited(_, 126) => return Err(Failure::Refused(nix::Error::EPERM)),
            WaitStatus::Exited(_, _) | WaitStatus::Signaled(..) => return Err(Failure::Exec),
            // A stop before exec (a signal): pass it on, and wait again.
            WaitStatus::Stopped(_, sig) => ptrace::cont(child, sig)?,
            _ => ptrace::cont(child, None)?,
        }
    }
}
