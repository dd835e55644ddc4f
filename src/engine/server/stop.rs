//! Stopping a server that is waiting in accept() or recvfrom().
//!
//! A blocked call does not notice a flag. So the server does not block in
//! the call itself: it first waits, with poll(2) on Unix (the socket and a
//! pipe that becomes readable at the stop) and with the `polling` crate
//! elsewhere (IOCP on Windows), until its socket is readable *or* it is
//! woken by [`StopHandle::stop`].
//! Only then does it call accept(), which then returns at once. No
//! connection to itself, no timeout to poll: a stop is seen at once.
//!
//! This wait is sockdemo's own machinery, not part of the lesson, so the
//! timeline does not show it (strace does: `poll`).

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
    /// Readable once the server stops, for every client thread's wait
    /// (a pipe nobody reads: one byte wakes them all, for good).
    #[cfg(unix)]
    alarm: Option<Alarm>,
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
                #[cfg(unix)]
                alarm: Alarm::new().ok(),
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
        #[cfg(unix)]
        if let Some(alarm) = &self.inner.alarm {
            alarm.ring();
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
        // On Unix one poll(2) on the socket and the alarm: one system call
        // per wait, where epoll's oneshot re-arming took five.
        #[cfg(unix)]
        if let Some(alarm) = &self.inner.alarm {
            return alarm.wait(sock, None, || self.is_stopping()) == Waited::Ready;
        }
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

/// What a client's thread found when it waited.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    /// The client sent something (or closed): recv() will not block.
    Ready,
    /// The server is stopping.
    Stop,
    /// Nothing came before the deadline.
    TimedOut,
}

impl StopHandle {
    /// A client's thread waits for its socket to become readable, for the
    /// server's stop, or until `deadline`, whichever comes first. Like the
    /// accept loop's wait, this is sockdemo's machinery (poll(2) on the
    /// socket and the stop alarm), so it is not on the timeline: the recv()
    /// that follows, or the note that says why the client was closed, is.
    pub fn wait_for_client(&self, sock: &Socket, deadline: Option<std::time::Instant>) -> Waited {
        #[cfg(unix)]
        if let Some(alarm) = &self.inner.alarm {
            return alarm.wait(sock, deadline, || self.is_stopping());
        }
        // Without the alarm (Windows): recv() blocks as it is, and a stop
        // reaches a waiting client through shutdown() (see `Clients`).
        let _ = (sock, deadline);
        if self.is_stopping() {
            Waited::Stop
        } else {
            Waited::Ready
        }
    }

    /// Can a stop reach a client's thread while it waits? (Otherwise the
    /// server wakes it with shutdown(SHUT_RD).)
    pub fn reaches_clients(&self) -> bool {
        #[cfg(unix)]
        {
            self.inner.alarm.is_some()
        }
        #[cfg(not(unix))]
        {
            false
        }
    }
}

/// A pipe whose read end becomes readable when the server stops.
#[cfg(unix)]
struct Alarm {
    read: std::os::fd::OwnedFd,
    write: std::os::fd::OwnedFd,
}

#[cfg(unix)]
impl Alarm {
    fn new() -> std::io::Result<Alarm> {
        use std::os::fd::FromRawFd;
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe() writes two descriptors into the array we pass.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        for fd in fds {
            // SAFETY: fcntl on descriptors we just made.
            unsafe {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK);
            }
        }
        // SAFETY: both descriptors are new and owned by nobody else.
        Ok(unsafe {
            Alarm {
                read: std::os::fd::OwnedFd::from_raw_fd(fds[0]),
                write: std::os::fd::OwnedFd::from_raw_fd(fds[1]),
            }
        })
    }

    fn ring(&self) {
        use std::os::fd::AsRawFd;
        // SAFETY: one byte from a live buffer to our own pipe.
        let _ = unsafe { libc::write(self.write.as_raw_fd(), b"!".as_ptr().cast(), 1) };
    }

    fn wait(
        &self,
        sock: &Socket,
        deadline: Option<std::time::Instant>,
        stopping: impl Fn() -> bool,
    ) -> Waited {
        use std::os::fd::AsRawFd;
        loop {
            if stopping() {
                return Waited::Stop;
            }
            let ms = match deadline {
                None => -1,
                Some(at) => {
                    let left = at.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Waited::TimedOut;
                    }
                    // Round up, so a wait never ends just before its deadline.
                    (left.as_micros().div_ceil(1000)).min(i32::MAX as u128) as i32
                }
            };
            let mut fds = [
                libc::pollfd {
                    fd: sock.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.read.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: two valid pollfds, for the duration of the call.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
            if ready < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // poll() itself failed: let recv() block and tell.
                return Waited::Ready;
            }
            if fds[1].revents != 0 || stopping() {
                return Waited::Stop;
            }
            if fds[0].revents != 0 {
                return Waited::Ready;
            }
        }
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
