//! The two places where a task changes hands between threads without the work-stealing deque: a
//! worker's **LIFO slot** (one task, which other workers may steal) and its **inbox** (pinned tasks woken
//! on other threads). Both are generic over what they carry so that `tests/loom.rs` can model them with
//! plain boxes; the runtime carries `Runnable`s.

use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, SeqCst};

use super::sync::{lock, AtomicBool, AtomicPtr, Mutex};
use super::Runnable;

/// Something that can travel as one non-null pointer and be rebuilt from it.
pub(crate) trait RawTask {
    fn into_raw(self) -> NonNull<()>;

    /// # Safety
    /// `p` comes from `into_raw` of the same type, and is turned back only once.
    unsafe fn from_raw(p: NonNull<()>) -> Self;
}

impl RawTask for Runnable {
    fn into_raw(self) -> NonNull<()> {
        Runnable::into_raw(self)
    }

    unsafe fn from_raw(p: NonNull<()>) -> Self {
        // SAFETY: the caller passes a pointer from `Runnable::into_raw`, once.
        unsafe { Runnable::from_raw(p) }
    }
}

/// A slot holding at most one task, which the owner fills and anyone may empty.
pub(crate) struct LifoSlot<T: RawTask> {
    /// A pointer from `T::into_raw`, or null.
    ///
    /// # Invariant
    /// A non-null value is owned by the slot: whoever swaps it out (the only way to read it) turns it
    /// back into a `T`, exactly once.
    ptr: AtomicPtr<()>,
    _owns: std::marker::PhantomData<T>,
}

// SAFETY: the slot hands its `T` to whichever thread swaps it out, so it is `Send`/`Sync` when `T` can
// be sent.
unsafe impl<T: RawTask + Send> Send for LifoSlot<T> {}
// SAFETY: as above; all access goes through atomic swaps.
unsafe impl<T: RawTask + Send> Sync for LifoSlot<T> {}

impl<T: RawTask> LifoSlot<T> {
    pub(crate) fn new() -> Self {
        LifoSlot {
            ptr: AtomicPtr::new(std::ptr::null_mut()),
            _owns: std::marker::PhantomData,
        }
    }

    /// Puts `t` in the slot; returns the task it displaced.
    pub(crate) fn put(&self, t: T) -> Option<T> {
        // AcqRel: Release publishes `t` to the thread that takes it; Acquire receives the displaced one.
        let old = self.ptr.swap(t.into_raw().as_ptr(), AcqRel);
        // SAFETY: by `ptr`'s invariant a non-null value is an owned `into_raw` pointer, ours now that we
        // swapped it out.
        NonNull::new(old).map(|p| unsafe { T::from_raw(p) })
    }

    /// Takes the task in the slot, if any (from any thread).
    pub(crate) fn take(&self) -> Option<T> {
        // A cheap look first: most looks (stealers, the owner between tasks) find it empty.
        if self.ptr.load(Relaxed).is_null() {
            return None;
        }
        let old = self.ptr.swap(std::ptr::null_mut(), AcqRel);
        // SAFETY: as in `put`.
        NonNull::new(old).map(|p| unsafe { T::from_raw(p) })
    }

    /// Whether the slot holds a task (the last look before sleeping, after the `SeqCst` fence).
    pub(crate) fn is_full(&self) -> bool {
        !self.ptr.load(SeqCst).is_null()
    }
}

impl<T: RawTask> Drop for LifoSlot<T> {
    fn drop(&mut self) {
        drop(self.take());
    }
}

/// A queue that other threads push to and one thread drains, with a flag so the drainer looks without
/// the lock.
pub(crate) struct Inbox<T> {
    queue: Mutex<VecDeque<T>>,
    /// Set (after the push, outside the lock) whenever `queue` may be non-empty; cleared under the lock
    /// by the drainer. A push made after a drain sets it after that drain cleared it, so it is never
    /// left clear with items queued.
    nonempty: AtomicBool,
}

impl<T> Inbox<T> {
    pub(crate) fn new() -> Self {
        Inbox {
            queue: Mutex::new(VecDeque::new()),
            nonempty: AtomicBool::new(false),
        }
    }

    pub(crate) fn push(&self, t: T) {
        lock(&self.queue).push_back(t);
        self.nonempty.store(true, SeqCst);
    }

    /// Moves everything queued to `into`.
    pub(crate) fn drain_into(&self, into: &mut VecDeque<T>) {
        if self.nonempty.load(Acquire) {
            let mut queue = lock(&self.queue);
            self.nonempty.store(false, Relaxed);
            into.extend(queue.drain(..));
        }
    }

    /// Whether something may be queued (the last look before sleeping, after the `SeqCst` fence).
    pub(crate) fn may_have_items(&self) -> bool {
        self.nonempty.load(SeqCst)
    }

    /// Takes everything queued, whatever the flag says.
    pub(crate) fn take_all(&self) -> VecDeque<T> {
        self.nonempty.store(false, Relaxed);
        std::mem::take(&mut *lock(&self.queue))
    }
}
