//! The clients a server is serving: one thread each, the limit on how many
//! at once, what they sent and received, and saying goodbye at stop.

use super::goodbye::Ending;
use super::refuse::{self, Refusal};
use super::stop::StopHandle;
use crate::engine::call::How;
use crate::engine::conn::Conn;
use crate::engine::ctx::{Ctx, Failed};
use crate::engine::errors;
use crate::engine::event::Stage;
use crate::t;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How much longer than the grace period the stop waits for the client
/// threads' own goodbyes before it frees the stuck ones.
const STRAGGLE: Duration = Duration::from_millis(500);

/// Clients now served from each address, shared with the client threads.
type PerHost = Arc<Mutex<HashMap<std::net::IpAddr, usize>>>;

/// A client from `ip` has left: its address may have one more.
fn leave(per_host: &PerHost, ip: std::net::IpAddr) {
    let mut map = lock(per_host);
    if let Some(n) = map.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            // Forgotten at once: the table holds only addresses now served.
            map.remove(&ip);
        }
    }
}

/// Each client thread's stack. Threads reserve 2 MiB by default; a client
/// needs far less (its 4 KiB buffer is on the heap), and a small stack lets
/// one process serve thousands of clients.
pub(super) const CLIENT_STACK: usize = 128 * 1024;

/// What the server did, reported when it stops.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub clients: u64,
    pub refused: u64,
    pub peak: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Closed for sending nothing, or for a message left half-sent.
    pub silenced: u64,
    /// Reset at stop: they did not close within the grace period.
    pub cut: u64,
    /// Bytes that came after the server's FIN at stop (not echoed).
    pub after_fin: u64,
}

/// Counters shared by the client threads.
#[derive(Default)]
pub struct Stats {
    accepted: AtomicU64,
    refused: AtomicU64,
    active: AtomicUsize,
    peak: AtomicUsize,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    silenced: AtomicU64,
    cut: AtomicU64,
    after_fin: AtomicU64,
}

impl Stats {
    pub fn silenced(&self) {
        self.silenced.fetch_add(1, Ordering::Relaxed);
    }

    pub fn cut(&self) {
        self.cut.fetch_add(1, Ordering::Relaxed);
    }

