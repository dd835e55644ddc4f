//! The server side of the lesson, in the order the calls are made:
//!
//! 1. `socket()`   make an endpoint,
//! 2. `setsockopt(SO_REUSEADDR)` so a restarted server can rebind its port,
//! 3. `bind()`     give it its (address, protocol, port) triple,
//! 4. `listen()`   ask the kernel to complete handshakes for us,
//! 5. `accept()`   take one finished connection from the accept queue,
//!    and hand it to a thread of its own, while the listener goes on listening.
//!
//! As in mini-redis, the listener is made by [`open_listener`] and handed to
//! [`serve`], so tests can bind port 0 and learn the real port from the events.

pub mod chat;

use crate::engine::conn::{Conn, Ctx, Gate, Observation, Received, StateTracker, PREVIEW_CHARS};
use crate::engine::errors::{self, Lesson};
use crate::engine::event::{Proto, Side, Sink, Source, Stage, TcpState};
use crate::engine::framing::{Deframer, Framing, Piece};
use crate::engine::{fd_number, observe};
use crate::t;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

/// Each client thread's stack. Threads reserve 2 MiB by default; a client
/// needs far less (its 4 KiB buffer is on the heap), and a small stack lets
/// one process serve thousands of clients.
const CLIENT_STACK: usize = 128 * 1024;

/// Each client's receive buffer. Memory per client is bounded by this, not
/// by what the client sends: a megabyte without a newline is read 4 KiB at a time.
const RECV_BUFFER: usize = 4096;

/// How the server behaves once its listener is ready.
#[derive(Clone)]
pub struct ServerConfig {
    /// Send every byte back to the client it came from.
    pub echo: bool,
    /// Clients served at once; more are told "server full" and closed.
    pub max_clients: usize,
    /// At stop: how long clients get to finish after our FIN.
    pub grace: Duration,
    /// Consulted before each socket call of the server (see [`Gate`]).
    pub gate: Option<Arc<dyn Gate>>,
    /// `--chat`: lines go to the other clients instead of back (see [`chat`]).
    pub chat: Option<Arc<chat::Room>>,
    /// `--framing`: how the echo cuts the stream into messages (see [`Deframer`]).
    pub framing: Framing,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            echo: true,
            max_clients: 1024,
            grace: Duration::from_secs(2),
            gate: None,
            chat: None,
            framing: Framing::Raw,
        }
    }
}

/// A socket in LISTEN, ready for [`serve`].
pub struct Listener {
    sock: Arc<Socket>,
    pub local: SocketAddr,
    ctx: Ctx,
    tracker: StateTracker,
}

fn domain_of(addr: &SocketAddr) -> (Domain, &'static str) {
    match addr {
        SocketAddr::V4(_) => (Domain::IPV4, "AF_INET"),
        SocketAddr::V6(_) => (Domain::IPV6, "AF_INET6"),
    }
}

