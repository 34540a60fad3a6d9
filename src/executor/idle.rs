//! How idle workers of the multi-thread runtime sleep, and how new work wakes them without a lost
//! wakeup.
//!
//! An idle worker does one of two things:
//! - it becomes the **driver** (at most one at a time: `driver` holds its index) and blocks in the
//!   reactor's poller until an event, a timer deadline or an eventfd `notify`;
//! - otherwise it **parks** (std `thread::park`), listed in `sleepers`, until another thread takes it off
//!   the list and unparks it.
//!
//! # The protocol
//! Whoever makes work visible (pushes to a queue, an inbox or the injector) and the worker that goes to
//! sleep follow the classic store-then-check pattern on both sides, with a `SeqCst` fence in between:
//!
//! | waker (after pushing the work)                 | sleeper (before blocking)                      |
//! |---|---|
//! | `fence(SeqCst)`                                | announce: `sleepers.push(i)`, `num_sleepers += 1` (or `driver = i`, `driver_blocked = true`) |
//! | read `num_sleepers`; if > 0, pop one and unpark it | `fence(SeqCst)`                                |
//! | else read `driver_blocked`; if set, clear it and `reactor.notify()` | look for work everywhere; if any, withdraw and run it |
//!
//! Both fences are `SeqCst`, so they are totally ordered: if the sleeper's fence comes first, the waker
//! sees the announcement and wakes someone; if the waker's comes first, the sleeper sees the work. In
//! both cases the work is not left behind with every worker asleep.
//!
//! # Watchers: the reactor is not left undriven behind a long task
//! A worker parks only when another one holds the driver role. The driver that wakes tasks in its
//! poll queues them without waking anyone (a wake per poll would cost a futex call and a context
//! switch each time), and then leaves the role to run them. With more than one task queued it wakes
//! a sleeper, which steals some or takes the role. With a lone task it wakes nobody, as tokio does;
//! but if that task then runs for a long time, the sleepers must not all be parked for good with the
//! role vacant, or timers and I/O would wait for the task to end. So a worker parks **watching**: for
//! `WATCH` (2 ms) at a time, after which it looks at the role. Vacant: it returns and takes it. Held:
//! it stops watching and parks until woken, so an idle runtime costs no wake-ups beyond the first.
//! A worker leaving the role wakes a sleeper when no sleeper watches (`vacated`). That pair is again
//! store-then-check with a `SeqCst` fence on both sides:
//!
//! | worker leaving the role                  | watcher that looks at the role              |
//! |---|---|
//! | `driver = NO_DRIVER`                     | `watchers -= 1`                             |
//! | `fence(SeqCst)`                          | `fence(SeqCst)`                             |
//! | read `watchers`; if 0, wake a sleeper    | read `driver`; if vacant, return to take it |
//!
//! Either the leaver sees no watcher and wakes someone, or the watcher sees the role vacant. So while
//! a worker is stuck in one task, another worker that is asleep takes the role within about `WATCH`
//! (`tests/faults.rs` measures it). A busy worker polls the reactor itself every `EVENT_INTERVAL`
//! tasks when nobody drives.
//!
//! The same holds for work queued without a wake: a task spawned or woken by a running task goes to
//! that worker's LIFO slot and wakes nobody, since it runs next there; if the running task blocks,
//! another worker must steal it. A watcher looks for work when its timed park ends, and the driver
//! blocks for at most `WATCH` at a time while any other worker is awake (`block_cap`), looking for
//! work between two polls. While every other worker sleeps the driver blocks without a cap; a worker
//! that wakes meanwhile notifies it (`woke`) so that it polls again with one. That pair is the same
//! store / fence / check: the driver stores `driver_uncapped` and reads `num_sleepers`; the woken
//! worker's removal from `sleepers` comes before its fence and its read of `driver_uncapped`.
//!
//! A busy worker that polls the reactor between tasks (when no one drives it) holds the driver role for
//! that poll (`poll_if_undriven`): the reactor's notify is an edge consumed by whichever poll sees it
//! first, so a poll beside a driver could swallow the driver's wakeup.
//!
//! Wakes are tokens: `notified` is set before `unpark`, and a parked worker returns only once it has
//! consumed its token (or at shutdown, or to take the vacant driver role), so spurious wakeups of `thread::park` are harmless; a token left
//! over costs one spurious trip round the worker loop at most.
//!
//! The driver consumes no token: the eventfd write makes its `epoll_wait` return (or the next one return
//! at once, if it was written before the driver got there). `driver_blocked` is swapped to false by the
//! first notifier, so a burst of spawns costs one eventfd write, not one each.

