//! Stopping a server that is waiting in accept() or recvfrom().
//!
//! A blocked call does not notice a flag. So the server does not block in
//! the call itself: it first waits, with the OS's readiness API (epoll on
//! Linux, kqueue on macOS, IOCP on Windows, through the `polling` crate),
//! until its socket is readable *or* it is woken by [`StopHandle::stop`].
//! Only then does it call accept(), which then returns at once. No
//! connection to itself, no timeout to poll: a stop is seen at once.
//!
//! This wait is sockdemo's own machinery, not part of the lesson, so the
//! timeline does not show it (strace does: `epoll_wait`).

use socket2::Socket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Stops a running server from another thread (Ctrl-C, a test, a demo).
#[derive(Clone)]
pub struct StopHandle {
    inner: Arc<Inner>,
}

struct Inner {
    stopping: AtomicBool,
    poller: Option<polling::Poller>,
    /// The socket registered with the poller (registered once, re-armed).
    registered: AtomicBool,
    /// For waits that are not on a socket (a demo's pause before accept()).
    lock: Mutex<()>,
    woken: Condvar,
}

/// The poller's key for the server's socket.
const SOCKET: usize = 1;

impl StopHandle {
    pub fn new() -> StopHandle {
        StopHandle {
            inner: Arc::new(Inner {
                stopping: AtomicBool::new(false),
                // Without a poller (the OS refused one), calls just block.
                poller: polling::Poller::new().ok(),
                registered: AtomicBool::new(false),
                lock: Mutex::new(()),
                woken: Condvar::new(),
            }),
        }
    }

    /// Asks the server to stop; it notices at once.
    pub fn stop(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        if let Some(poller) = &self.inner.poller {
            let _ = poller.notify();
        }
        let _guard = self.inner.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.inner.woken.notify_all();
    }

    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }

    /// Waits until `sock` has something to read (true), or the server is
    /// told to stop (false). Only one thread may wait on a handle.
    pub fn wait_readable(&self, sock: &Socket) -> bool {
        let Some(poller) = &self.inner.poller else {
            return self.fallback_wait(sock);
        };
        let interest = polling::Event::readable(SOCKET);
        let armed = if self.inner.registered.swap(true, Ordering::SeqCst) {
            // Readiness is reported once per arming (oneshot): arm again.
            poller.modify(sock, interest)
        } else {
            // SAFETY: the socket is removed with `forget` before it is closed.
            unsafe { add(poller, sock, interest) }
        };
        if armed.is_err() {
            return self.fallback_wait(sock);
        }
        let mut events = polling::Events::new();
        loop {
            if self.is_stopping() {
                return false;
            }
            events.clear();
            match poller.wait(&mut events, None) {
                Ok(_) if self.is_stopping() => return false,
                Ok(_) if events.iter().any(|e| e.key == SOCKET) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return self.fallback_wait(sock),
            }
        }
    }

    /// Unregisters `sock` before it is closed.
    pub fn forget(&self, sock: &Socket) {
        if let Some(poller) = &self.inner.poller {
            if self.inner.registered.swap(false, Ordering::SeqCst) {
                let _ = poller.delete(sock);
            }
        }
    }

    /// Sleeps for `pause`, or less if the server is told to stop. False if stopping.
    pub fn sleep(&self, pause: Duration) -> bool {
        let deadline = Instant::now() + pause;
        let mut guard = self.inner.lock.lock().unwrap_or_else(|p| p.into_inner());
        while !self.is_stopping() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return true;
            };
            guard = self
                .inner
                .woken
                .wait_timeout(guard, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        false
    }

    /// No poller (the OS refused to make one): the call blocks as it is,
    /// and a stop is seen when it returns.
    fn fallback_wait(&self, _sock: &Socket) -> bool {
        !self.is_stopping()
    }
}

impl Default for StopHandle {
    fn default() -> Self {
        StopHandle::new()
    }
}

#[cfg(unix)]
unsafe fn add(
    poller: &polling::Poller,
    sock: &Socket,
    interest: polling::Event,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    poller.add(sock.as_raw_fd(), interest)
}

#[cfg(windows)]
unsafe fn add(
    poller: &polling::Poller,
    sock: &Socket,
    interest: polling::Event,
) -> std::io::Result<()> {
    use std::os::windows::io::AsRawSocket;
    poller.add(sock.as_raw_socket(), interest)
}
