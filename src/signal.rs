//! Signals, delivered through the reactor: [`ctrl_c`], [`signal`] (a `Stream` of deliveries), and the
//! machinery under the callback API's `SIGNAL` events.
//!
//! # How it works
//! - The first listener of a signal installs a handler (saving the old disposition); the last one to go
//!   restores it. A per-signal listener count lives in one process-wide table behind a `Mutex`.
//! - The handler does only async-signal-safe things: it bumps the signal's delivery counter (an atomic)
//!   and writes the signal number to a non-blocking self-pipe, saving and restoring `errno`.
//! - The pipe's read end is registered once with each reactor that has listeners. A listener woken by
//!   it drains the pipe and wakes every registered listener waker (the pipe is process-wide, so a
//!   listener of one runtime may drain what another runtime's listener waits for).
//! - Each listener remembers the counter value it has seen, so every listener sees every delivery
//!   (broadcast). Deliveries that arrive between two polls of one listener are coalesced into one.
//!
//! Several runtimes on several threads may listen at once; each registers the pipe with its own reactor.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

use futures_core::Stream;

use crate::executor::reactor_or_err;
use crate::reactor::{Direction, Reactor, Source};
use crate::sys::{self, syscall};

/// One past the largest signal number handled.
const NSIG: usize = 65;

/// Deliveries per signal, bumped by the handler.
static COUNTS: [AtomicU64; NSIG] = [const { AtomicU64::new(0) }; NSIG];

/// The self-pipe's write end, or -1 before it exists. Read by the handler.
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

/// The process-wide table.
static GLOBALS: Mutex<Globals> = Mutex::new(Globals {
    pipe_read: -1,
    signals: Vec::new(),
    readers: Vec::new(),
});

struct Globals {
    /// The self-pipe's read end, or -1 before the first listener. Never closed: the handler may run
    /// at any time, and the pipe is reused by later listeners.
    pipe_read: RawFd,
    /// Per signal number (grown on demand).
    signals: Vec<SigState>,
    /// The pipe's registration with each reactor that has listeners.
    readers: Vec<PipeReader>,
}

#[derive(Default)]
struct SigState {
    /// Live listeners; the handler is installed while this is non-zero.
    listeners: usize,
    /// The disposition before the handler was installed, restored by the last listener.
    old: Option<libc::sigaction>,
    /// Listeners waiting for the next delivery.
    wakers: Vec<Waker>,
}

struct PipeReader {
    reactor: Weak<Reactor>,
    source: Arc<Source>,
    /// Listeners on this reactor; the pipe is deregistered when it drops to 0.
    users: usize,
}

