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
    /// Translates epoll's flags with one table lookup: the six flags that matter (`EPOLLIN`,
    /// `EPOLLPRI`, `EPOLLOUT`, `EPOLLERR`, `EPOLLHUP` in the low five bits, `EPOLLRDHUP` at bit 13)
    /// are packed into a 6-bit index, and [`READY_TABLE`] holds the state bits for each combination.
    #[inline]
    fn from_flags(key: usize, f: libc::c_int) -> Event {
        let f = f as u32;
        let index = (f & 0x1f) | ((f >> 8) & 0x20);
        Event {
            key,
            ready: READY_TABLE[index as usize],
        }
    }
}

// The packing in `Event::from_flags` relies on where the kernel's ABI puts the six flags.
const _: () = assert!(
    (libc::EPOLLIN | libc::EPOLLPRI | libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLHUP) == 0x1f
        && libc::EPOLLRDHUP == 0x2000
);

/// `Event::ready` for every combination of the six epoll flags, indexed as in `Event::from_flags`.
static READY_TABLE: [u8; 64] = {
    let mut table = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        // Back from the index to epoll's flags (the constants are positive, so the casts are exact).
        let f = (i as u32 & 0x1f) | ((i as u32 & 0x20) << 8);
        table[i] = ready_bits(f);
        i += 1;
    }
    table
};

/// The state bits one set of epoll flags means: readable on data (or urgent data), writable on room,
/// read side closed on a hang-up or the peer's shutdown, write side closed on a hang-up or an error
/// with room to write, and the error itself.
const fn ready_bits(f: u32) -> u8 {
    const fn has(f: u32, bit: libc::c_int) -> bool {
        f & bit as u32 != 0
    }
    let mut ready = 0;
    if has(f, libc::EPOLLIN) || has(f, libc::EPOLLPRI) {
        ready |= super::READABLE;
    }
    if has(f, libc::EPOLLOUT) {
        ready |= super::WRITABLE;
    }
    if has(f, libc::EPOLLHUP) || (has(f, libc::EPOLLIN) && has(f, libc::EPOLLRDHUP)) {
        ready |= super::READ_CLOSED;
    }
    if has(f, libc::EPOLLHUP) || (has(f, libc::EPOLLOUT) && has(f, libc::EPOLLERR)) {
        ready |= super::WRITE_CLOSED;
    }
    if has(f, libc::EPOLLERR) {
        ready |= super::ERROR;
    }
    ready
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{ERROR, READABLE, READ_CLOSED, WRITABLE, WRITE_CLOSED};

    fn ready(flags: libc::c_int) -> u8 {
        Event::from_flags(7, flags).ready
    }

    #[test]
    fn epoll_flags_become_state_bits() {
        use libc::{EPOLLERR, EPOLLET, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLPRI, EPOLLRDHUP};
        assert_eq!(ready(0), 0);
        assert_eq!(ready(EPOLLIN), READABLE);
        assert_eq!(ready(EPOLLPRI), READABLE);
        assert_eq!(ready(EPOLLOUT), WRITABLE);
        assert_eq!(ready(EPOLLIN | EPOLLOUT), READABLE | WRITABLE);
        assert_eq!(ready(EPOLLIN | EPOLLRDHUP), READABLE | READ_CLOSED);
        // A shutdown reported without data to read does not close the read side on its own.
        assert_eq!(ready(EPOLLRDHUP), 0);
        assert_eq!(
            ready(EPOLLIN | EPOLLOUT | EPOLLHUP),
            READABLE | WRITABLE | READ_CLOSED | WRITE_CLOSED
        );
        assert_eq!(ready(EPOLLHUP), READ_CLOSED | WRITE_CLOSED);
        assert_eq!(ready(EPOLLOUT | EPOLLERR), WRITABLE | WRITE_CLOSED | ERROR);
        assert_eq!(ready(EPOLLERR), ERROR);
        assert_eq!(
            ready(EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLRDHUP),
            READABLE | WRITABLE | READ_CLOSED | WRITE_CLOSED | ERROR
        );
        // Flags that are not readiness (the registration's own, stray high bits) are ignored.
        assert_eq!(ready(EPOLLIN | EPOLLET), READABLE);
        assert_eq!(ready(EPOLLOUT | (1 << 20)), WRITABLE);
        assert_eq!(Event::from_flags(7, EPOLLIN).key, 7);
    }
}
