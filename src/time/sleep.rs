//! [`Sleep`]: a future that completes at a deadline.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::driver::{self, TimerHandle, Update};

/// Waits until `duration` has passed.
///
/// The timer is armed when the future is first polled and cancelled when it is dropped.
///
/// # Panics
/// Polling it outside a runtime panics (the time has to come from some reactor).
///
/// # Examples
/// ```
/// use std::time::{Duration, Instant};
/// evloop::block_on(async {
///     let start = Instant::now();
///     evloop::time::sleep(Duration::from_millis(5)).await;
///     assert!(start.elapsed() >= Duration::from_millis(5));
/// });
/// ```
pub fn sleep(duration: Duration) -> Sleep {
    let mut sleep = sleep_until(super::deadline_after(super::now(), duration));
    sleep.elapsed = duration.is_zero();
    sleep
}

/// Waits until `deadline`. A deadline in the past completes at the first poll.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        timer: None,
        elapsed: false,
    }
}

/// The future returned by [`sleep`] and [`sleep_until`].
///
/// It is `Unpin`, so it can be polled in place and reused with [`reset`](Sleep::reset).
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Sleep {
    deadline: Instant,
    /// The armed timer; `None` until first polled, and after firing.
    timer: Option<TimerHandle>,
    /// Known to have completed without asking a clock: `sleep(Duration::ZERO)`.
    elapsed: bool,
}

impl Sleep {
    /// The instant at which this sleep completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// True once the deadline has passed.
    pub fn is_elapsed(&self) -> bool {
        super::now() >= self.deadline
    }

    /// Moves the deadline; works before and after the sleep completed, so one `Sleep` can serve many
    /// waits.
    pub fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        self.elapsed = false;
        if let Some(timer) = &self.timer {
            if !driver::reset(timer, deadline) {
                self.timer = None; // it had fired: the next poll arms a new one
            }
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.elapsed {
            return Poll::Ready(());
        }
        if let Some(timer) = &self.timer {
            match driver::update(timer, cx.waker()) {
                Update::Pending => return Poll::Pending,
                // The wheel fires a timer only once its deadline has passed, but the deadline may have
                // been moved later from another thread since (or clamped, beyond the wheel's 8.9
                // years): ask the clock, on this rare path.
                Update::Fired => {
                    self.timer = None;
                    if self.deadline <= super::now() {
                        self.elapsed = true;
                        return Poll::Ready(());
                    }
                }
                Update::Moved => self.timer = None,
            }
        }
        match driver::arm(self.deadline, cx.waker(), "evloop::time::Sleep") {
            Some(timer) => {
                self.timer = Some(timer);
                Poll::Pending
            }
            None => {
                self.elapsed = true;
                Poll::Ready(())
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(timer) = self.timer.take() {
            driver::cancel(timer);
        }
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .field("armed", &self.timer.is_some())
            .finish()
    }
}
