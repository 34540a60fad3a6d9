//! The macOS/iOS/BSD backend: kqueue, with an `EVFILT_USER` notifier, or a pipe where there is none
//! (OpenBSD, which gained `EVFILT_USER` only lately, and NetBSD before 10, found out at run time).
//!
//! A registration is one kqueue filter per direction (`EVFILT_READ`, `EVFILT_WRITE`) on the same fd, both
//! carrying the caller's key in `udata`. Every change is submitted with `EV_RECEIPT`, so `kevent` answers
//! each one with a receipt holding its own error instead of failing the whole call or returning events.
//!
//! The `kevent` struct differs between platforms: NetBSD has `u32` `filter`/`flags` and a `size_t` count
//! in `kevent()` (the `Filter`, `Flags` and `Count` aliases), FreeBSD 12+ has an extra `ext` array
//! (hence the zeroed constructor `kevent()`), Apple packs it to 4 bytes (so fields are only ever copied,
//! never borrowed), and `udata` is a pointer, or `intptr_t` on NetBSD with libc before 0.2.178 (so it is
//! only ever converted with `as`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::time::Instant;

use super::{retry, set_nonblocking, syscall, Interest};

/// The `udata` under which the notifier is registered; never handed to the reactor.
const NOTIFY_KEY: usize = usize::MAX;

/// The type of `kevent.filter` (and of the `EVFILT_*` constants).
#[cfg(target_os = "netbsd")]
type Filter = u32;
/// The type of `kevent.filter` (and of the `EVFILT_*` constants).
#[cfg(not(target_os = "netbsd"))]
type Filter = i16;

/// The type of `kevent.flags` (and of the `EV_*` constants).
#[cfg(target_os = "netbsd")]
type Flags = u32;
/// The type of `kevent.flags` (and of the `EV_*` constants).
#[cfg(not(target_os = "netbsd"))]
type Flags = u16;

/// The type of `kevent()`'s `nchanges` and `nevents` arguments.
#[cfg(target_os = "netbsd")]
type Count = libc::size_t;
/// The type of `kevent()`'s `nchanges` and `nevents` arguments.
#[cfg(not(target_os = "netbsd"))]
type Count = libc::c_int;

/// A kqueue plus a notifier that wakes it from any thread.
#[derive(Debug)]
pub(crate) struct Poller {
    /// The kqueue.
    kq: OwnedFd,
    /// What `notify` pokes to end a `wait`; registered in `kq` under `NOTIFY_KEY`.
    notifier: Notifier,
}

impl Poller {
    /// Creates the kqueue and its notifier, both close-on-exec.
    pub(crate) fn new() -> io::Result<Poller> {
        // SAFETY: kqueue takes no arguments; the returned fd is checked and then owned.
        let kq = unsafe { OwnedFd::from_raw_fd(syscall(libc::kqueue())?) };
        set_cloexec(kq.as_raw_fd())?;
        #[cfg(not(target_os = "openbsd"))]
        let notifier = Notifier::User;
        #[cfg(target_os = "openbsd")]
        let notifier = Notifier::pipe()?;
        let mut poller = Poller { kq, notifier };
        if let Err(e) = poller.submit(&[poller.notifier.registration()]) {
            // A kernel without EVFILT_USER (NetBSD before 10) rejects the unknown filter with EINVAL.
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
            poller.notifier = Notifier::pipe()?;
            poller.submit(&[poller.notifier.registration()])?;
        }
        Ok(poller)
    }

    /// Starts watching `fd`, reporting events under `key`.
    pub(crate) fn add(&self, fd: RawFd, key: usize, interest: Interest) -> io::Result<()> {
        let flags = add_flags(interest);
        let mut changes = [kevent(0, 0, 0, 0, 0); 2];
        let mut len = 0;
        for (wanted, filter) in [
            (interest.read, libc::EVFILT_READ),
            (interest.write, libc::EVFILT_WRITE),
        ] {
            if wanted {
                changes[len] = kevent(fd as usize, filter, flags, 0, key);
                len += 1;
            }
        }
        self.submit(&changes[..len])
    }

    /// Changes what `fd` is watched for: adds the wanted filters and deletes the others, in one call.
    pub(crate) fn modify(&self, fd: RawFd, key: usize, interest: Interest) -> io::Result<()> {
        let flags = add_flags(interest);
        let changes = [
            (interest.read, libc::EVFILT_READ),
            (interest.write, libc::EVFILT_WRITE),
        ]
        .map(|(wanted, filter)| {
            if wanted {
                kevent(fd as usize, filter, flags, 0, key)
            } else {
                deletion(fd, filter)
            }
        });
        self.submit(&changes)
    }

    /// Stops watching `fd`.
    pub(crate) fn delete(&self, fd: RawFd) -> io::Result<()> {
        let changes = [libc::EVFILT_READ, libc::EVFILT_WRITE].map(|filter| deletion(fd, filter));
        self.submit(&changes)
    }

