//! The traced program's sockets, by process and descriptor, and the
//! kernel's answers about them.
//!
//! A descriptor is a number in one process's table; several numbers (dup,
//! fork) can name one socket, and the socket closes only when the last of
//! them is closed. So the table maps (process, fd) to a shared [`Sock`].
//!
//! To ask the kernel about a socket that is not ours, sockdemo borrows it
//! for a moment: pidfd_getfd(2) gives us a duplicate of the program's
//! descriptor (allowed to its tracer), we read TCP_INFO or the addresses,
//! and close the duplicate at once. Keeping it would keep the socket open
//! after the program's own close(), and change what the program does.

use crate::engine::event::{Proto, Side, TcpState};
use crate::engine::evidence::{SocketId, Who};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;

/// One socket of the traced program.
#[derive(Debug)]
pub struct Sock {
    pub id: SocketId,
    pub proto: Proto,
    pub side: Side,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    pub label: Option<Arc<str>>,
    pub listener: bool,
    /// The descriptor number the program first had for it.
    pub fd: i32,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The last state the kernel reported (for the summary).
    pub last_state: Option<TcpState>,
    /// Threads that made calls on it (for "accepted by thread…").
    pub threads: Vec<u32>,
    /// Processes that made calls on it (a forked child shares it).
    pub processes: Vec<u32>,
    /// For a socket accept() returned: the thread that accepted it.
    pub accepted_by: Option<u32>,
    /// The last receives of at most 4 bytes, together (a length being read).
    pub small_reads: Vec<u8>,
    pub said_framing: bool,
    /// The sizes of this socket's sends that its peer has not yet received
    /// in full (when the peer is traced too).
    pub unreceived: std::collections::VecDeque<usize>,
    pub said_boundaries: bool,
    /// SO_REUSEADDR was set on it (for an EADDRINUSE's explanation).
    pub reuse_addr: bool,
    /// A non-blocking connect() is under way (EINPROGRESS, and its end
    /// not yet asked for): a wait for it is shown.
    pub connecting: bool,
}

pub type SockRef = Rc<RefCell<Sock>>;

impl Sock {
    pub fn new(proto: Proto, fd: i32) -> Sock {
        Sock {
            id: SocketId::next(),
            proto,
            side: Side::Client,
            local: None,
            remote: None,
            label: None,
            listener: false,
            fd,
            bytes_in: 0,
            bytes_out: 0,
            last_state: None,
            threads: Vec::new(),
            processes: Vec::new(),
            accepted_by: None,
            small_reads: Vec::new(),
            said_framing: false,
            unreceived: Default::default(),
            said_boundaries: false,
            reuse_addr: false,
            connecting: false,
        }
    }

    /// The identity its evidence carries; `fd` is the number the call used.
    pub fn who(&self, fd: i32) -> Who {
        Who {
            side: self.side,
            proto: self.proto,
            socket: Some(self.id),
            fd: Some(fd as i64),
            conn: self.label.clone(),
            local: self.local,
            remote: self.remote,
        }
    }
}

/// Every socket descriptor of every traced process.
#[derive(Default)]
pub struct Table {
    /// (process id, descriptor) → socket.
    fds: HashMap<(u32, i32), SockRef>,
    /// Every socket the program opened, for the summary.
    pub all: Vec<SockRef>,
}

impl Table {
    pub fn get(&self, pid: u32, fd: i32) -> Option<SockRef> {
        self.fds.get(&(pid, fd)).cloned()
    }

    pub fn insert(&mut self, pid: u32, fd: i32, sock: Sock) -> SockRef {
        let sock = Rc::new(RefCell::new(sock));
        self.all.push(sock.clone());
        self.fds.insert((pid, fd), sock.clone());
        sock
    }

    /// `to` is now another name for what `from` names (dup, dup2, dup3,
    /// fcntl F_DUPFD): a socket's, or nothing we follow.
    pub fn dup(&mut self, pid: u32, from: i32, to: i32) -> Option<SockRef> {
        let sock = self.fds.get(&(pid, from)).cloned();
        match &sock {
            Some(s) => self.fds.insert((pid, to), s.clone()),
            None => self.fds.remove(&(pid, to)),
        };
        sock
    }

    /// Removes a descriptor; returns its socket and whether it was the last
    /// name of that socket (then close() really closes it).
    pub fn close(&mut self, pid: u32, fd: i32) -> Option<(SockRef, bool)> {
        let sock = self.fds.remove(&(pid, fd))?;
        let last = !self.fds.values().any(|s| Rc::ptr_eq(s, &sock));
        Some((sock, last))
    }

