//! The Linux backend: epoll, an eventfd notifier, and `epoll_pwait2` for sub-millisecond deadlines.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::{syscall, Interest};

/// The key under which the notifier's eventfd is registered; never handed to the reactor.
const NOTIFY_KEY: u64 = u64::MAX;

/// An epoll instance plus an eventfd that wakes it from any thread.
#[derive(Debug)]
pub(crate) struct Poller {
    /// The epoll instance.
    epfd: OwnedFd,
    /// Written by `notify`; registered edge-triggered so it never has to be read back.
    eventfd: OwnedFd,
    /// False once `epoll_pwait2` failed with ENOSYS (kernels before 5.11): then deadlines are rounded up
    /// to whole milliseconds for `epoll_wait`, late by up to 1 ms but never early.
    has_pwait2: AtomicBool,
}

impl Poller {
    /// Creates the epoll instance and its notifier, both close-on-exec.
    pub(crate) fn new() -> io::Result<Poller> {
        // SAFETY: epoll_create1 takes no pointers; the returned fd is checked and then owned.
        let epfd =
            unsafe { OwnedFd::from_raw_fd(syscall(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        // SAFETY: eventfd takes no pointers; the returned fd is checked and then owned.
        let eventfd = unsafe {
            OwnedFd::from_raw_fd(syscall(libc::eventfd(
                0,
                libc::EFD_CLOEXEC | libc::EFD_NONBLOCK,
            ))?)
        };
        let poller = Poller {
            epfd,
            eventfd,
            has_pwait2: AtomicBool::new(true),
        };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: NOTIFY_KEY,
        };
        poller.ctl(libc::EPOLL_CTL_ADD, poller.eventfd.as_raw_fd(), &mut ev)?;
        Ok(poller)
    }

    /// Starts watching `fd`, reporting events under `key`.
    pub(crate) fn add(&self, fd: RawFd, key: usize, interest: Interest) -> io::Result<()> {
        let mut ev = epoll_event(key, interest);
        self.ctl(libc::EPOLL_CTL_ADD, fd, &mut ev)
    }

    /// Changes what `fd` is watched for.
    pub(crate) fn modify(&self, fd: RawFd, key: usize, interest: Interest) -> io::Result<()> {
        let mut ev = epoll_event(key, interest);
        self.ctl(libc::EPOLL_CTL_MOD, fd, &mut ev)
    }

    /// Stops watching `fd`.
    pub(crate) fn delete(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        self.ctl(libc::EPOLL_CTL_DEL, fd, &mut ev)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, ev: &mut libc::epoll_event) -> io::Result<()> {
        // SAFETY: `ev` is a valid, exclusive epoll_event for the duration of the call.
        syscall(unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, ev) })?;
        Ok(())
    }

    /// Waits for events until `deadline` (`None`: forever; past: do not block).
    pub(crate) fn wait(&self, events: &mut Events, deadline: Option<Instant>) -> io::Result<()> {
        events.len = 0;
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let cap = events.buf.capacity() as libc::c_int;
        let buf = events.buf.as_mut_ptr();
        let mut n = -1;
        if self.has_pwait2.load(Ordering::Relaxed) {
            let ts = timeout.map(|t| libc::timespec {
                tv_sec: t.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
                tv_nsec: t.subsec_nanos() as libc::c_long,
            });
            let ts_ptr = ts
                .as_ref()
                .map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: `buf` has room for `cap` events; `ts_ptr` is null or points at `ts`, alive for the
            // call; a null sigmask means "leave the signal mask alone".
            n = unsafe {
                libc::syscall(
                    libc::SYS_epoll_pwait2,
                    self.epfd.as_raw_fd(),
                    buf,
                    cap,
                    ts_ptr,
                    std::ptr::null::<libc::sigset_t>(),
                    0usize,
                )
            } as i32;
            if n == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
                self.has_pwait2.store(false, Ordering::Relaxed);
            }
        }
        if !self.has_pwait2.load(Ordering::Relaxed) {
            let ms = match timeout {
                None => -1,
                // Round up so that the wait never ends before the deadline.
                Some(t) => t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int,
            };
            // SAFETY: `buf` has room for `cap` events.
            n = unsafe { libc::epoll_wait(self.epfd.as_raw_fd(), buf, cap, ms) };
        }
        match syscall(n) {
            Ok(n) => {
                // SAFETY: the kernel initialised the first `n` entries.
                unsafe { events.buf.set_len(n as usize) };
                events.len = n as usize;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Wakes the thread blocked in `wait`, or makes the next `wait` return at once.
    pub(crate) fn notify(&self) -> io::Result<()> {
        let one: u64 = 1;
        loop {
            // SAFETY: writes 8 bytes from a live u64.
            let n =
                unsafe { libc::write(self.eventfd.as_raw_fd(), (&one as *const u64).cast(), 8) };
            match syscall(n as isize) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The counter is saturated (after 2^64 - 2 notifies without a read): reset it and retry.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut sink: u64 = 0;
                    // SAFETY: reads 8 bytes into a live u64.
                    unsafe {
                        libc::read(self.eventfd.as_raw_fd(), (&mut sink as *mut u64).cast(), 8)
                    };
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn epoll_event(key: usize, interest: Interest) -> libc::epoll_event {
    let mut flags = libc::EPOLLRDHUP;
    if interest.read {
        flags |= libc::EPOLLIN;
    }
    if interest.write {
        flags |= libc::EPOLLOUT;
    }
    if interest.edge {
        flags |= libc::EPOLLET;
    }
    libc::epoll_event {
        events: flags as u32,
        u64: key as u64,
    }
}

/// A reusable buffer of events returned by [`Poller::wait`].
pub(crate) struct Events {
    /// Kernel-filled storage; only the first `len` entries are meaningful.
    buf: Vec<libc::epoll_event>,
    /// How many entries the last wait filled.
    len: usize,
}

impl Events {
    pub(crate) fn with_capacity(cap: usize) -> Events {
        Events {
            buf: Vec::with_capacity(cap.max(1)),
            len: 0,
        }
    }

    /// The events of the last wait, without the notifier's.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.buf[..self.len]
            .iter()
            .filter(|e| e.u64 != NOTIFY_KEY)
            .map(|e| Event::from_flags(e.u64 as usize, e.events as libc::c_int))
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").field("len", &self.len).finish()
    }
}

/// One readiness event.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Event {
    pub(crate) key: usize,
    /// `sys::READABLE`, `WRITABLE`, ... or'ed together.
    pub(crate) ready: u8,
}

impl Event {
    #[inline]
    fn from_flags(key: usize, f: libc::c_int) -> Event {
        let has = |bit: libc::c_int| f & bit != 0;
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        let ready = flag(has(libc::EPOLLIN | libc::EPOLLPRI), super::READABLE)
            | flag(has(libc::EPOLLOUT), super::WRITABLE)
            | flag(
                has(libc::EPOLLHUP) || (has(libc::EPOLLIN) && has(libc::EPOLLRDHUP)),
                super::READ_CLOSED,
            )
            | flag(
                has(libc::EPOLLHUP) || (has(libc::EPOLLOUT) && has(libc::EPOLLERR)),
                super::WRITE_CLOSED,
            )
            | flag(has(libc::EPOLLERR), super::ERROR);
        Event { key, ready }
    }
}
