//! The watchdog: what a traced program's sockets do between its calls.
//!
//! The tracer only sees a program when it makes a call; a program blocked
//! in recv() makes none. So a thread of its own looks at each TCP socket
//! five times a second (borrowing it with pidfd_getfd, as the tracer
//! does) and records:
//!
//! * a state the kernel reports that differs from the last one seen (the
//!   state changes between calls, with packets or without);
//! * a program waiting in recv() for 2 s that has sent nothing on that
//!   socket since it connected: if it wrote its request to a buffered
//!   stream, it never flushed it;
//! * a socket left in CLOSE-WAIT for 2 s: the peer closed, this program
//!   did not.
//!
//! A borrowed descriptor is checked to still be the same socket (same
//! addresses) before anything is said: the program may have closed and
//! reused the number since.

use super::sockets::Borrowed;
use crate::engine::event::{Stage, TcpState};
use crate::engine::evidence::{Sample, SocketId, What, Who};
use crate::engine::observe;
use crate::engine::sink::Sink;
use crate::t;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a wait or a CLOSE-WAIT lasts before it is worth a word.
const PATIENCE: Duration = Duration::from_secs(2);

/// How often the sockets are looked at.
const EVERY: Duration = Duration::from_millis(200);

/// At most this many sockets are looked at per round (a server with
/// thousands of clients is not slowed by its watchdog).
const AT_MOST: usize = 64;

struct Item {
    pid: u32,
    fd: i32,
    who: Who,
    state: Option<TcpState>,
    /// A receive is in progress since then.
    waiting_since: Option<Instant>,
    sent_any: bool,
    close_wait_since: Option<Instant>,
    said_unflushed: bool,
    said_close_wait: bool,
}

#[derive(Default)]
struct Shared {
    items: HashMap<SocketId, Item>,
}

/// The tracer's handle on the watchdog.
pub struct Watch {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watch {
    pub fn start(sink: &Sink) -> Watch {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (sink, shared, stop) = (sink.clone(), shared.clone(), stop.clone());
            thread::Builder::new()
                .name("sockdemo-watchdog".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        thread::park_timeout(EVERY);
                        round(&sink, &shared);
                    }
                })
                .ok()
        };
        Watch {
            shared,
            stop,
            thread,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A TCP socket to look at, or what a call has changed about it.
    pub fn track(&self, pid: u32, fd: i32, who: &Who, state: Option<TcpState>, sent_any: bool) {
        let Some(id) = who.socket else { return };
        let mut shared = self.lock();
        let item = shared.items.entry(id).or_insert_with(|| Item {
            pid,
            fd,
            who: who.clone(),
            state,
            waiting_since: None,
            sent_any,
            close_wait_since: None,
            said_unflushed: false,
            said_close_wait: false,
        });
        item.who = who.clone();
        item.sent_any |= sent_any;
        if state.is_some() {
            item.state = state;
        }
    }

    /// A receive on the socket has begun (`true`) or returned (`false`).
    pub fn waiting(&self, id: SocketId, now: bool) {
        if let Some(item) = self.lock().items.get_mut(&id) {
            item.waiting_since = now.then(Instant::now);
        }
    }

    /// The socket is closed: nothing more to look at.
    pub fn forget(&self, id: SocketId) {
        self.lock().items.remove(&id);
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// One look at every socket (at most [`AT_MOST`]).
fn round(sink: &Sink, shared: &Mutex<Shared>) {
    let looks: Vec<(SocketId, u32, i32, Who)> = {
        let shared = shared.lock().unwrap_or_else(|p| p.into_inner());
        shared
            .items
            .iter()
            .take(AT_MOST)
            .map(|(id, i)| (*id, i.pid, i.fd, i.who.clone()))
            .collect()
    };
    for (id, pid, fd, who) in looks {
        let Some(b) = Borrowed::take(pid, fd) else {
            continue;
        };
        // The same socket still? (The number may have been reused.)
        if who.local.is_some_and(|l| b.local() != Some(l))
            || who.remote.is_some_and(|r| b.peer() != Some(r))
        {
            continue;
        }
        let Some(state) = observe::tcp_state_of(b.raw()) else {
            continue;
        };
        let unread = observe::unread(b.raw()).unwrap_or(0);
        drop(b);
        let mut guard = shared.lock().unwrap_or_else(|p| p.into_inner());
        let Some(item) = guard.items.get_mut(&id) else {
            continue;
        };
        look(sink, item, state, unread);
    }
}

/// What one look at one socket shows.
fn look(sink: &Sink, item: &mut Item, state: TcpState, unread: u32) {
    let now = Instant::now();
    if item.state != Some(state) {
        item.state = Some(state);
        let sample = Sample {
            t: sink.elapsed(),
            state: Some(state),
            via: "TCP_INFO",
            timer: None,
            queue: None,
        };
        sink.record(item.who.clone(), What::Sample(sample));
    }
    let conn = item
        .who
        .conn
        .as_deref()
        .unwrap_or("this connection")
        .to_string();
    let waited = item.waiting_since.map(|s| now.duration_since(s));
    // A client asks first; a server waiting for a request is normal.
    if state == TcpState::Established
        && item.who.side == crate::engine::event::Side::Client
        && !item.sent_any
        && unread == 0
        && !item.said_unflushed
        && waited.is_some_and(|w| w >= PATIENCE)
    {
        item.said_unflushed = true;
        let secs = PATIENCE.as_secs();
        say(sink, &item.who, Stage::Transfer, "unflushed", t!(
            "{conn} has waited {secs} s in a receive, and this program has sent nothing on it since it connected: if it wrote a request into a buffered stream (PrintWriter, BufferedWriter, BufferedOutputStream, a C FILE*), the request is still in the program's memory and never reached the socket. Call flush() after writing (or the peer may simply not have answered yet)",
            "{conn} 已经在接收中等了 {secs} 秒，而这个程序自连接以来在它上面什么也没发送：如果它把请求写进了带缓冲的流（PrintWriter、BufferedWriter、BufferedOutputStream、C 的 FILE*），请求还留在程序自己的内存里，从没到达套接字。写完之后要调用 flush()（也可能只是对方还没有回答）"
        ));
    }
    if state == TcpState::CloseWait {
        let since = *item.close_wait_since.get_or_insert(now);
        if !item.said_close_wait && now.duration_since(since) >= PATIENCE {
            item.said_close_wait = true;
            let secs = PATIENCE.as_secs();
            say(sink, &item.who, Stage::Close, "close-wait", t!(
                "{conn} has been in CLOSE-WAIT for {secs} s: the peer closed its side (its FIN came), and this program has not called close(). A reader sees the end as recv() returning 0 (read() -1 in Java, an empty bytes in Python): close the socket then, or it stays open",
                "{conn} 已经处于 CLOSE-WAIT {secs} 秒：对方关闭了它那一端（FIN 已到），而这个程序还没有调用 close()。读的一方会看到 recv() 返回 0（Java 里 read() 返回 -1，Python 里得到空 bytes）：这时就该关闭套接字，否则它一直开着"
            ));
        }
    }
}

fn say(sink: &Sink, who: &Who, stage: Stage, topic: &'static str, text: String) {
    sink.record(
        who.clone(),
        What::Note {
            stage,
            topic,
            text,
            facts: serde_json::Map::new(),
        },
    );
}
