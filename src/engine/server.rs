//! The server side of the lesson, in the order the calls are made:
//! socket → setsockopt → bind → listen → accept → a thread per client →
//! recv/send → shutdown → close. Each call is one line, with why.
//!
//! As in mini-redis, the listener is made by [`open_listener`] and handed to
//! [`serve`], so tests can bind port 0 and learn the real port from the events.
//! The bookkeeping lives beside this file: the clients being served and the
//! limits ([`clients`]), stopping ([`stop`]), refusing a client over the
//! limit ([`refuse`]), the chat ([`chat`]), and demo-only tricks ([`demo`]).

pub mod chat;
mod clients;
pub mod demo;
mod goodbye;
mod patience;
mod refuse;
pub mod stop;

pub use clients::Summary;
pub use goodbye::Ending;
pub use stop::{StopHandle, Waited};

// (SO_REUSEADDR, the one option, is not set on Windows: see below.)
#[cfg_attr(windows, allow(unused_imports))]
use crate::engine::call::{Call, Family, Opt};
use crate::engine::conn::{Conn, Received};
use crate::engine::ctx::{Ctx, Gate};
use crate::engine::errors::Lesson;
use crate::engine::event::{Proto, Side};
use crate::engine::framing::{Deframer, Framing, Piece};
use crate::engine::sink::Sink;
use clients::{Clients, Stats};
use patience::Patience;
use socket2::Socket;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Each client's receive buffer. Memory per client is bounded by this, not
/// by what the client sends: a megabyte without a newline is read 4 KiB at a time.
const RECV_BUFFER: usize = 4096;

/// A socket in LISTEN, ready for [`serve`].
pub struct Listener {
    pub sock: Socket,
    pub local: SocketAddr,
    pub ctx: Ctx,
}

/// socket() → setsockopt(SO_REUSEADDR) → bind() → listen().
pub fn open_listener(sink: &Sink, addr: SocketAddr, backlog: i32) -> Result<Listener, Lesson> {
    bind_listener(sink, addr)?.listen(backlog)
}

/// A socket with a name, not yet listening (a capture can start now,
/// before the first client can knock).
pub struct Bound {
    sock: Socket,
    pub local: SocketAddr,
    ctx: Ctx,
}

/// socket() → setsockopt(SO_REUSEADDR) → bind().
pub fn bind_listener(sink: &Sink, addr: SocketAddr) -> Result<Bound, Lesson> {
    let mut ctx = Ctx::new(sink, Side::Server, Proto::Tcp);
    // 1. socket(): an endpoint for TCP (a stream socket), with no name yet.
    let sock = ctx.socket(Family::of(&addr), true)?;
    // 2. SO_REUSEADDR: a restarted server can bind its port while old
    //    connections still wait in TIME-WAIT. (On Windows it means something riskier.)
    #[cfg(not(windows))]
    ctx.call(Call::SetSockOpt(Opt::ReuseAddr), || {
        sock.set_reuse_address(true)
    })?;
    // 3. bind(): name the endpoint (IP, TCP, port); port 0 lets the OS choose.
    let local = ctx.bind(&sock, addr)?;
    Ok(Bound { sock, local, ctx })
}

impl Bound {
    /// 4. listen(): from now on the kernel answers SYNs on this port by
    ///    itself and queues finished connections until we accept() them.
    pub fn listen(self, backlog: i32) -> Result<Listener, Lesson> {
        let Bound { sock, local, ctx } = self;
        ctx.call(Call::Listen(backlog), || sock.listen(backlog))?;
        Ok(Listener { sock, local, ctx })
    }
}

/// How the server behaves once its listener is ready.
#[derive(Clone)]
pub struct ServerConfig {
    /// Send every byte back to the client it came from.
    pub echo: bool,
    /// Clients served at once; more are told "server full" and closed.
    pub max_clients: usize,
    /// Clients at once from one address (loopback is not limited).
    pub max_per_host: usize,
    /// Close a client that sends nothing this long (zero: never).
    pub idle_timeout: Duration,
    /// Close a client that leaves a message half-sent this long (zero: never).
    pub partial_timeout: Duration,
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
            max_per_host: 8,
            idle_timeout: Duration::from_secs(300),
            partial_timeout: Duration::from_secs(30),
            grace: Duration::from_secs(2),
            gate: None,
            chat: None,
            framing: Framing::Raw,
        }
    }
}