/// socket() → setsockopt(SO_REUSEADDR) → bind() → listen(), each reported.
pub fn open_listener(sink: &Sink, addr: SocketAddr, backlog: i32) -> Result<Listener, Lesson> {
    let mut ctx = Ctx::new(sink, Side::Server, Proto::Tcp);
    let (domain, family) = domain_of(&addr);

    // 1. socket(): an endpoint for TCP (a stream socket), with no name yet.
    ctx.before("socket");
    let result = Socket::new(domain, Type::STREAM, Some(Protocol::TCP));
    ctx.syscall(
        Stage::Listen,
        "socket",
        format!("{family}, SOCK_STREAM, IPPROTO_TCP"),
        &result,
        fd_number,
        Some(t!(
            "a new TCP endpoint; the number is how this program names it (a file descriptor)",
            "一个新的 TCP 端点；这个数字是程序称呼它的名字（文件描述符）"
        )),
    );
    let sock = result.map_err(|e| errors::explain("socket", addr, &e))?;

    // 2. SO_REUSEADDR: without it, restarting the server right after it had
    //    clients fails with "address in use" while old connections sit in
    //    TIME-WAIT. (On Windows the option means something riskier, so skip it.)
    #[cfg(not(windows))]
    {
        ctx.before("setsockopt");
        let result = sock.set_reuse_address(true);
        ctx.syscall(
            Stage::Listen,
            "setsockopt",
            "SOL_SOCKET, SO_REUSEADDR, 1",
            &result,
            |_| 0,
            Some(t!(
                "lets bind() reuse a port whose old connections wait in TIME-WAIT",
                "让 bind() 能重用一个旧连接还停在 TIME-WAIT 的端口"
            )),
        );
        result.map_err(|e| errors::explain("setsockopt", addr, &e))?;
    }

    // 3. bind(): name the endpoint. Port 0 asks the OS to choose a free port.
    ctx.before("bind");
    let result = sock.bind(&SockAddr::from(addr));
    let bound = sock
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(addr);
    if result.is_ok() {
        ctx.local = Some(bound);
    }
    let why = result.is_ok().then(|| {
        let (ip, port) = (bound.ip(), bound.port());
        match addr.port() {
            0 => t!(
                "the endpoint is named: ({ip}, TCP, {port}) (port chosen by the OS)",
                "端点有了名字：({ip}, TCP, {port})（端口由操作系统选定）"
            ),
            _ => t!(
                "the endpoint is named: ({ip}, TCP, {port})",
                "端点有了名字：({ip}, TCP, {port})"
            ),
        }
    });
    ctx.syscall(Stage::Listen, "bind", addr.to_string(), &result, |_| 0, why);
    result.map_err(|e| errors::explain("bind", addr, &e))?;

    // 4. listen(): from now on the kernel answers SYNs on this port by
    //    itself and queues finished connections until we accept() them.
    ctx.before("listen");
    let result = sock.listen(backlog);
    ctx.syscall(
        Stage::Listen,
        "listen",
        format!("backlog={backlog}"),
        &result,
        |_| 0,
        Some({
            let port = bound.port();
            t!(
                "the kernel now completes handshakes on port {port} by itself; up to {backlog} finished connections wait for accept()",
                "从现在起内核自己在端口 {port} 上完成握手；最多 {backlog} 个已建立的连接排队等待 accept()"
            )
        }),
    );
    result.map_err(|e| errors::explain("listen", bound, &e))?;
    let tracker = StateTracker::new(TcpState::Closed);
    tracker.update(&ctx, Stage::Listen, &sock, Some(TcpState::Listen));
    Ok(Listener {
        sock: Arc::new(sock),
        local: bound,
        ctx,
        tracker,
    })
}

