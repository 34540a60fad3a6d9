//! [`EventBase`]: the callback loop, which is a future run by an evloop [`Runtime`]; its [`BaseHandle`]
//! and [`ExitHandle`].

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::ops::Deref;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use super::core::BaseInner;
use super::inbox::Shared;
use super::EventCtx;
use crate::executor::context::with_core;
use crate::executor::current_reactor;
use crate::task::JoinHandle;
use crate::time::Sleep;
use crate::Runtime;

/// How many callbacks the dispatcher runs before it yields to the runtime, so tasks, the reactor and
/// the timers are served while many events are active.
pub(super) const CALLBACK_BUDGET: usize = 128;

/// The callback loop (libevent's `event_base`), one per thread, on its own evloop [`Runtime`].
///
/// [`dispatch`](Self::dispatch) runs callbacks until no event is pending or an exit is requested; it is
/// `Runtime::block_on` of the dispatcher, so inside callbacks [`evloop::spawn`](crate::spawn) and
/// [`spawn_local`](crate::spawn_local) work and their tasks run in the same loop.
///
/// The methods shared with [`BaseHandle`] (`loopexit`, `loopbreak`, `exit_handle`, ...) are reached
/// through `Deref`. Dropping the base frees every event, buffer event and listener still on it (their
/// handles then report errors), then the runtime with its tasks.
///
/// An `EventBase` is not `Send`:
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<evloop::event::EventBase>();
/// ```
///
/// # Examples
/// ```
/// use std::time::{Duration, Instant};
/// use evloop::event::{Event, EventBase, Flags};
///
/// let base = EventBase::new()?;
/// let ev = Event::timer(&base, |_ctx, what| assert_eq!(what, Flags::TIMEOUT));
/// ev.add(Some(Duration::from_millis(2)))?;
/// base.dispatch(); // returns once the one-shot timer has fired: nothing is pending any more
/// assert!(!ev.is_pending());
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct EventBase {
    /// Dropped after `handle` (fields drop in order) and after the teardown in `Drop`.
    handle: BaseHandle,
    /// The runtime whose `block_on` runs the dispatcher.
    runtime: Runtime,
}

/// A cheap, clonable handle to an [`EventBase`] (an `Rc`): what callbacks and tasks keep to create
/// events, and to ask the loop to exit. Not `Send`; see [`ExitHandle`] for other threads.
#[derive(Clone)]
pub struct BaseHandle(pub(crate) Rc<BaseInner>);

/// Asks an [`EventBase`]'s loop to exit, from any thread (libevent's `event_base_loopexit` made
/// thread-safe).
///
/// # Examples
/// ```
/// use evloop::event::{Event, EventBase, Flags};
///
/// let base = EventBase::new()?;
/// // Something pending, so dispatch would otherwise run forever.
/// let ev = Event::timer(&base, |_, _| {});
/// ev.add(None)?;
/// let exit = base.exit_handle();
/// std::thread::spawn(move || exit.exit());
/// base.dispatch();
/// assert!(base.got_exit());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct ExitHandle(Arc<Shared>);

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ExitHandle>();
};

impl EventBase {
    /// Creates a base with one priority level, on a new runtime.
    ///
    /// # Errors
    /// Fails when the runtime's poller cannot be created (out of file descriptors).
    ///
    /// # Panics
    /// Panics inside a runtime (in `block_on` or a task): the base needs a thread of its own to run on.
    pub fn new() -> io::Result<EventBase> {
        Self::with_priorities(1)
    }

    /// Creates a base with `n` priority levels (`0` runs first). See [`priority_init`](Self::priority_init).
    ///
    /// # Errors
    /// As [`new`](Self::new); `n` must be at least 1.
    pub fn with_priorities(n: usize) -> io::Result<EventBase> {
        let runtime = Runtime::new()?;
        // The runtime hands out its reactor only to code running inside it.
        let reactor = runtime
            .block_on(async { current_reactor() })
            .expect("a runtime's block_on has a current reactor");
        let base = EventBase {
            handle: BaseHandle(Rc::new(BaseInner::new(reactor, 1))),
            runtime,
        };
        base.priority_init(n)?;
        Ok(base)
    }

