//! The thread-local pointers to the runtime that is running on this thread.
//!
//! `block_on` sets one on entry and restores it on exit (also when the future panics); everything that
//! needs "the current runtime" (`spawn`, I/O constructors, timers, wakers deciding whether they run on
//! the runtime's own thread) reads it. `CURRENT` names a current-thread runtime and is read first, so
//! that flavor pays nothing for the other; `MULTI` names a multi-thread runtime, set on its workers and
//! inside its `block_on`.

use std::cell::Cell;
use std::sync::Arc;

use super::multi::Shared as MultiShared;
use super::worker::Worker;
use super::Core;
use crate::reactor::Reactor;

thread_local! {
    /// The core of the runtime inside whose `block_on` this thread is, or null.
    ///
    /// # Invariant
    /// Non-null only while an `Enter` guard for that core is alive on this thread's stack, and the guard
    /// borrows the core, so the pointer is valid whenever it is non-null.
    static CURRENT: Cell<*const Core> = const { Cell::new(std::ptr::null()) };

    /// The multi-thread runtime this thread works for, and the worker it is (null on a thread inside
    /// the runtime's `block_on`), or nulls.
    ///
    /// # Invariant
    /// Non-null only while an `EnterMulti` guard for them is alive on this thread's stack; the guard
    /// borrows both, so the pointers are valid whenever they are non-null.
    static MULTI: Cell<(*const Arc<MultiShared>, *const Worker)> =
        const { Cell::new((std::ptr::null(), std::ptr::null())) };
}

/// Makes a multi-thread runtime (and, on a worker thread, the worker) current until dropped.
pub(super) struct EnterMulti<'a> {
    previous: (*const Arc<MultiShared>, *const Worker),
    _borrows: std::marker::PhantomData<(&'a Arc<MultiShared>, &'a Worker)>,
}

impl<'a> EnterMulti<'a> {
    pub(super) fn new(shared: &'a Arc<MultiShared>, worker: Option<&'a Worker>) -> EnterMulti<'a> {
        let worker = worker.map_or(std::ptr::null(), |w| w as *const Worker);
        let previous = MULTI.with(|c| c.replace((shared, worker)));
        EnterMulti {
            previous,
            _borrows: std::marker::PhantomData,
        }
    }
}

impl Drop for EnterMulti<'_> {
    fn drop(&mut self) {
        MULTI.with(|c| c.set(self.previous));
    }
}

/// The multi-thread runtime current on this thread.
#[derive(Clone, Copy)]
pub(crate) struct MultiCtx<'a> {
    pub(crate) shared: &'a Arc<MultiShared>,
    /// The worker this thread is; `None` inside the runtime's `block_on`.
    pub(crate) worker: Option<&'a Worker>,
}

/// Runs `f` with the current multi-thread runtime, or with `None` outside any.
#[inline]
pub(crate) fn with_multi<R>(f: impl FnOnce(Option<MultiCtx<'_>>) -> R) -> R {
    let (shared, worker) = MULTI.with(|c| c.get());
    // SAFETY: by MULTI's invariant, non-null pointers name a runtime and a worker that an `EnterMulti`
    // guard further up this thread's stack keeps alive for at least the duration of this call.
    let ctx = unsafe { shared.as_ref() }.map(|shared| MultiCtx {
        shared,
        // SAFETY: as above.
        worker: unsafe { worker.as_ref() },
    });
    f(ctx)
}

/// The worker running on this thread, if it is one of `shared`'s.
#[inline]
pub(super) fn with_worker<R>(
    shared: *const MultiShared,
    f: impl FnOnce(Option<&Worker>) -> R,
) -> R {
    with_multi(|m| {
        f(m.and_then(|m| m.worker)
            .filter(|w| std::ptr::eq(Arc::as_ptr(&w.shared), shared)))
    })
}

/// Makes `core` the current runtime until dropped; then restores the previous one.
pub(super) struct Enter<'a> {
    previous: *const Core,
    _core: std::marker::PhantomData<&'a Core>,
}

impl<'a> Enter<'a> {
    pub(super) fn new(core: &'a Core) -> Enter<'a> {
        let previous = CURRENT.with(|c| c.replace(core));
        Enter {
            previous,
            _core: std::marker::PhantomData,
        }
    }
}

impl Drop for Enter<'_> {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
    }
}

/// Runs `f` with the current runtime's core, or with `None` outside any runtime.
#[inline]
pub(crate) fn with_core<R>(f: impl FnOnce(Option<&Core>) -> R) -> R {
    let ptr = CURRENT.with(|c| c.get());
    // SAFETY: by CURRENT's invariant a non-null pointer names a core that an `Enter` guard further up
    // this thread's stack keeps alive for at least the duration of this call.
    let core = unsafe { ptr.as_ref() };
    f(core)
}

/// Whether this thread is inside some runtime's `block_on`.
pub(super) fn in_runtime() -> bool {
    CURRENT.with(|c| !c.get().is_null()) || MULTI.with(|c| !c.get().0.is_null())
}

/// The reactor of the runtime running on this thread.
pub(crate) fn current_reactor() -> Option<Arc<Reactor>> {
    with_core(|core| match core {
        Some(c) => Some(c.shared.reactor.clone()),
        None => with_multi(|m| m.map(|m| m.shared.reactor.clone())),
    })
}

/// The reactor of the current runtime, or an `io::Error` that names the fix.
pub(crate) fn reactor_or_err() -> std::io::Result<Arc<Reactor>> {
    current_reactor().ok_or_else(|| {
        std::io::Error::other(
            "no evloop runtime on this thread: create I/O objects inside `evloop::block_on` \
             (or `Runtime::block_on`), or in a task spawned there",
        )
    })
}
