//! The glue between timer futures and the wheel of the runtime they run on.
//!
//! On a current-thread runtime a timer is armed in the wheel the runtime's thread owns, and remembers
//! that runtime's id. Touching it again from that thread costs no lock and no reference count; from
//! anywhere else (the future moved to another thread), it is cancelled through the runtime's
//! remote-cancel list and, if polled there, armed anew on the runtime found there.
//!
//! On a multi-thread runtime every worker (and the `block_on` thread) shares one wheel behind a mutex
//! ([`SharedTimers`]); the timer holds the runtime, so it can be changed from any thread. Whichever
//! worker polls the reactor processes the wheel; the driver (the worker blocked in the poller) waits
//! until the wheel's next deadline, and a timer armed earlier than that wakes it.
//!
//! [`TimerStore`] is what `Reactor::poll` is handed: either flavor's wheel.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Instant;

use crate::executor::context::{with_core, with_multi};
use crate::executor::{change_timer_remotely, no_runtime, Core, MultiShared};
use crate::time::wheel::{TimerKey, TimerWheel};

/// An armed timer.
#[derive(Debug)]
pub(crate) struct TimerHandle {
    owner: Owner,
    key: TimerKey,
}

/// The runtime whose wheel holds a timer.
#[derive(Debug)]
enum Owner {
    /// A current-thread runtime, by id.
    Current(u64),
    /// A multi-thread runtime, whose wheel any thread may lock.
    Multi(Arc<MultiShared>),
}

/// What became of an armed timer when it was polled again.
pub(crate) enum Update {
    /// Still pending; the waker is stored.
    Pending,
    /// It has fired: its deadline has passed.
    Fired,
    /// It belongs to a runtime not running on this thread; it has been cancelled there.
    Moved,
}

fn with_own_core<R>(runtime: u64, f: impl FnOnce(Option<&Core>) -> R) -> R {
    with_core(|core| f(core.filter(|c| c.shared.id == runtime)))
}

/// Arms a timer for `deadline` on the current runtime, or returns `None` if the deadline has passed.
///
/// On a current-thread runtime "passed" is judged by the runtime's clock, read at its last poll, so
/// that arming costs no clock read; a deadline that passed since then is armed and fires at the next
/// poll.
///
/// # Panics
/// Panics outside a runtime, unless the deadline has passed (a timer that needs no waiting needs no
/// runtime).
pub(crate) fn arm(deadline: Instant, waker: &Waker, what: &str) -> Option<TimerHandle> {
    with_core(|core| {
        let Some(core) = core else {
            return arm_multi(deadline, waker, what);
        };
        if deadline <= core.now.get() {
            return None;
        }
        let key = core.timers.borrow_mut().insert(deadline, waker.clone());
        Some(TimerHandle {
            owner: Owner::Current(core.shared.id),
            key,
        })
    })
}

/// `arm` off any current-thread runtime: on the multi-thread runtime of this thread, if any.
#[cold]
fn arm_multi(deadline: Instant, waker: &Waker, what: &str) -> Option<TimerHandle> {
    // The real clock: a multi-thread runtime has no paused time (`clock.rs`).
    if deadline <= Instant::now() {
        return None;
    }
    let Some(shared) = with_multi(|m| m.map(|m| m.shared.clone())) else {
        no_runtime(what)
    };
    let key = shared
        .timers
        .insert(deadline, waker.clone(), || shared.reactor.notify());
    Some(TimerHandle {
        owner: Owner::Multi(shared),
        key,
    })
}

/// Stores a new waker for an armed timer.
pub(crate) fn update(timer: &TimerHandle, waker: &Waker) -> Update {
    match &timer.owner {
        Owner::Current(id) => with_own_core(*id, |core| match core {
            Some(core) if core.timers.borrow_mut().set_waker(timer.key, waker) => Update::Pending,
            Some(_) => Update::Fired,
            None => {
                change_timer_remotely(*id, timer.key, None);
                Update::Moved
            }
        }),
        Owner::Multi(shared) => match shared.timers.lock().wheel.set_waker(timer.key, waker) {
            true => Update::Pending,
            false => Update::Fired,
        },
    }
}

/// Moves an armed timer to `deadline`. Returns false if it had fired (or its runtime is gone): the
/// caller arms a new one at its next poll.
///
/// From another thread the move of a current-thread timer is queued for the timer's runtime, which is
/// woken to apply it; the timer may fire at its old deadline meanwhile, so a fired timer's owner checks
/// its deadline again.
pub(crate) fn reset(timer: &TimerHandle, deadline: Instant) -> bool {
    match &timer.owner {
        Owner::Current(id) => with_own_core(*id, |core| match core {
            Some(core) => core.timers.borrow_mut().reset(timer.key, deadline),
            None => change_timer_remotely(*id, timer.key, Some(deadline)),
        }),
        Owner::Multi(shared) => shared
            .timers
            .reset(timer.key, deadline, || shared.reactor.notify()),
    }
}

/// Cancels a timer; a no-op if it has fired.
pub(crate) fn cancel(timer: TimerHandle) {
    match timer.owner {
        Owner::Current(id) => with_own_core(id, |core| match core {
            Some(core) => {
                core.timers.borrow_mut().remove(timer.key);
            }
            None => {
                change_timer_remotely(id, timer.key, None);
            }
        }),
        Owner::Multi(shared) => {
            shared.timers.lock().wheel.remove(timer.key);
        }
    }
}

