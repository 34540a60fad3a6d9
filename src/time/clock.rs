//! The runtime's clock: [`now`], and, with the `test-util` feature, paused time ([`pause`],
//! [`resume`], [`advance`]).
//!
//! # Paused time
//! A current-thread runtime owns a [`Clock`]. Until `pause` it is the real clock and costs nothing
//! but one thread-local read in [`now`]. Once paused it is *virtual*: it stands still, moves only by
//! [`advance`] or by auto-advance, and every evloop timer (sleeps, intervals, timeouts, and the
//! callback API's event and buffer-event timeouts, which arm their deadlines from [`now`]) follows it.
//! The run loop then polls through [`Clock::poll`] instead of letting the reactor read the real time:
//!
//! 1. fire the timers due at the virtual now;
//! 2. poll the reactor for I/O, without blocking unless nothing at all can happen (no runnable task,
//!    no timer): I/O readiness still wakes tasks while paused;
//! 3. if the loop was about to sleep and still nothing is runnable, jump the clock to the earliest
//!    deadline and fire it (auto-advance). Timers thus fire in deadline order, at once in real time.
//!    While a `spawn_blocking` job spawned under paused time runs, the loop waits in the poller
//!    instead (10 ms at a time, woken by the job's result), as tokio's auto-advance does; the job
//!    releases its hold on its pool thread only after its awaiter has been woken (`blocking.rs`).
//!
//! While paused, virtual instants sit on the timer wheel's 1 µs grid (the paused instant is rounded
//! down to it), so a jump lands exactly on a whole-µs deadline and `now()` after a tick reads the
//! tick's scheduled instant.
//!
//! After [`resume`] the clock runs at real speed again from where the virtual one stood (as tokio's),
//! so it never goes backwards; the loop then waits in the poller for at most the time to the next
//! virtual deadline.
//!
//! Paused time exists only on current-thread runtimes, as in tokio: a multi-thread runtime's workers
//! share one wheel and have no single point where "every task is idle" is known cheaply.
//! [`Runtime::max_poll_gap`](crate::Runtime::max_poll_gap) keeps measuring real time: a jump of the
//! virtual clock is not a gap, and a paused runtime polls the reactor at least as often as a running
//! one.

use std::time::Instant;

#[cfg(feature = "test-util")]
pub(crate) use paused::*;
#[cfg(feature = "test-util")]
pub use paused::{advance, pause, resume};

/// The current runtime's time: the virtual clock while it is paused (feature `test-util`),
/// `Instant::now()` otherwise (and always without that feature, or outside a runtime).
///
/// Compute deadlines from it rather than from `Instant::now()` when the code may run under paused
/// time.
///
/// # Examples
/// ```
/// let start = evloop::time::now();
/// evloop::block_on(evloop::time::sleep(std::time::Duration::from_millis(1)));
/// assert!(evloop::time::now() >= start);
/// ```
#[inline]
pub fn now() -> Instant {
    #[cfg(feature = "test-util")]
    if let Some(t) = paused::virtual_now() {
        return t;
    }
    Instant::now()
}

#[cfg(feature = "test-util")]
mod paused {
    use std::cell::{Cell, RefCell};
    use std::io;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Waker;
    use std::time::{Duration, Instant};

    use crate::executor::context::{with_core, with_multi};
    use crate::executor::Core;
    use crate::reactor::Reactor;
    use crate::time::driver::TimerStore;
    use crate::time::wheel::TimerWheel;

    /// A current-thread runtime's clock: real, or virtual once paused.
    #[derive(Debug, Default)]
    pub(crate) struct Clock {
        /// `None`: the real clock (never paused).
        state: Cell<Option<Virtual>>,
        /// Blocking-pool jobs spawned while paused that have not finished: auto-advance waits for
        /// them (as tokio's does), since their results may arrive before the next deadline.
        holds: Arc<AtomicUsize>,
    }

    /// How long a paused runtime with nothing to run waits in the poller for a blocking job before
    /// looking again (the job's result wakes it sooner).
    const HOLD_WAIT: Duration = Duration::from_millis(10);

    /// Keeps a paused runtime from auto-advancing while a blocking job runs; see `blocking.rs`.
    #[derive(Debug)]
    pub(crate) struct AutoAdvanceHold(Arc<AtomicUsize>);

    impl Drop for AutoAdvanceHold {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// A hold on the current runtime's auto-advance, if its clock is paused.
    pub(crate) fn hold_auto_advance() -> Option<AutoAdvanceHold> {
        with_core(|core| {
            let clock = &core?.clock;
            clock.is_paused().then(|| {
                clock.holds.fetch_add(1, Ordering::SeqCst);
                AutoAdvanceHold(clock.holds.clone())
            })
        })
    }

