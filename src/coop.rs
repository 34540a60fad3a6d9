//! Cooperative budget: a task that always finds its sockets ready must still give the others a turn.
//!
//! Without it, a connection whose peer never stops sending keeps its task inside one poll forever
//! (every read succeeds, every write succeeds), and every other task and timer on the thread starves.
//! Each ready I/O operation spends one unit of the budget; when it runs out, the operation that would
//! have proceeded returns `Pending` once, after waking its own task, so the task goes to the back of
//! the run queue.
//!
//! The budget belongs to one task poll, as tokio's does: evloop's executors [`reset`] it before they
//! poll a task (or the `block_on` future), so a task that does a few operations per poll never meets the
//! limit. Left to run down across polls, as a per-thread count, it made every 64th echo task of a
//! busy thread (two operations per round trip) yield in the middle of its round trip and wait a whole
//! round of the run queue for its reply: at 1,000 connections that doubled the p99 latency. Outside
//! evloop's executors (a future polled by another executor) nothing resets it, and it runs down per
//! thread: the guarantee against starvation holds there too.

use std::cell::Cell;
use std::task::{Context, Poll};

/// Ready I/O operations a thread performs between two forced yields (tokio uses 128 per task poll).
pub(crate) const BUDGET: u32 = 128;

thread_local! {
    /// Operations left before the next forced yield.
    static LEFT: Cell<u32> = const { Cell::new(BUDGET) };
}

/// Gives the task about to be polled a full budget; called by the executors before each poll.
#[inline]
pub(crate) fn reset() {
    LEFT.with(|left| left.set(BUDGET));
}

/// Spends one unit of budget: `Ready` to go on, or `Pending` (with the task already woken to run
/// again later) when the budget ran out.
#[inline]
pub(crate) fn poll_proceed(cx: &mut Context<'_>) -> Poll<()> {
    LEFT.with(|left| match left.get() {
        0 => {
            left.set(BUDGET);
            cx.waker().wake_by_ref();
            Poll::Pending
        }
        n => {
            left.set(n - 1);
            Poll::Ready(())
        }
    })
}