    /// Sets the number of priority levels (libevent's `event_base_priority_init`). New events get
    /// the middle level `n / 2`; existing ones keep theirs, capped to `n - 1`.
    ///
    /// # Errors
    /// `InvalidInput` for `n == 0` or while events are active.
    pub fn priority_init(&self, n: usize) -> io::Result<()> {
        self.handle.0.set_priorities(n)
    }

    /// The handle to clone into callbacks and tasks.
    pub fn handle(&self) -> &BaseHandle {
        &self.handle
    }

    /// Runs the loop until no event is pending, or [`loopexit`](BaseHandle::loopexit),
    /// [`loopbreak`](BaseHandle::loopbreak) or an [`ExitHandle`] ends it (libevent's
    /// `event_base_dispatch`). Tasks spawned meanwhile run too; unfinished ones stay in the runtime for
    /// the next call.
    ///
    /// # Caveats
    /// Only events (and enabled buffer events and listeners) count as pending, as in libevent: a task
    /// that will add an event later does not keep the loop running. Keep an event pending meanwhile,
    /// or run the task with [`block_on`](Self::block_on).
    ///
    /// # Panics
    /// Panics when called inside a runtime (a callback or a task): the loop is already running.
    pub fn dispatch(&self) {
        self.handle.0.got_break.set(false);
        self.handle.0.got_exit.set(false);
        self.runtime
            .block_on(Dispatcher::new(&self.handle, Mode::Loop));
    }

    /// Runs one round (libevent's `EVLOOP_ONCE`, or `EVLOOP_NONBLOCK` when `block` is false): waits
    /// (if `block`) until some event is active, runs the callbacks of the events active then, and
    /// returns how many ran. Returns 0 at once when nothing is pending, or, without `block`, when
    /// nothing is ready.
    ///
    /// # Panics
    /// As [`dispatch`](Self::dispatch).
    pub fn loop_once(&self, block: bool) -> usize {
        self.handle.0.got_break.set(false);
        self.handle.0.got_exit.set(false);
        self.runtime
            .block_on(Dispatcher::new(&self.handle, Mode::Once { block }))
    }

    /// Runs `future` to completion on the base's runtime with the base's events live: their
    /// callbacks run whenever they fire, as in `dispatch` (exit requests do not stop `future`).
    ///
    /// # Panics
    /// As [`dispatch`](Self::dispatch).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let mut future = pin!(future);
        let mut dispatcher = Dispatcher::new(&self.handle, Mode::Background);
        self.runtime.block_on(poll_fn(|cx| {
            if let Poll::Ready(out) = future.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            let _ = dispatcher.poll_step(cx);
            Poll::Pending
        }))
    }

    /// Spawns a task (need not be `Send`) on the base's runtime; it runs during `dispatch`,
    /// `loop_once` and `block_on`.
    pub fn spawn_local<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        // Spawning needs the runtime to be current: enter it for a moment.
        let mut handle = None;
        self.runtime
            .block_on(async { handle = Some(crate::spawn_local(future)) });
        handle.expect("the async block ran")
    }
}

impl Deref for EventBase {
    type Target = BaseHandle;

    fn deref(&self) -> &BaseHandle {
        &self.handle
    }
}

impl AsRef<BaseHandle> for EventBase {
    fn as_ref(&self) -> &BaseHandle {
        &self.handle
    }
}

impl AsRef<BaseHandle> for BaseHandle {
    fn as_ref(&self) -> &BaseHandle {
        self
    }
}

impl Drop for EventBase {
    fn drop(&mut self) {
        self.handle.0.teardown();
    }
}

