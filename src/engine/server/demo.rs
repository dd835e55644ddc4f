//! Tricks the lessons' demos play with a listener, kept out of the lesson's
//! own code: one accept() at a time, a held SYN-RECEIVED, the dual stack.

use super::Listener;
use crate::engine::conn::Conn;
use crate::engine::ctx::Failed;
use std::net::SocketAddr;

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
    pub fn defer_accept(&self, secs: i32) -> Result<(), Failed> {
        use crate::engine::call::{Call, Opt};
        use std::os::fd::AsRawFd;
        let fd = self.sock.as_raw_fd();
        self.ctx.call(Call::SetSockOpt(Opt::DeferAccept(secs)), || {
            // SAFETY: setsockopt with a pointer to a live c_int and its size.
            let rc = unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_DEFER_ACCEPT,
                    (&secs as *const i32).cast(),
                    std::mem::size_of::<i32>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
    }

    /// One accept(), outside [`serve`](super::serve): for demos that play
    /// a server of their own (one that resets, say).
    pub fn accept_one(&self) -> Result<Conn, Failed> {
        let (sock, ctx) = self.ctx.accept(|| self.sock.accept())?;
        Ok(Conn::new(sock, ctx))
    }

    /// close() of the listening socket.
    pub fn close(self) {
        self.ctx.close(self.sock);
    }
}
