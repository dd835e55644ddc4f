//! The calls that make, copy and end descriptors: socket, accept, dup,
//! fcntl, close. They change the table of sockets before they are told.

use super::calls::{elapsed, family, result_of, Pending};
use super::memory;
use super::sockets::{Borrowed, Sock, SockRef};
use super::Tracer;
use crate::engine::call::Call;
use crate::engine::event::{Proto, Side, Stage, Task};
use crate::engine::evidence::{CallRecord, SocketId, What, Who};
use crate::t;
use nix::unistd::Pid;
use std::net::SocketAddr;

impl Tracer<'_> {
    /// socket(): a new socket of the lesson (IPv4 or IPv6, TCP or UDP).
    pub(super) fn socket(&mut self, task: Task, p: &Pending, rval: i64) {
        let (domain, ty) = (p.args[0] as i32, p.args[1] as i32);
        let Some(fam) = family(domain) else {
            return; // a Unix or netlink socket: not the lesson's
        };
        let stream = match ty & 0xf {
            libc::SOCK_STREAM => true,
            libc::SOCK_DGRAM => false,
            _ => return,
        };
        let proto = if stream { Proto::Tcp } else { Proto::Udp };
        let mut flags = String::new();
        if ty & libc::SOCK_NONBLOCK != 0 {
            flags += "|SOCK_NONBLOCK";
        }
        if ty & libc::SOCK_CLOEXEC != 0 {
            flags += "|SOCK_CLOEXEC";
        }
        let args = format!(
            "{}, {}{flags}, {}",
            if domain == libc::AF_INET {
                "AF_INET"
            } else {
                "AF_INET6"
            },
            if stream { "SOCK_STREAM" } else { "SOCK_DGRAM" },
            match p.args[2] as i32 {
                0 => "0".to_string(),
                libc::IPPROTO_TCP => "IPPROTO_TCP".into(),
                libc::IPPROTO_UDP => "IPPROTO_UDP".into(),
                n => n.to_string(),
            }
        );
        let side = self.side_of(task.pid);
        let who = if rval >= 0 {
            let mut sock = Sock::new(proto, rval as i32);
            sock.side = side;
            sock.threads.push(task.tid);
            sock.processes.push(task.pid);
            let sock = self.table.insert(task.pid, rval as i32, sock);
            // socket() has no descriptor argument: its result is the descriptor.
            let who = Who {
                fd: None,
                ..sock.borrow().who(rval as i32)
            };
            who
        } else {
            Who::nobody(side, proto)
        };
        let call = Call::Socket {
            family: fam,
            stream,
        };
        self.record(task, who, call, "socket", args, p, rval);
    }

    /// accept()/accept4(): the listener hands over a connection; its new
    /// socket speaks for it from now on.
    pub(super) fn accept(&mut self, task: Task, p: &Pending, rval: i64) {
        let fd = p.args[0] as i32;
        let Some(listener) = self.table.get(task.pid, fd) else {
            return;
        };
        let name = if p.nr == syscalls::Sysno::accept4 {
            "accept4"
        } else {
            "accept"
        };
        let mut child_who = None;
        let mut sample = None;
        if rval >= 0 {
            let new_fd = rval as i32;
            let mut child = Sock::new(Proto::Tcp, new_fd);
            child.side = Side::Server;
            child.threads.push(task.tid);
            child.processes.push(task.pid);
            let b = Borrowed::take(task.pid, new_fd);
            child.local = b.as_ref().and_then(Borrowed::local);
            child.remote = b.as_ref().and_then(Borrowed::peer).or_else(|| {
                memory::u32_at(Pid::from_raw(task.pid as i32), p.args[2]).and_then(|len| {
                    memory::sockaddr(Pid::from_raw(task.pid as i32), p.args[1], len)
                })
            });
            if let (Some(l), Some(r)) = (child.local, child.remote) {
                let scope = listener.borrow().id.0;
                child.label = Some(self.sink.labels().assign(scope, l, r));
            }
            sample = self.sample_of(&child, b.as_ref());
            child.last_state = sample.as_ref().and_then(|s| s.state);
            child.accepted_by = Some(task.tid);
            let child = self.table.insert(task.pid, new_fd, child);
            let who = child.borrow().who(new_fd);
            self.watch
                .track(task.pid, new_fd, &who, child.borrow().last_state, false);
            child_who = Some(who);
        }
        let args = String::new();
        let who = listener.borrow().who(fd);
        let record = CallRecord {
            call: Call::Accept,
            took: elapsed(p.start_ns),
            result: result_of(rval),
            data: None,
            sample,
            child: child_who,
            unread: None,
            shown: Some(crate::engine::evidence::Shown::new(name, args)),
            task: Some(task),
        };
        self.sink.record(who, What::Call(Box::new(record)));
    }

    /// close(): the descriptor goes; if it was the socket's last, the
    /// socket closes (the kernel's table says what became of it).
    pub(super) fn close(&mut self, task: Task, p: &Pending, rval: i64) {
        let fd = p.args[0] as i32;
        if rval < 0 {
            if let Some(sock) = self.table.get(task.pid, fd) {
                let who = sock.borrow().who(fd);
                self.record(task, who, Call::Close, "close", String::new(), p, rval);
            }
            return;
        }
        let Some((sock, last)) = self.table.close(task.pid, fd) else {
            return;
        };
        self.closed(task, fd, &sock, last, p);
    }

    /// Tells the close of descriptor `fd` of `sock`.
    fn closed(&mut self, task: Task, fd: i32, sock: &SockRef, last: bool, p: &Pending) {
        let who = sock.borrow().who(fd);
        if !last {
            // Another descriptor (a dup, a forked copy) still holds it:
            // nothing goes on the wire, and the socket's state does not
            // move, so the tracker is not told it is this socket's close.
            let who = Who {
                socket: None,
                ..who
            };
            let shown = crate::engine::evidence::Shown {
                why: Some(t!(
                    "only this descriptor is freed: another one (a dup(), or the copy another process got through fork()) still names the socket, so nothing is sent and the connection stays open",
                    "只释放了这个描述符：还有另一个描述符（dup() 得到的，或者另一个进程通过 fork() 得到的副本）指向这个套接字，所以什么也不发送，连接保持打开"
                )),
                ..crate::engine::evidence::Shown::new("close", String::new())
            };
            let record = CallRecord {
                call: Call::Close,
                took: elapsed(p.start_ns),
                result: Ok(0),
                data: None,
                sample: None,
                child: None,
                unread: None,
                shown: Some(shown),
                task: Some(task),
            };
            self.sink.record(who, What::Call(Box::new(record)));
            return;
        }
        let (before, unread) = p.before.clone().unwrap_or((None, None));
        if let Some(before) = before {
            self.sink.record(who.clone(), What::Sample(before));
        }
        let sample = self.sample_of(&sock.borrow(), None);
        if let Some(state) = sample.as_ref().and_then(|s| s.state) {
            sock.borrow_mut().last_state = Some(state);
        }
        let record = CallRecord {
            call: Call::Close,
            took: elapsed(p.start_ns),
            result: Ok(0),
            data: None,
            sample,
            child: None,
            unread,
            shown: Some(crate::engine::evidence::Shown::new("close", String::new())),
            task: Some(task),
        };
        self.sink.record(who.clone(), What::Call(Box::new(record)));
        self.watch.forget(sock.borrow().id);
        self.sink.record(who, What::Gone);
    }

    /// close_range(): each socket in the range is closed (no state read
    /// before: the call was not expected to close sockets).
    pub(super) fn close_range(&mut self, task: Task, p: &Pending, rval: i64) {
        if rval < 0 || p.args[2] & libc::CLOSE_RANGE_CLOEXEC as u64 != 0 {
            return;
        }
        let last = p.args[1].min(i32::MAX as u64) as i32;
        for fd in self.table.in_range(task.pid, p.args[0] as i32, last) {
            if let Some((sock, last)) = self.table.close(task.pid, fd) {
                self.closed(task, fd, &sock, last, p);
            }
        }
    }

    /// dup(), dup2(), dup3(): `to` names the same socket as `from`.
    pub(super) fn dup(&mut self, task: Task, from: i32, to: i32, rval: i64, name: &'static str) {
        if rval < 0 {
            return;
        }
        let to = if name == "dup" { rval as i32 } else { to };
        if from == to {
            return;
        }
        // dup2/dup3 onto a socket's descriptor closes that one first.
        if let Some((old, true)) = self.table.close(task.pid, to) {
            let who = old.borrow().who(to);
            self.sink.record(who, What::Gone);
        }
        let Some(sock) = self.table.dup(task.pid, from, to) else {
            return;
        };
        let label = sock.borrow().label.clone();
        let who = sock.borrow().who(to);
        let what = label.as_deref().unwrap_or("a socket");
        self.note(
            who,
            Stage::Transfer,
            "dup",
            t!(
                "{name}(): descriptor {to} now names the same socket as {from} ({what}); it closes when the last of them is closed",
                "{name}()：描述符 {to} 现在和 {from} 指向同一个套接字（{what}）；最后一个描述符关闭时它才关闭"
            ),
        );
    }

    /// fcntl(): O_NONBLOCK on or off, or a duplicate (F_DUPFD).
    pub(super) fn fcntl(&mut self, task: Task, p: &Pending, rval: i64) {
        let (fd, cmd) = (p.args[0] as i32, p.args[1] as i32);
        match cmd {
            libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => self.dup(task, fd, rval as i32, rval, "dup"),
            libc::F_SETFL => {
                let Some(sock) = self.table.get(task.pid, fd) else {
                    return;
                };
                let on = p.args[2] as i32 & libc::O_NONBLOCK != 0;
                let args = if on {
                    "F_SETFL, O_NONBLOCK"
                } else {
                    "F_SETFL, 0 (blocking)"
                };
                let who = sock.borrow().who(fd);
                self.record(
                    task,
                    who,
                    Call::NonBlocking(on),
                    "fcntl",
                    args.into(),
                    p,
                    rval,
                );
            }
            _ => {}
        }
    }

    /// ioctl(FIONBIO): O_NONBLOCK on or off, as Python's settimeout() does it.
    pub(super) fn ioctl(&mut self, task: Task, p: &Pending, rval: i64) {
        let fd = p.args[0] as i32;
        let Some(sock) = self.table.get(task.pid, fd) else {
            return;
        };
        let on = memory::i32_at(Pid::from_raw(task.pid as i32), p.args[2]).unwrap_or(0) != 0;
        let args = format!("FIONBIO, [{}]", on as i32);
        let who = sock.borrow().who(fd);
        self.record(task, who, Call::NonBlocking(on), "ioctl", args, p, rval);
    }

    /// Records a call with no data and no state to read.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record(
        &self,
        task: Task,
        who: Who,
        call: Call,
        name: &'static str,
        args: String,
        p: &Pending,
        rval: i64,
    ) {
        let record = CallRecord {
            call,
            took: elapsed(p.start_ns),
            result: result_of(rval),
            data: None,
            sample: None,
            child: None,
            unread: None,
            shown: Some(crate::engine::evidence::Shown::new(name, args)),
            task: Some(task),
        };
        self.sink.record(who, What::Call(Box::new(record)));
    }

    pub(super) fn note(&self, who: Who, stage: Stage, topic: &'static str, text: String) {
        let what = What::Note {
            stage,
            topic,
            text,
            facts: serde_json::Map::new(),
        };
        self.sink.record(who, what);
    }

    /// The traced listener that a connection to `target` reaches, if any:
    /// the connection then takes its number in that listener's count.
    pub(super) fn listener_for(&self, target: SocketAddr) -> Option<SocketId> {
        self.table.all.iter().find_map(|s| {
            let s = s.borrow();
            let l = s.local?;
            let reaches =
                l.port() == target.port() && (l.ip() == target.ip() || l.ip().is_unspecified());
            (s.listener && reaches).then_some(s.id)
        })
    }

    /// The first call a process other than the one that made a socket
    /// makes on it: it inherited the descriptor through fork(). Said once
    /// per process.
    fn processes_of(&mut self, task: Task, sock: &SockRef) {
        let (first, new, fd, label) = {
            let mut s = sock.borrow_mut();
            if s.processes.is_empty() {
                s.processes.push(task.pid);
                return;
            }
            let new = !s.processes.contains(&task.pid);
            if new {
                s.processes.push(task.pid);
            }
            (s.processes[0], new, s.fd, s.label.clone())
        };
        if !new {
            return;
        }
        let (pid, conn) = (
            task.pid,
            label.as_deref().unwrap_or("this socket").to_string(),
        );
        let mut facts = serde_json::Map::new();
        facts.insert("process".into(), pid.into());
        facts.insert("from".into(), first.into());
        let what = What::Note {
            stage: Stage::Transfer,
            topic: "fork",
            text: t!(
                "process {pid} uses {conn} too: it inherited the descriptor from process {first} through fork(). Both hold the one socket, which closes only when every descriptor of it is closed",
                "进程 {pid} 也在使用 {conn}：它通过 fork() 从进程 {first} 继承了这个描述符。两个进程持有同一个套接字，只有当它的所有描述符都关闭时它才关闭"
            ),
            facts,
        };
        let who = sock.borrow().who(fd);
        self.sink.record(who, what);
    }

    /// The first call a thread other than the accepting one makes on an
    /// accepted connection: a thread per client, said once.
    pub(super) fn threads_of(&mut self, task: Task, sock: &SockRef) {
        self.processes_of(task, sock);
        let (new, accepted_by, label, fd) = {
            let mut s = sock.borrow_mut();
            let new = !s.threads.contains(&task.tid);
            if new {
                s.threads.push(task.tid);
            }
            (new, s.accepted_by, s.label.clone(), s.fd)
        };
        let Some(acceptor) = accepted_by else {
            return;
        };
        // A thread of another process is a forked copy: said by `fork`.
        let same_process = sock.borrow().processes.first() == Some(&task.pid);
        if !new || acceptor == task.tid || !same_process {
            return;
        }
        let tid = task.tid;
        let who = sock.borrow().who(fd);
        let conn = label.as_deref().unwrap_or("this connection");
        let mut facts = serde_json::Map::new();
        facts.insert("thread".into(), tid.into());
        facts.insert("accepted_by".into(), acceptor.into());
        let what = What::Note {
            stage: Stage::Confirm,
            topic: "thread",
            text: t!(
                "{conn} is served by thread {tid}; accept() ran in thread {acceptor}: a thread per client",
                "{conn} 由线程 {tid} 服务；accept() 在线程 {acceptor} 中运行：每个客户端一个线程"
            ),
            facts,
        };
        self.sink.record(who, what);
    }
}
