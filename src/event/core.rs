//! The state of one event base: the slots of its events and the active queues (the fd map is in
//! `fdmap.rs`, the inbox through which wakers on any thread hand readiness over in `inbox.rs`).
//!
//! Readiness flows in three steps:
//! 1. The reactor wakes a [`TokenWaker`]: a `Send` waker that only posts its [`Token`] to the base's inbox
//!    and wakes the dispatcher's waker. Fd entries, event timers, signal listeners and buffer events each
//!    own such a waker.
//! 2. The dispatcher drains the inbox ([`BaseInner::process_tokens`]): it asks each token's source what is
//!    really ready (readiness may be stale) and *activates* the events it concerns: their fired flags are
//!    recorded in their slot and their id queued on the active queue of their priority.
//! 3. The dispatcher runs the active callbacks (`base.rs`), lowest priority number first.
//!
//! Borrow discipline: no `RefCell` borrow is held while a callback runs or while something that may
//! run user code (a callback's destructor, a waker) is dropped or called; what must be dropped is moved
//! out of the borrow first.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

use super::fdmap::{FdEntry, FdTable};
use super::inbox::{Shared, Token, TokenWaker};
use super::timers::{TimerId, Timers};
use super::{EventCtx, Flags};
use crate::reactor::Reactor;
use crate::signal;

