//! A connected TCP socket, client or server side: `recv()`, `send()`,
//! `shutdown()`, `close()`, each one call recorded with its real result.

use crate::engine::call::{Call, How, Opt};
use crate::engine::ctx::{Ctx, Failed, PREVIEW_CHARS};
use crate::engine::event::TcpState;
use crate::engine::evidence::Sample;
use crate::engine::observe;
use socket2::Socket;
use std::io::{self, Read, Write};
use std::time::Duration;

/// One end of a TCP connection.
pub struct Conn {
    pub sock: Socket,
    pub ctx: Ctx,
    /// How many characters of incoming data to preview.
    pub preview_in: usize,
}

/// What one recv() brought.
pub enum Received {
    Bytes(usize),
    /// recv() returned 0: end of stream (the peer's FIN, or our own shutdown).
    End,
}

impl Failed {
    /// A timeout this program set (SO_RCVTIMEO): EAGAIN, not the network's fault.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.error.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
    }
}

impl Conn {
    pub fn new(sock: Socket, ctx: Ctx) -> Conn {
        Conn {
            sock,
            ctx,
            preview_in: PREVIEW_CHARS,
        }
    }

    /// recv(): waits for bytes from the peer.
    pub fn recv(&self, buf: &mut [u8]) -> Result<Received, Failed> {
        let call = Call::Recv(buf.len());
        let n = self.ctx.recv_call(call, buf, self.preview_in, |b| {
            retry(|| (&self.sock).read(b))
        })?;
        Ok(if n == 0 {
            Received::End
        } else {
            Received::Bytes(n)
        })
    }

    /// send() until every byte is in the kernel's send buffer. send() may
    /// take fewer bytes than offered when the buffer is full, so loop.
    pub fn send_all(&self, mut bytes: &[u8]) -> Result<(), Failed> {
        while !bytes.is_empty() {
            let call = Call::Send(bytes.len());
            let n = self
                .ctx
                .send_call(call, bytes, |b| retry(|| (&self.sock).write(b)))?;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// One send(), as much as the kernel takes now (on a non-blocking
    /// socket it never waits).
    pub fn send_once(&self, bytes: &[u8]) -> Result<usize, Failed> {
        let call = Call::Send(bytes.len());
        self.ctx
            .send_call(call, bytes, |b| retry(|| (&self.sock).write(b)))
    }

    /// fcntl(F_SETFL, O_NONBLOCK): calls return at once (EAGAIN) instead of waiting.
    pub fn set_nonblocking(&self, on: bool) -> Result<(), Failed> {
        self.ctx
            .call(Call::NonBlocking(on), || self.sock.set_nonblocking(on))
    }

    /// shutdown(): SHUT_WR is a half-close, our FIN says "I will send
    /// nothing more" while we can still read what the peer has left to say.
    pub fn shutdown(&self, how: How) -> Result<(), Failed> {
        // The state shutdown() finds decides what it sends: read it first.
        self.ctx.sample_state();
        self.ctx
            .call(Call::Shutdown(how), || self.sock.shutdown(how.std()))
    }

    /// setsockopt(SO_RCVTIMEO): a recv() gives up after `limit` (EAGAIN).
    pub fn set_recv_timeout(&self, limit: Option<Duration>) -> Result<(), Failed> {
        self.ctx
            .call(Call::SetSockOpt(Opt::RecvTimeout(limit)), || {
                self.sock.set_read_timeout(limit)
            })
    }

    /// setsockopt(SO_SNDTIMEO): a send() gives up after `limit` (EAGAIN).
    pub fn set_send_timeout(&self, limit: Option<Duration>) -> Result<(), Failed> {
        self.ctx
            .call(Call::SetSockOpt(Opt::SendTimeout(limit)), || {
                self.sock.set_write_timeout(limit)
            })
    }

    /// close(): gives the descriptor back. The connection itself may live on
    /// in the kernel (TIME-WAIT), which is looked up afterwards.
    pub fn close(self) {
        let Conn { sock, ctx, .. } = self;
        ctx.close(sock);
    }

    /// close(), then keep an eye on the kernel's table while the kernel
    /// finishes the close on its own (an ACK still on its way: CLOSING,
    /// LAST-ACK, FIN-WAIT-1), for at most `limit`. A program about to exit
    /// would otherwise never see where its connection ended.
    pub fn close_settled(self, limit: Duration) {
        let ctx = self.ctx.clone();
        self.close();
        let (Some(local), Some(remote)) = (ctx.local, ctx.remote) else {
            return;
        };
        let deadline = std::time::Instant::now() + limit;
        let mut told = None;
        loop {
            let Ok(entry) = observe::find(local, remote) else {
                return;
            };
            let state = entry.as_ref().map(|e| e.state);
            if state != told {
                told = state;
                ctx.sample(Sample {
                    t: ctx.sink.elapsed(),
                    state,
                    via: "sock_diag",
                    timer: entry.and_then(|e| e.timer),
                    queue: None,
                });
            }
            let waiting = matches!(
                state,
                Some(TcpState::Closing | TcpState::LastAck | TcpState::FinWait1)
            );
            if !waiting || std::time::Instant::now() >= deadline {
                return;
            }
            // Nothing tells this thread when the kernel moves on: look again soon.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// setsockopt(SO_LINGER, {on, 0}) then close(): an abortive close. The
    /// kernel sends a reset (RST) instead of FIN, drops unsent data, and
    /// keeps no TIME-WAIT; the peer's next call fails with ECONNRESET.
    pub fn close_with_reset(self) {
        let linger = Opt::Linger(Some(Duration::ZERO));
        let _ = self.ctx.call(Call::SetSockOpt(linger), || {
            self.sock.set_linger(Some(Duration::ZERO))
        });
        self.close();
    }
}

/// A call interrupted by a signal is simply made again (the kernel's
/// SA_RESTART would do the same).
fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