fn globals() -> MutexGuard<'static, Globals> {
    GLOBALS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A signal number (`SIGINT`, `SIGUSR1`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SignalKind(i32);

impl SignalKind {
    /// Any signal by number.
    pub const fn from_raw(signum: i32) -> SignalKind {
        SignalKind(signum)
    }
    /// The number.
    pub const fn as_raw(self) -> i32 {
        self.0
    }
    /// `SIGINT` (Ctrl-C).
    pub const fn interrupt() -> SignalKind {
        SignalKind(libc::SIGINT)
    }
    /// `SIGTERM`.
    pub const fn terminate() -> SignalKind {
        SignalKind(libc::SIGTERM)
    }
    /// `SIGHUP`.
    pub const fn hangup() -> SignalKind {
        SignalKind(libc::SIGHUP)
    }
    /// `SIGQUIT`.
    pub const fn quit() -> SignalKind {
        SignalKind(libc::SIGQUIT)
    }
    /// `SIGCHLD`.
    pub const fn child() -> SignalKind {
        SignalKind(libc::SIGCHLD)
    }
    /// `SIGUSR1`.
    pub const fn user_defined1() -> SignalKind {
        SignalKind(libc::SIGUSR1)
    }
    /// `SIGUSR2`.
    pub const fn user_defined2() -> SignalKind {
        SignalKind(libc::SIGUSR2)
    }
}

impl From<i32> for SignalKind {
    fn from(signum: i32) -> SignalKind {
        SignalKind(signum)
    }
}

/// A stream of deliveries of one signal, made by [`signal`].
///
/// Yields `()` once per poll at which deliveries arrived since the previous item (several quick
/// deliveries may be coalesced into one item). Never ends. Dropping the last listener of a signal
/// restores its previous disposition.
#[must_use = "streams do nothing unless polled; dropping it stops listening"]
pub struct Signal {
    listener: Listener,
}

/// Listens for `kind` on the current runtime's reactor.
///
/// # Errors
/// Fails outside a runtime, for signals that cannot be caught (`SIGKILL`, `SIGSTOP`, and the fault
/// signals `SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE`), and when the self-pipe cannot be created.
///
/// # Examples
/// ```
/// use evloop::signal::{signal, SignalKind};
///
/// evloop::block_on(async {
///     let mut usr1 = signal(SignalKind::user_defined1())?;
///     // SAFETY: raise has no preconditions.
///     unsafe { libc::raise(libc::SIGUSR1) };
///     usr1.recv().await;
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn signal(kind: SignalKind) -> io::Result<Signal> {
    let reactor = reactor_or_err()?;
    Ok(Signal {
        listener: Listener::new(kind.0, reactor)?,
    })
}

/// Waits for Ctrl-C (`SIGINT`). While it waits, Ctrl-C no longer kills the process.
///
/// # Errors
/// As [`signal`].
pub async fn ctrl_c() -> io::Result<()> {
    let mut s = signal(SignalKind::interrupt())?;
    s.recv().await;
    Ok(())
}

impl Signal {
    /// Waits for the next delivery. Always `Some(())`; the `Option` mirrors `Stream`.
    pub async fn recv(&mut self) -> Option<()> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next delivery.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<()>> {
        self.listener.poll_recv(cx).map(Some)
    }
}

impl Stream for Signal {
    type Item = ();

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
        self.get_mut().poll_recv(cx)
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signal")
            .field("signum", &self.listener.signum)
            .finish()
    }
}

/// One listener of one signal, woken through `reactor`: the shared core of [`Signal`] and of the
/// callback API's `SIGNAL` events.
pub(crate) struct Listener {
    signum: i32,
    /// The delivery count this listener has reported.
    seen: u64,
    reactor: Arc<Reactor>,
    /// The self-pipe's registration with `reactor`.
    source: Arc<Source>,
}

impl Listener {
    /// Starts listening for `signum`, installing the handler if this is its first listener.
    pub(crate) fn new(signum: i32, reactor: Arc<Reactor>) -> io::Result<Listener> {
        check_signum(signum)?;
        let mut g = globals();
        let pipe_read = ensure_pipe(&mut g)?;
        let source = match g
            .readers
            .iter_mut()
            .find(|r| std::ptr::eq(r.reactor.as_ptr(), &*reactor))
        {
            Some(r) => {
                r.users += 1;
                r.source.clone()
            }
            None => {
                let source = reactor.register(pipe_read)?;
                g.readers.push(PipeReader {
                    reactor: Arc::downgrade(&reactor),
                    source: source.clone(),
                    users: 1,
                });
                source
            }
        };
        let idx = signum as usize;
        if g.signals.len() <= idx {
            g.signals.resize_with(idx + 1, SigState::default);
        }
        if g.signals[idx].listeners == 0 {
            match install(signum) {
                Ok(old) => g.signals[idx].old = Some(old),
                Err(e) => {
                    release_reader(&mut g, &reactor);
                    return Err(e);
                }
            }
        }
        g.signals[idx].listeners += 1;
        drop(g);
        Ok(Listener {
            signum,
            seen: COUNTS[idx].load(Ordering::Acquire),
            reactor,
            source,
        })
    }

