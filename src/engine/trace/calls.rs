//! One traced system call, from its entry to its exit: which socket it
//! is about, what it means (a [`Call`] the tracker understands), how it was
//! really made (its name and arguments, as strace writes them), and its
//! real result. Calls on descriptors that are not sockets are left out
//! at their entry, so they cost one stop, not two.

use super::memory::{self, PREVIEW_BYTES};
use super::sockets::{Borrowed, Sock, SockRef};
use super::Tracer;
use crate::engine::call::{Call, Family, How, Opt};
use crate::engine::ctx::preview;
use crate::engine::event::{Dir, Proto, Side, Stage, Task, TcpState};
use crate::engine::evidence::{CallRecord, Data, Errno, Sample, Shown, What, Who};
use crate::engine::observe;
use nix::unistd::Pid;
use std::net::SocketAddr;
use std::time::Duration;
use syscalls::Sysno;

/// A call stopped at its entry, waiting for its exit.
pub struct Pending {
    pub nr: Sysno,
    pub args: [u64; 6],
    pub start_ns: u64,
    /// close(): the socket's state and unread bytes, read before it went.
    pub before: Option<(Option<Sample>, Option<u32>)>,
    /// select() or epoll_wait(): the connecting socket it may wait for.
    pub wait_fd: Option<i32>,
    /// The timeout of a wait, read at its entry (Linux writes the time
    /// left into select()'s and ppoll()'s when they return).
    pub timeout: Option<Duration>,
}

/// Where a call's result leaves the socket it is about.
struct Made {
    sock: SockRef,
    fd: i32,
    call: Call,
    shown: Shown,
    data: Option<Data>,
    /// The first bytes a receive got, as they are (for the mistakes).
    raw: Vec<u8>,
    /// getsockopt(SO_ERROR): the error a non-blocking connect() ended with.
    so_error: Option<i32>,
}

