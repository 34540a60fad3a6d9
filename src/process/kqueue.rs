//! macOS, iOS and the BSDs: a private kqueue watching one child with `EVFILT_PROC`/`NOTE_EXIT`.
//!
//! A kqueue descriptor is itself readable while it holds pending events, so the private kqueue is
//! registered with the reactor (whatever its backend) like a pipe, and the sys layer needs no
//! process-specific filter. The price is one descriptor per child being waited for.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;

use crate::sys::syscall;

/// A kqueue that becomes readable once child `pid` exits, or `None` when the child has exited
/// already (`ESRCH`). The child must not have been reaped yet, so that `pid` cannot name another
/// process.
pub(super) fn open(pid: u32) -> io::Result<Option<OwnedFd>> {
    // SAFETY: kqueue takes no arguments; the returned fd is checked and then owned.
    let kq = unsafe { OwnedFd::from_raw_fd(syscall(libc::kqueue())?) };
    // macOS has no kqueue1/O_CLOEXEC: set it right away (as the reactor's own kqueue does).
    // SAFETY: F_SETFD takes no pointers; `kq` is open.
    syscall(unsafe { libc::fcntl(kq.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
    // SAFETY: all-zero is a valid kevent (every field is an integer or a pointer); zeroing also covers
    // the fields that only some platforms have (FreeBSD's `ext`).
    let mut change: libc::kevent = unsafe { std::mem::zeroed() };
    change.ident = pid as libc::uintptr_t;
    change.filter = libc::EVFILT_PROC;
    change.flags = libc::EV_ADD | libc::EV_ONESHOT;
    change.fflags = libc::NOTE_EXIT;
    // With no room for events, a failed change makes kevent return -1 with its errno.
    let ret = crate::sys::retry(|| {
        // SAFETY: `change` is one live kevent; no events are asked for, so the null list is not written.
        syscall(unsafe {
            libc::kevent(kq.as_raw_fd(), &change, 1, ptr::null_mut(), 0, ptr::null())
        })
    });
    match ret {
        Ok(_) => Ok(Some(kq)),
        // The child is a zombie already (some kernels refuse to attach to one).
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(None),
        Err(e) => Err(e),
    }
}
