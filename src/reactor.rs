//! The reactor: file descriptors registered with the OS poller, their readiness, the wakers waiting on
//! them, and the timers, all driven by one `poll` call.
//!
//! Every source is registered once, for both directions, edge-triggered: the kernel reports each new
//! readiness once, the reactor remembers it in the source's `state`, and a task clears it only when the
//! operation it tried proves the fd drained (`EAGAIN`, or a stream read that returned fewer bytes than
//! asked). So waiting to read or to write never costs an `epoll_ctl`, and a ready socket costs exactly the
//! one read that consumes it.
//!
//! Stale readiness is defeated with ticks: every `poll` increments the reactor's tick and stamps it into
//! the state of each source it updates. A task that observed readiness at tick *t* may clear it only if the
//! state still carries *t*; a newer event keeps it set.

use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::coop;
use crate::sys::{self, Events, Interest, Poller};
use crate::time::driver::TimerStore;

/// Readiness bits kept in `Source::state` (below the tick): the poller's own event flags, so that an
/// event is stored as it comes.
const READABLE: usize = sys::READABLE as usize;
const WRITABLE: usize = sys::WRITABLE as usize;
const READ_CLOSED: usize = sys::READ_CLOSED as usize;
const WRITE_CLOSED: usize = sys::WRITE_CLOSED as usize;
const ERROR: usize = sys::ERROR as usize;
/// The tick lives above the readiness bits.
const TICK_SHIFT: u32 = 16;
const BITS_MASK: usize = (1 << TICK_SHIFT) - 1;

/// A registration key is a slab index plus a generation in the upper half, so that an event still in
/// flight for a closed source can never be taken for the new source that reused its slot.
const INDEX_BITS: u32 = usize::BITS / 2;
const INDEX_MASK: usize = (1 << INDEX_BITS) - 1;

/// How many events one wait can return.
const EVENTS_CAPACITY: usize = 1024;

/// Which way a task wants to move data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Read = 0,
    Write = 1,
}

impl Direction {
    /// The state bits that make an operation in this direction worth trying.
    fn mask(self) -> usize {
        match self {
            Direction::Read => READABLE | READ_CLOSED | ERROR,
            Direction::Write => WRITABLE | WRITE_CLOSED | ERROR,
        }
    }

    /// The bit an operation may clear once it proves the fd drained (closed and error bits are final).
    fn clearable(self) -> usize {
        match self {
            Direction::Read => READABLE,
            Direction::Write => WRITABLE,
        }
    }
}

/// What a task observed when it found a source ready: passed back to `clear_readiness`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadyEvent {
    direction: Direction,
    /// The whole state word as observed, tick included.
    state: usize,
}

impl ReadyEvent {
    /// The peer closed this direction (or the socket failed): further reads return EOF or an error.
    pub(crate) fn is_closed(&self) -> bool {
        let closed = match self.direction {
            Direction::Read => READ_CLOSED,
            Direction::Write => WRITE_CLOSED,
        };
        self.state & (closed | ERROR) != 0
    }
}

/// The reactor of one runtime. Shared (`Arc`) by the runtime, its I/O objects and its timers; every
/// method may be called from any thread.
pub(crate) struct Reactor {
    /// The OS poller.
    poller: Poller,
    /// Registered sources by slab index; looked up once per event.
    sources: Mutex<Slab<Arc<Source>>>,
    /// Counts registrations, to give each key a fresh generation.
    generation: AtomicUsize,
    /// The event buffer, and the right to poll: one thread polls at a time.
    poll_state: Mutex<PollState>,
    /// Incremented by every poll and stamped into the state of the sources it updates.
    tick: AtomicUsize,
    /// Zero point of the two statistics below, which are kept in nanoseconds so they can be atomics.
    origin: Instant,
    /// When the last poll ended (written only by the polling thread, under `poll_state`).
    last_poll_end: AtomicU64,
    /// The longest time between the end of one poll and the start of the next: how long events and
    /// timers went unseen because the runtime's threads were busy (a task blocking its thread shows here).
    max_poll_gap: AtomicU64,
}

