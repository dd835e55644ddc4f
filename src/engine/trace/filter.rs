//! Which system calls stop the traced program: the socket calls, and the
//! calls on descriptors that may be sockets (read, write, close, dup…).
//!
//! A seccomp filter, installed in the program just before exec, makes the
//! kernel stop it only at these calls (SECCOMP_RET_TRACE), as
//! `strace --seccomp-bpf` does: every other call (a JVM makes millions of
//! futex calls) runs at full speed. The numbers come from the `syscalls`
//! crate's table for the architecture sockdemo is built for.

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
use std::collections::BTreeMap;
use syscalls::Sysno;

/// The calls that stop the program.
pub fn traced() -> Vec<Sysno> {
    let mut calls = vec![
        Sysno::socket,
        Sysno::bind,
        Sysno::listen,
        Sysno::accept,
        Sysno::accept4,
        Sysno::connect,
        Sysno::getsockopt,
        Sysno::setsockopt,
        Sysno::sendto,
        Sysno::sendmsg,
        Sysno::recvfrom,
        Sysno::recvmsg,
        Sysno::read,
        Sysno::write,
        Sysno::readv,
        Sysno::writev,
        Sysno::shutdown,
        Sysno::close,
        Sysno::close_range,
        Sysno::dup,
        Sysno::dup3,
        Sysno::fcntl,
        Sysno::ioctl,
        Sysno::ppoll,
        Sysno::pselect6,
        Sysno::epoll_ctl,
        Sysno::epoll_pwait,
        Sysno::epoll_pwait2,
    ];
    // Older calls that aarch64 never had (its C library uses dup3 and ppoll).
    #[cfg(target_arch = "x86_64")]
    calls.extend([Sysno::dup2, Sysno::poll, Sysno::select, Sysno::epoll_wait]);
    calls
}

/// The filter, ready to install: stop (for the tracer) at the traced calls,
/// allow the rest.
pub fn program() -> anyhow::Result<BpfProgram> {
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> = traced()
        .into_iter()
        .map(|call| (call.id() as i64, Vec::new()))
        .collect();
    let arch = if cfg!(target_arch = "aarch64") {
        TargetArch::aarch64
    } else {
        TargetArch::x86_64
    };
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Trace(0), arch)?;
    Ok(filter.try_into()?)
}
