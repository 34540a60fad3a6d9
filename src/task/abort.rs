//! [`AbortHandle`]: cancels a task from anywhere, without owning its output.
//!
//! Two kinds of task give one out:
//! - a task spawned with [`spawn`](crate::spawn), through [`JoinHandle::abort_handle`](super::JoinHandle::abort_handle): the handle
//!   shares the join handle's state (`SharedState`), and aborting cancels the async-task task as
//!   [`JoinHandle::abort`](super::JoinHandle::abort) does;
//! - a task of a [`JoinSet`](super::JoinSet): its future is wrapped at spawn time with an [`AbortFlag`],
//!   which the handle sets before waking the task; the wrapper sees it at its next poll and ends the
//!   task there, on the task's own thread. The flag holds no output, so that kind works for tasks whose
//!   output is not `Send`.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;

use super::join_handle::SharedState;

/// Cancels a task from any thread; see [`JoinHandle::abort_handle`](super::JoinHandle::abort_handle) and
/// [`JoinSet::spawn`](super::JoinSet::spawn).
///
/// Aborting a task that has finished does nothing. Dropping the handle does not abort.
#[derive(Clone)]
pub struct AbortHandle {
    target: Target,
}

#[derive(Clone)]
enum Target {
    /// A task spawned alone, whose `JoinHandle` state this shares.
    Handle(Arc<dyn Abort>),
    /// A `JoinSet` task, whose future checks this flag.
    Flag(Arc<AbortFlag>),
}

/// What an abort handle can do to a task whose output type it does not know.
trait Abort: Send + Sync {
    fn abort(&self);
    fn is_finished(&self) -> bool;
}

impl<T: Send + 'static> Abort for SharedState<T> {
    fn abort(&self) {
        SharedState::abort(self)
    }

    fn is_finished(&self) -> bool {
        SharedState::is_finished(self)
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<AbortHandle>();
};

impl AbortHandle {
    pub(super) fn from_join_handle<T: Send + 'static>(state: Arc<SharedState<T>>) -> AbortHandle {
        AbortHandle {
            target: Target::Handle(state),
        }
    }

    pub(super) fn from_flag(flag: Arc<AbortFlag>) -> AbortHandle {
        AbortHandle {
            target: Target::Flag(flag),
        }
    }

    /// Cancels the task: its future is dropped the next time the runtime gets to it (at once if it is
    /// idle), and its join handle (or `JoinSet::join_next`) reports a cancelled [`JoinError`](super::JoinError).
    /// Works from any thread.
    pub fn abort(&self) {
        match &self.target {
            Target::Handle(h) => h.abort(),
            Target::Flag(f) => f.abort(),
        }
    }

    /// True once the task's future is gone: it completed, panicked or was cancelled.
    pub fn is_finished(&self) -> bool {
        match &self.target {
            Target::Handle(h) => h.is_finished(),
            Target::Flag(f) => f.finished.load(Ordering::Acquire),
        }
    }
}

impl fmt::Debug for AbortHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbortHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// The abort request of one `JoinSet` task, shared by its future and its abort handles.
#[derive(Debug, Default)]
pub(super) struct AbortFlag {
    /// Set by `abort`; the task's future reads it at every poll.
    aborted: AtomicBool,
    /// Set when the task's future is dropped.
    finished: AtomicBool,
    /// The task's waker, stored when it first waits, so that `abort` can get an idle task polled.
    waker: Mutex<Option<Waker>>,
}

impl AbortFlag {
    pub(super) fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
        let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    #[inline]
    pub(super) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }

    /// Called by the task when it first waits. Returns whether it was aborted meanwhile (the store and
    /// the check are ordered against `abort`'s, so one of them sees the other).
    pub(super) fn store_waker(&self, waker: &Waker) -> bool {
        *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker.clone());
        self.is_aborted()
    }

    /// Marks the task's future gone; `stored_waker` says whether `store_waker` was called.
    pub(super) fn set_finished(&self, stored_waker: bool) {
        self.finished.store(true, Ordering::Release);
        // The waker holds the task: let it go with the future.
        if stored_waker {
            drop(self.waker.lock().unwrap_or_else(|e| e.into_inner()).take());
        }
    }
}
