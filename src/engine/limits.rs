//! Every socket is a file descriptor, and a process may hold only so many.

/// Raises this process's soft limit on open descriptors to its hard limit.
/// Returns (before, after), or None where there is no such limit to raise.
// rlim_t is u64 on Linux and macOS but not on every Unix: keep the casts.
#[allow(clippy::unnecessary_cast)]
pub fn raise_fd_limit() -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return None;
        }
        let before = lim.rlim_cur as u64;
        // macOS refuses values above OPEN_MAX even when the hard limit is "unlimited".
        let target = if cfg!(target_os = "macos") {
            lim.rlim_max.min(10240)
        } else {
            lim.rlim_max
        };
        if target > lim.rlim_cur {
            let raised = libc::rlimit {
                rlim_cur: target,
                rlim_max: lim.rlim_max,
            };
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                return Some((before, target as u64));
            }
        }
        Some((before, before))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Hands memory the allocator holds but no longer uses back to the OS.
/// glibc keeps freed memory of a burst (a thousand clients' threads and
/// their evidence) for reuse; after the burst that is memory nobody uses.
/// Elsewhere the allocator decides by itself.
pub fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Makes all threads share one heap. glibc gives busy threads heaps of
/// their own (up to eight per core); a server whose thousand short-lived
/// client threads take turns would leave each heap dotted with the few
/// allocations that outlive a burst, and that memory never goes back.
/// Each thread still keeps a small cache of its own (tcache), so sharing
/// costs little. Call it before the server's threads start.
pub fn one_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tuning parameter of the allocator.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        // Blocks of 64 KiB and more (a burst's queues and tables) get
        // pages of their own, given back the moment they are freed, instead
        // of leaving holes in the heap; glibc would otherwise raise this
        // threshold after each such free.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
    }
}

/// Whether the narration yields the CPU to the sockets (`listen` sets it:
/// a server under load should serve first; a tour or a demo is there to be
/// narrated, and keeps its priority).
static SOCKETS_FIRST: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on the narration yields to the sockets: its threads run at a
/// lower priority (see [`narration_priority`]), and bytes-moving events
/// beyond the narration's budget are counted, not narrated (see
/// `Sink::shedding`). Only `listen` asks for it: the tour and the demos
/// wait for their own events to pace the story, and must see every one.
pub fn sockets_first() {
    SOCKETS_FIRST.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Has [`sockets_first`] been asked for?
pub fn is_sockets_first() -> bool {
    SOCKETS_FIRST.load(std::sync::atomic::Ordering::Relaxed)
}

/// In a server (see [`sockets_first`]), lowers the priority of the calling
/// thread (Linux: nice 10 for this thread only). The renderer and the
/// stdout writer call it: when the CPU is short, the sockets come first,
/// and the narration drops what it cannot keep up with (and says how
/// much). When the CPU is idle, as in a class, it changes nothing; and it
/// is mild enough that a busy desktop does not starve the narration.
pub fn narration_priority() {
    if !is_sockets_first() {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority take and return plain integers; on
    // Linux PRIO_PROCESS with a thread id changes only that thread.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}