impl fmt::Debug for EventBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBase")
            .field("handle", &self.handle)
            .field("runtime", &self.runtime)
            .finish()
    }
}

impl BaseHandle {
    /// Ends the loop after the active callbacks of the current round have run, or, with `Some(d)`, once
    /// `d` has passed (libevent's `event_base_loopexit`).
    pub fn loopexit(&self, after: Option<Duration>) {
        self.0.loopexit(after);
    }

    /// Ends the loop right after the callback that is running now (libevent's `event_base_loopbreak`).
    pub fn loopbreak(&self) {
        self.0.got_break.set(true);
        if !self.0.dispatching.get() {
            self.0.shared.wake_dispatcher();
        }
    }

    /// True if the last loop ended through `loopexit` or an [`ExitHandle`].
    pub fn got_exit(&self) -> bool {
        self.0.got_exit.get()
    }

    /// True if the last loop ended through `loopbreak`.
    pub fn got_break(&self) -> bool {
        self.0.got_break.get()
    }

    /// A `Send` handle that can end the loop from another thread.
    pub fn exit_handle(&self) -> ExitHandle {
        ExitHandle(self.0.shared.clone())
    }

    /// How many priority levels the base has.
    pub fn priorities(&self) -> usize {
        self.0.priorities()
    }

    /// How many events (and enabled buffer events and listeners) are pending.
    pub fn pending_count(&self) -> usize {
        self.0.n_pending()
    }

    /// Runs the callbacks of up to `max` events of the first non-empty priority level; returns how many
    /// ran. Stops early after a `loopbreak`.
    fn run_batch(&self, max: usize) -> usize {
        let Some((level, len)) = self.0.first_active_level() else {
            return 0;
        };
        let mut ran = 0;
        for _ in 0..len.min(max) {
            let Some(next) = self.0.pop_active(level) else {
                break;
            };
            let Some(run) = next else {
                continue;
            };
            // Busy only if this callback is running further up the stack: never run it re-entrantly.
            let Ok(mut cb) = run.callback.try_borrow_mut() else {
                continue;
            };
            cb(&EventCtx::new(self, run.id, run.fd), run.fired);
            drop(cb);
            // The closure's destructor runs here if the callback freed its event: no borrow is held.
            drop(run.callback);
            if run.rearm {
                self.0.fd_rearm(run.fd);
            }
            ran += 1;
            if self.0.got_break.get() {
                break;
            }
        }
        ran
    }
}

impl fmt::Debug for BaseHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaseHandle")
            .field("pending", &self.0.n_pending())
            .field("active", &self.0.n_active())
            .field("priorities", &self.0.priorities())
            .finish()
    }
}

impl ExitHandle {
    /// Asks the loop to exit at its next step; works from any thread, also before `dispatch` starts
    /// (then that `dispatch` exits at once).
    pub fn exit(&self) {
        self.0.exit_requested.store(true, Ordering::Release);
        self.0.wake_dispatcher();
    }
}

impl fmt::Debug for ExitHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExitHandle").finish_non_exhaustive()
    }
}

/// How the dispatcher ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `dispatch`: until nothing is pending, or an exit or break.
    Loop,
    /// `loop_once`.
    Once { block: bool },
    /// Under `block_on`: never ends by itself.
    Background,
}

/// The future that runs the callback loop.
struct Dispatcher<'a> {
    base: &'a BaseHandle,
    /// The runtime timer, kept armed for the base's earliest timer.
    sleep: Sleep,
    mode: Mode,
    /// Callbacks run so far (for `Once`).
    ran: usize,
    /// `Once`: how many callbacks this round may run (the events active when it started).
    round: Option<usize>,
    /// Callbacks run since the dispatcher last collected the kernel's events itself.
    since_poll: usize,
    /// How many must run before it does so again: the events that were active then.
    poll_after: usize,
}