/// Accepts clients until `stop` is called, a thread per client.
pub fn serve(mut listener: Listener, cfg: &ServerConfig, stop: &StopHandle) -> Summary {
    listener.ctx.gate = cfg.gate.clone();
    let clients = Clients::new(cfg);
    // Wait for a client (or for the stop), without calling accept() for nothing.
    while stop.wait_readable(&listener.sock) {
        // 5. accept(): take one finished handshake from the queue; the
        //    kernel returns a NEW socket for that one client, and the
        //    listening socket stays in LISTEN for the next.
        let (sock, ctx) = match listener.ctx.accept(|| listener.sock.accept()) {
            Ok(accepted) => accepted,
            Err(failed) => {
                clients.accept_failed(&listener.ctx, &failed);
                continue;
            }
        };
        // 6. A thread of its own for this client, so a slow client never
        //    holds up the others, and the loop goes straight back to accept().
        let (cfg, stop) = (cfg.clone(), stop.clone());
        clients.start(Conn::new(sock, ctx), move |conn, stats| {
            serve_client(conn, &cfg, stats, &stop)
        });
    }
    stop.forget(&listener.sock);
    // Stopping: each client's thread echoes what it read, then says goodbye.
    clients.stop_all(cfg.grace, stop);
    // 9. close(): the port is free again.
    listener.ctx.close(listener.sock);
    clients.summary()
}

/// One client's thread: recv() what it sends, send() it back, until it is done.
fn serve_client(
    conn: &Arc<Conn>,
    cfg: &ServerConfig,
    stats: &Arc<Stats>,
    stop: &StopHandle,
) -> Ending {
    if let Some(room) = &cfg.chat {
        return chat::talk(conn, room, stats, stop, cfg.grace);
    }
    let mut buf = vec![0u8; RECV_BUFFER];
    // The framing cuts what arrives into messages and narrates them; with
    // raw framing every recv() is echoed as it came. Reading no more than
    // its room keeps each client's memory bounded whatever the client sends.
    let mut deframer = Deframer::new(cfg.framing, cfg.echo);
    let mut patience = Patience::new(cfg.idle_timeout, cfg.partial_timeout);
    if cfg.echo && !cfg.idle_timeout.is_zero() {
        // A client that sends and never reads fills its buffers, and then
        // the echo's send() waits: for no longer than the idle timeout.
        if conn.set_send_timeout(Some(cfg.idle_timeout)).is_err() {
            return Ending::Close;
        }
    }
    loop {
        // Wait for the client's bytes, the server's stop, or the end of its patience.
        match stop.wait_for_client(&conn.sock, patience.deadline()) {
            Waited::Ready => {}
            Waited::Stop => return goodbye::at_stop(conn, cfg.grace, stats),
            Waited::TimedOut => {
                patience::tell(conn, &patience.why());
                stats.silenced();
                return Ending::Close;
            }
        }
        let room = deframer.room(buf.len());
        // 7. recv(): the client's bytes; 0 means it sent FIN.
        let (pieces, ended) = match conn.recv(&mut buf[..room]) {
            Ok(Received::Bytes(n)) => {
                stats.received(n);
                let pieces = deframer.push(&conn.ctx, &buf[..n]);
                patience.heard(deframer.partial());
                (pieces, false)
            }
            Ok(Received::End) => (deframer.finish(&conn.ctx), true),
            Err(failed) => {
                clients::report(conn, &failed);
                return Ending::Close;
            }
        };
        // 8. send(): echo what the framing cut out, back to this client.
        if cfg.echo {
            if let Err(ending) = echo(conn, &pieces, stats, cfg.idle_timeout) {
                return ending;
            }
        }
        if ended {
            // Done; our own FIN comes with close().
            return Ending::Close;
        }
    }
}

/// Sends back what the framing cut out; how the connection ends, if the
/// client is gone or does not read.
fn echo(conn: &Conn, pieces: &[Piece], stats: &Stats, idle: Duration) -> Result<(), Ending> {
    for mut bytes in pieces.iter().map(Piece::echo).filter(|b| !b.is_empty()) {
        while !bytes.is_empty() {
            match conn.send_once(bytes) {
                Ok(n) => {
                    stats.sent(n);
                    bytes = &bytes[n..];
                }
                Err(failed) if failed.is_timeout() => {
                    patience::not_reading(conn, idle);
                    stats.silenced();
                    // Unsent bytes wait in our buffer: a FIN would wait
                    // behind them for ever, so the connection is reset.
                    return Err(Ending::Reset);
                }
                Err(failed) => {
                    clients::report(conn, &failed);
                    return Err(Ending::Close);
                }
            }
        }
    }
    Ok(())
}