    #[derive(Clone, Copy, Debug)]
    struct Virtual {
        /// The virtual time while paused; after `resume`, the virtual time at `resumed_at`.
        base: Instant,
        /// When (in real time) the clock was resumed; `None` while paused.
        resumed_at: Option<Instant>,
    }

    impl Virtual {
        fn now(self) -> Instant {
            match self.resumed_at {
                None => self.base,
                Some(r) => self.base + r.elapsed(),
            }
        }
    }

    /// The current runtime's virtual time, if its clock is virtual.
    #[inline]
    pub(super) fn virtual_now() -> Option<Instant> {
        with_core(|core| core.and_then(|c| c.clock.state.get()).map(Virtual::now))
    }

    impl Clock {
        /// Whether the clock has ever been paused (from then on the loop polls through `poll`).
        #[inline]
        pub(crate) fn is_virtual(&self) -> bool {
            self.state.get().is_some()
        }

        fn is_paused(&self) -> bool {
            self.state.get().is_some_and(|v| v.resumed_at.is_none())
        }

        fn now(&self) -> Instant {
            self.state.get().map_or_else(Instant::now, Virtual::now)
        }

        /// Stops the clock. `grid` is the timer wheel's origin: a first pause rounds the time down to
        /// the wheel's µs grid (see the module doc). Returns the virtual time.
        pub(crate) fn pause(&self, grid: Instant) -> Instant {
            let base = match self.state.get() {
                Some(v) if v.resumed_at.is_none() => {
                    panic!("evloop::time::pause: the clock is already paused; call `resume` first")
                }
                Some(v) => v.now(),
                None => {
                    let since = Instant::now().saturating_duration_since(grid);
                    grid + Duration::from_micros(since.as_micros().min(u64::MAX as u128) as u64)
                }
            };
            self.state.set(Some(Virtual {
                base,
                resumed_at: None,
            }));
            base
        }

        fn resume(&self) {
            let Some(v) = self.state.get().filter(|v| v.resumed_at.is_none()) else {
                panic!("evloop::time::resume: the clock is not paused; call `pause` first")
            };
            self.state.set(Some(Virtual {
                base: v.base,
                resumed_at: Some(Instant::now()),
            }));
        }

        /// Moves a paused clock forward to `to` (never back).
        fn jump_to(&self, to: Instant) {
            if let Some(v) = self.state.get().filter(|v| v.resumed_at.is_none()) {
                self.state.set(Some(Virtual {
                    base: v.base.max(to),
                    resumed_at: None,
                }));
            }
        }

        /// Back to the real clock: at the end of an `evloop::block_on` call, whose runtime the next
        /// call on this thread reuses.
        pub(crate) fn reset(&self) {
            self.state.set(None);
        }

        /// The run loop's poll step while the clock is virtual (see the module doc). `has_work` says
        /// whether a task or the main future is runnable. Returns the (virtual) time after the poll.
        pub(crate) fn poll(
            &self,
            reactor: &Reactor,
            wheel: &RefCell<TimerWheel>,
            block: bool,
            has_work: impl Fn() -> bool,
        ) -> io::Result<Instant> {
            let fired = fire_due(wheel, self.now());
            let idle = block && !fired && !has_work();
            let next = wheel.borrow().next_deadline();
            if self.is_paused() {
                let held = || self.holds.load(Ordering::SeqCst) > 0;
                match next {
                    None => reactor.poll(idle, TimerStore::NoTimers)?,
                    Some(_) if idle && held() => {
                        reactor.poll_at_most(true, Some(HOLD_WAIT), TimerStore::NoTimers)?
                    }
                    Some(_) => reactor.poll(false, TimerStore::NoTimers)?,
                };
                // `held` before `has_work`: a job releases its hold only after waking its awaiter.
                if let Some(next) = next.filter(|_| idle && !held() && !has_work()) {
                    self.jump_to(next);
                    fire_due(wheel, self.now());
                }
            } else {
                let cap = next.map(|d| d.saturating_duration_since(self.now()));
                reactor.poll_at_most(idle, cap, TimerStore::NoTimers)?;
                fire_due(wheel, self.now());
            }
            Ok(self.now())
        }
    }

