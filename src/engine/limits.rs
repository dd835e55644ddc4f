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
