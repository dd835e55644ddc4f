//! The waits of a non-blocking connect(): after `connect() = -1
//! EINPROGRESS` a program waits for its socket to become writable, with
//! select(), or epoll_wait() (Node, Java NIO), before it asks SO_ERROR how
//! the handshake ended. Those waits are shown while a socket of ours is
//! connecting, and only when their result says which socket is ready (a
//! wait on many descriptors that returns for another one is not this
//! socket's story). poll() on one socket is handled with the other calls.

use super::memory;
use super::Tracer;
use crate::engine::call::Call;
use crate::engine::evidence::Shown;
use nix::unistd::Pid;
use std::time::Duration;
use syscalls::Sysno;

/// EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD (epoll_ctl(2)).
const EPOLL_CTL_ADD: u64 = 1;
const EPOLL_CTL_DEL: u64 = 2;
const EPOLL_CTL_MOD: u64 = 3;

/// Bytes of one `struct epoll_event`, and where its data starts: packed
/// on x86_64 (4 + 8), padded to 16 elsewhere.
const EPOLL_EVENT_SIZE: u64 = if cfg!(target_arch = "x86_64") { 12 } else { 16 };
const EPOLL_DATA_AT: u64 = if cfg!(target_arch = "x86_64") { 4 } else { 8 };

impl Tracer<'_> {
    /// epoll_ctl() on one of our sockets: which epoll instance watches it.
    pub(super) fn epoll_ctl(&mut self, pid: u32, args: [u64; 6], rval: i64) {
        let (epfd, op, fd) = (args[0] as i32, args[1], args[2] as i32);
        if rval < 0 || self.table.get(pid, fd).is_none() {
            return;
        }
        let watched = self.epolls.entry((pid, epfd)).or_default();
        match op {
            EPOLL_CTL_ADD | EPOLL_CTL_MOD if !watched.contains(&fd) => watched.push(fd),
            EPOLL_CTL_DEL => watched.retain(|f| *f != fd),
            _ => {}
        }
    }

    /// The connecting socket of ours this wait may be for, at its entry.
    pub(super) fn wait_for(&self, pid: u32, nr: Sysno, args: [u64; 6]) -> Option<i32> {
        let connecting = |fd: &i32| {
            self.table
                .get(pid, *fd)
                .is_some_and(|s| s.borrow().connecting)
        };
        match nr {
            Sysno::epoll_pwait | Sysno::epoll_pwait2 => {
                self.epolled(pid, args[0] as i32, connecting)
            }
            #[cfg(target_arch = "x86_64")]
            Sysno::epoll_wait => self.epolled(pid, args[0] as i32, connecting),
            Sysno::pselect6 => self.selected(pid, args, connecting),
            #[cfg(target_arch = "x86_64")]
            Sysno::select => self.selected(pid, args, connecting),
            _ => None,
        }
    }

    fn epolled(&self, pid: u32, epfd: i32, connecting: impl Fn(&i32) -> bool) -> Option<i32> {
        self.epolls
            .get(&(pid, epfd))?
            .iter()
            .copied()
            .find(connecting)
    }

    fn selected(&self, pid: u32, args: [u64; 6], connecting: impl Fn(&i32) -> bool) -> Option<i32> {
        let proc = Pid::from_raw(pid as i32);
        let nfds = args[0] as i32;
        self.table
            .fds_of(pid)
            .into_iter()
            .filter(|fd| *fd < nfds && connecting(fd))
            .find(|fd| in_set(proc, args[2], *fd))
    }

    /// At the exit of a wait for `fd`: the call as it will be told, or
    /// None when its result does not say whether `fd` is ready.
    pub(super) fn wait_told(
        &self,
        pid: u32,
        p: &super::calls::Pending,
        fd: i32,
        rval: i64,
    ) -> Option<(Call, Shown)> {
        let (proc, a, t) = (Pid::from_raw(pid as i32), p.args, p.timeout);
        let ready = |yes: bool| rval <= 0 || yes;
        let (name, timeout, args) = match p.nr {
            Sysno::pselect6 => {
                ready(in_set(proc, a[2], fd)).then_some(())?;
                (
                    "pselect6",
                    t,
                    format!("{}, writefds [{fd}], {}", a[0], shown(t)),
                )
            }
            #[cfg(target_arch = "x86_64")]
            Sysno::select => {
                ready(in_set(proc, a[2], fd)).then_some(())?;
                (
                    "select",
                    t,
                    format!("{}, writefds [{fd}], {}", a[0], shown(t)),
                )
            }
            nr => {
                ready(epoll_names(proc, a[1], rval, fd)).then_some(())?;
                (nr.name(), t, format!("{}, [fd {fd} …], {}", a[0], shown(t)))
            }
        };
        let call = Call::Poll { out: true, timeout };
        let no_fd = true;
        Some((
            call,
            Shown {
                no_fd,
                ..Shown::new(name, args)
            },
        ))
    }
}

/// The timeout a wait was given, read at its entry.
pub fn timeout_of(proc: Pid, nr: Sysno, a: [u64; 6]) -> Option<Duration> {
    let ms = |v: u64| (v as i32 >= 0).then(|| Duration::from_millis(v as i32 as u64));
    match nr {
        Sysno::ppoll => timespec(proc, a[2]),
        Sysno::pselect6 => timespec(proc, a[4]),
        Sysno::epoll_pwait2 => timespec(proc, a[3]),
        Sysno::epoll_pwait => ms(a[3]),
        #[cfg(target_arch = "x86_64")]
        Sysno::poll => ms(a[2]),
        #[cfg(target_arch = "x86_64")]
        Sysno::select => timeval(proc, a[4]),
        #[cfg(target_arch = "x86_64")]
        Sysno::epoll_wait => ms(a[3]),
        _ => None,
    }
}

/// Is `fd` set in the `fd_set` at `set`?
fn in_set(proc: Pid, set: u64, fd: i32) -> bool {
    if set == 0 || fd < 0 {
        return false;
    }
    let word = memory::u64_at(proc, set + (fd as u64 / 64) * 8).unwrap_or(0);
    word >> (fd as u64 % 64) & 1 == 1
}

/// Does one of the `n` events at `events` carry `fd` as its data (as
/// libuv, Java and most event loops register them)?
fn epoll_names(proc: Pid, events: u64, n: i64, fd: i32) -> bool {
    (0..n.clamp(0, 64) as u64).any(|i| {
        memory::u64_at(proc, events + i * EPOLL_EVENT_SIZE + EPOLL_DATA_AT)
            .is_some_and(|data| data as i32 == fd)
    })
}

fn timespec(proc: Pid, at: u64) -> Option<Duration> {
    (at != 0).then(|| {
        Duration::from_secs(memory::u64_at(proc, at).unwrap_or(0))
            + Duration::from_nanos(memory::u64_at(proc, at + 8).unwrap_or(0))
    })
}

#[cfg(target_arch = "x86_64")]
fn timeval(proc: Pid, at: u64) -> Option<Duration> {
    (at != 0).then(|| {
        Duration::from_secs(memory::u64_at(proc, at).unwrap_or(0))
            + Duration::from_micros(memory::u64_at(proc, at + 8).unwrap_or(0))
    })
}

fn shown(t: Option<Duration>) -> String {
    match t {
        Some(d) => format!("{} ms", d.as_millis()),
        None => "no timeout".into(),
    }
}
