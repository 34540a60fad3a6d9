//! How a task learns that its child has exited: a pidfd or a private kqueue on the reactor, or the
//! `SIGCHLD` fallback (the module doc of `process` says when each is used).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use crate::executor::reactor_or_err;
use crate::reactor::{Direction, Reactor, Source};
use crate::signal::Listener;
use crate::sys::Interest;

/// What one waiting child is watched with.
pub(super) enum Watch {
    /// A descriptor that polls readable once the child has exited (a pidfd, or a private kqueue).
    /// Android has neither (see `exit_fd`).
    #[cfg_attr(target_os = "android", allow(dead_code))]
    Fd(ExitFd),
    /// The child was found to have exited while the watch was made (kqueue's `ESRCH`).
    #[cfg_attr(any(target_os = "linux", target_os = "android"), allow(dead_code))]
    Exited,
    /// Woken by every `SIGCHLD`; the child may or may not be the one that exited.
    Sigchld(Listener),
}

impl Watch {
    /// The watch for child `pid`, which has not been reaped: the exit-reporting descriptor of this OS,
    /// or `SIGCHLD` where there is none (or it is forced, or it failed).
    ///
    /// # Errors
    /// Fails outside a runtime, or when even the `SIGCHLD` listener cannot be set up.
    pub(super) fn new(pid: u32) -> io::Result<Watch> {
        let reactor = reactor_or_err()?;
        if !sigchld_forced() {
            if let Some(watch) = Self::exit_fd(pid, &reactor) {
                return Ok(watch);
            }
        }
        Self::sigchld(reactor)
    }

    /// The `SIGCHLD` watch.
    pub(super) fn sigchld(reactor: Arc<Reactor>) -> io::Result<Watch> {
        Ok(Watch::Sigchld(Listener::new(libc::SIGCHLD, reactor)?))
    }

    #[cfg(target_os = "linux")]
    fn exit_fd(pid: u32, reactor: &Arc<Reactor>) -> Option<Watch> {
        let fd = super::pidfd::open(pid).ok()?;
        ExitFd::register(fd, reactor).map(Watch::Fd)
    }

    #[cfg(any(
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly"
    ))]
    fn exit_fd(pid: u32, reactor: &Arc<Reactor>) -> Option<Watch> {
        match super::kqueue::open(pid).ok()? {
            Some(kq) => ExitFd::register(kq, reactor).map(Watch::Fd),
            None => Some(Watch::Exited),
        }
    }

    /// Android: no pidfd (see the module doc), so always `SIGCHLD`.
    #[cfg(target_os = "android")]
    fn exit_fd(_pid: u32, _reactor: &Arc<Reactor>) -> Option<Watch> {
        None
    }

    /// Whether the watch reports an exit that happened before it was made: a pidfd polls readable
    /// from the moment the child is a zombie, and registering a ready fd queues an event; a kqueue's
    /// `NOTE_EXIT` (or `ESRCH`) likewise. A `SIGCHLD` listener hears only later deliveries.
    pub(super) fn reports_earlier_exit(&self) -> bool {
        !self.is_sigchld()
    }

    pub(super) fn is_sigchld(&self) -> bool {
        matches!(self, Watch::Sigchld(_))
    }

    /// Ready when the child may have exited: certainly for `Fd` and `Exited`, possibly for `Sigchld`
    /// (some child exited since the last `Ready`).
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self {
            Watch::Fd(fd) => fd.source.poll_ready(Direction::Read, cx).map(|_| ()),
            Watch::Exited => Poll::Ready(()),
            Watch::Sigchld(listener) => listener.poll_recv(cx),
        }
    }
}

/// `EVLOOP_PROCESS_WAIT=sigchld` in the environment, read once.
fn sigchld_forced() -> bool {
    static FORCED: OnceLock<bool> = OnceLock::new();
    *FORCED.get_or_init(|| {
        std::env::var_os("EVLOOP_PROCESS_WAIT").is_some_and(|v| v.eq_ignore_ascii_case("sigchld"))
    })
}

/// An exit-reporting descriptor registered with the reactor, for reading only (a kqueue descriptor
/// cannot be watched for writing).
pub(super) struct ExitFd {
    /// Deregistered in `Drop`, before `fd` closes.
    source: Arc<Source>,
    reactor: Arc<Reactor>,
    /// The pidfd or kqueue; owned here only to be closed after the deregistration.
    _fd: OwnedFd,
}

impl ExitFd {
    /// `None` if the reactor refuses it; the caller then falls back to `SIGCHLD`.
    #[cfg_attr(target_os = "android", allow(dead_code))]
    fn register(fd: OwnedFd, reactor: &Arc<Reactor>) -> Option<ExitFd> {
        let interest = Interest {
            read: true,
            write: false,
            edge: true,
        };
        let source = reactor.register_with(fd.as_raw_fd(), interest).ok()?;
        Some(ExitFd {
            source,
            reactor: reactor.clone(),
            _fd: fd,
        })
    }
}

impl Drop for ExitFd {
    fn drop(&mut self) {
        // Before `fd` closes (fields drop after this), so its number is never reused while registered.
        let _ = self.reactor.deregister(&self.source);
    }
}