    /// Applies up to two changes, each carrying `EV_RECEIPT`, and returns the first error among their
    /// receipts, ignoring ENOENT for a delete (the filter was not there) and EPIPE for an add (older macOS
    /// reports it for a pipe whose other end is gone, yet the registration works and reports EOF, as in mio).
    fn submit(&self, changes: &[libc::kevent]) -> io::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut receipts = [kevent(0, 0, 0, 0, 0); 2];
        let receipts = &mut receipts[..changes.len()];
        // Every change yields a receipt, so the list fills at once; the zero timeout only guarantees that
        // this call can never block.
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // An EINTR here means the changes were applied but their receipts lost: applying them again is
        // harmless (a second add updates, a second delete gets an ignored ENOENT) and recovers the receipts.
        let n = retry(|| {
            // SAFETY: `changes` and `receipts` are live slices of the lengths passed, and `zero` outlives
            // the call.
            syscall(unsafe {
                libc::kevent(
                    self.kq.as_raw_fd(),
                    changes.as_ptr(),
                    changes.len() as Count,
                    receipts.as_mut_ptr(),
                    receipts.len() as Count,
                    &zero,
                )
            })
        })?;
        for receipt in &receipts[..n as usize] {
            if receipt.flags & libc::EV_ERROR == 0 || receipt.data == 0 {
                continue;
            }
            let errno = receipt.data as libc::c_int;
            let filter = receipt.filter;
            // The receipt's flags are overwritten with EV_ERROR, so find what was asked by its filter,
            // which is distinct within one submission.
            let deleting = changes
                .iter()
                .any(|change| change.filter == filter && change.flags & libc::EV_DELETE != 0);
            let ignored = if deleting {
                errno == libc::ENOENT
            } else {
                errno == libc::EPIPE
            };
            if !ignored {
                return Err(io::Error::from_raw_os_error(errno));
            }
        }
        Ok(())
    }

    /// Waits for events until `deadline` (`None`: forever; past: do not block).
    pub(crate) fn wait(&self, events: &mut Events, deadline: Option<Instant>) -> io::Result<()> {
        events.len = 0;
        let timeout = deadline.map(|d| {
            let t = d.saturating_duration_since(Instant::now());
            libc::timespec {
                tv_sec: t.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
                tv_nsec: t.subsec_nanos() as libc::c_long,
            }
        });
        let timeout_ptr = timeout
            .as_ref()
            .map_or(ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: no changes are passed; `buf` has room for `capacity()` events; `timeout_ptr` is null or
        // points at `timeout`, alive for the call.
        let n = unsafe {
            libc::kevent(
                self.kq.as_raw_fd(),
                ptr::null(),
                0,
                events.buf.as_mut_ptr(),
                events.buf.capacity() as Count,
                timeout_ptr,
            )
        };
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
        self.notifier.notify(self)
    }
}

/// The flags that add a filter for `interest`.
fn add_flags(interest: Interest) -> Flags {
    let mut flags = libc::EV_ADD | libc::EV_RECEIPT;
    if interest.edge {
        flags |= libc::EV_CLEAR;
    }
    flags
}

/// The change that removes `filter` from `fd`.
fn deletion(fd: RawFd, filter: Filter) -> libc::kevent {
    let flags = libc::EV_DELETE | libc::EV_RECEIPT;
    kevent(fd as usize, filter, flags, 0, 0)
}

/// A `kevent` with the given fields and all others (FreeBSD's `ext`) zero.
fn kevent(ident: usize, filter: Filter, flags: Flags, fflags: u32, udata: usize) -> libc::kevent {
    // SAFETY: `kevent` holds only integers and a raw pointer, for which all-zero bytes are valid.
    let mut ev: libc::kevent = unsafe { std::mem::zeroed() };
    ev.ident = ident;
    ev.filter = filter;
    ev.flags = flags;
    ev.fflags = fflags;
    // `as _`: a pointer on most platforms, an integer on NetBSD with older libc; never dereferenced.
    ev.udata = udata as _;
    ev
}

/// Marks `fd` close-on-exec.
fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl with F_SETFD takes no pointers; an invalid fd yields EBADF.
    syscall(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    Ok(())
}

/// What `notify` pokes to end a `wait`.
#[derive(Debug)]
enum Notifier {
    /// An `EVFILT_USER` event, which needs no file descriptor.
    #[cfg(not(target_os = "openbsd"))]
    User,
    /// A non-blocking pipe, where there is no `EVFILT_USER`.
    Pipe {
        /// Watched with `EVFILT_READ | EV_CLEAR`, so that every byte written fires it again; read only
        /// to make room once the pipe is full.
        read: OwnedFd,
        /// `notify` writes one byte here.
        write: OwnedFd,
    },
}

impl Notifier {
    /// The ident of the `EVFILT_USER` event.
    #[cfg(not(target_os = "openbsd"))]
    const USER_IDENT: usize = 0;