    /// Ready once the signal was delivered since the last `Ready`.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.drain(cx);
        let idx = self.signum as usize;
        if self.check(idx) {
            return Poll::Ready(());
        }
        {
            let mut g = globals();
            let wakers = &mut g.signals[idx].wakers;
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
        }
        // A delivery between the check and the registration has written to the pipe, whose readiness
        // wakes us; checking again just answers sooner.
        if self.check(idx) {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    fn check(&mut self, idx: usize) -> bool {
        let now = COUNTS[idx].load(Ordering::Acquire);
        if now != self.seen {
            self.seen = now;
            true
        } else {
            false
        }
    }

    /// Empties the pipe if this reactor saw it readable, and wakes every waiting listener (some may
    /// belong to other reactors, which may never see the bytes this one read).
    fn drain(&self, cx: &mut Context<'_>) {
        let mut drained = false;
        // Bounded: each round clears readiness, which only a new poll of the reactor sets again.
        for _ in 0..4 {
            let Poll::Ready(ev) = self.source.poll_ready(Direction::Read, cx) else {
                break;
            };
            let mut buf = [0u8; 128];
            loop {
                let n = sys::retry(|| {
                    // SAFETY: `buf` is a live, writable buffer of the given length.
                    let n =
                        unsafe { libc::read(self.source.fd, buf.as_mut_ptr().cast(), buf.len()) };
                    syscall(n)
                });
                match n {
                    Ok(n) if n as usize == buf.len() => continue,
                    _ => break,
                }
            }
            drained = true;
            self.source.clear_readiness(ev);
        }
        if drained {
            let wakers: Vec<Waker> = globals()
                .signals
                .iter_mut()
                .flat_map(|s| s.wakers.drain(..))
                .collect();
            for w in wakers {
                w.wake();
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let mut g = globals();
        let st = &mut g.signals[self.signum as usize];
        st.listeners -= 1;
        if st.listeners == 0 {
            st.wakers.clear();
            if let Some(old) = st.old.take() {
                // SAFETY: `old` is the action sigaction returned for this signal; a null old-action
                // pointer is allowed.
                unsafe { libc::sigaction(self.signum, &old, std::ptr::null_mut()) };
            }
        }
        release_reader(&mut g, &self.reactor);
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("signum", &self.signum)
            .field("seen", &self.seen)
            .finish()
    }
}

/// Drops one user of the pipe's registration with `reactor`, deregistering it after the last.
fn release_reader(g: &mut Globals, reactor: &Arc<Reactor>) {
    if let Some(i) = g
        .readers
        .iter()
        .position(|r| std::ptr::eq(r.reactor.as_ptr(), &**reactor))
    {
        g.readers[i].users -= 1;
        if g.readers[i].users == 0 {
            let r = g.readers.swap_remove(i);
            let _ = reactor.deregister(&r.source);
        }
    }
}

fn check_signum(signum: i32) -> io::Result<()> {
    let forbidden = [
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
    ];
    if signum <= 0 || signum as usize >= NSIG || forbidden.contains(&signum) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("signal {signum} cannot be listened for: use a catchable signal such as SIGINT, SIGTERM or SIGUSR1"),
        ));
    }
    Ok(())
}

/// Creates the self-pipe on first use; returns its read end.
fn ensure_pipe(g: &mut Globals) -> io::Result<RawFd> {
    if g.pipe_read >= 0 {
        return Ok(g.pipe_read);
    }
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors pipe writes.
    syscall(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
    for fd in fds {
        sys::set_nonblocking(fd)?;
        // SAFETY: F_SETFD takes no pointers; `fd` is open.
        syscall(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    }
    g.pipe_read = fds[0];
    PIPE_WRITE.store(fds[1], Ordering::Release);
    Ok(fds[0])
}

/// Installs the handler for `signum`; returns the previous action.
fn install(signum: i32) -> io::Result<libc::sigaction> {
    // SAFETY: all-zero is a valid sigaction (no handler, empty mask, no flags) to fill in.
    let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
    new.sa_sigaction = handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
    new.sa_flags = libc::SA_RESTART;
    // SAFETY: `new.sa_mask` is a valid sigset_t to initialise.
    unsafe { libc::sigemptyset(&mut new.sa_mask) };
    // SAFETY: as above, for the output.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live sigaction values; the handler only calls async-signal-safe code.
    syscall(unsafe { libc::sigaction(signum, &new, &mut old) })?;
    Ok(old)
}

/// The signal handler: async-signal-safe only (atomics and `write`).
extern "C" fn handler(signum: libc::c_int) {
    let saved = sys::errno();
    if let Some(count) = COUNTS.get(signum as usize) {
        count.fetch_add(1, Ordering::AcqRel);
    }
    let fd = PIPE_WRITE.load(Ordering::Acquire);
    if fd >= 0 {
        let byte = signum as u8;
        // SAFETY: writes one byte from a live local. A full pipe (EAGAIN) is fine: it is already
        // readable, and the count above carries the delivery.
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
    sys::set_errno(saved);
}