impl Tracer<'_> {
    /// A call has stopped at its entry: does its exit matter? (None: no.)
    pub fn entry(&mut self, pid: u32, nr: Sysno, args: [u64; 6]) -> Option<Pending> {
        let fd = args[0] as i32;
        let ours = self.table.get(pid, fd).is_some();
        let wanted = match nr {
            Sysno::socket | Sysno::close_range => true,
            Sysno::ioctl => ours && args[1] == libc::FIONBIO,
            Sysno::epoll_ctl => self.table.get(pid, args[2] as i32).is_some(),
            Sysno::pselect6 | Sysno::epoll_pwait | Sysno::epoll_pwait2 => {
                self.wait_for(pid, nr, args).is_some()
            }
            #[cfg(target_arch = "x86_64")]
            Sysno::select | Sysno::epoll_wait => self.wait_for(pid, nr, args).is_some(),
            Sysno::dup3 => ours || self.table.get(pid, args[1] as i32).is_some(),
            #[cfg(target_arch = "x86_64")]
            Sysno::dup2 => ours || self.table.get(pid, args[1] as i32).is_some(),
            #[cfg(target_arch = "x86_64")]
            Sysno::poll => self.polls_a_socket(pid, args[0], args[1]),
            Sysno::ppoll => self.polls_a_socket(pid, args[0], args[1]),
            _ => ours,
        };
        if !wanted {
            return None;
        }
        self.step(pid, fd, nr);
        let mut pending = Pending {
            nr,
            args,
            start_ns: crate::engine::sink::now_ns(),
            before: None,
            wait_fd: self.wait_for(pid, nr, args),
            timeout: super::waits::timeout_of(Pid::from_raw(pid as i32), nr, args),
        };
        match nr {
            Sysno::read | Sysno::recvfrom | Sysno::recvmsg | Sysno::readv => {
                if let Some(sock) = self.table.get(pid, fd) {
                    let who = sock.borrow().who(fd);
                    if matches!(nr, Sysno::read | Sysno::recvfrom) {
                        self.framing_asked(&sock, &who, args[2] as usize);
                    }
                    self.watch.waiting(sock.borrow().id, true);
                }
            }
            Sysno::ppoll => self.poll_begins(pid, args),
            #[cfg(target_arch = "x86_64")]
            Sysno::poll => self.poll_begins(pid, args),
            Sysno::connect => self.connecting(pid, fd, args),
            Sysno::sendto if args[4] != 0 => {
                let to = memory::sockaddr(Pid::from_raw(pid as i32), args[4], args[5] as u32);
                if let (Some(sock), Some(to)) = (self.table.get(pid, fd), to) {
                    if sock.borrow().proto == Proto::Udp {
                        self.watch_port(to.port());
                    }
                }
            }
            Sysno::close if self.table.is_last(pid, fd) => {
                pending.before = self
                    .table
                    .get(pid, fd)
                    .map(|s| self.before_close(pid, fd, &s));
            }
            _ => {}
        }
        Some(pending)
    }

    /// `--step`: the program waits at the entry of the call until Enter.
    fn step(&self, pid: u32, fd: i32, nr: Sysno) {
        let Some(stepper) = self.sink.stepper() else {
            return;
        };
        let stage = match nr {
            Sysno::socket | Sysno::connect | Sysno::bind => Stage::Request,
            Sysno::listen => Stage::Listen,
            Sysno::accept | Sysno::accept4 => Stage::Confirm,
            Sysno::shutdown | Sysno::close => Stage::Close,
            _ => Stage::Transfer,
        };
        let who = match self.table.get(pid, fd) {
            Some(sock) if nr != Sysno::socket => sock.borrow().who(fd),
            _ => Who::nobody(self.side_of(pid), Proto::Tcp),
        };
        let mut ctx = crate::engine::ctx::Ctx::new(self.sink, who.side, who.proto);
        ctx.socket = who.socket;
        ctx.fd = who.fd;
        ctx.conn = who.conn;
        ctx.local = who.local;
        ctx.remote = who.remote;
        stepper.before_syscall(&ctx, stage, nr.name());
    }

    /// A poll() for input on one socket is a wait for data, as a blocking
    /// receive is (Python and Java wait so when the socket has a timeout).
    fn poll_begins(&self, pid: u32, args: [u64; 6]) {
        let proc = Pid::from_raw(pid as i32);
        let Some(fd) = memory::i32_at(proc, args[0]) else {
            return;
        };
        let events = memory::bytes(proc, args[0] + 4, 2);
        let pollin =
            events.len() == 2 && i16::from_ne_bytes([events[0], events[1]]) & libc::POLLIN != 0;
        if let (true, Some(sock)) = (pollin, self.table.get(pid, fd)) {
            self.watch.waiting(sock.borrow().id, true);
        }
    }

    /// connect() is about to run: watch its port before the SYN goes, and
    /// say that the packets to `target` are this socket's.
    fn connecting(&mut self, pid: u32, fd: i32, args: [u64; 6]) {
        let Some(sock) = self.table.get(pid, fd) else {
            return;
        };
        let Some(target) = memory::sockaddr(Pid::from_raw(pid as i32), args[1], args[2] as u32)
        else {
            return;
        };
        self.watch_port(target.port());
        let who = sock.borrow().who(fd);
        self.sink.record(who, What::Begun { target });
    }

    /// The state a socket is in just before close(), and what it leaves
    /// unread (close() with unread bytes sends an RST).
    fn before_close(&self, pid: u32, fd: i32, sock: &SockRef) -> (Option<Sample>, Option<u32>) {
        if sock.borrow().proto != Proto::Tcp {
            return (None, None);
        }
        let Some(b) = Borrowed::take(pid, fd) else {
            return (None, None);
        };
        let sample = self.sample_of(&sock.borrow(), Some(&b));
        (sample, observe::unread(b.raw()))
    }

    /// The call has returned `rval` (negative: -errno).
    pub fn exit(&mut self, pid: u32, tid: u32, p: Pending, rval: i64) {
        // ERESTARTSYS and friends: a signal interrupted the call and the
        // kernel will make it again; it stops again then.
        if (-516..=-512).contains(&rval) {
            return;
        }
        let fd = p.args[0] as i32;
        let task = Task { pid, tid };
        let made = match p.nr {
            Sysno::socket => return self.socket(task, &p, rval),
            Sysno::accept | Sysno::accept4 => return self.accept(task, &p, rval),
            Sysno::close => return self.close(task, &p, rval),
            Sysno::close_range => return self.close_range(task, &p, rval),
            Sysno::dup => return self.dup(task, fd, rval as i32, rval, "dup"),
            Sysno::dup3 => return self.dup(task, fd, p.args[1] as i32, rval, "dup3"),
            #[cfg(target_arch = "x86_64")]
            Sysno::dup2 => return self.dup(task, fd, p.args[1] as i32, rval, "dup2"),
            Sysno::fcntl => return self.fcntl(task, &p, rval),
            Sysno::ioctl => return self.ioctl(task, &p, rval),
            Sysno::epoll_ctl => return self.epoll_ctl(pid, p.args, rval),
            _ if p.wait_fd.is_some() => self.waited(pid, &p, rval),
            _ => self.on_socket(pid, &p, rval),
        };
        if let Some(made) = made {
            self.tell(task, &p, rval, made);
        }
    }

    /// A select() or epoll_wait() for a connecting socket.
    fn waited(&mut self, pid: u32, p: &Pending, rval: i64) -> Option<Made> {
        let fd = p.wait_fd?;
        let sock = self.table.get(pid, fd)?;
        let (call, shown) = self.wait_told(pid, p, fd, rval)?;
        Some(Made {
            sock,
            fd,
            call,
            shown,
            data: None,
            raw: Vec::new(),
            so_error: None,
        })
    }

    /// A call on one socket descriptor: what it means and how it read.
    fn on_socket(&mut self, pid: u32, p: &Pending, rval: i64) -> Option<Made> {
        let proc = Pid::from_raw(pid as i32);
        let fd = match p.nr {
            // poll()'s first argument is its array: the socket is in it.
            Sysno::ppoll => memory::i32_at(proc, p.args[0])?,
            #[cfg(target_arch = "x86_64")]
            Sysno::poll => memory::i32_at(proc, p.args[0])?,
            _ => p.args[0] as i32,
        };
        let sock = self.table.get(pid, fd)?;
        let a = p.args;
        let moved = rval.max(0) as usize;
        let mut raw = Vec::new();
        let mut so_error = None;
        let (call, data) = match p.nr {
            Sysno::bind => (Call::Bind(memory::sockaddr(proc, a[1], a[2] as u32)?), None),
            Sysno::listen => (Call::Listen(a[1] as i32), None),
            Sysno::connect => (
                Call::Connect(memory::sockaddr(proc, a[1], a[2] as u32)?),
                None,
            ),
            Sysno::shutdown => {
                let how = match a[1] as i32 {
                    libc::SHUT_RD => How::Read,
                    libc::SHUT_WR => How::Write,
                    _ => How::Both,
                };
                (Call::Shutdown(how), None)
            }
            Sysno::setsockopt => (Call::SetSockOpt(self.sockopt(proc, a)?), None),
            Sysno::getsockopt => {
                if (a[1] as i32, a[2] as i32) != (libc::SOL_SOCKET, libc::SO_ERROR) || rval < 0 {
                    return None;
                }
                let value = memory::i32_at(proc, a[3]).unwrap_or(0);
                so_error = (value != 0).then_some(value);
                (Call::GetSoError(so_error.map(errno_name)), None)
            }
            Sysno::write | Sysno::sendto | Sysno::sendmsg | Sysno::writev => {
                let (len, to, bytes) = self.outgoing(proc, p.nr, a, moved);
                let call = match to {
                    Some(to) => Call::SendTo(len, to),
                    None => Call::Send(len),
                };
                (
                    call,
                    (moved > 0).then(|| shown_data(Dir::Out, &bytes, moved)),
                )
            }
            Sysno::read | Sysno::recvfrom | Sysno::recvmsg | Sysno::readv => {
                let (len, bytes) = self.incoming(proc, p.nr, a, moved);
                let call = match sock.borrow().proto {
                    Proto::Udp => Call::RecvFrom(len),
                    Proto::Tcp => Call::Recv(len),
                };
                let data = (moved > 0).then(|| shown_data(Dir::In, &bytes, moved));
                raw = bytes;
                (call, data)
            }
            #[cfg(target_arch = "x86_64")]
            Sysno::poll => (self.poll(proc, a, p.timeout)?, None),
            Sysno::ppoll => (self.poll(proc, a, p.timeout)?, None),
            _ => return None,
        };
        // The real name; the arguments written as for sockdemo's own calls.
        let shown = Shown::new(p.nr.name(), call.args());
        Some(Made {
            sock,
            fd,
            call,
            shown,
            data,
            raw,
            so_error,
        })
    }

    /// The bytes a send-like call handed to the kernel (at most the preview).
    fn outgoing(
        &self,
        proc: Pid,
        nr: Sysno,
        a: [u64; 6],
        moved: usize,
    ) -> (usize, Option<SocketAddr>, Vec<u8>) {
        let want = moved.min(PREVIEW_BYTES);
        match nr {
            Sysno::writev => {
                let len = iov_len(proc, a[1], a[2]);
                (
                    len,
                    None,
                    memory::gather(proc, a[1], a[2], moved, PREVIEW_BYTES),
                )
            }
            Sysno::sendmsg => {
                let (iov, cnt, name, namelen) = msghdr(proc, a[1]);
                let to = (name != 0)
                    .then(|| memory::sockaddr(proc, name, namelen))
                    .flatten();
                let len = iov_len(proc, iov, cnt);
                (
                    len,
                    to,
                    memory::gather(proc, iov, cnt, moved, PREVIEW_BYTES),
                )
            }
            Sysno::sendto => {
                let to = (a[4] != 0)
                    .then(|| memory::sockaddr(proc, a[4], a[5] as u32))
                    .flatten();
                (a[2] as usize, to, memory::bytes(proc, a[1], want))
            }
            _ => (a[2] as usize, None, memory::bytes(proc, a[1], want)),
        }
    }

    /// The bytes a receive-like call got (read at its exit, from the
    /// program's own buffer).
    fn incoming(&self, proc: Pid, nr: Sysno, a: [u64; 6], moved: usize) -> (usize, Vec<u8>) {
        match nr {
            Sysno::readv => (
                iov_len(proc, a[1], a[2]),
                memory::gather(proc, a[1], a[2], moved, PREVIEW_BYTES),
            ),
            Sysno::recvmsg => {
                let (iov, cnt, _, _) = msghdr(proc, a[1]);
                (
                    iov_len(proc, iov, cnt),
                    memory::gather(proc, iov, cnt, moved, PREVIEW_BYTES),
                )
            }
            _ => (
                a[2] as usize,
                memory::bytes(proc, a[1], moved.min(PREVIEW_BYTES)),
            ),
        }
    }

    /// A socket option a lesson explains; others are left out. (Its
    /// arguments are written by [`Call::args`], as for sockdemo's own.)
    fn sockopt(&self, proc: Pid, a: [u64; 6]) -> Option<Opt> {
        let (level, name, value) = (a[1] as i32, a[2] as i32, a[3]);
        let timeval = || -> Option<Option<Duration>> {
            let secs = memory::u64_at(proc, value)?;
            let micros = memory::u64_at(proc, value + 8)?;
            let d = Duration::from_secs(secs) + Duration::from_micros(micros);
            Some((!d.is_zero()).then_some(d))
        };
        match (level, name) {
            // Only turning it on is the lesson's (and what Call shows).
            (libc::SOL_SOCKET, libc::SO_REUSEADDR) => {
                (memory::i32_at(proc, value)? != 0).then_some(Opt::ReuseAddr)
            }
            (libc::SOL_SOCKET, libc::SO_LINGER) => {
                let on = memory::i32_at(proc, value)? != 0;
                let secs = memory::i32_at(proc, value + 4)?.max(0) as u64;
                Some(Opt::Linger(on.then(|| Duration::from_secs(secs))))
            }
            (libc::SOL_SOCKET, libc::SO_RCVTIMEO) => Some(Opt::RecvTimeout(timeval()?)),
            (libc::SOL_SOCKET, libc::SO_SNDTIMEO) => Some(Opt::SendTimeout(timeval()?)),
            (libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT) => {
                Some(Opt::DeferAccept(memory::i32_at(proc, value)?))
            }
            _ => None,
        }
    }

    /// poll()/ppoll() on exactly one socket (the wait of a non-blocking
    /// connect, or a receive with a timeout); a wait on many is left out.
    fn poll(&self, proc: Pid, a: [u64; 6], timeout: Option<Duration>) -> Option<Call> {
        let events = memory::bytes(proc, a[0] + 4, 2);
        let events = u16::from_ne_bytes(events.try_into().ok()?) as i16;
        let out = events & libc::POLLOUT != 0;
        Some(Call::Poll { out, timeout })
    }

    /// Does this poll() wait on exactly one descriptor, a socket of ours?
    fn polls_a_socket(&self, pid: u32, fds: u64, nfds: u64) -> bool {
        nfds == 1
            && memory::i32_at(Pid::from_raw(pid as i32), fds)
                .is_some_and(|fd| self.table.get(pid, fd).is_some())
    }

    /// Records the call, then what it changed about its socket.
    fn tell(&mut self, task: Task, p: &Pending, rval: i64, made: Made) {
        let Made {
            sock,
            fd,
            call,
            shown,
            data,
            raw,
            so_error,
        } = made;
        let shown_name = shown.name;
        let moved_in = match &data {
            Some(d) if d.dir == Dir::In => d.bytes,
            _ => 0,
        };
        let ok = rval >= 0;
        // One look at the socket for all this call needs to know of it.
        let borrowed = Borrowed::take(task.pid, fd);
        // What the call taught us about the socket, before it is told.
        if ok || rval == -(libc::EINPROGRESS as i64) {
            self.learn(&sock, &call, borrowed.as_ref());
        }
        // A non-blocking connect() is under way until its end is asked
        // for (SO_ERROR) or the socket is used.
        let connecting = match &call {
            Call::Connect(_) => rval == -(libc::EINPROGRESS as i64),
            Call::Poll { .. } | Call::NonBlocking(_) | Call::SetSockOpt(_) => {
                sock.borrow().connecting
            }
            _ => false,
        };
        sock.borrow_mut().connecting = connecting;
        if let Some(d) = &data {
            let mut s = sock.borrow_mut();
            match d.dir {
                Dir::In => s.bytes_in += d.bytes as u64,
                Dir::Out => {
                    s.bytes_out += d.bytes as u64;
                    if s.proto == Proto::Tcp {
                        s.unreceived.push_back(d.bytes);
                    }
                }
            }
        }
        self.threads_of(task, &sock);
        let sample = match call {
            Call::Bind(_) | Call::SetSockOpt(_) | Call::NonBlocking(_) => None,
            Call::Listen(_) => self.listener_sample(&sock.borrow()),
            _ => self.sample_of(&sock.borrow(), borrowed.as_ref()),
        };
        if let Some(Sample { state, .. }) = &sample {
            sock.borrow_mut().last_state = *state;
        }
        let who = sock.borrow().who(fd);
        let target = match &call {
            Call::Bind(a) | Call::Connect(a) | Call::SendTo(_, a) => Some(*a),
            _ => None,
        };
        let is_recv = matches!(call, Call::Recv(_) | Call::RecvFrom(_));
        let ends_wait = is_recv || matches!(call, Call::Poll { out: false, .. });
        let asked = match call {
            Call::Recv(n) | Call::RecvFrom(n) => n,
            _ => 0,
        };
        let record = CallRecord {
            call,
            took: elapsed(p.start_ns),
            result: result_of(rval),
            data,
            sample,
            child: None,
            unread: None,
            shown: Some(shown),
            task: Some(task),
        };
        self.sink.record(who.clone(), What::Call(Box::new(record)));
        {
            let s = sock.borrow();
            if ends_wait {
                self.watch.waiting(s.id, false);
            }
            if s.proto == Proto::Tcp {
                let state = s.last_state;
                self.watch.track(task.pid, fd, &who, state, s.bytes_out > 0);
            }
        }
        let reuse_addr = sock.borrow().reuse_addr;
        if let Some(errno) = so_error {
            let remote = sock.borrow().remote;
            self.failed(&who, "connect", remote, errno, reuse_addr);
        } else if rval < 0 {
            self.failed(&who, shown_name, target, -rval as i32, reuse_addr);
        } else if is_recv && moved_in > 0 {
            self.framing_got(&sock, &who, asked, &raw);
            self.boundaries(&sock, &who, moved_in, asked);
        }
    }

    /// Addresses, labels and roles that a successful call gives a socket.
    fn learn(&mut self, sock: &SockRef, call: &Call, b: Option<&Borrowed>) {
        match call {
            Call::SetSockOpt(Opt::ReuseAddr) => sock.borrow_mut().reuse_addr = true,
            Call::Bind(_) => {
                let local = b.and_then(Borrowed::local);
                let mut s = sock.borrow_mut();
                s.local = local.or(s.local);
                if s.proto == Proto::Udp {
                    if let Some(port) = s.local.map(|l| l.port()) {
                        drop(s);
                        self.watch_port(port);
                        // A bound UDP socket receives at once: for
                        // --wait-listen, that is a UDP server ready.
                        self.listening = true;
                    }
                }
            }
            Call::Listen(_) => {
                let port = {
                    let mut s = sock.borrow_mut();
                    s.listener = true;
                    s.side = Side::Server;
                    s.label = Some("S".into());
                    s.local.map(|l| l.port())
                };
                if let Some(port) = port {
                    self.watch_port(port);
                }
                self.listening = true;
            }
            Call::Connect(target) | Call::SendTo(_, target) if sock.borrow().remote.is_none() => {
                let local = b.and_then(Borrowed::local);
                let scope = self.listener_for(*target).map_or(0, |id| id.0);
                let mut s = sock.borrow_mut();
                s.local = local.or(s.local);
                if matches!(call, Call::Connect(_)) {
                    s.remote = Some(*target);
                }
                if let (Some(l), Some(r), Proto::Tcp) = (s.local, s.remote, s.proto) {
                    s.label = Some(self.sink.labels().assign(scope, l, r));
                }
            }
            _ => {}
        }
    }

    /// The kernel's state of a TCP socket now (TIME-WAIT from its table).
    pub(super) fn sample_of(&self, sock: &Sock, b: Option<&Borrowed>) -> Option<Sample> {
        if sock.proto != Proto::Tcp {
            return None;
        }
        let read = |state, via, timer| Sample {
            t: self.sink.elapsed(),
            state,
            via,
            timer,
            queue: None,
        };
        let state = b.and_then(|b| observe::tcp_state_of(b.raw()));
        match (state, sock.local, sock.remote) {
            // A socket whose descriptor is gone, or one that Linux handed to
            // a TIME-WAIT socket of its own: the kernel's table knows.
            (None | Some(TcpState::Closed), Some(l), Some(r)) => match observe::find(l, r) {
                Ok(Some(e)) => Some(read(Some(e.state), "sock_diag", e.timer)),
                Ok(None) if state.is_none() => Some(read(None, "sock_diag", None)),
                _ => state.map(|s| read(Some(s), "TCP_INFO", None)),
            },
            (Some(s), _, _) => Some(read(Some(s), "TCP_INFO", None)),
            _ => None,
        }
    }

    fn listener_sample(&self, sock: &Sock) -> Option<Sample> {
        let entry = observe::listener(sock.local?).ok().flatten()?;
        Some(Sample {
            t: self.sink.elapsed(),
            state: Some(entry.state),
            via: "sock_diag",
            timer: None,
            queue: Some((entry.recv_queue, entry.send_queue)),
        })
    }
}

