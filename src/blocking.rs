//! [`spawn_blocking`]: a thread pool for blocking work (file I/O, name resolution, heavy computation),
//! so that it never stalls a runtime's thread.
//!
//! The pool is process-wide. It starts a thread when a job arrives and more jobs are queued than threads
//! are idle, up to [`MAX_THREADS`]; a thread idle for [`IDLE_TIMEOUT`] exits.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::executor::{Runnable, TaskMeta};
use crate::task::JoinHandle;

/// The most threads the pool runs at once; further jobs queue.
pub const MAX_THREADS: usize = 512;

/// How long a pool thread waits for a job before it exits.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `f` on the blocking pool and returns a handle to its result.
///
/// The closure starts at once on a pool thread. It cannot be cancelled once running: `abort` on the
/// handle only drops a job that has not started.
///
/// # Examples
/// ```
/// evloop::block_on(async {
///     let sum = evloop::spawn_blocking(|| (1..=100u32).sum::<u32>()).await.unwrap();
///     assert_eq!(sum, 5050);
/// });
/// ```
pub fn spawn_blocking<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // Spawned under paused time, the job holds the runtime's auto-advance until its result is out.
    #[cfg(feature = "test-util")]
    let hold = crate::time::clock::hold_auto_advance();
    let (runnable, task) = async_task::Builder::new()
        .metadata(TaskMeta::Blocking)
        .propagate_panic(true)
        .spawn(
            move |_| async move {
                let out = f();
                #[cfg(feature = "test-util")]
                release_after_run(hold);
                out
            },
            |r| POOL.schedule(r),
        );
    runnable.schedule();
    JoinHandle::new(task.fallible())
}

#[cfg(feature = "test-util")]
thread_local! {
    /// Holds of jobs this pool thread has just run, released once the job's awaiter has been woken:
    /// dropped in the future they would be released before, and the paused runtime could jump its
    /// clock in between.
    static RELEASE: std::cell::RefCell<Vec<crate::time::clock::AutoAdvanceHold>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(feature = "test-util")]
fn release_after_run(hold: Option<crate::time::clock::AutoAdvanceHold>) {
    if let Some(hold) = hold {
        RELEASE.with(|r| r.borrow_mut().push(hold));
    }
}

static POOL: Pool = Pool {
    state: Mutex::new(State {
        queue: VecDeque::new(),
        threads: 0,
        idle: 0,
    }),
    job_ready: Condvar::new(),
};

struct Pool {
    state: Mutex<State>,
    /// Signalled when a job is queued.
    job_ready: Condvar,
}

struct State {
    /// Jobs not yet picked up.
    queue: VecDeque<Runnable>,
    /// Threads alive.
    threads: usize,
    /// Threads waiting for a job.
    idle: usize,
}

impl Pool {
    fn schedule(&'static self, runnable: Runnable) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.queue.push_back(runnable);
        if state.queue.len() > state.idle && state.threads < MAX_THREADS {
            let spawned = std::thread::Builder::new()
                .name("evloop-blocking".into())
                .spawn(move || self.worker());
            // If the OS refuses a thread, the job waits for an existing one (or the next spawn attempt).
            if spawned.is_ok() {
                state.threads += 1;
            }
        }
        drop(state);
        self.job_ready.notify_one();
    }

    fn worker(&'static self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(job) = state.queue.pop_front() {
                drop(state);
                // The job catches its own panic (`propagate_panic`), so it cannot unwind out of here.
                job.run();
                #[cfg(feature = "test-util")]
                RELEASE.with(|r| r.borrow_mut().clear());
                state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            state.idle += 1;
            let (next, timeout) = self
                .job_ready
                .wait_timeout(state, IDLE_TIMEOUT)
                .unwrap_or_else(|e| e.into_inner());
            state = next;
            state.idle -= 1;
            if timeout.timed_out() && state.queue.is_empty() {
                state.threads -= 1;
                return;
            }
        }
    }
}
