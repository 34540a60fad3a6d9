//! The executor: `block_on`, `spawn`, `spawn_local`, and the two runtime flavors that run tasks.
//!
//! # Flavors
//! - **Current thread** (`current.rs`): [`Runtime::new`] and [`evloop::block_on`](crate::block_on). One
//!   thread runs the `block_on` future, every task, the reactor and a timer wheel that it owns without a
//!   lock. The fastest flavor for one core, and the one every `Runtime::new` user gets.
//! - **Multi-thread** (`multi.rs`, `worker.rs`, `idle.rs`): [`Runtime::builder`]. `N` worker threads
//!   with work stealing share one reactor and one timer wheel; `block_on` runs its future on the calling
//!   thread and `spawn` hands tasks to the workers. The design and why are at the top of `multi.rs`.
//!
//! Both flavors keep the same per-thread context (`context.rs`), so `spawn`, the timers and the I/O
//! constructors find "the current runtime" the same way. Tasks carry their runtime in async-task's
//! metadata ([`TaskMeta`]), so schedule functions are zero-sized.
//!
//! # Fairness
//! Each loop polls the reactor (without blocking) at least once every [`EVENT_INTERVAL`] polls of tasks,
//! so a set of tasks that are always ready cannot starve sockets and timers.

pub(crate) mod context;
mod current;
mod handoff;
mod idle;
#[cfg(loom)]
#[doc(hidden)]
#[allow(missing_docs, missing_debug_implementations)]
pub mod loom_api;
mod multi;
mod runtime;
pub(crate) mod sync;
mod worker;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::task::JoinHandle;

pub(crate) use context::{current_reactor, reactor_or_err};
pub(crate) use current::{change_timer_remotely, Core};
pub(crate) use multi::Shared as MultiShared;
pub use runtime::{Builder, Runtime};

/// What every task carries in its header: who schedules it. Keeping it there rather than in the
/// schedule closure makes that closure zero-sized, which spares async-task a reference-count round trip
/// on every wake.
pub(crate) enum TaskMeta {
    /// A blocking-pool job: the pool schedules it, no runtime does.
    Blocking,
    /// A task of a current-thread runtime.
    Current(Arc<current::Shared>),
    /// A task of a multi-thread runtime; `pinned` names the worker of a `spawn_local` task, which runs
    /// only there.
    Multi {
        shared: Arc<multi::Shared>,
        pinned: Option<usize>,
    },
}

/// A task ready to be polled.
pub(crate) type Runnable = async_task::Runnable<TaskMeta>;

/// How many polls of tasks (and of the main future) may run between two polls of the reactor.
pub const EVENT_INTERVAL: u32 = 61;

/// Names a new runtime (never reused), so that a timer can tell whether it runs on its own runtime.
fn next_runtime_id() -> u64 {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Locks a mutex, ignoring poison: no user code runs under the executor's locks.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `future` to completion on the current thread's runtime, with the tasks it spawns, the reactor
/// and the timers.
///
/// Each thread has one runtime for this function, made on first use and kept until the thread exits, so
/// calling `block_on` again is cheap. Tasks still unfinished when it returns are dropped, as if the
/// runtime had been made for this call; I/O objects created inside stay usable in later calls on the
/// same thread.
///
/// # Panics
/// Panics when called inside a runtime (from a task or from another `block_on`), and when the runtime
/// cannot be created (no file descriptors left).
///
/// # Examples
/// ```
/// let v = evloop::block_on(async {
///     evloop::time::sleep(std::time::Duration::from_millis(1)).await;
///     1 + 1
/// });
/// assert_eq!(v, 2);
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    thread_local! {
        static DEFAULT: std::cell::OnceCell<Runtime> = const { std::cell::OnceCell::new() };
    }
    DEFAULT.with(|rt| {
        let rt = rt.get_or_init(|| {
            Runtime::new().unwrap_or_else(|e| panic!("evloop: cannot create the runtime: {e}"))
        });
        // Leftover tasks go when the call ends, also when the future panics.
        struct CancelLeftovers<'a>(&'a Runtime);
        impl Drop for CancelLeftovers<'_> {
            fn drop(&mut self) {
                if self.0.task_count() > 0 {
                    self.0.cancel_all();
                }
                // A clock paused in this call does not leak into the next one.
                #[cfg(feature = "test-util")]
                self.0.reset_clock();
            }
        }
        let _cancel = CancelLeftovers(rt);
        rt.block_on(future)
    })
}