/// A callback as stored in a slot. The dispatcher runs a clone of the `Rc`, so a callback that frees
/// its own event (or replaces its callback) drops only the slot's reference: the running closure lives
/// until it returns, with nothing to put back afterwards. The `RefCell` refuses a re-entrant run.
pub(crate) type Callback = Rc<RefCell<dyn FnMut(&EventCtx<'_>, Flags)>>;

/// Wraps a closure as a slot's [`Callback`].
pub(crate) fn callback(f: impl FnMut(&EventCtx<'_>, Flags) + 'static) -> Callback {
    Rc::new(RefCell::new(f))
}

/// Names one event slot: the slab index and the generation it was allocated with, so that a stale id
/// (of a freed event whose slot was reused) is never taken for the new event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotId {
    pub(crate) index: usize,
    pub(crate) gen: u64,
}

/// One event (or the driver of a buffer event or listener).
pub(crate) struct Slot {
    /// Matches `SlotId::gen` for ids of this event.
    gen: u64,
    /// The fd watched, or the signal number for `SIGNAL` events, or -1.
    pub(crate) fd: RawFd,
    /// What the event watches (`READ`, `WRITE`, `SIGNAL`, `PERSIST`, `ET`).
    pub(crate) flags: Flags,
    /// Index into the active queues.
    priority: usize,
    /// The callback (see [`Callback`] for how a running one survives the deletion of its event).
    callback: Callback,
    /// Driven by a buffer event or listener: tokens activate it as they come, without fd map, timer or
    /// signal bookkeeping, and it never becomes non-pending by firing.
    internal: bool,
    /// Added and not deleted (libevent's "pending").
    pending: bool,
    /// The flags fired since the callback last ran; non-empty only while queued on an active queue.
    fired: Flags,
    /// The timeout given to `add`, re-armed after each firing of a `PERSIST` event.
    timeout: Option<Duration>,
    /// The armed timer.
    timer: Option<TimerId>,
    /// The signal listener while a `SIGNAL` event is pending.
    signal: Option<signal::Listener>,
    /// Posts `Slot(id, SIGNAL)`.
    signal_waker: Option<Waker>,
}

/// An active event taken off its queue to run.
pub(crate) struct Run {
    pub(crate) id: SlotId,
    pub(crate) fd: RawFd,
    pub(crate) fired: Flags,
    pub(crate) callback: Callback,
    /// An event on an fd entry, while some entry is disarmed: once the callback ran, its entry is
    /// re-armed (`fdmap.rs`).
    pub(crate) rearm: bool,
}

/// Everything an event base owns, behind the `Rc` of its handles.
pub(crate) struct BaseInner {
    pub(crate) reactor: Arc<Reactor>,
    pub(crate) shared: Arc<Shared>,
    slots: RefCell<Slab<Slot>>,
    /// Source of slot and fd-entry generations.
    next_gen: Cell<u64>,
    pub(super) fds: RefCell<FdTable>,
    /// How many fd entries are disarmed (`fdmap.rs`): while none is, callbacks skip the re-arm lookup.
    pub(super) n_disarmed: Cell<usize>,
    /// One FIFO of active slot ids per priority level; an id whose slot has no fired flags is skipped.
    active: RefCell<Vec<VecDeque<SlotId>>>,
    /// How many ids the active queues hold.
    n_active: Cell<usize>,
    /// How many slots are pending: `dispatch` returns when this reaches 0.
    n_pending: Cell<usize>,
    pub(crate) got_break: Cell<bool>,
    pub(crate) got_exit: Cell<bool>,
    /// Event, buffer-event and `loopexit` timers.
    timers: RefCell<Timers>,
    /// The `loopexit(Some(d))` timer.
    exit_timer: Cell<Option<TimerId>>,
    /// True while the dispatcher runs: activations need not wake it.
    pub(crate) dispatching: Cell<bool>,
    /// Set by the owner's drop: new events are refused.
    pub(crate) closed: Cell<bool>,
    /// Reused buffer for draining the inbox.
    scratch: RefCell<Vec<Token>>,
}

fn closed_error() -> io::Error {
    io::Error::other("the EventBase of this event has been dropped")
}

impl BaseInner {
    pub(crate) fn new(reactor: Arc<Reactor>, priorities: usize) -> BaseInner {
        let shared = Arc::new(Shared::default());
        BaseInner {
            reactor,
            shared,
            slots: RefCell::new(Slab::new()),
            next_gen: Cell::new(1),
            fds: RefCell::new(FdTable::default()),
            n_disarmed: Cell::new(0),
            active: RefCell::new((0..priorities.max(1)).map(|_| VecDeque::new()).collect()),
            n_active: Cell::new(0),
            n_pending: Cell::new(0),
            got_break: Cell::new(false),
            got_exit: Cell::new(false),
            timers: RefCell::new(Timers::default()),
            exit_timer: Cell::new(None),
            dispatching: Cell::new(false),
            closed: Cell::new(false),
            scratch: RefCell::new(Vec::new()),
        }
    }

    pub(super) fn gen(&self) -> u64 {
        let g = self.next_gen.get();
        self.next_gen.set(g + 1);
        g
    }

    pub(crate) fn priorities(&self) -> usize {
        self.active.borrow().len()
    }

    /// Changes the number of priority levels; refused while events are active.
    pub(crate) fn set_priorities(&self, n: usize) -> io::Result<()> {
        if n == 0 || self.n_active.get() > 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "priority_init needs n >= 1 and no active events: call it before dispatching",
            ));
        }
        *self.active.borrow_mut() = (0..n).map(|_| VecDeque::new()).collect();
        for (_, slot) in self.slots.borrow_mut().iter_mut() {
            slot.priority = slot.priority.min(n - 1);
        }
        Ok(())
    }

    pub(crate) fn n_pending(&self) -> usize {
        self.n_pending.get()
    }

    pub(crate) fn n_active(&self) -> usize {
        self.n_active.get()
    }

    /// Makes a slot for a new event (not pending), at the middle priority as in libevent.
    pub(crate) fn alloc(
        &self,
        fd: RawFd,
        flags: Flags,
        callback: Callback,
        internal: bool,
    ) -> io::Result<SlotId> {
        if self.closed.get() {
            return Err(closed_error());
        }
        let gen = self.gen();
        let priority = self.priorities() / 2;
        let index = self.slots.borrow_mut().insert(Slot {
            gen,
            fd,
            flags,
            priority,
            callback,
            internal,
            pending: false,
            fired: Flags::empty(),
            timeout: None,
            timer: None,
            signal: None,
            signal_waker: None,
        });
        Ok(SlotId { index, gen })
    }

    /// Runs `f` on the slot named by `id`, if it still exists.
    fn with_slot<R>(&self, id: SlotId, f: impl FnOnce(&mut Slot) -> R) -> Option<R> {
        let mut slots = self.slots.borrow_mut();
        slots.get_mut(id.index).filter(|s| s.gen == id.gen).map(f)
    }

    pub(crate) fn exists(&self, id: SlotId) -> bool {
        self.with_slot(id, |_| ()).is_some()
    }

    pub(crate) fn is_pending(&self, id: SlotId) -> bool {
        self.with_slot(id, |s| s.pending).unwrap_or(false)
    }

    pub(crate) fn set_priority(&self, id: SlotId, priority: usize) -> io::Result<()> {
        let n = self.priorities();
        if priority >= n {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "priority {priority} out of range: the base has {n} levels (see priority_init)"
                ),
            ));
        }
        self.with_slot(id, |s| s.priority = priority)
            .ok_or_else(closed_error)
    }

    /// Deletes the event and frees its slot. Safe from any callback, its own included.
    pub(crate) fn free(&self, id: SlotId) {
        self.del(id);
        let slot = {
            let mut slots = self.slots.borrow_mut();
            match slots.get(id.index) {
                Some(s) if s.gen == id.gen => Some(slots.remove(id.index)),
                _ => None,
            }
        };
        // The callback's destructor may free other events: run it with no borrow held.
        drop(slot);
    }

    /// Makes the event pending (libevent's `event_add`), with a timeout if given; an event already
    /// pending gets the new timeout (or loses its timeout for `None`).
    pub(crate) fn add(&self, id: SlotId, timeout: Option<Duration>) -> io::Result<()> {
        if self.closed.get() {
            return Err(closed_error());
        }
        let (fd, flags, was_pending, internal) = self
            .with_slot(id, |s| (s.fd, s.flags, s.pending, s.internal))
            .ok_or_else(closed_error)?;
        if !was_pending {
            if flags.intersects(Flags::READ | Flags::WRITE) && !internal {
                self.fd_attach(fd, id, flags)?;
            }
            if flags.contains(Flags::SIGNAL) {
                let listener = match signal::Listener::new(fd, self.reactor.clone()) {
                    Ok(l) => l,
                    Err(e) => {
                        if flags.intersects(Flags::READ | Flags::WRITE) {
                            self.fd_detach(fd, id);
                        }
                        return Err(e);
                    }
                };
                let waker = TokenWaker::waker(&self.shared, Token::Slot(id, Flags::SIGNAL));
                self.with_slot(id, |s| {
                    s.signal = Some(listener);
                    s.signal_waker = Some(waker);
                });
                // The first poll registers the listener's waker.
                self.shared.post(Token::Slot(id, Flags::SIGNAL));
            }
            self.with_slot(id, |s| s.pending = true);
            self.n_pending.set(self.n_pending.get() + 1);
        }
        let old_timer = self.with_slot(id, |s| {
            s.timeout = timeout;
            s.timer.take()
        });
        if let Some(Some(key)) = old_timer {
            self.timers.borrow_mut().remove(key);
        }
        if let Some(d) = timeout {
            self.arm_timer(id, d);
        }
        Ok(())
    }

    fn arm_timer(&self, id: SlotId, d: Duration) {
        let deadline = crate::time::deadline_after(crate::time::now(), d);
        let old = self.with_slot(id, |s| {
            let new = self.timer_insert(deadline, Token::Slot(id, Flags::TIMEOUT));
            s.timer.replace(new)
        });
        if let Some(Some(old)) = old {
            self.timer_remove(old);
        }
    }

    /// Arms a base timer that fires `token` at `deadline`.
    pub(crate) fn timer_insert(&self, deadline: Instant, token: Token) -> TimerId {
        let id = self.timers.borrow_mut().insert(deadline, token);
        if !self.dispatching.get() {
            // The dispatcher's runtime timer may be set for a later deadline.
            self.shared.wake_dispatcher();
        }
        id
    }

    /// Cancels a base timer; false if it had fired.
    pub(crate) fn timer_remove(&self, id: TimerId) -> bool {
        self.timers.borrow_mut().remove(id)
    }

    /// True while a base timer has neither fired nor been cancelled.
    pub(crate) fn timer_pending(&self, id: TimerId) -> bool {
        self.timers.borrow().contains(id)
    }

    /// The earliest base timer deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.borrow().next_deadline()
    }

    /// Fires the base timers due now: activates their events.
    pub(crate) fn fire_due_timers(&self) {
        if self.timers.borrow().next_deadline().is_none() {
            return;
        }
        let mut due = Vec::new();
        self.timers
            .borrow_mut()
            .pop_due(crate::time::now(), &mut due);
        for token in due {
            match token {
                Token::Exit => {
                    self.exit_timer.set(None);
                    self.got_exit.set(true);
                }
                Token::Slot(id, what) => {
                    let internal = self.with_slot(id, |s| {
                        if !s.internal {
                            s.timer = None;
                        }
                        s.internal
                    });
                    match internal {
                        Some(true) => self.activate(id, what),
                        Some(false) => self.activate(id, Flags::TIMEOUT),
                        None => {}
                    }
                }
                Token::Fd(..) => {}
            }
        }
    }

    /// Makes the event non-pending and forgets that it fired (libevent's `event_del`).
    pub(crate) fn del(&self, id: SlotId) {
        self.with_slot(id, |s| s.fired = Flags::empty());
        self.make_nonpending(id);
    }

    /// Makes the event non-pending, keeping any fired flags (a one-shot event that just fired).
    fn make_nonpending(&self, id: SlotId) {
        let Some(Some((fd, flags, timer, listener, internal))) = self.with_slot(id, |s| {
            if !s.pending {
                return None;
            }
            s.pending = false;
            Some((s.fd, s.flags, s.timer.take(), s.signal.take(), s.internal))
        }) else {
            return;
        };
        self.n_pending.set(self.n_pending.get() - 1);
        if let Some(key) = timer {
            self.timer_remove(key);
        }
        if flags.intersects(Flags::READ | Flags::WRITE) && !internal {
            self.fd_detach(fd, id);
        }
        drop(listener);
        if self.n_pending.get() == 0 && !self.dispatching.get() {
            self.shared.wake_dispatcher();
        }
    }

    /// Marks an internal slot (buffer event, listener) pending or not.
    pub(crate) fn set_internal_pending(&self, id: SlotId, pending: bool) {
        let changed = self
            .with_slot(id, |s| {
                std::mem::replace(&mut s.pending, pending) != pending
            })
            .unwrap_or(false);
        if changed {
            let n = self.n_pending.get();
            self.n_pending.set(if pending { n + 1 } else { n - 1 });
            if !self.dispatching.get() {
                self.shared.wake_dispatcher();
            }
        }
    }

    /// Adds `what` to the event's fired flags and queues it; a non-`PERSIST` event stops being
    /// pending, a `PERSIST` one with a timeout has its timeout restarted.
    pub(crate) fn activate(&self, id: SlotId, what: Flags) {
        let Some((one_shot, rearm)) = self.with_slot(id, |s| {
            self.queue(id, s, what);
            let persist = s.flags.contains(Flags::PERSIST);
            let live = s.pending && !s.internal;
            (
                live && !persist,
                if live && persist { s.timeout } else { None },
            )
        }) else {
            return;
        };
        if one_shot {
            self.make_nonpending(id);
        } else if let Some(d) = rearm {
            self.arm_timer(id, d);
        }
        if !self.dispatching.get() {
            self.shared.wake_dispatcher();
        }
    }

    /// Adds `what` to the slot's fired flags, and queues it if it was not queued yet.
    #[inline]
    fn queue(&self, id: SlotId, s: &mut Slot, what: Flags) {
        if s.fired.is_empty() {
            self.active.borrow_mut()[s.priority].push_back(id);
            self.n_active.set(self.n_active.get() + 1);
        }
        s.fired |= what;
    }

    /// Drains the inbox and activates what is really ready.
    pub(crate) fn process_tokens(&self) {
        if self.shared.exit_requested.swap(false, Ordering::AcqRel) {
            self.got_exit.set(true);
        }
        let mut tokens = std::mem::take(&mut *self.scratch.borrow_mut());
        std::mem::swap(&mut tokens, &mut self.shared.inbox().tokens);
        for token in tokens.drain(..) {
            match token {
                Token::Fd(fd, gen) => self.process_fd(fd, gen),
                Token::Slot(id, what) => self.process_slot(id, what),
                Token::Exit => {}
            }
        }
        *self.scratch.borrow_mut() = tokens;
    }

    fn process_slot(&self, id: SlotId, what: Flags) {
        enum Step {
            Signal(signal::Listener, Waker),
            Nothing,
        }
        let step = self
            .with_slot(id, |s| {
                if s.internal {
                    // All that activating an internal slot does (and the dispatcher is running).
                    self.queue(id, s, what);
                    Step::Nothing
                } else if what.contains(Flags::SIGNAL) {
                    match (s.signal.take(), &s.signal_waker) {
                        (Some(l), Some(w)) => Step::Signal(l, w.clone()),
                        (l, _) => {
                            s.signal = l;
                            Step::Nothing
                        }
                    }
                } else {
                    Step::Nothing
                }
            })
            .unwrap_or(Step::Nothing);
        match step {
            Step::Signal(mut listener, waker) => {
                let fired = listener
                    .poll_recv(&mut Context::from_waker(&waker))
                    .is_ready();
                // Put it back unless the event was deleted meanwhile (then it just drops).
                let listener = self.with_slot(id, |s| {
                    if s.pending && s.signal.is_none() {
                        s.signal = Some(listener);
                        None
                    } else {
                        Some(listener)
                    }
                });
                drop(listener);
                if fired {
                    self.activate(id, Flags::SIGNAL);
                    // Poll again (after this round) to re-register the waker.
                    self.shared.post(Token::Slot(id, Flags::SIGNAL));
                }
            }
            Step::Nothing => {}
        }
    }

    /// Takes the next active event of the lowest-numbered non-empty queue, with its fired flags and its
    /// callback. `None` when that queue is empty.
    #[inline]
    pub(crate) fn pop_active(&self, priority: usize) -> Option<Option<Run>> {
        let id = self.active.borrow_mut()[priority].pop_front()?;
        self.n_active.set(self.n_active.get() - 1);
        Some(
            self.with_slot(id, |s| {
                if s.fired.is_empty() {
                    return None; // deleted after it was queued, or a duplicate entry
                }
                Some(Run {
                    id,
                    fd: s.fd,
                    fired: std::mem::take(&mut s.fired),
                    callback: s.callback.clone(),
                    rearm: self.n_disarmed.get() > 0
                        && !s.internal
                        && s.flags.intersects(Flags::READ | Flags::WRITE),
                })
            })
            .flatten(),
        )
    }

    /// The lowest-numbered non-empty priority level and its length.
    pub(crate) fn first_active_level(&self) -> Option<(usize, usize)> {
        self.active
            .borrow()
            .iter()
            .enumerate()
            .find(|(_, q)| !q.is_empty())
            .map(|(i, q)| (i, q.len()))
    }

    /// Gives an event a new callback (the old one is dropped with no borrow held).
    pub(crate) fn replace_callback(&self, id: SlotId, cb: Callback) {
        let old = self.with_slot(id, |s| std::mem::replace(&mut s.callback, cb));
        drop(old);
    }

    /// Arms (or with `None`, requests at once) the exit of the loop.
    pub(crate) fn loopexit(&self, after: Option<Duration>) {
        match after {
            None => {
                self.got_exit.set(true);
                if !self.dispatching.get() {
                    self.shared.wake_dispatcher();
                }
            }
            Some(d) => {
                if let Some(old) = self.exit_timer.take() {
                    self.timer_remove(old);
                }
                let deadline = crate::time::deadline_after(crate::time::now(), d);
                self.exit_timer
                    .set(Some(self.timer_insert(deadline, Token::Exit)));
            }
        }
    }

    /// Frees everything (the owner is being dropped): callbacks that hold handles to the base are
    /// dropped, which breaks the `Rc` cycles they form.
    pub(crate) fn teardown(&self) {
        self.closed.set(true);
        self.exit_timer.set(None);
        self.timers.borrow_mut().clear();
        let slots: Vec<Slot> = self.slots.borrow_mut().drain().collect();
        let fds: Vec<FdEntry> = self.fds.borrow_mut().drain().collect();
        self.n_disarmed.set(0);
        for e in &fds {
            let _ = self.reactor.deregister(&e.source);
        }
        for q in self.active.borrow_mut().iter_mut() {
            q.clear();
        }
        self.n_active.set(0);
        self.n_pending.set(0);
        drop(fds);
        drop(slots);
    }
}
