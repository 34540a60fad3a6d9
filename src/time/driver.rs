//! The glue between timer futures and the wheel of the runtime they run on.
//!
//! A timer is armed in the wheel of the runtime running on the current thread, and remembers that
//! runtime's id. Touching it again from that runtime's thread costs no lock and no reference count;
//! from anywhere else (the future moved to another thread), it is cancelled through the runtime's
//! remote-cancel list and, if polled there, armed anew on the runtime found there.

use std::task::Waker;
use std::time::Instant;

use crate::executor::context::with_core;
use crate::executor::{change_timer_remotely, no_runtime, Core};
use crate::time::wheel::TimerKey;

/// An armed timer.
#[derive(Debug)]
pub(crate) struct TimerHandle {
    /// The id of the runtime whose wheel holds the timer.
    runtime: u64,
    key: TimerKey,
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
/// "Passed" is judged by the runtime's clock, read at its last poll, so that arming costs no clock
/// read; a deadline that passed since then is armed and fires at the next poll.
///
/// # Panics
/// Panics outside a runtime, unless the deadline has passed (a timer that needs no waiting needs no
/// runtime).
pub(crate) fn arm(deadline: Instant, waker: &Waker, what: &str) -> Option<TimerHandle> {
    with_core(|core| {
        let Some(core) = core else {
            if deadline <= Instant::now() {
                return None;
            }
            no_runtime(what)
        };
        if deadline <= core.now.get() {
            return None;
        }
        let key = core.timers.borrow_mut().insert(deadline, waker.clone());
        Some(TimerHandle {
            runtime: core.shared.id,
            key,
        })
    })
}

/// Stores a new waker for an armed timer.
pub(crate) fn update(timer: &TimerHandle, waker: &Waker) -> Update {
    with_own_core(timer.runtime, |core| match core {
        Some(core) if core.timers.borrow_mut().set_waker(timer.key, waker) => Update::Pending,
        Some(_) => Update::Fired,
        None => {
            change_timer_remotely(timer.runtime, timer.key, None);
            Update::Moved
        }
    })
}

/// Moves an armed timer to `deadline`. Returns false if it had fired (or its runtime is gone): the
/// caller arms a new one at its next poll.
///
/// From another thread the move is queued for the timer's runtime, which is woken to apply it; the
/// timer may fire at its old deadline meanwhile, so a fired timer's owner checks its deadline again.
pub(crate) fn reset(timer: &TimerHandle, deadline: Instant) -> bool {
    with_own_core(timer.runtime, |core| match core {
        Some(core) => core.timers.borrow_mut().reset(timer.key, deadline),
        None => change_timer_remotely(timer.runtime, timer.key, Some(deadline)),
    })
}

/// Cancels a timer; a no-op if it has fired.
pub(crate) fn cancel(timer: TimerHandle) {
    with_own_core(timer.runtime, |core| match core {
        Some(core) => {
            core.timers.borrow_mut().remove(timer.key);
        }
        None => {
            change_timer_remotely(timer.runtime, timer.key, None);
        }
    })
}