/// Spawns a `Send` task on the current runtime and returns its [`JoinHandle`].
///
/// The task starts running once the current task yields. Dropping the handle detaches the task; it runs
/// on.
///
/// # Panics
/// Panics outside a runtime: call it inside `evloop::block_on`, or from a task.
///
/// # Examples
/// ```
/// evloop::block_on(async {
///     let h = evloop::spawn(async { "done" });
///     assert_eq!(h.await.unwrap(), "done");
/// });
/// ```
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    context::with_core(|core| match core {
        Some(core) => core.spawn(future),
        None => context::with_multi(|m| match m {
            Some(m) => multi::spawn(m.shared, future),
            None => no_runtime("evloop::spawn"),
        }),
    })
}

/// Spawns a task that need not be `Send`; it runs on the current thread.
///
/// On a multi-thread runtime, called from a task, the new task is pinned to the worker running that
/// task: it is never stolen, and wakes from other threads are sent back to that worker.
///
/// # Panics
/// Panics outside a runtime: call it inside `evloop::block_on`, or from a task. Panics in the
/// `block_on` future of a multi-thread runtime (as tokio does), whose thread runs no tasks.
///
/// # Examples
/// ```
/// use std::rc::Rc;
/// evloop::block_on(async {
///     let shared = Rc::new(5);
///     let s = shared.clone();
///     let h = evloop::spawn_local(async move { *s + 1 });
///     assert_eq!(h.await.unwrap(), 6);
/// });
/// ```
pub fn spawn_local<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    context::with_core(|core| match core {
        Some(core) => core.spawn_local(future),
        None => context::with_multi(|m| {
            match m {
            Some(m) => match m.worker {
                Some(worker) => multi::spawn_local(worker, future),
                None => panic!(
                    "evloop::spawn_local called in a multi-thread runtime's `block_on`: that thread runs \
                     no tasks; spawn_local from a task (it stays on that task's worker), or use a \
                     current-thread runtime"
                ),
            },
            None => no_runtime("evloop::spawn_local"),
        }
        }),
    })
}

#[track_caller]
pub(crate) fn no_runtime(what: &str) -> ! {
    panic!(
        "{what} used outside an evloop runtime: call it inside `evloop::block_on(...)` \
         (or `Runtime::block_on`), or from a task spawned there"
    )
}

pin_project_lite::pin_project! {
    /// A task's future plus the guard that keeps it in its runtime's task table while the future is
    /// alive (each flavor has its own table and guard). The future is declared first, so it is dropped
    /// before the guard runs.
    struct Tracked<F, G> {
        #[pin]
        future: F,
        guard: G,
    }
}

/// A task-table guard: enters its task in the table once, with the task's own waker.
trait EnterWhenIdle {
    fn entered(&self) -> bool;
    fn enter(&mut self, waker: &std::task::Waker);
}

impl<F: Future, G: EnterWhenIdle> Future for Tracked<F, G> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.project();
        let poll = this.future.poll(cx);
        // Entered when it first goes idle: only then can async-task free a detached task that stored its
        // waker nowhere (before, a `Runnable` holds it, queued or running, and cancelling the runtime
        // finds it there), and a task done at its first poll (most short ones) never touches the table.
        if poll.is_pending() && !this.guard.entered() {
            this.guard.enter(cx.waker());
        }
        poll
    }
}