use super::sync::{
    current_thread, fence, lock, park, park_timeout, AtomicBool, AtomicUsize, Mutex, Thread,
};
use std::sync::atomic::Ordering::{Acquire, Release, SeqCst};
use std::sync::OnceLock;
use std::time::Duration;

/// How long a watching sleeper parks before it looks whether the reactor has been left undriven (see
/// "Watchers" above): the longest a worker stuck in one long task can delay the others' I/O and timers
/// while another worker sleeps.
pub(crate) const WATCH: Duration = Duration::from_millis(2);

/// `driver` when no worker holds the driver role.
pub(crate) const NO_DRIVER: usize = usize::MAX;

/// The sleep state of a multi-thread runtime's workers.
#[derive(Debug)]
pub(crate) struct Idle {
    /// Indices of the parked workers (and of those about to park).
    sleepers: Mutex<Vec<usize>>,
    /// `sleepers.len()`, readable without the lock: wakers check it on every push.
    num_sleepers: AtomicUsize,
    /// One per worker: its wake token and its thread.
    parkers: Box<[Parker]>,
    /// The index of the worker that drives the reactor, or `NO_DRIVER`.
    driver: AtomicUsize,
    /// The driver is blocked in the poller, or about to be: a waker must `notify` the reactor.
    driver_blocked: AtomicBool,
    /// The driver is about to block, or is blocked, in the poller without a cap (see `block_cap`).
    driver_uncapped: AtomicBool,
    /// How many parked (or parking, or just woken) workers are watching: parked with a timeout, after
    /// which they take the driver role if nobody holds it.
    watchers: AtomicUsize,
}

/// A worker's wake token and thread handle.
#[derive(Debug)]
struct Parker {
    /// Set (before `unpark`) by whoever takes the worker off `sleepers`.
    notified: AtomicBool,
    /// The worker's thread, registered when it starts; unset until then (it cannot be parked before).
    thread: OnceLock<Thread>,
}

impl Idle {
    pub(crate) fn new(workers: usize) -> Idle {
        Idle {
            sleepers: Mutex::new(Vec::with_capacity(workers)),
            num_sleepers: AtomicUsize::new(0),
            parkers: (0..workers)
                .map(|_| Parker {
                    notified: AtomicBool::new(false),
                    thread: OnceLock::new(),
                })
                .collect(),
            driver: AtomicUsize::new(NO_DRIVER),
            driver_blocked: AtomicBool::new(false),
            watchers: AtomicUsize::new(0),
            driver_uncapped: AtomicBool::new(false),
        }
    }

    /// Called by worker `i` on its own thread when it starts.
    pub(crate) fn register(&self, i: usize) {
        let _ = self.parkers[i].thread.set(current_thread());
    }

    /// After pushing work any worker may take: wakes one parked worker, or the driver, unless the
    /// caller is the driver itself (worker `from`, waking tasks from inside its poll).
    /// `notify_reactor` writes the reactor's eventfd.
    pub(crate) fn notify_one(&self, from: Option<usize>, notify_reactor: impl FnOnce()) {
        fence(SeqCst);
        if self.num_sleepers.load(SeqCst) > 0 && self.wake_a_sleeper() {
            return;
        }
        if self.driver_blocked.load(SeqCst)
            && from.is_none_or(|f| self.driver.load(SeqCst) != f)
            && self.driver_blocked.swap(false, SeqCst)
        {
            notify_reactor();
        }
    }

    /// After pushing work only worker `i` may take (a pinned task): wakes it wherever it sleeps.
    pub(crate) fn notify_worker(&self, i: usize, notify_reactor: impl FnOnce()) {
        fence(SeqCst);
        {
            let mut sleepers = lock(&self.sleepers);
            if let Some(pos) = sleepers.iter().position(|&s| s == i) {
                sleepers.swap_remove(pos);
                self.num_sleepers.fetch_sub(1, SeqCst);
                drop(sleepers);
                self.unpark(i);
                return;
            }
        }
        if self.driver.load(SeqCst) == i && self.driver_blocked.swap(false, SeqCst) {
            notify_reactor();
        }
    }