/// Reports a socket that accept() returned and makes it a [`Conn`] for `conn_id`.
///
/// The kernel's state is read at once but reported by the caller: the
/// report may wait (briefly) for the packet capture to confirm the
/// handshake, and the accept loop must never wait.
fn accepted(
    ctx: &Ctx,
    sock: Socket,
    peer: Option<SocketAddr>,
    conn_id: &str,
) -> (Conn, Observation) {
    let mut cctx = ctx.with_conn(conn_id);
    cctx.local = sock
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .or(cctx.local);
    cctx.remote = peer;
    let fd = fd_number(&sock);
    cctx.syscall(
            Stage::Confirm,
            "accept",
            "",
            &Ok(fd),
            |fd| *fd,
            Some(t!(
                "a new socket just for {conn_id}; the listening socket stays in LISTEN for the next client",
                "一个只属于 {conn_id} 的新套接字；监听套接字仍处于 LISTEN，等待下一个客户端"
            )),
        );
    if let (Some(local), Some(remote)) = (cctx.local, cctx.remote) {
        let mut facts = serde_json::Map::new();
        facts.insert(
            "tuple".into(),
            serde_json::json!(["tcp", local.to_string(), remote.to_string()]),
        );
        cctx.note_with(
                Stage::Confirm,
                "tuple",
                {
                    let port = local.port();
                    t!(
                        "5-tuple (TCP, {local}, {remote}): the client's address and port tell {conn_id} apart from every other client of port {port}",
                        "五元组 (TCP, {local}, {remote})：客户端的地址和端口把 {conn_id} 与端口 {port} 的其他客户端区分开"
                    )
                },
                facts,
            );
        if let IpAddr::V6(v6) = remote.ip() {
            if let Some(v4) = v6.to_ipv4_mapped() {
                cctx.note(
                    Stage::Confirm,
                    "mapped",
                    t!(
                        "{conn_id} is an IPv4 client ({v4}) of this IPv6 socket: the kernel shows its address as the IPv4-mapped {v6}",
                        "{conn_id} 是这个 IPv6 套接字的 IPv4 客户端（{v4}）：内核把它的地址显示为 IPv4 映射地址 {v6}"
                    ),
                );
            }
        }
    }
    let conn = Conn::new(
        sock,
        cctx,
        StateTracker::new(TcpState::Listen),
        PREVIEW_CHARS,
    );
    let seen = conn.tracker.read(&conn.ctx, &conn.sock);
    (conn, seen)
}

/// Reports the state read by [`accepted`]: the handshake the kernel finished.
fn report_accepted(conn: &Conn, seen: Observation) {
    conn.tracker
        .report(&conn.ctx, Stage::Confirm, seen, Some(TcpState::Established));
}

impl Listener {
    /// IPV6_V6ONLY of an IPv6 listener (None for IPv4).
    pub fn only_v6(&self) -> Option<bool> {
        match self.local {
            SocketAddr::V6(_) => self.sock.only_v6().ok(),
            SocketAddr::V4(_) => None,
        }
    }

    /// setsockopt(TCP_DEFER_ACCEPT): the kernel completes a connection only
    /// when its first data arrives, so an idle one stays in SYN-RECEIVED
    /// (Linux, tcp(7)). Used to hold that short-lived state where it can be seen.
    #[cfg(target_os = "linux")]
    pub fn defer_accept(&self, secs: i32) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        self.ctx.before("setsockopt");
        // SAFETY: setsockopt with a pointer to a live c_int and its size.
        let rc = unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&secs as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        };
        let result = if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        };
        self.ctx.syscall(
            Stage::Listen,
            "setsockopt",
            format!("IPPROTO_TCP, TCP_DEFER_ACCEPT, {secs}"),
            &result,
            |_| 0,
            Some(t!(
                "hold a new connection in SYN-RECEIVED until its first data arrives (at most {secs} s)",
                "新连接在第一批数据到达之前一直停在 SYN-RECEIVED（最多 {secs} 秒）"
            )),
        );
        result
    }

    /// One narrated accept(), outside [`serve`]: for demos that play a
    /// server of their own (one that resets, say).
    pub fn accept_one(&self, conn_id: &str) -> io::Result<Conn> {
        self.ctx.before("accept");
        match self.sock.accept() {
            Ok((sock, peer)) => {
                let (conn, seen) = accepted(&self.ctx, sock, peer.as_socket(), conn_id);
                report_accepted(&conn, seen);
                Ok(conn)
            }
            Err(e) => {
                let shown = io::Error::new(e.kind(), e.to_string());
                self.ctx.syscall(
                    Stage::Confirm,
                    "accept",
                    "",
                    &Err::<(), _>(shown),
                    |_| 0,
                    None,
                );
                Err(e)
            }
        }
    }
}

/// Stops a running [`serve`] from another thread (Ctrl-C, a test).
#[derive(Clone)]
pub struct StopHandle {
    stopping: Arc<AtomicBool>,
    wake: SocketAddr,
    /// The address the wake-up connection comes from, to tell it apart
    /// from a real client that happens to be in the accept queue.
    wake_from: Arc<Mutex<Option<SocketAddr>>>,
    /// The listening socket, in case the wake-up connection cannot be made.
    /// Weak: it must not keep the socket open once serve() closes it.
    listener: Weak<Socket>,
}