/// The timer wheel of a multi-thread runtime, shared by its threads.
#[derive(Debug)]
pub(crate) struct SharedTimers {
    state: Mutex<SharedWheel>,
}

#[derive(Debug)]
struct SharedWheel {
    wheel: TimerWheel,
    /// `Some(until)` while the driver waits in the poller until `until` (`None`: no deadline): a timer
    /// armed before `until` must notify the reactor. `None` while no one waits (or after a notify).
    waiting: Option<Option<Instant>>,
}

impl SharedWheel {
    /// Whether a timer now due at `deadline` requires waking the driver; if so, forgets the wait so
    /// that later timers do not notify again.
    fn must_notify(&mut self, deadline: Instant) -> bool {
        let notify = match self.waiting {
            Some(None) => true,
            Some(Some(until)) => deadline < until,
            None => false,
        };
        if notify {
            self.waiting = None;
        }
        notify
    }
}

impl SharedTimers {
    pub(crate) fn new(now: Instant) -> SharedTimers {
        SharedTimers {
            state: Mutex::new(SharedWheel {
                wheel: TimerWheel::new(now),
                waiting: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SharedWheel> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Arms a timer; calls `notify` (after unlocking) if the driver waits past `deadline`.
    fn insert(&self, deadline: Instant, waker: Waker, notify: impl FnOnce()) -> TimerKey {
        let mut g = self.lock();
        let key = g.wheel.insert(deadline, waker);
        let must = g.must_notify(deadline);
        drop(g);
        if must {
            notify();
        }
        key
    }

    fn reset(&self, key: TimerKey, deadline: Instant, notify: impl FnOnce()) -> bool {
        let mut g = self.lock();
        let pending = g.wheel.reset(key, deadline);
        let must = pending && g.must_notify(deadline);
        drop(g);
        if must {
            notify();
        }
        pending
    }

    /// How many timers are armed.
    pub(crate) fn len(&self) -> usize {
        self.lock().wheel.len()
    }

    /// Drops every timer (and its waker): at shutdown, so that no task stays alive through them.
    pub(crate) fn clear(&self, now: Instant) {
        let old = std::mem::replace(&mut self.lock().wheel, TimerWheel::new(now));
        drop(old);
    }
}

/// The timers a poll of a current-thread runtime's reactor made from inside the loop (by the callback
/// API's dispatcher) should process: none while the runtime's clock is virtual, whose poll step fires
/// them by the virtual time.
pub(crate) fn local_store(core: &Core) -> TimerStore<'_> {
    #[cfg(feature = "test-util")]
    if core.clock.is_virtual() {
        return TimerStore::NoTimers;
    }
    TimerStore::Local(&core.timers)
}

/// The timers `Reactor::poll` processes and waits for: a current-thread runtime's own wheel, or a
/// multi-thread runtime's shared one.
#[derive(Clone, Copy)]
pub(crate) enum TimerStore<'a> {
    Local(&'a RefCell<TimerWheel>),
    Shared(&'a SharedTimers),
    /// No timers: the poll is for I/O only (a paused clock fires the timers itself, `clock.rs`).
    #[cfg(feature = "test-util")]
    NoTimers,
}

impl<'a> From<&'a RefCell<TimerWheel>> for TimerStore<'a> {
    fn from(wheel: &'a RefCell<TimerWheel>) -> Self {
        TimerStore::Local(wheel)
    }
}

impl<'a> From<&'a SharedTimers> for TimerStore<'a> {
    fn from(timers: &'a SharedTimers) -> Self {
        TimerStore::Shared(timers)
    }
}

impl TimerStore<'_> {
    /// Fires the timers due at `now` into `wakers`, and returns the earliest pending deadline and the
    /// deadline the poller should wait until (`now` when not blocking or when timers just fired). A
    /// shared wheel records the wait, so that an earlier timer armed meanwhile notifies the poller.
    pub(crate) fn before_wait(
        self,
        now: Instant,
        block: bool,
        wakers: &mut Vec<Waker>,
    ) -> (Option<Instant>, Option<Instant>) {
        let wait = |next: Option<Instant>, wakers: &Vec<Waker>| {
            if !block || !wakers.is_empty() {
                Some(now)
            } else {
                next
            }
        };
        match self {
            TimerStore::Local(wheel) => {
                let mut wheel = wheel.borrow_mut();
                wheel.process(now, wakers);
                let next = wheel.next_deadline();
                (next, wait(next, wakers))
            }
            TimerStore::Shared(timers) => {
                let mut g = timers.lock();
                g.wheel.process(now, wakers);
                let next = g.wheel.next_deadline();
                let deadline = wait(next, wakers);
                if deadline != Some(now) {
                    g.waiting = Some(deadline);
                }
                (next, deadline)
            }
            #[cfg(feature = "test-util")]
            TimerStore::NoTimers => (None, wait(None, wakers)),
        }
    }

    /// After a wait that may have lasted: fires the timers due at `after` (a local wheel only if it had
    /// any), and ends the recorded wait of a shared wheel.
    pub(crate) fn after_wait(self, after: Instant, had_timers: bool, wakers: &mut Vec<Waker>) {
        match self {
            TimerStore::Local(wheel) => {
                if had_timers {
                    wheel.borrow_mut().process(after, wakers);
                }
            }
            TimerStore::Shared(timers) => {
                let mut g = timers.lock();
                g.waiting = None;
                g.wheel.process(after, wakers);
            }
            #[cfg(feature = "test-util")]
            TimerStore::NoTimers => {}
        }
    }
}
