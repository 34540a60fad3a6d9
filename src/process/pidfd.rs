//! Linux: a pidfd (`pidfd_open`, kernel 5.3 and later) is a descriptor for one process that polls
//! readable once the process has exited, which is all `wait` needs from the reactor.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::sys::syscall;

/// Set once the kernel answered `ENOSYS`: later children go straight to the `SIGCHLD` way.
static UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// A pidfd for child `pid` (close-on-exec: the kernel always sets it for pidfds), or the reason there
/// is none.
///
/// The child must not have been reaped yet, so that `pid` cannot name another process.
pub(super) fn open(pid: u32) -> io::Result<OwnedFd> {
    if UNSUPPORTED.load(Ordering::Relaxed) {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    // SAFETY: pidfd_open takes a pid and flags, no pointers; a failure is reported through -1/errno.
    let ret = syscall(unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) });
    match ret {
        // SAFETY: the syscall returned a new descriptor that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => {
            if e.raw_os_error() == Some(libc::ENOSYS) {
                UNSUPPORTED.store(true, Ordering::Relaxed);
            }
            Err(e)
        }
    }
}