/// The event buffer and a reusable list of wakers to wake; held by the thread that polls.
struct PollState {
    events: Events,
    /// Filled under the locks, woken after they are released; kept to reuse its allocation.
    wakers: Vec<Waker>,
}

impl Reactor {
    pub(crate) fn new() -> io::Result<Reactor> {
        Ok(Reactor {
            poller: Poller::new()?,
            sources: Mutex::new(Slab::new()),
            generation: AtomicUsize::new(0),
            poll_state: Mutex::new(PollState {
                events: Events::with_capacity(EVENTS_CAPACITY),
                wakers: Vec::new(),
            }),
            tick: AtomicUsize::new(0),
            origin: Instant::now(),
            last_poll_end: AtomicU64::new(0),
            max_poll_gap: AtomicU64::new(0),
        })
    }

    /// Registers `fd` for both directions, edge-triggered.
    ///
    /// # Errors
    /// Fails if `fd` is invalid, already registered with this reactor, or of a kind the poller cannot
    /// watch (a regular file); the message says which.
    pub(crate) fn register(self: &Arc<Self>, fd: RawFd) -> io::Result<Arc<Source>> {
        self.register_with(fd, Interest::BOTH_EDGE)
    }

    /// Registers `fd` with an explicit interest; the callback API uses this for level-triggered events.
    ///
    /// # Errors
    /// As [`register`](Self::register).
    pub(crate) fn register_with(&self, fd: RawFd, interest: Interest) -> io::Result<Arc<Source>> {
        let mut sources = lock(&self.sources);
        let entry = sources.vacant_entry();
        let index = entry.key();
        if index > INDEX_MASK {
            return Err(io::Error::other(
                "too many sources registered with one evloop reactor",
            ));
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) & INDEX_MASK;
        let key = index | (generation << INDEX_BITS);
        self.poller
            .add(fd, key, interest)
            .map_err(|e| register_error(fd, e))?;
        let source = Arc::new(Source {
            fd,
            key,
            state: AtomicUsize::new(0),
            wakers: Mutex::new(Waiters::default()),
        });
        entry.insert(source.clone());
        Ok(source)
    }

    /// Changes what a registered source is watched for (costs one `epoll_ctl`).
    pub(crate) fn reregister(&self, source: &Source, interest: Interest) -> io::Result<()> {
        self.poller.modify(source.fd, source.key, interest)
    }

    /// Removes `source` from the poller and the table. Call it before the fd is closed.
    pub(crate) fn deregister(&self, source: &Source) -> io::Result<()> {
        let mut sources = lock(&self.sources);
        let index = source.key & INDEX_MASK;
        if sources.get(index).is_some_and(|s| s.key == source.key) {
            sources.remove(index);
        }
        drop(sources);
        self.poller.delete(source.fd)
    }

    /// Wakes the thread blocked in `poll`, from any thread.
    pub(crate) fn notify(&self) {
        // An eventfd write fails only if the descriptor is gone, and then there is no one to wake.
        let _ = self.poller.notify();
    }