    /// Bytes read after our FIN: received (so in `bytes_in`), not echoed.
    pub fn after_fin(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        self.after_fin.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn received(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn sent(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// The connections being served, so that stopping can say goodbye to each.
#[derive(Default)]
struct Live {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Signalled whenever a client leaves, or the stopper lets go of one.
    changed: Condvar,
}

pub(super) struct Clients {
    max: usize,
    max_per_host: usize,
    /// Clients now served from each address (loopback not counted).
    per_host: PerHost,
    stats: Arc<Stats>,
    live: Arc<Live>,
    threads: Mutex<Vec<thread::JoinHandle<()>>>,
    next: AtomicU64,
    /// When the descriptor limit was last reported: at most once every few seconds.
    fd_limit_told: Mutex<Option<Instant>>,
}

impl Clients {
    pub fn new(cfg: &super::ServerConfig) -> Clients {
        Clients {
            max: cfg.max_clients,
            max_per_host: cfg.max_per_host,
            per_host: PerHost::default(),
            stats: Arc::new(Stats::default()),
            live: Arc::new(Live::default()),
            threads: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
            fd_limit_told: Mutex::new(None),
        }
    }

    /// Serves `conn` on a thread of its own with `work`, or refuses it
    /// politely when `max` clients are served already, or `max_per_host`
    /// from its address.
    pub fn start(
        &self,
        conn: Conn,
        work: impl FnOnce(&Arc<Conn>, &Arc<Stats>) -> Ending + Send + 'static,
    ) {
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        who_it_is(&conn);
        let active = self.stats.active.load(Ordering::Relaxed);
        if active >= self.max {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return refuse::refuse(conn, Refusal::Full(self.max));
        }
        // An IPv4 client of an IPv6 socket (::ffff:a.b.c.d) is that IPv4
        // address, loopback included.
        let host = conn
            .ctx
            .remote
            .map(|a| crate::engine::labels::canonical(a).ip())
            .filter(|ip| !ip.is_loopback());
        if let Some(ip) = host {
            let mut per_host = lock(&self.per_host);
            let from_there = per_host.entry(ip).or_insert(0);
            if *from_there >= self.max_per_host {
                drop(per_host);
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                return refuse::refuse(conn, Refusal::Host(ip, self.max_per_host));
            }
            *from_there += 1;
        }
        self.stats.active.fetch_add(1, Ordering::Relaxed);
        self.stats.peak.fetch_max(active + 1, Ordering::Relaxed);
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(conn);
        lock(&self.live.conns).insert(number, conn.clone());
        let name = format!("sockdemo-{}", conn.ctx.conn.as_deref().unwrap_or("client"));
        let worker = {
            let (stats, live) = (self.stats.clone(), self.live.clone());
            let per_host = self.per_host.clone();
            move || {
                thread_note(&conn);
                let ending = work(&conn, &stats);
                lock(&live.conns).remove(&number);
                if let Some(ip) = host {
                    leave(&per_host, ip);
                }
                stats.active.fetch_sub(1, Ordering::Relaxed);
                live.changed.notify_all();
                close_last(conn, &live, ending);
            }
        };
        let spawned = thread::Builder::new()
            .name(name)
            .stack_size(CLIENT_STACK)
            .spawn(worker);
        match spawned {
            Ok(handle) => {
                let mut threads = lock(&self.threads);
                threads.retain(|t| !t.is_finished());
                threads.push(handle);
            }
            Err(e) => {
                if let Some(ip) = host {
                    leave(&self.per_host, ip);
                }
                self.no_thread(number, e)
            }
        }
    }

    /// The OS would not start a thread: this client is closed.
    fn no_thread(&self, number: u64, e: std::io::Error) {
        self.stats.active.fetch_sub(1, Ordering::Relaxed);
        let Some(conn) = lock(&self.live.conns).remove(&number) else {
            return;
        };
        let who = conn.ctx.conn.clone().unwrap_or_else(|| "client".into());
        conn.ctx.error(
            Stage::Confirm,
            "thread-limit",
            t!("could not start a thread for {who}: {e}", "无法为 {who} 启动线程：{e}"),
            t!(
                "The OS limit on threads (or memory for their stacks) is reached; this client is closed. Lower --max-clients.",
                "已达到操作系统的线程数（或线程栈内存）上限；这个客户端被关闭。请调低 --max-clients。"
            ),
        );
        close_last(conn, &self.live, Ending::Close);
    }

    /// accept() failed. At the descriptor limit, say so (not too often) and
    /// wait for a client to leave; anything else, go on accepting.
    pub fn accept_failed(&self, listener: &Ctx, failed: &Failed) {
        if !errors::is_fd_limit(&failed.error) {
            return;
        }
        let mut told = lock(&self.fd_limit_told);
        if told.is_none_or(|at| at.elapsed() > Duration::from_secs(5)) {
            *told = Some(Instant::now());
            let active = self.stats.active.load(Ordering::Relaxed);
            let are = if active == 1 {
                "client is"
            } else {
                "clients are"
            };
            listener.error(
                Stage::Confirm,
                "fd-limit",
                t!("the OS limit on open file descriptors is reached", "已达到操作系统对打开文件描述符数量的限制"),
                t!(
                    "Every socket is a file descriptor, and this process may hold no more \
                     ({active} {are} connected). New clients wait in the accept queue until \
                     one leaves. Raise the limit with `ulimit -n`, or lower --max-clients.",
                    "每个套接字都是一个文件描述符，本进程已经不能再打开更多（已连接 {active} 个客户端）。\
                     新客户端在接受队列中等待，直到有客户端离开。可以用 `ulimit -n` 提高上限，或调低 --max-clients。"
                ),
            );
        }
        drop(told);
        let conns = lock(&self.live.conns);
        let _ = self
            .live
            .changed
            .wait_timeout(conns, Duration::from_millis(200));
    }

    /// At stop. Each client's own thread finishes echoing what it has
    /// read, sends our FIN, and waits for the client's (see `goodbye`);
    /// this waits for them all, a little longer than the grace period. A
    /// thread still stuck after that (writing to a client that does not
    /// read) is freed with shutdown(SHUT_RDWR), and its client is counted
    /// as cut. Then every client thread is joined.
    pub fn stop_all(&self, grace: Duration, stop: &StopHandle) {
        if !stop.reaches_clients() {
            // No way to wake a waiting recv() but shutdown(): our FIN from here.
            let everyone: Vec<Arc<Conn>> = lock(&self.live.conns).values().cloned().collect();
            for conn in &everyone {
                let _ = conn.shutdown(How::Write);
            }
        }
        let deadline = Instant::now() + grace + STRAGGLE;
        let mut conns = lock(&self.live.conns);
        while !conns.is_empty() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            conns = self
                .live
                .changed
                .wait_timeout(conns, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let stragglers: Vec<Arc<Conn>> = conns.values().cloned().collect();
        drop(conns);
        for conn in &stragglers {
            self.stats.cut();
            let who = conn.ctx.conn.clone().unwrap_or_else(|| "client".into());
            let secs = grace.as_secs_f64();
            conn.ctx.note(
                Stage::Close,
                "cut",
                t!(
                    "{who} is still being written to {secs} s after the stop (it does not read): its connection is ended",
                    "停止 {secs} 秒后仍在向 {who} 写数据（它不读）：这个连接被终止"
                ),
            );
            let _ = conn.shutdown(How::Both);
        }
        drop(stragglers);
        self.live.changed.notify_all();
        let threads = std::mem::take(&mut *lock(&self.threads));
        for handle in threads {
            let _ = handle.join();
        }
    }

    pub fn summary(&self) -> Summary {
        let s = &self.stats;
        Summary {
            clients: s.accepted.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            peak: s.peak.load(Ordering::Relaxed),
            bytes_in: s.bytes_in.load(Ordering::Relaxed),
            bytes_out: s.bytes_out.load(Ordering::Relaxed),
            silenced: s.silenced.load(Ordering::Relaxed),
            cut: s.cut.load(Ordering::Relaxed),
            after_fin: s.after_fin.load(Ordering::Relaxed),
        }
    }
}

/// Closes `conn` once this thread holds the last reference: close() must
/// happen (and be told) now, not whenever the stopper lets go of its copy.
fn close_last(mut conn: Arc<Conn>, live: &Live, ending: Ending) {
    loop {
        match Arc::try_unwrap(conn) {
            Ok(conn) => {
                return match ending {
                    Ending::Close => conn.close(),
                    Ending::Reset => conn.close_with_reset(),
                }
            }
            Err(shared) => {
                conn = shared;
                let guard = lock(&live.conns);
                let _ = live.changed.wait_timeout(guard, Duration::from_millis(10));
            }
        }
    }
}

/// What names the new connection: its 5-tuple, and for an IPv4 client of
/// an IPv6 socket, the address as the kernel writes it.
fn who_it_is(conn: &Conn) {
    let (Some(local), Some(remote)) = (conn.ctx.local, conn.ctx.remote) else {
        return;
    };
    let who = conn.ctx.conn.clone().unwrap_or_else(|| "client".into());
    let port = local.port();
    let mut facts = serde_json::Map::new();
    facts.insert(
        "tuple".into(),
        serde_json::json!(["tcp", local.to_string(), remote.to_string()]),
    );
    conn.ctx.note_with(
        Stage::Confirm,
        "tuple",
        t!(
            "5-tuple (TCP, {local}, {remote}): the client's address and port tell {who} apart from every other client of port {port}",
            "五元组 (TCP, {local}, {remote})：客户端的地址和端口把 {who} 与端口 {port} 的其他客户端区分开"
        ),
        facts,
    );
    if let std::net::IpAddr::V6(v6) = remote.ip() {
        if let Some(v4) = v6.to_ipv4_mapped() {
            conn.ctx.note(
                Stage::Confirm,
                "mapped",
                t!(
                    "{who} is an IPv4 client ({v4}) of this IPv6 socket: the kernel shows its address as the IPv4-mapped {v6}",
                    "{who} 是这个 IPv6 套接字的 IPv4 客户端（{v4}）：内核把它的地址显示为 IPv4 映射地址 {v6}"
                ),
            );
        }
    }
}

/// Says which thread serves the client: the first thing the thread does.
fn thread_note(conn: &Conn) {
    let who = conn.ctx.conn.clone().unwrap_or_else(|| "client".into());
    let id = thread_id();
    let mut facts = serde_json::Map::new();
    facts.insert("thread".into(), id.into());
    conn.ctx.note_with(
        Stage::Confirm,
        "thread",
        t!(
            "{who} is served by a thread of its own (thread {id}), while the listening socket goes back to accept()",
            "{who} 由它自己的线程服务（线程 {id}），监听套接字则回到 accept() 继续等待"
        ),
        facts,
    );
}

/// The OS's number for the current thread (what `ps -L` and strace show).
pub fn thread_id() -> u64 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid takes no arguments and cannot fail.
        unsafe { libc::gettid() as u64 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        use std::sync::atomic::AtomicU64;
        static NEXT: AtomicU64 = AtomicU64::new(1);
        thread_local!(static ID: u64 = NEXT.fetch_add(1, Ordering::Relaxed));
        ID.with(|id| *id)
    }
}

/// A client's failed call, as an error event; the server goes on.
pub(super) fn report(conn: &Conn, failed: &Failed) {
    let lesson = failed.lesson();
    let explanation = lesson.explanation.replace('\n', " ");
    conn.ctx.error(
        Stage::Transfer,
        lesson.code,
        lesson.summary,
        t!(
            "{explanation} The server goes on serving its other clients.",
            "{explanation} 服务器继续为其他客户端服务。"
        ),
    );
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