    /// A pipe notifier, both ends close-on-exec and non-blocking.
    fn pipe() -> io::Result<Notifier> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two fds that pipe writes.
        syscall(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
        // SAFETY: pipe succeeded, so both fds are open and owned by nothing else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        for fd in [&read, &write] {
            set_cloexec(fd.as_raw_fd())?;
            set_nonblocking(fd.as_raw_fd())?;
        }
        Ok(Notifier::Pipe { read, write })
    }

    /// The change that registers the notifier; `EV_CLEAR` resets it each time `wait` reports it.
    fn registration(&self) -> libc::kevent {
        let flags = libc::EV_ADD | libc::EV_CLEAR | libc::EV_RECEIPT;
        match self {
            #[cfg(not(target_os = "openbsd"))]
            Notifier::User => kevent(Self::USER_IDENT, libc::EVFILT_USER, flags, 0, NOTIFY_KEY),
            Notifier::Pipe { read, .. } => kevent(
                read.as_raw_fd() as usize,
                libc::EVFILT_READ,
                flags,
                0,
                NOTIFY_KEY,
            ),
        }
    }

    /// Triggers the notifier.
    // OpenBSD has only the pipe, which needs no kqueue call.
    #[cfg_attr(target_os = "openbsd", allow(unused_variables))]
    fn notify(&self, poller: &Poller) -> io::Result<()> {
        match self {
            // `EV_ADD` on the existing event keeps its `EV_CLEAR`; it is what mio does.
            #[cfg(not(target_os = "openbsd"))]
            Notifier::User => poller.submit(&[kevent(
                Self::USER_IDENT,
                libc::EVFILT_USER,
                libc::EV_ADD | libc::EV_RECEIPT,
                libc::NOTE_TRIGGER,
                NOTIFY_KEY,
            )]),
            // The pipe needs no kqueue call.
            Notifier::Pipe { read, write } => loop {
                let byte = 1u8;
                let written = retry(|| {
                    // SAFETY: writes one byte from a live u8.
                    syscall(unsafe {
                        libc::write(write.as_raw_fd(), (&byte as *const u8).cast(), 1)
                    })
                });
                match written {
                    Ok(_) => return Ok(()),
                    // Full after many notifies that no byte was read for: a byte that cannot be
                    // written fires nothing, so empty the pipe and write again.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => drain(read),
                    Err(e) => return Err(e),
                }
            },
        }
    }
}

/// Reads the pipe `read` until it is empty.
fn drain(read: &OwnedFd) {
    let mut buf = [0u8; 256];
    loop {
        // SAFETY: reads at most `buf.len()` bytes into the live `buf`.
        let n = unsafe { libc::read(read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        // Stop at empty (EAGAIN), at EOF (cannot happen: the write end is open), or at any error.
        if n <= 0 {
            return;
        }
    }
}

/// A reusable buffer of events returned by [`Poller::wait`].
pub(crate) struct Events {
    /// Kernel-filled storage; only the first `len` entries are meaningful.
    buf: Vec<libc::kevent>,
    /// How many entries the last wait filled.
    len: usize,
}

// SAFETY: the only pointer in `libc::kevent` is `udata`, which holds a key and is never dereferenced;
// `Events` is plain data, like epoll's.
unsafe impl Send for Events {}
// SAFETY: as above; `&Events` only reads integers.
unsafe impl Sync for Events {}

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
            .filter(|e| e.udata as usize != NOTIFY_KEY)
            .map(Event::from_kevent)
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").field("len", &self.len).finish()
    }
}

/// One readiness event: kqueue reports each direction as a separate event.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Event {
    /// The key given to `add`/`modify`.
    pub(crate) key: usize,
    /// `sys::READABLE` (the read filter fired: data, a connection to accept, or EOF), `WRITABLE` (the
    /// write filter fired), `READ_CLOSED` / `WRITE_CLOSED` (`EV_EOF` on that filter), `ERROR`
    /// (`EV_ERROR`, or `EV_EOF` with a socket error in `fflags`), or'ed together.
    pub(crate) ready: u8,
}

impl Event {
    fn from_kevent(e: &libc::kevent) -> Event {
        let read = e.filter == libc::EVFILT_READ;
        let write = e.filter == libc::EVFILT_WRITE;
        let eof = e.flags & libc::EV_EOF != 0;
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        // A failed connect or a reset shows up as EOF with the socket error in `fflags`, where epoll
        // would report EPOLLERR (mio reads it the same way).
        let error = e.flags & libc::EV_ERROR != 0 || (eof && e.fflags != 0);
        Event {
            key: e.udata as usize,
            ready: flag(read, super::READABLE)
                | flag(write, super::WRITABLE)
                | flag(read && eof, super::READ_CLOSED)
                | flag(write && eof, super::WRITE_CLOSED)
                | flag(error, super::ERROR),
        }
    }
}

// epoll's `Poller` and `Events` are `Send + Sync` (the poller is notified from other threads), so these must
// be too, whatever the reactor does with them.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Poller>();
    assert_send_sync::<Events>();
};