    /// Fires the timers of `wheel` due at `now`, waking them outside the borrow; true if any fired.
    fn fire_due(wheel: &RefCell<TimerWheel>, now: Instant) -> bool {
        let mut wakers: Vec<Waker> = Vec::new();
        wheel.borrow_mut().process(now, &mut wakers);
        let fired = !wakers.is_empty();
        for w in wakers {
            w.wake();
        }
        fired
    }

    /// Runs `f` on the current-thread runtime of this thread, or panics naming the fix.
    #[track_caller]
    fn with_own_core<R>(what: &str, f: impl FnOnce(&Core) -> R) -> R {
        with_core(|core| {
            match core {
            Some(core) => f(core),
            None if with_multi(|m| m.is_some()) => panic!(
                "{what} called on a multi-thread runtime: paused time exists only on current-thread \
                 runtimes (as in tokio); use `evloop::block_on`, `Runtime::new()` or \
                 `Builder::new_current_thread()`"
            ),
            None => panic!(
                "{what} called outside an evloop runtime: call it inside `evloop::block_on` (or a \
                 current-thread `Runtime::block_on`), or from a task spawned there"
            ),
        }
        })
    }

    /// Pauses the current runtime's clock: from now on time moves only by [`advance`], or, when every
    /// task is idle and only timers are pending, by jumping straight to the next deadline.
    ///
    /// While paused, every evloop timer follows the virtual clock: `sleep`, `sleep_until`, `interval`,
    /// `timeout`, and the callback API's event and buffer-event timeouts. When no task can run and only
    /// timers are pending, the clock jumps to the earliest deadline, so timers fire in deadline order at
    /// once; the reactor is still polled (without blocking) before each jump, so I/O readiness wakes
    /// tasks as usual. A [`spawn_blocking`](crate::spawn_blocking) job spawned while paused holds the
    /// clock back until it has finished (as in tokio); other work on other threads (a channel fed by a
    /// thread) does not: give such waits no competing timer, or `resume` around them.
    ///
    /// # Flavors
    /// Current-thread runtimes only ([`evloop::block_on`](crate::block_on), [`Runtime::new`](crate::Runtime::new),
    /// `Builder::new_current_thread()`), as in tokio. Under `evloop::block_on` the clock is real again
    /// when the call returns; a `Runtime` of your own stays paused across its `block_on` calls.
    ///
    /// # `max_poll_gap`
    /// [`Runtime::max_poll_gap`](crate::Runtime::max_poll_gap) keeps measuring real time: a jump of the
    /// virtual clock is not a gap, and a paused runtime polls its reactor at least as often as a
    /// running one, so paused time leaves it as it would be.
    ///
    /// # Panics
    /// Panics outside a current-thread runtime, and if the clock is already paused.
    ///
    /// # Examples
    /// ```
    /// use std::time::{Duration, Instant};
    /// evloop::block_on(async {
    ///     evloop::time::pause();
    ///     let wall = Instant::now();
    ///     let start = evloop::time::now();
    ///     evloop::time::sleep(Duration::from_secs(3600)).await;
    ///     assert_eq!(evloop::time::now() - start, Duration::from_secs(3600));
    ///     assert!(wall.elapsed() < Duration::from_secs(60));
    /// });
    /// ```
    #[track_caller]
    pub fn pause() {
        with_own_core("evloop::time::pause", |core| {
            let now = core.clock.pause(core.timers.borrow().origin());
            core.now.set(now);
        })
    }

    /// Lets the paused clock run again at real speed, from the virtual time it stood at.
    ///
    /// # Panics
    /// Panics outside a current-thread runtime, and if the clock is not paused.
    #[track_caller]
    pub fn resume() {
        with_own_core("evloop::time::resume", |core| core.clock.resume())
    }

    /// Moves the paused clock forward by `duration`, fires every timer whose deadline that passes,
    /// and yields once so that the woken tasks run before the caller goes on.
    ///
    /// # Panics
    /// Panics outside a current-thread runtime, and if the clock is not paused.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// evloop::block_on(async {
    ///     evloop::time::pause();
    ///     let start = evloop::time::now();
    ///     evloop::time::advance(Duration::from_millis(1500)).await;
    ///     assert_eq!(evloop::time::now() - start, Duration::from_millis(1500));
    /// });
    /// ```
    pub async fn advance(duration: Duration) {
        with_own_core("evloop::time::advance", |core| {
            if !core.clock.is_paused() {
                panic!("evloop::time::advance: the clock is not paused; call `pause` first");
            }
            let to = crate::time::deadline_after(core.clock.now(), duration);
            core.clock.jump_to(to);
            fire_due(&core.timers, to);
            core.now.set(to);
        });
        crate::task::yield_now().await;
    }
}
