//! The thread-local pointer to the runtime that is running on this thread.
//!
//! `block_on` sets it on entry and restores it on exit (also when the future panics); everything that
//! needs "the current runtime" (`spawn`, I/O constructors, timers, wakers deciding whether they run on
//! the runtime's own thread) reads it.

use std::cell::Cell;
use std::sync::Arc;

use super::Core;
use crate::reactor::Reactor;

thread_local! {
    /// The core of the runtime inside whose `block_on` this thread is, or null.
    ///
    /// # Invariant
    /// Non-null only while an `Enter` guard for that core is alive on this thread's stack, and the guard
    /// borrows the core, so the pointer is valid whenever it is non-null.
    static CURRENT: Cell<*const Core> = const { Cell::new(std::ptr::null()) };
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
    CURRENT.with(|c| !c.get().is_null())
}

/// The reactor of the runtime running on this thread.
pub(crate) fn current_reactor() -> Option<Arc<Reactor>> {
    with_core(|core| core.map(|c| c.shared.reactor.clone()))
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