    /// Would closing `fd` close its socket? (Asked before close() runs.)
    pub fn is_last(&self, pid: u32, fd: i32) -> bool {
        match self.fds.get(&(pid, fd)) {
            Some(sock) => self.fds.iter().filter(|(_, s)| Rc::ptr_eq(s, sock)).count() == 1,
            None => false,
        }
    }

    /// Every socket descriptor of `pid`.
    pub fn fds_of(&self, pid: u32) -> Vec<i32> {
        self.fds
            .keys()
            .filter(|(p, _)| *p == pid)
            .map(|(_, fd)| *fd)
            .collect()
    }

    /// Descriptors in `first..=last` of `pid` (close_range).
    pub fn in_range(&self, pid: u32, first: i32, last: i32) -> Vec<i32> {
        let mut fds: Vec<i32> = self
            .fds
            .keys()
            .filter(|(p, fd)| *p == pid && (first..=last).contains(fd))
            .map(|(_, fd)| *fd)
            .collect();
        fds.sort_unstable();
        fds
    }

    /// A new process (fork) starts with a copy of its parent's table.
    pub fn fork(&mut self, parent: u32, child: u32) {
        let copies: Vec<(i32, SockRef)> = self
            .fds
            .iter()
            .filter(|((p, _), _)| *p == parent)
            .map(|((_, fd), s)| (*fd, s.clone()))
            .collect();
        for (fd, sock) in copies {
            self.fds.insert((child, fd), sock);
        }
    }

    /// A process has exited (or exec closed its close-on-exec descriptors:
    /// then `keep` says which survive).
    pub fn drop_process(&mut self, pid: u32, keep: impl Fn(i32) -> bool) -> Vec<SockRef> {
        let gone: Vec<i32> = self
            .fds
            .keys()
            .filter(|(p, fd)| *p == pid && !keep(*fd))
            .map(|(_, fd)| *fd)
            .collect();
        let mut closed = Vec::new();
        for fd in gone {
            if let Some((sock, true)) = self.close(pid, fd) {
                closed.push(sock);
            }
        }
        closed
    }
}

/// A moment's duplicate of a traced program's descriptor.
pub struct Borrowed(OwnedFd);

impl Borrowed {
    /// Duplicates descriptor `fd` of process `pid` (pidfd_open, then
    /// pidfd_getfd; Linux 5.6 or later). None if the kernel refuses.
    pub fn take(pid: u32, fd: i32) -> Option<Borrowed> {
        use std::os::fd::AsRawFd;
        let pidfd = pidfd_of(pid)?;
        // SAFETY: a plain system call with integer arguments; it returns a
        // new descriptor that we own, or -1.
        let dup =
            unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) } as RawFd;
        // SAFETY: `dup` is a new descriptor of ours, owned once.
        (dup >= 0).then(|| Borrowed(unsafe { OwnedFd::from_raw_fd(dup) }))
    }

    pub fn raw(&self) -> i64 {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd() as i64
    }

    fn sock(&self) -> socket2::SockRef<'_> {
        socket2::SockRef::from(&self.0)
    }

    pub fn local(&self) -> Option<SocketAddr> {
        self.sock().local_addr().ok()?.as_socket()
    }

    pub fn peer(&self) -> Option<SocketAddr> {
        self.sock().peer_addr().ok()?.as_socket()
    }
}

/// The pidfds of the traced processes, by pid.
static PIDFDS: std::sync::Mutex<Option<HashMap<u32, Arc<OwnedFd>>>> = std::sync::Mutex::new(None);

/// A pidfd for process `pid`, opened once and kept while the process
/// lives (a pidfd never names another process, even once the pid is
/// reused: then pidfd_getfd fails, and nothing is borrowed).
fn pidfd_of(pid: u32) -> Option<Arc<OwnedFd>> {
    let mut all = PIDFDS.lock().unwrap_or_else(|p| p.into_inner());
    let all = all.get_or_insert_with(HashMap::new);
    if let Some(fd) = all.get(&pid) {
        return Some(fd.clone());
    }
    // SAFETY: a plain system call; it returns a new descriptor, or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) } as RawFd;
    if raw < 0 {
        return None;
    }
    // SAFETY: `raw` is a new descriptor of ours, owned once.
    let fd = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
    all.insert(pid, fd.clone());
    Some(fd)
}

/// The process has ended: its pidfd is closed.
pub fn process_gone(pid: u32) {
    if let Some(all) = PIDFDS.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        all.remove(&pid);
    }
}
