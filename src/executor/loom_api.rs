//! Only under `--cfg loom`: the multi-thread scheduler's cross-thread pieces, the real code, wrapped
//! so that the model tests in `tests/loom.rs` can drive them from loom threads. Not an API.

use std::ptr::NonNull;

use super::handoff::{self, RawTask};
use super::idle;

/// The sleep/wake protocol of `idle.rs`.
#[derive(Debug)]
pub struct Idle(idle::Idle);

impl Idle {
    pub fn new(workers: usize) -> Idle {
        Idle(idle::Idle::new(workers))
    }

    /// Must be called by worker `i` on its own (loom) thread before it parks.
    pub fn register(&self, i: usize) {
        self.0.register(i)
    }

    pub fn notify_one(&self, from: Option<usize>, notify_reactor: impl FnOnce()) {
        self.0.notify_one(from, notify_reactor)
    }

    pub fn notify_worker(&self, i: usize, notify_reactor: impl FnOnce()) {
        self.0.notify_worker(i, notify_reactor)
    }

    pub fn notify_all(&self, notify_reactor: impl FnOnce()) {
        self.0.notify_all(notify_reactor)
    }

    pub fn try_drive(&self, i: usize) -> bool {
        self.0.try_drive(i)
    }

    pub fn stop_driving(&self, from: usize, more: bool, notify_reactor: impl FnOnce()) {
        self.0.stop_driving(from, more, notify_reactor)
    }

    pub fn poll_if_undriven(
        &self,
        i: usize,
        poll: impl FnOnce() -> bool,
        notify_reactor: impl FnOnce(),
    ) {
        self.0.poll_if_undriven(i, poll, notify_reactor)
    }

    pub fn park(&self, i: usize, has_work: impl Fn() -> bool, stop: impl Fn() -> bool) {
        self.0.park(i, has_work, stop)
    }

    /// How many workers the sleeper count says are parked (`idle::Idle::num_sleepers`).
    pub fn sleeper_count(&self) -> usize {
        self.0.sleeper_count()
    }

    /// Whether the driver's next poll may block without a cap (`idle::Idle::block_cap` is `None`).
    pub fn block_uncapped(&self) -> bool {
        self.0.block_cap().is_none()
    }

    pub fn polled(&self) {
        self.0.polled()
    }

    pub fn woke(&self, notify_reactor: impl FnOnce()) {
        self.0.woke(notify_reactor)
    }
}

/// A LIFO slot carrying boxed numbers.
pub struct LifoSlot(handoff::LifoSlot<Box<usize>>);

impl std::fmt::Debug for LifoSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LifoSlot")
    }
}

impl Default for LifoSlot {
    fn default() -> Self {
        LifoSlot(handoff::LifoSlot::new())
    }
}

impl LifoSlot {
    pub fn put(&self, v: usize) -> Option<usize> {
        self.0.put(Box::new(v)).map(|b| *b)
    }

    pub fn take(&self) -> Option<usize> {
        self.0.take().map(|b| *b)
    }

    pub fn is_full(&self) -> bool {
        self.0.is_full()
    }
}

impl RawTask for Box<usize> {
    fn into_raw(self) -> NonNull<()> {
        NonNull::from(Box::leak(self)).cast()
    }

    unsafe fn from_raw(p: NonNull<()>) -> Self {
        // SAFETY: the caller passes a pointer from `into_raw`, once.
        unsafe { Box::from_raw(p.cast::<usize>().as_ptr()) }
    }
}

/// A worker's inbox carrying numbers.
pub struct Inbox(handoff::Inbox<usize>);

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inbox")
    }
}

impl Default for Inbox {
    fn default() -> Self {
        Inbox(handoff::Inbox::new())
    }
}

impl Inbox {
    pub fn push(&self, v: usize) {
        self.0.push(v)
    }

    pub fn drain(&self) -> Vec<usize> {
        let mut out = std::collections::VecDeque::new();
        self.0.drain_into(&mut out);
        out.into()
    }

    pub fn may_have_items(&self) -> bool {
        self.0.may_have_items()
    }
}