    /// Wakes every worker, wherever it sleeps (shutdown).
    pub(crate) fn notify_all(&self, notify_reactor: impl FnOnce()) {
        fence(SeqCst);
        let all: Vec<usize> = std::mem::take(&mut *lock(&self.sleepers));
        self.num_sleepers.fetch_sub(all.len(), SeqCst);
        // Only the listed ones: a worker parks only while listed (or holding a token), and the others
        // see the shutdown flag in their loop. (Unparking a thread blocked on a mutex also trips loom.)
        for i in all {
            self.unpark(i);
        }
        notify_reactor();
    }

    /// The sleeper count, for the loom models.
    #[cfg(loom)]
    pub(crate) fn sleeper_count(&self) -> usize {
        self.num_sleepers.load(SeqCst)
    }

    /// Takes the last listed sleeper off the list and unparks it; false if the list was empty.
    fn wake_a_sleeper(&self) -> bool {
        let popped = lock(&self.sleepers).pop();
        if let Some(i) = popped {
            self.num_sleepers.fetch_sub(1, SeqCst);
            self.unpark(i);
        }
        popped.is_some()
    }

    fn unpark(&self, i: usize) {
        let parker = &self.parkers[i];
        // A swap, not a store: the same on the hardware, but loom 0.7 can order a plain store after a
        // concurrent swap and let the parked worker's next swap read the stale `false` (a false deadlock
        // in `tests/loom.rs`).
        parker.notified.swap(true, Release);
        if let Some(thread) = parker.thread.get() {
            thread.unpark();
        }
    }

    /// Tries to make worker `i` the driver. On success the worker is announced as blocked: it must look
    /// for work once more before it blocks in the poller, and call `stop_driving` afterwards.
    pub(crate) fn try_drive(&self, i: usize) -> bool {
        if self
            .driver
            .compare_exchange(NO_DRIVER, i, SeqCst, SeqCst)
            .is_err()
        {
            return false;
        }
        self.announce_blocked();
        true
    }

    /// The driver announces (again) that it is about to block in the poller: it must look for work once
    /// more before it does. Used by `try_drive`, and by a driver that keeps the role across a capped
    /// poll that found nothing (see `block_cap`).
    pub(crate) fn announce_blocked(&self) {
        self.driver_blocked.store(true, SeqCst);
        fence(SeqCst);
    }

    /// For the driver, before each blocking poll: how long it may block at most. While some other
    /// worker is neither parked nor driving, i.e. may be running a task, `WATCH`: a task that worker
    /// queues in its LIFO slot wakes nobody (it runs next on that worker), and if the running task then
    /// blocks, the queued one waits for another worker to steal it; so the driver looks for such work
    /// every `WATCH`, as a watching sleeper does. While every other worker sleeps, no cap (an idle
    /// runtime costs no wake-ups); a worker that wakes up meanwhile tells the driver (`woke`). Store,
    /// `SeqCst` fence, check on both sides.
    pub(crate) fn block_cap(&self) -> Option<Duration> {
        self.driver_uncapped.store(true, SeqCst);
        fence(SeqCst);
        if self.num_sleepers.load(SeqCst) + 1 < self.parkers.len() {
            self.driver_uncapped.store(false, SeqCst);
            Some(WATCH)
        } else {
            None
        }
    }

    /// For the driver, after the poll that `block_cap` was for.
    pub(crate) fn polled(&self) {
        self.driver_uncapped.store(false, SeqCst);
    }

    /// For a worker back from `park` (its leaving `sleepers` came before): if the driver is blocked
    /// without a cap, makes it poll again with one (see `block_cap`).
    pub(crate) fn woke(&self, notify_reactor: impl FnOnce()) {
        fence(SeqCst);
        if self.driver_uncapped.load(SeqCst) && self.driver_uncapped.swap(false, SeqCst) {
            notify_reactor();
        }
    }

    /// Gives up the driver role taken by `try_drive`. `more` says whether worker `from` has queued more
    /// than the one task it runs next: then a sleeper is woken to steal some (and to take the role).
    /// Otherwise nobody is woken unless no sleeper watches (see "Watchers").
    pub(crate) fn stop_driving(&self, from: usize, more: bool, notify_reactor: impl FnOnce()) {
        self.driver_blocked.store(false, SeqCst);
        self.driver.store(NO_DRIVER, SeqCst);
        self.vacated(from, more, notify_reactor);
    }