/// The result as the tracker takes it: the return value or the error.
pub fn result_of(rval: i64) -> Result<i64, Errno> {
    if rval < 0 {
        Err(Errno::of(&std::io::Error::from_raw_os_error(-rval as i32)))
    } else {
        Ok(rval)
    }
}

/// "ECONNREFUSED" for 111.
pub fn errno_name(code: i32) -> String {
    syscalls::Errno::new(code)
        .name()
        .map_or_else(|| code.to_string(), str::to_string)
}

/// Seconds since `start_ns`.
pub fn elapsed(start_ns: u64) -> f64 {
    crate::engine::sink::now_ns().saturating_sub(start_ns) as f64 / 1e9
}

/// The bytes a call moved, as the timeline previews them.
fn shown_data(dir: Dir, bytes: &[u8], moved: usize) -> Data {
    let mut data = preview(dir, bytes, crate::cmd::shared::PREVIEW_FOR_PEOPLE);
    // The preview read at most PREVIEW_BYTES; the call moved `moved`.
    data.cut += moved.saturating_sub(data.bytes);
    data.bytes = moved;
    data
}

/// The total length of `cnt` iovecs at `iov`.
fn iov_len(proc: Pid, iov: u64, cnt: u64) -> usize {
    (0..cnt.min(1024))
        .filter_map(|i| memory::u64_at(proc, iov + 16 * i + 8))
        .sum::<u64>() as usize
}

/// From a `struct msghdr`: (msg_iov, msg_iovlen, msg_name, msg_namelen).
fn msghdr(proc: Pid, at: u64) -> (u64, u64, u64, u32) {
    let name = memory::u64_at(proc, at).unwrap_or(0);
    let namelen = memory::u32_at(proc, at + 8).unwrap_or(0);
    let iov = memory::u64_at(proc, at + 16).unwrap_or(0);
    let cnt = memory::u64_at(proc, at + 24).unwrap_or(0);
    (iov, cnt, name, namelen)
}

/// The family word of `socket()`'s first argument.
pub fn family(domain: i32) -> Option<Family> {
    match domain {
        libc::AF_INET => Some(Family::Inet),
        libc::AF_INET6 => Some(Family::Inet6),
        _ => None,
    }
}