impl StopHandle {
    pub fn new(listener: &Listener) -> StopHandle {
        // accept() blocks, and a flag alone would not wake it. Connecting to
        // our own listener does, portably: accept() returns, sees the flag, stops.
        let ip = match listener.local.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        StopHandle {
            stopping: Arc::new(AtomicBool::new(false)),
            wake: SocketAddr::new(ip, listener.local.port()),
            listener: Arc::downgrade(&listener.sock),
            wake_from: Arc::new(Mutex::new(None)),
        }
    }

    pub fn stop(&self) {
        if !self.stopping.swap(true, Ordering::SeqCst) && self.wake_up().is_err() {
            // Could not connect to ourselves (at the descriptor limit, say).
            // On Linux, shutdown() on a listening socket also wakes accept().
            if let Some(listener) = self.listener.upgrade() {
                let _ = listener.shutdown(Shutdown::Both);
            }
        }
    }

    /// Connects to our own listener, from an address noted beforehand.
    fn wake_up(&self) -> io::Result<()> {
        let (domain, any) = match self.wake {
            SocketAddr::V4(_) => (Domain::IPV4, SocketAddr::new(self.wake.ip(), 0)),
            SocketAddr::V6(_) => (Domain::IPV6, SocketAddr::new(self.wake.ip(), 0)),
        };
        let sock = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        sock.bind(&SockAddr::from(any))?;
        *self.wake_from.lock().unwrap_or_else(|p| p.into_inner()) = sock.local_addr()?.as_socket();
        sock.connect_timeout(&SockAddr::from(self.wake), Duration::from_secs(1))
    }