impl<'a> Dispatcher<'a> {
    fn new(base: &'a BaseHandle, mode: Mode) -> Self {
        Dispatcher {
            base,
            sleep: crate::time::sleep_until(crate::time::now()),
            mode,
            ran: 0,
            round: None,
            since_poll: 0,
            poll_after: 0,
        }
    }

    /// One poll; `Ready(callbacks run)` when the loop ends.
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<usize> {
        let inner = &*self.base.0;
        inner.shared.set_dispatcher(cx.waker());
        inner.dispatching.set(true);
        let _reset = ResetOnDrop(&inner.dispatching);
        let stoppable = self.mode != Mode::Background;
        let mut budget = CALLBACK_BUDGET;
        let mut polled_reactor = false;
        loop {
            if self.round.is_none() {
                inner.process_tokens();
                inner.fire_due_timers();
            }
            if stoppable && (inner.got_break.get() || inner.got_exit.get()) {
                return Poll::Ready(self.ran);
            }
            if let Some(left) = self.round {
                if left == 0 || inner.n_active() == 0 {
                    return Poll::Ready(self.ran);
                }
            } else if inner.n_active() == 0 {
                match self.mode {
                    Mode::Once { block: false } if !polled_reactor => {
                        polled_reactor = true;
                        inner.poll_reactor_now();
                        continue;
                    }
                    Mode::Once { block: false } => return Poll::Ready(0),
                    Mode::Loop | Mode::Once { .. } if inner.n_pending() == 0 => {
                        return Poll::Ready(self.ran)
                    }
                    _ => {
                        if self.wait_for_timer(cx) {
                            continue; // the earliest timer is due already
                        }
                        return Poll::Pending;
                    }
                }
            } else if let Mode::Once { .. } = self.mode {
                self.round = Some(inner.n_active());
            }
            let max = self.round.unwrap_or(usize::MAX).min(budget);
            let n = self.base.run_batch(max);
            self.ran += n;
            self.since_poll += n;
            budget = budget.saturating_sub(n.max(1));
            if let Some(left) = self.round.as_mut() {
                *left = left.saturating_sub(n.max(1));
            }
            if budget == 0 {
                // Events that stay active (a peer that never stops sending re-activates its event
                // after each capped read) must not keep the others from being seen: collect what the
                // kernel has ready now, so those events queue up behind them, then let tasks run.
                // But only once every event active at the last collection has had its turn: the
                // kernel reports a level-triggered fd again until its callback reads it, so collecting
                // after every batch woke and re-activated each waiting connection once per batch
                // (about 7 times per round trip with 1,000 active connections).
                if self.since_poll >= self.poll_after {
                    inner.poll_reactor_now();
                    self.since_poll = 0;
                    self.poll_after = inner.n_active();
                }
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    }
}

impl Dispatcher<'_> {
    /// Arms the runtime timer for the base's earliest deadline; true if that deadline has passed.
    fn wait_for_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(next) = self.base.0.next_deadline() else {
            return false;
        };
        if next != self.sleep.deadline() {
            self.sleep.reset(next);
        }
        Pin::new(&mut self.sleep).poll(cx).is_ready()
    }
}

impl Future for Dispatcher<'_> {
    type Output = usize;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        self.poll_step(cx)
    }
}

/// Clears the `dispatching` flag when the dispatcher's poll ends (also by a panicking callback).
struct ResetOnDrop<'a>(&'a std::cell::Cell<bool>);

impl Drop for ResetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl BaseInner {
    /// Collects what the kernel has ready now, without blocking: the dispatcher runs inside the
    /// runtime's `block_on`, which is not polling the reactor at that moment.
    fn poll_reactor_now(&self) {
        with_core(|core| {
            if let Some(core) = core {
                // A failed non-blocking poll loses nothing: the runtime polls again when it parks.
                let _ = self
                    .reactor
                    .poll(false, crate::time::driver::local_store(core));
            }
        });
    }
}
