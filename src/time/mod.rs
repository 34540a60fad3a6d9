//! Timers: [`sleep`], [`interval`], [`timeout`], on `std::time::{Duration, Instant}`.
//!
//! Timers live in the runtime's reactor, in a hierarchical timing wheel (`wheel.rs`) with 1 µs ticks:
//! arming and cancelling are O(1), and the poller waits until the earliest deadline with sub-millisecond
//! precision, so on an idle runtime a sleep ends a few tens of microseconds after its deadline, never
//! before it.
//!
//! Deadlines are computed from [`now`], the runtime's clock: `Instant::now()`, or, with the `test-util`
//! feature, a virtual clock once `pause()` has been called (see `pause`, and `src/time/clock.rs`).

pub(crate) mod clock;
pub(crate) mod driver;
mod interval;
mod sleep;
mod timeout;
pub(crate) mod wheel;

pub use clock::now;
#[cfg(feature = "test-util")]
pub use clock::{advance, pause, resume};
pub use interval::{interval, interval_at, Interval, MissedTickBehavior};
pub use sleep::{sleep, sleep_until, Sleep};
pub use timeout::{timeout, timeout_at, Elapsed, Timeout};

use std::time::{Duration, Instant};

/// The deadline `d` after `now`, saturating: a duration too long for `Instant` (such as `Duration::MAX`)
/// gives a deadline about 30 years away, which is as good as never.
pub(crate) fn deadline_after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or_else(|| far_future(now))
}

fn far_future(now: Instant) -> Instant {
    const THIRTY_YEARS: Duration = Duration::from_secs(86_400 * 365 * 30);
    now.checked_add(THIRTY_YEARS).unwrap_or(now)
}
