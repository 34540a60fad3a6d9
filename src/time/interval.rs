//! [`Interval`]: ticks at a fixed period.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::Stream;

use super::deadline_after;
use super::sleep::{sleep_until, Sleep};

/// Ticks every `period`, the first tick at once.
///
/// # Panics
/// Panics if `period` is zero.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// evloop::block_on(async {
///     let mut every = evloop::time::interval(Duration::from_millis(2));
///     every.tick().await; // at once
///     every.tick().await; // 2 ms later
/// });
/// ```
pub fn interval(period: Duration) -> Interval {
    interval_at(super::now(), period)
}

/// Ticks every `period`, the first tick at `start`.
///
/// # Panics
/// Panics if `period` is zero.
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    assert!(
        !period.is_zero(),
        "evloop::time::interval: the period must be non-zero"
    );
    Interval {
        sleep: sleep_until(start),
        period,
        missed: MissedTickBehavior::default(),
    }
}

/// What an [`Interval`] does when ticks were missed because the task was not polled in time: when a
/// tick is taken so late that the next one is already due. An interval polled in time stays aligned to
/// its start whatever the behaviour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MissedTickBehavior {
    /// Fire the missed ticks back to back, as fast as they are polled, until caught up; the schedule
    /// stays aligned to the start (the default, as in tokio).
    #[default]
    Burst,
    /// Fire once now, then every `period` from now: the schedule shifts by the delay.
    Delay,
    /// Fire once now, then at the next multiple of `period` from the start: missed ticks are dropped
    /// and the schedule stays aligned.
    Skip,
}

/// A stream of instants `period` apart; see [`interval`].
///
/// Both `tick().await` and the [`Stream`] impl yield the instant the tick was scheduled for.
#[derive(Debug)]
#[must_use = "an interval does nothing unless you call `tick` or poll it"]
pub struct Interval {
    /// Armed for the next tick.
    sleep: Sleep,
    period: Duration,
    missed: MissedTickBehavior,
}

impl Interval {
    /// Waits for the next tick and returns the instant it was scheduled for.
    pub async fn tick(&mut self) -> Instant {
        std::future::poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next tick.
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        std::task::ready!(Pin::new(&mut self.sleep).poll(cx));
        let scheduled = self.sleep.deadline();
        let on_time = deadline_after(scheduled, self.period);
        let now = super::now();
        // A tick is missed when the one after it is already due; only then does the behaviour matter.
        let next = if now < on_time {
            on_time
        } else {
            match self.missed {
                MissedTickBehavior::Burst => on_time,
                MissedTickBehavior::Delay => deadline_after(now, self.period),
                MissedTickBehavior::Skip => {
                    let behind = now.saturating_duration_since(scheduled).as_nanos();
                    let periods = behind / self.period.as_nanos() + 1;
                    let ahead = self.period.as_nanos().saturating_mul(periods);
                    deadline_after(
                        scheduled,
                        Duration::from_nanos(ahead.min(u64::MAX as u128) as u64),
                    )
                }
            }
        };
        self.sleep.reset(next);
        Poll::Ready(scheduled)
    }

    /// Sets what happens to missed ticks.
    pub fn set_missed_tick_behavior(&mut self, behavior: MissedTickBehavior) {
        self.missed = behavior;
    }

    /// What happens to missed ticks.
    pub fn missed_tick_behavior(&self) -> MissedTickBehavior {
        self.missed
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Restarts the schedule: the next tick is one period from now.
    pub fn reset(&mut self) {
        self.sleep.reset(deadline_after(super::now(), self.period));
    }
}

impl Stream for Interval {
    type Item = Instant;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Instant>> {
        self.poll_tick(cx).map(Some)
    }
}
