//! Cooperative budget: a task that always finds its sockets ready must still give the others a turn.
//!
//! Without it, a connection whose peer never stops sending keeps its task inside one poll forever
//! (every read succeeds, every write succeeds), and every other task and timer on the thread starves.
//! Each ready I/O operation spends one unit of this thread's budget; when it runs out, the operation
//! that would have proceeded returns `Pending` once, after waking its own task, so the task goes to the
//! back of the run queue. The budget is per thread rather than per task poll: it needs no reset in the
//! executor, and a task that does little I/O per poll almost never meets the limit.

use std::cell::Cell;
use std::task::{Context, Poll};

/// Ready I/O operations a thread performs between two forced yields (tokio uses 128 per task poll).
pub(crate) const BUDGET: u32 = 128;

thread_local! {
    /// Operations left before the next forced yield.
    static LEFT: Cell<u32> = const { Cell::new(BUDGET) };
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