    /// Waits for I/O events and due timers, then wakes the tasks that wait on them.
    ///
    /// `timers` is the wheel of the runtime that polls: a current-thread runtime's own wheel, or a
    /// multi-thread runtime's shared one (see `time/driver.rs`); the reactor only waits for them. With
    /// `block` false, or when a timer is already due, it only collects what is ready now. Returns the
    /// time it read after waiting. Only one thread polls at a time: if another one is polling, returns
    /// at once.
    pub(crate) fn poll<'a>(
        &self,
        block: bool,
        timers: impl Into<TimerStore<'a>>,
    ) -> io::Result<Instant> {
        self.poll_at_most(block, None, timers)
    }

    /// `poll`, blocking for at most `cap` (when set) even if no timer is due sooner.
    pub(crate) fn poll_at_most<'a>(
        &self,
        block: bool,
        cap: Option<Duration>,
        timers: impl Into<TimerStore<'a>>,
    ) -> io::Result<Instant> {
        let timers = timers.into();
        let Ok(mut guard) = self.poll_state.try_lock() else {
            return Ok(Instant::now());
        };
        let PollState { events, wakers } = &mut *guard;
        let now = Instant::now();
        let gap = self
            .nanos(now)
            .saturating_sub(self.last_poll_end.load(Ordering::Relaxed));
        if gap > self.max_poll_gap.load(Ordering::Relaxed) {
            self.max_poll_gap.store(gap, Ordering::Relaxed);
        }
        let (next_timer, deadline) = timers.before_wait(now, block, wakers);
        let deadline = match (deadline, cap.and_then(|c| now.checked_add(c))) {
            (Some(d), Some(c)) => Some(d.min(c)),
            (None, c) => c,
            (d, None) => d,
        };
        let waited = self.poller.wait(events, deadline);
        let mut after = now;
        if deadline != Some(now) {
            after = Instant::now();
            timers.after_wait(after, next_timer.is_some(), wakers);
        }
        waited?;

        let tick = self.tick.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        if events.iter().next().is_some() {
            self.dispatch(events, tick, wakers);
        }

        // Wake outside the table locks: a waker may run arbitrary code, even re-enter the reactor
        // (a nested `poll` finds `poll_state` taken and returns at once).
        for w in wakers.drain(..) {
            w.wake();
        }
        self.last_poll_end
            .store(self.nanos(after), Ordering::Relaxed);
        Ok(after)
    }

    /// Stores each event's readiness in its source and collects the wakers it makes worth waking.
    /// A function of its own, with `set_readiness` inlined: the loop then keeps what it needs in
    /// registers, instead of saving and restoring them around a call per event.
    #[inline(never)]
    fn dispatch(&self, events: &Events, tick: usize, wakers: &mut Vec<Waker>) {
        let sources = lock(&self.sources);
        for ev in events.iter() {
            let Some(source) = sources.get(ev.key & INDEX_MASK) else {
                continue;
            };
            if source.key != ev.key {
                continue; // a stale event for a source that is gone
            }
            source.set_readiness(ev.ready as usize, tick, wakers);
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin)
            .as_nanos()
            .min(u64::MAX as u128) as u64
    }

    /// The longest time the reactor went unpolled while its runtime was busy (see `max_poll_gap`).
    pub(crate) fn max_poll_gap(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.max_poll_gap.load(Ordering::Relaxed))
    }

    /// How many sources are registered (for tests and statistics).
    pub(crate) fn source_count(&self) -> usize {
        lock(&self.sources).len()
    }
}