    /// Is `peer` our own wake-up connection?
    fn is_wake(&self, peer: Option<SocketAddr>) -> bool {
        peer.is_some() && *self.wake_from.lock().unwrap_or_else(|p| p.into_inner()) == peer
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// What the server did, reported when it stops.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub clients: u64,
    pub refused: u64,
    pub peak: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

#[derive(Default)]
struct Stats {
    accepted: AtomicU64,
    refused: AtomicU64,
    active: AtomicUsize,
    peak: AtomicUsize,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// The connections being served, so that stopping can say goodbye to each.
#[derive(Default)]
struct Clients {
    live: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Signalled whenever a client leaves (a descriptor is freed).
    left: Condvar,
}

impl Clients {
    /// A client's thread is done with it: forget it and wake whoever waits
    /// for a free place (the accept loop at the descriptor limit, the stop).
    fn leave(&self, number: u64, stats: &Stats) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&number);
        stats.active.fetch_sub(1, Ordering::Relaxed);
        self.left.notify_all();
    }
}

/// Accepts clients until `stop` is called, a thread per client.
pub fn serve(listener: Listener, cfg: &ServerConfig, stop: &StopHandle) -> Summary {
    let stats = Arc::new(Stats::default());
    let clients = Arc::new(Clients::default());
    let mut threads: Vec<thread::JoinHandle<()>> = Vec::new();
    // When the descriptor limit was last reported: at most once every few
    // seconds, however often accept() meets it while clients come and go.
    let mut fd_limit_reported: Option<Instant> = None;
    let mut listen_ctx = listener.ctx.clone();
    listen_ctx.gate = cfg.gate.clone();
    let ctx = &listen_ctx;
    let mut number: u64 = 0;

    loop {
        // 5. accept(): blocks until the kernel has a finished handshake in
        //    the queue, then returns a NEW socket for that one client. The
        //    listening socket itself stays in LISTEN for the next one.
        ctx.before("accept");
        let result = listener.sock.accept();
        if stop.is_stopping() {
            // This is the wake-up connection (or a client that raced it): stop.
            // Name it, so that its packets are not mistaken for a client's.
            match &result {
                Ok((sock, peer)) if stop.is_wake(peer.as_socket()) => {
                    let wake = Ctx {
                        local: sock.local_addr().ok().and_then(|a| a.as_socket()),
                        remote: peer.as_socket(),
                        ..ctx.with_conn("stop")
                    };
                    wake.note(
                        Stage::Close,
                        "wake",
                        t!(
                            "accept() returns this program's own connection, made to wake it up: time to stop",
                            "accept() 返回的是本程序自己发起的连接，用来把它唤醒：该停止了"
                        ),
                    );
                }
                Ok((_, peer)) => {
                    // A real client that was still waiting in the queue.
                    let late = Ctx {
                        remote: peer.as_socket(),
                        ..ctx.clone()
                    };
                    late.note(
                        Stage::Close,
                        "late",
                        t!(
                            "a client still waiting in the accept queue is closed unserved: the server is stopping",
                            "一个还在接受队列里等待的客户端没有被服务就关闭了：服务器正在停止"
                        ),
                    );
                    continue;
                }
                Err(_) => {}
            }
            break;
        }
        let (sock, peer) = match result {
            Ok(pair) => pair,
            Err(e) if errors::is_fd_limit(&e) => {
                if fd_limit_reported.is_none_or(|at| at.elapsed() > Duration::from_secs(5)) {
                    fd_limit_reported = Some(Instant::now());
                    ctx.syscall(Stage::Confirm, "accept", "", &Err::<(), _>(e), |_| 0, None);
                    ctx.error(
                        Stage::Confirm,
                        "fd-limit",
                        t!("the OS limit on open file descriptors is reached", "已达到操作系统对打开文件描述符数量的限制"),
                        {
                            let active = stats.active.load(Ordering::Relaxed);
                            t!(
                                "Every socket is a file descriptor, and this process may hold no more \
                                 ({active} clients are connected). New clients wait in the accept queue until \
                                 one leaves. Raise the limit with `ulimit -n`, or lower --max-clients.",
                                "每个套接字都是一个文件描述符，本进程已经不能再打开更多（已连接 {active} 个客户端）。\
                                 新客户端在接受队列中等待，直到有客户端离开。可以用 `ulimit -n` 提高上限，或调低 --max-clients。"
                            )
                        },
                    );
                }
                let live = clients.live.lock().unwrap_or_else(|p| p.into_inner());
                let _ = clients.left.wait_timeout(live, Duration::from_millis(200));
                continue;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) =>
            {
                continue
            }
            Err(e) => {
                ctx.syscall(Stage::Confirm, "accept", "", &Err::<(), _>(e), |_| 0, None);
                continue;
            }
        };
        number += 1;
        threads.retain(|t| !t.is_finished());
        let conn_id = format!("C{number}");
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let (conn, seen) = accepted(ctx, sock, peer.as_socket(), &conn_id);

        let active = stats.active.load(Ordering::Relaxed);
        if active >= cfg.max_clients {
            refuse(conn, seen, cfg.max_clients);
            stats.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        stats.active.fetch_add(1, Ordering::Relaxed);
        stats.peak.fetch_max(active + 1, Ordering::Relaxed);

        let conn = Arc::new(conn);
        clients
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(number, conn.clone());
        // 6. A thread of its own for this client, so a slow client never
        //    holds up the others, and the loop goes straight back to accept().
        let mut facts = serde_json::Map::new();
        facts.insert("thread".into(), number.into());
        conn.ctx.note_with(
            Stage::Confirm,
            "thread",
            t!(
                "{conn_id} → thread {number}: it serves {conn_id} alone, while the listening socket goes back to accept()",
                "{conn_id} → 线程 {number}：它只为 {conn_id} 服务，监听套接字则回到 accept() 继续等待"
            ),
            facts,
        );
        // The thread gets this loop's own reference: when the client is done,
        // the thread must hold the last one, so that its close() happens (and
        // is told) right then, not whenever this loop gets round to it.
        let worker = {
            let (stats, clients, cfg) = (stats.clone(), clients.clone(), cfg.clone());
            move || serve_client(number, conn, seen, &cfg, &stats, &clients)
        };
        match thread::Builder::new()
            .name(format!("sockdemo-{conn_id}"))
            .stack_size(CLIENT_STACK)
            .spawn(worker)
        {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                // The closure (and its reference) went with the error; the
                // registry holds the last one.
                let conn = clients
                    .live
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&number);
                stats.active.fetch_sub(1, Ordering::Relaxed);
                if let Some(conn) = conn {
                    conn.ctx.error(
                        Stage::Confirm,
                        "thread-limit",
                        t!("could not start a thread for {conn_id}: {e}", "无法为 {conn_id} 启动线程：{e}"),
                        t!(
                            "The OS limit on threads (or memory for their stacks) is reached; this client is closed. Lower --max-clients.",
                            "已达到操作系统的线程数（或线程栈内存）上限；这个客户端被关闭。请调低 --max-clients。"
                        ),
                    );
                    if let Ok(conn) = Arc::try_unwrap(conn) {
                        conn.close();
                    }
                }
            }
        }
    }