    /// For busy worker `i`, between two tasks: polls the reactor without blocking (`poll`) unless some
    /// worker drives it. `poll` returns whether the worker has more queued than it will run next,
    /// as `more` in `stop_driving`.
    ///
    /// The poll is made holding the driver role (not announced as blocked), because the reactor's notify
    /// is an edge that whichever poll comes first consumes: a busy worker polling beside a driver could
    /// swallow the notify meant for it (new work, a pinned task, shutdown) just before the driver blocks
    /// for good. Holding the role, no other worker blocks in the poller meanwhile; one that wanted to
    /// parks instead (watching), and takes the role once this poll is over.
    pub(crate) fn poll_if_undriven(
        &self,
        i: usize,
        poll: impl FnOnce() -> bool,
        notify_reactor: impl FnOnce(),
    ) {
        if self.driver.load(Acquire) != NO_DRIVER
            || self
                .driver
                .compare_exchange(NO_DRIVER, i, SeqCst, SeqCst)
                .is_err()
        {
            return;
        }
        let more = poll();
        self.driver.store(NO_DRIVER, SeqCst);
        self.vacated(i, more, notify_reactor);
    }

    /// After worker `from` left the driver role: wakes a sleeper if there is work for it (`more`), or if
    /// sleepers there are but none watches, so that the role does not stay vacant behind a long task.
    /// The fence pairs with the one a watcher makes before it stops watching (see `park`).
    fn vacated(&self, from: usize, more: bool, notify_reactor: impl FnOnce()) {
        if more {
            self.notify_one(Some(from), notify_reactor);
            return;
        }
        fence(SeqCst);
        if self.num_sleepers.load(SeqCst) > 0 && self.watchers.load(SeqCst) == 0 {
            self.wake_a_sleeper();
        }
    }

    /// Parks worker `i` until it is woken, or until it finds the driver role vacant. `has_work` is the
    /// final look for work, made after the announcement (see the protocol); `stop` reads the shutdown
    /// flag.
    ///
    /// The worker parks watching: for `WATCH` at a time, and each time it looks for work and at the
    /// driver role. If there is work, or nobody holds the role, the worker returns to run it or to take
    /// the role (its caller's loop does). If somebody does, it
    /// stops watching and parks until woken: see "Watchers" for why no lone task is then left with the
    /// reactor undriven.
    pub(crate) fn park(&self, i: usize, has_work: impl Fn() -> bool, stop: impl Fn() -> bool) {
        {
            // Counted while the list is still locked: a waker that takes `i` off the list right after
            // (and then decrements) must not find the count still without it. Counted after the
            // unlock, it wrapped to usize::MAX for that moment, and `block_cap`'s `+ 1` overflowed
            // (a debug-build panic in a worker, seen by the ThreadSanitizer run of multi_thread.rs).
            let mut sleepers = lock(&self.sleepers);
            sleepers.push(i);
            self.num_sleepers.fetch_add(1, SeqCst);
        }
        self.watchers.fetch_add(1, SeqCst);
        fence(SeqCst);
        let mut watching = true;
        let parker = &self.parkers[i];
        if has_work() || stop() {
            self.withdraw(i);
        } else {
            loop {
                if parker.notified.swap(false, Acquire) {
                    break;
                }
                if stop() {
                    self.withdraw(i);
                    break;
                }
                if !watching {
                    park();
                    continue;
                }
                park_timeout(WATCH);
                if parker.notified.swap(false, Acquire) {
                    break;
                }
                // Work queued without a wake (a LIFO slot behind a task that blocks: `block_cap`).
                if has_work() && self.withdraw(i) {
                    break;
                }
                let vacant = self.driver.load(SeqCst) == NO_DRIVER;
                if vacant && self.withdraw(i) {
                    break;
                }
                // Somebody drives, or a waker has just taken this worker off the list and its token
                // is on its way: stop watching and wait for a wake. Unless the role was vacated
                // meanwhile and the worker that left it counted this one as watching: the two fences
                // order that (see "Watchers").
                self.watchers.fetch_sub(1, SeqCst);
                watching = false;
                fence(SeqCst);
                if !vacant && self.driver.load(SeqCst) == NO_DRIVER && self.withdraw(i) {
                    break;
                }
            }
        }
        if watching {
            self.watchers.fetch_sub(1, SeqCst);
        }
    }

    /// Takes worker `i` off `sleepers` if no waker has already done so; returns whether it did.
    fn withdraw(&self, i: usize) -> bool {
        let mut sleepers = lock(&self.sleepers);
        let pos = sleepers.iter().position(|&s| s == i);
        if let Some(pos) = pos {
            sleepers.swap_remove(pos);
            self.num_sleepers.fetch_sub(1, SeqCst);
        }
        pos.is_some()
    }
}