impl fmt::Debug for Reactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactor")
            .field("poller", &self.poller)
            .field("tick", &self.tick.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Names the fix for the registration failures a user can cause.
fn register_error(fd: RawFd, e: io::Error) -> io::Error {
    let why = match e.raw_os_error() {
        Some(libc::EEXIST) => format!(
            "fd {fd} is already registered with this evloop reactor: wrap each descriptor in only one \
             I/O object (dup it if two are needed)"
        ),
        Some(libc::EBADF) => format!("fd {fd} is not an open file descriptor"),
        Some(libc::EPERM) => format!(
            "fd {fd} cannot be polled (regular files and directories are always ready): use blocking \
             I/O for it"
        ),
        _ => format!("registering fd {fd} with the poller failed: {e}"),
    };
    io::Error::new(e.kind(), why)
}

/// Locks a mutex, ignoring poison: the reactor's tables stay consistent across a panicking waker
/// because wakers are never called under these locks.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One registered file descriptor.
pub(crate) struct Source {
    /// The descriptor; owned by the I/O object that registered it, which deregisters before closing it.
    pub(crate) fd: RawFd,
    /// Slab index plus generation, as given to the poller.
    key: usize,
    /// Readiness bits (low `TICK_SHIFT` bits) and the tick of the poll that last set them.
    state: AtomicUsize,
    /// Tasks waiting to read and to write. Usually one each; several tasks sharing a `&TcpStream` may
    /// wait on one direction, and all of them are woken.
    wakers: Mutex<Waiters>,
}

/// The tasks waiting on a source: one per direction inline (the common case costs no allocation), and
/// any further ones in a list allocated only when a second task waits on the same direction. Kept
/// small because every idle connection has one.
#[derive(Default)]
struct Waiters {
    /// The first waiter to read (`[0]`) and to write (`[1]`).
    first: [Option<Waker>; 2],
    /// Further waiters, with their direction. Boxed on purpose: an idle source pays 8 bytes for it,
    /// not the 24 of an empty `Vec`.
    #[allow(clippy::box_collection)]
    rest: Option<Box<Vec<(Direction, Waker)>>>,
}

impl Waiters {
    #[inline]
    fn add(&mut self, dir: Direction, waker: &Waker) {
        let Some(first) = &self.first[dir as usize] else {
            self.first[dir as usize] = Some(waker.clone());
            return;
        };
        if !first.will_wake(waker) {
            self.add_rest(dir, waker);
        }
    }

    /// The rare part of `add`: a second task waiting in the same direction.
    #[cold]
    #[inline(never)]
    fn add_rest(&mut self, dir: Direction, waker: &Waker) {
        let rest = self.rest.get_or_insert_with(Default::default);
        if !rest.iter().any(|(d, w)| *d == dir && w.will_wake(waker)) {
            rest.push((dir, waker.clone()));
        }
    }

    /// Moves the waiters of the directions that `bits` (readiness state bits) make worth trying into
    /// `out`. One pass for both directions: most events carry both (an edge-triggered socket reports
    /// `EPOLLOUT` again with every `EPOLLIN`), and usually no one waits to write.
    #[inline]
    fn take_ready(&mut self, bits: usize, out: &mut Vec<Waker>) {
        let read = bits & Direction::Read.mask() != 0;
        let write = bits & Direction::Write.mask() != 0;
        if read {
            if let Some(w) = self.first[Direction::Read as usize].take() {
                out.push(w);
            }
        }
        if write {
            if let Some(w) = self.first[Direction::Write as usize].take() {
                out.push(w);
            }
        }
        if let Some(rest) = &mut self.rest {
            Self::take_rest(rest, read, write, out);
        }
    }

    /// The rare part of `take_ready`: further waiters of the same directions.
    #[cold]
    fn take_rest(
        rest: &mut Vec<(Direction, Waker)>,
        read: bool,
        write: bool,
        out: &mut Vec<Waker>,
    ) {
        let mut i = 0;
        while i < rest.len() {
            let take = match rest[i].0 {
                Direction::Read => read,
                Direction::Write => write,
            };
            if take {
                out.push(rest.swap_remove(i).1);
            } else {
                i += 1;
            }
        }
    }
}

impl Source {
    #[inline(always)]
    fn set_readiness(&self, bits: usize, tick: usize, wakers: &mut Vec<Waker>) {
        let tick_bits = (tick << TICK_SHIFT) & !BITS_MASK;
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            let new = tick_bits | (cur & BITS_MASK) | bits;
            match self
                .state
                .compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        lock(&self.wakers).take_ready(bits, wakers);
    }

    /// Ready if the last event for `dir` has not been cleared; otherwise stores the waker.
    ///
    /// A ready source spends one unit of the task poll's cooperative budget (`coop.rs`): once in a while
    /// it returns `Pending` with the task already woken, so that one busy connection cannot starve the
    /// rest of the thread.
    #[inline]
    pub(crate) fn poll_ready(&self, dir: Direction, cx: &mut Context<'_>) -> Poll<ReadyEvent> {
        let state = self.state.load(Ordering::Acquire);
        if state & dir.mask() != 0 {
            std::task::ready!(coop::poll_proceed(cx));
            return Poll::Ready(ReadyEvent {
                direction: dir,
                state,
            });
        }
        self.poll_wait(dir, cx)
    }

    /// `Ready` unless the last event for `dir` has been cleared (the fd drained): then stores the waker
    /// (`poll_wait`) without anything else. For a caller that would otherwise enter the frame of a
    /// transfer only to find it cannot make one: the second read of every round trip finds the socket
    /// drained. Spends no budget; the transfer's own `poll_ready` does that.
    #[inline]
    pub(crate) fn poll_not_drained(&self, dir: Direction, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.load(Ordering::Acquire) & dir.mask() == 0 {
            std::task::ready!(self.poll_wait(dir, cx));
        }
        Poll::Ready(())
    }

    /// The not-ready half of `poll_ready`: stores the waker, then looks again. Out of line, so that
    /// the ready half (one load and the budget) inlines into every I/O operation without the register
    /// saves that the lock and the waker clone need.
    #[inline(never)]
    fn poll_wait(&self, dir: Direction, cx: &mut Context<'_>) -> Poll<ReadyEvent> {
        lock(&self.wakers).add(dir, cx.waker());
        // The reactor sets the state before it takes the wakers: re-checking after storing ours means an
        // event can never slip between the first check and the store.
        let state = self.state.load(Ordering::Acquire);
        if state & dir.mask() != 0 {
            return Poll::Ready(ReadyEvent {
                direction: dir,
                state,
            });
        }
        Poll::Pending
    }

    /// Forgets the readiness observed in `ev`, unless a newer poll has refreshed it meanwhile.
    #[inline]
    pub(crate) fn clear_readiness(&self, ev: ReadyEvent) {
        let clear = ev.direction.clearable();
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            if (cur & !BITS_MASK) != (ev.state & !BITS_MASK) {
                return; // a newer event arrived: keep it
            }
            let new = cur & !clear;
            if new == cur {
                return;
            }
            match self
                .state
                .compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Runs a non-blocking operation in direction `dir` until it succeeds or fails with something other
    /// than `WouldBlock`; `WouldBlock` clears the readiness it was tried on and waits for the next event.
    /// EINTR is retried by `f` itself (through `sys::retry`).
    pub(crate) fn poll_io<R>(
        &self,
        dir: Direction,
        cx: &mut Context<'_>,
        mut f: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            let ev = std::task::ready!(self.poll_ready(dir, cx));
            match sys::retry(&mut f) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.clear_readiness(ev),
                res => return Poll::Ready(res),
            }
        }
    }

    /// Like `poll_io` for a byte-stream read or write of `len` bytes: a transfer shorter than asked
    /// proves the socket drained (or its buffer full), so readiness is cleared without the extra syscall
    /// that would return `EAGAIN`. Only valid for stream sockets and pipes.
    ///
    /// The common case (ready, one transfer that succeeds) is all that inlines into the caller; a
    /// failed transfer (`WouldBlock`, `EINTR`, an error) continues out of line, in
    /// `poll_stream_io_failed`, so the caller saves no registers for the loop it needs.
    #[inline]
    pub(crate) fn poll_stream_io(
        &self,
        dir: Direction,
        cx: &mut Context<'_>,
        len: usize,
        mut f: impl FnMut() -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        let ev = std::task::ready!(self.poll_ready(dir, cx));
        match f() {
            Ok(n) => {
                self.after_transfer(ev, n, len);
                Poll::Ready(Ok(n))
            }
            Err(e) => self.poll_stream_io_failed(dir, cx, len, f, ev, e),
        }
    }

    /// `poll_stream_io` after its first transfer failed with `e`: retries EINTR (through
    /// `sys::retry`), waits again on `WouldBlock`, and returns any other error.
    #[cold]
    #[inline(never)]
    fn poll_stream_io_failed(
        &self,
        dir: Direction,
        cx: &mut Context<'_>,
        len: usize,
        mut f: impl FnMut() -> io::Result<usize>,
        mut ev: ReadyEvent,
        e: io::Error,
    ) -> Poll<io::Result<usize>> {
        let mut res = match e.kind() {
            io::ErrorKind::Interrupted => sys::retry(&mut f),
            _ => Err(e),
        };
        loop {
            match res {
                Ok(n) => {
                    self.after_transfer(ev, n, len);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.clear_readiness(ev),
                Err(e) => return Poll::Ready(Err(e)),
            }
            ev = std::task::ready!(self.poll_ready(dir, cx));
            res = sys::retry(&mut f);
        }
    }

    /// After a stream transfer of `n` of `len` bytes: a short one (not at EOF) proves the fd drained.
    #[inline]
    fn after_transfer(&self, ev: ReadyEvent, n: usize, len: usize) {
        if n > 0 && n < len && !ev.is_closed() {
            self.clear_readiness(ev);
        }
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("fd", &self.fd)
            .field("key", &self.key)
            .field("state", &(self.state.load(Ordering::Relaxed) & BITS_MASK))
            .finish()
    }
}