    // Stopping: say goodbye to every client with a FIN (shutdown SHUT_WR),
    // give them `grace` to close their side, then end what is left.
    {
        let live = clients.live.lock().unwrap_or_else(|p| p.into_inner());
        for conn in live.values() {
            let _ = conn.shutdown_write();
        }
    }
    {
        let deadline = Instant::now() + cfg.grace;
        let mut live = clients.live.lock().unwrap_or_else(|p| p.into_inner());
        while !live.is_empty() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            live = clients
                .left
                .wait_timeout(live, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        for conn in live.values() {
            // A read timeout would not wake a recv() already waiting;
            // shutdown(SHUT_RDWR) does: it returns 0 and the thread closes.
            conn.ended_here.store(true, Ordering::Relaxed);
            let result = conn.sock.shutdown(Shutdown::Both);
            conn.ctx.syscall(
                Stage::Close,
                "shutdown",
                "SHUT_RDWR",
                &result,
                |_| 0,
                Some({
                    let secs = cfg.grace.as_secs();
                    t!(
                        "the client did not close within {secs} s; its connection is ended",
                        "客户端在 {secs} 秒内没有关闭；这个连接被终止"
                    )
                }),
            );
        }
    }
    for handle in threads {
        let _ = handle.join();
    }
    let Listener {
        sock,
        ctx,
        tracker,
        local,
    } = listener;
    drop(sock);
    ctx.syscall(
        Stage::Close,
        "close",
        "listening socket",
        &Ok(()),
        |_| 0,
        Some(t!(
            "the port is free again; no new clients can connect",
            "端口重新空闲；新的客户端无法再连接"
        )),
    );
    // Ask the kernel's table whether the listener is really gone.
    let still_listening = observe::dump(local.port()).map(|rows| {
        rows.iter()
            .any(|r| r.state == TcpState::Listen && r.local == local)
    });
    match still_listening {
        Ok(false) => tracker.move_to(
            &ctx,
            Stage::Close,
            TcpState::Closed,
            Source::Kernel,
            Some("sock_diag"),
            Some(t!(
                "gone from the kernel's socket table",
                "已从内核的套接字表中消失"
            )),
        ),
        _ => tracker.move_to(
            &ctx,
            Stage::Close,
            TcpState::Closed,
            Source::Inferred,
            None,
            None,
        ),
    }
    Summary {
        clients: stats.accepted.load(Ordering::Relaxed),
        refused: stats.refused.load(Ordering::Relaxed),
        peak: stats.peak.load(Ordering::Relaxed),
        bytes_in: stats.bytes_in.load(Ordering::Relaxed),
        bytes_out: stats.bytes_out.load(Ordering::Relaxed),
    }
}

/// Over --max-clients: tell the client why, politely, and close.
fn refuse(conn: Conn, seen: Observation, max: usize) {
    report_accepted(&conn, seen);
    conn.ctx.note(Stage::Confirm, "refused", {
        let who = conn.ctx.conn.as_deref().unwrap_or("client");
        t!(
            "{who} refused: {max} clients are being served already (--max-clients)",
            "拒绝 {who}：已经在为 {max} 个客户端服务（--max-clients）"
        )
    });
    // A short-lived thread says goodbye, so the accept loop is not held up.
    let goodbye = move || {
        let _ = conn.send_all(
            format!("sockdemo: server full ({max} clients); try again later\n").as_bytes(),
        );
        let _ = conn.shutdown_write();
        // Read what the client sent until it closes: closing with unread
        // bytes would send a reset (RST) instead of our polite FIN.
        let _ = conn.sock.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 512];
        while let Ok(n) = std::io::Read::read(&mut &conn.sock, &mut buf) {
            if n == 0 {
                break;
            }
        }
        conn.close();
    };
    let _ = thread::Builder::new()
        .name("sockdemo-refuse".into())
        .stack_size(CLIENT_STACK)
        .spawn(goodbye);
}

