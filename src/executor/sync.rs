//! The synchronisation primitives of the multi-thread scheduler's cross-thread paths (waking, parking,
//! the LIFO slot), from std normally and from loom under `--cfg loom`, so that the model tests in
//! `tests/loom.rs` can explore them. Only this file knows about the swap.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicUsize};
#[cfg(loom)]
pub(crate) use loom::sync::Mutex;
#[cfg(loom)]
pub(crate) use loom::thread::{current as current_thread, park, Thread};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicUsize};
#[cfg(not(loom))]
pub(crate) use std::sync::Mutex;
#[cfg(not(loom))]
pub(crate) use std::thread::{current as current_thread, park, park_timeout, Thread};

/// Under loom a timed park returns at once: loom has no clock, and a timeout that fires at once, at
/// whatever point of the other threads' progress loom chooses, covers every case of the watcher's
/// look at the driver role (`idle.rs`). (A yield would not: loom runs a yielded thread only once the
/// others are blocked.)
#[cfg(loom)]
pub(crate) fn park_timeout(_: std::time::Duration) {}

/// Locks a mutex, ignoring poison: no user code runs under the scheduler's locks.
pub(crate) fn lock<T>(m: &Mutex<T>) -> impl std::ops::DerefMut<Target = T> + '_ {
    #[cfg(loom)]
    return m.lock().unwrap();
    #[cfg(not(loom))]
    return m.lock().unwrap_or_else(|e| e.into_inner());
}