/// One client's thread: recv() what it sends, send() it back, until it is done.
fn serve_client(
    number: u64,
    conn: Arc<Conn>,
    seen: Observation,
    cfg: &ServerConfig,
    stats: &Stats,
    clients: &Clients,
) {
    // First the handshake the kernel finished before accept() returned.
    report_accepted(&conn, seen);
    if let Some(room) = &cfg.chat {
        chat::talk(number, &conn, room, stats);
        clients.leave(number, stats);
        if let Ok(conn) = Arc::try_unwrap(conn) {
            conn.close();
        }
        return;
    }
    let mut buf = vec![0u8; RECV_BUFFER];
    // The framing cuts what arrives into messages and narrates them; with
    // raw framing every recv() is echoed as it came. Reading no more than
    // its room keeps each client's memory bounded whatever the client sends.
    let mut deframer = Deframer::new(cfg.framing, cfg.echo);
    loop {
        let room = deframer.room(buf.len());
        let (pieces, ended) = match conn.recv(&mut buf[..room]) {
            Ok(Received::End) => (deframer.finish(&conn.ctx), true),
            Ok(Received::Bytes(n)) => {
                stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                (deframer.push(&conn.ctx, &buf[..n]), false)
            }
            Err(e) => {
                report_client_error(&conn, "recv", &e);
                break;
            }
        };
        if (cfg.echo && !echo(&conn, &pieces, stats)) || ended {
            break;
        }
    }
    // Leave the registry first, so ours is the last reference and close() happens now.
    clients.leave(number, stats);
    if let Ok(conn) = Arc::try_unwrap(conn) {
        conn.close();
    }
}

/// Sends back what the framing cut out. False when the client is gone.
fn echo(conn: &Conn, pieces: &[Piece], stats: &Stats) -> bool {
    for bytes in pieces.iter().map(Piece::echo).filter(|b| !b.is_empty()) {
        if let Err(e) = conn.send_all(bytes) {
            report_client_error(conn, "send", &e);
            return false;
        }
        stats
            .bytes_out
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }
    true
}

fn report_client_error(conn: &Conn, call: &str, e: &io::Error) {
    let peer = conn
        .ctx
        .remote
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let lesson = errors::explain(call, peer, e);
    conn.ctx
        .error(Stage::Transfer, lesson.code, lesson.summary, {
            let explanation = lesson.explanation.replace('\n', " ");
            t!(
                "{explanation} The server goes on serving its other clients.",
                "{explanation} 服务器继续为其他客户端服务。"
            )
        });
}
