//! The multi-thread flavor: worker threads with work stealing, one shared reactor, one shared timer
//! wheel, and a shutdown that returns in bounded time.
//!
//! # Design, and why
//! `N` worker threads each own a run queue; a task runs on one worker at a time and may move between
//! them. The runtime has **one reactor**, polled by whichever worker is idle (the *driver*, at most one,
//! which blocks in `epoll_wait` until an event, the next timer deadline or a notify); busy workers poll
//! it without blocking every [`EVENT_INTERVAL`] polls when no one drives it. One reactor per worker
//! would pin each socket to a worker, and a worker stuck in a long task would then starve its sockets;
//! with one shared reactor any free worker hears every event, which is what issue #6 asks for. The cost
//! is that an I/O wake made by the driver lands on the driver's queue, from which the others steal.
//! A driver whose poll woke a single task runs it itself without waking anyone; a sleeping worker
//! watches for the role left vacant behind a task that runs long, and takes it within 2 ms
//! (`idle.rs`, "Watchers").
//!
//! Timers live in one wheel behind a mutex (`time/driver.rs`), processed by whoever polls the reactor;
//! the driver waits until the wheel's next deadline, and arming an earlier timer notifies it. (The
//! current-thread flavor keeps its lock-free wheel.)
//!
//! # Queues (`worker.rs`)
//! Per worker: a **LIFO slot** (a task woken, or spawned, by the task running on this worker runs next,
//! at most [`MAX_LIFO_RUNS`](super::worker::MAX_LIFO_RUNS) times in a row, so two tasks ping-ponging
//! cannot starve the queue), a **local FIFO** that other workers steal half of when idle
//! (`crossbeam-deque`), and a **pinned queue** for `spawn_local` tasks, which never move (wakes from
//! other threads reach it through the worker's `inbox`). Runtime-wide: the **injector**, for spawns and
//! wakes from threads that are not workers; every [`EVENT_INTERVAL`]th pick looks at it (and at the
//! pinned queue) first, so neither can starve.
//!
//! # Sleeping (`idle.rs`)
//! The protocol that keeps wakeups from being lost, with its orderings, is written at the top of
//! `idle.rs` and modelled in `tests/loom.rs`.
//!
//! # Shutdown
//! [`MultiThread::shutdown`] sets `shutdown` and wakes every worker. A worker sees it between two polls
//! and *stops*: it polls no more tasks. It then cancels the tasks entered in its table (the
//! `spawn_local` ones are thus dropped on their own thread), drops what its queues hold and *exits*.
//! The caller waits until the deadline for the workers to stop, and for a stopped worker to exit for as
//! long as its dropping takes: dropping many tasks on a loaded machine can take longer than any fixed
//! bound, and a runtime that returned meanwhile would leave futures alive behind `drop(runtime)`. It
//! then drops what is left in the injector, in the tables of the exited workers (a task polled by a
//! worker that saw the shutdown late, after the worker whose table holds it had exited) and in the
//! timer wheel. A worker still stuck in a task after the deadline is left to finish it on its own (its
//! thread is detached); so is any blocking-pool thread.
//!
//! # `block_on` and `spawn_local`
//! `block_on` runs its future on the calling thread, parked between polls (std park/unpark); `spawn` in
//! it hands tasks to the workers through the injector. `spawn_local` there panics (as in tokio): the
//! calling thread runs no tasks, so a task pinned to it would never run.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{JoinHandle as ThreadHandle, Thread};
use std::time::{Duration, Instant};

use async_task::{ScheduleInfo, WithInfo};
use crossbeam_deque::{Injector, Steal};
use slab::Slab;

use super::context::{self, with_worker};
use super::idle::Idle;
use super::worker::{Remote, Worker};
use super::{lock, next_runtime_id, EnterWhenIdle, Runnable, TaskMeta, Tracked, EVENT_INTERVAL};
use crate::reactor::Reactor;
use crate::task::JoinHandle;
use crate::time::driver::SharedTimers;

/// How long dropping a multi-thread `Runtime` waits for its workers to stop polling tasks (the dropping
/// of the tasks, once they have stopped, is waited for without a bound).
pub(crate) const DROP_TIMEOUT: Duration = Duration::from_secs(1);

/// The part of a multi-thread runtime that every worker, waker and timer reaches.
pub(crate) struct Shared {
    /// Names the runtime (never reused).
    pub(crate) id: u64,
    /// The one reactor of the runtime (see the module doc for why one).
    pub(crate) reactor: Arc<Reactor>,
    /// The one timer wheel of the runtime, processed by whoever polls the reactor.
    pub(crate) timers: SharedTimers,
    /// Tasks spawned or woken on threads that are not this runtime's workers.
    pub(super) injector: Injector<Runnable>,
    /// What other threads may touch of each worker: its stealer, LIFO slot, inbox and task table.
    pub(super) remotes: Box<[Remote]>,
    /// Who sleeps, who drives the reactor, and how to wake them.
    pub(super) idle: Idle,
    /// Set by `shutdown`: workers cancel their tasks and exit.
    pub(super) shutdown: AtomicBool,
    /// Set once shutdown has drained the queues: a task woken after that is dropped where it is woken
    /// (a pinned one is leaked instead, as it may only be dropped on its worker).
    pub(super) closed: AtomicBool,
    /// How far the workers have got in shutting down, and the condition `shutdown` waits on for them.
    pub(super) stops: (Mutex<Stops>, Condvar),
    /// Tasks whose future is alive. A statistic.
    pub(super) live_tasks: AtomicUsize,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiThread")
            .field("id", &self.id)
            .field("workers", &self.remotes.len())
            .field("tasks", &self.live_tasks.load(Ordering::Relaxed))
            .field("reactor", &self.reactor)
            .finish_non_exhaustive()
    }
}

/// How many workers have got how far in shutting down (see "Shutdown" in the module doc).
#[derive(Debug, Default)]
pub(super) struct Stops {
    /// Workers that have left their run loop: they poll no more tasks, and drop theirs.
    pub(super) stopped: usize,
    /// Workers that have also dropped their tasks and returned (or unwound).
    pub(super) exited: usize,
}

/// A multi-thread runtime, owned by a `Runtime`.
pub(super) struct MultiThread {
    pub(super) shared: Arc<Shared>,
    /// The worker threads; emptied by `shutdown`.
    threads: Vec<ThreadHandle<()>>,
}

impl MultiThread {
    /// Starts `workers` worker threads.
    pub(super) fn new(workers: usize) -> io::Result<MultiThread> {
        assert!(
            workers > 0,
            "a multi-thread runtime needs at least one worker"
        );
        let mut locals = Vec::with_capacity(workers);
        let mut remotes = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (local, remote) = Remote::new();
            locals.push(local);
            remotes.push(remote);
        }
        let now = Instant::now();
        let shared = Arc::new(Shared {
            id: next_runtime_id(),
            reactor: Arc::new(Reactor::new()?),
            timers: SharedTimers::new(now),
            injector: Injector::new(),
            remotes: remotes.into_boxed_slice(),
            idle: Idle::new(workers),
            shutdown: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            stops: (Mutex::new(Stops::default()), Condvar::new()),
            live_tasks: AtomicUsize::new(0),
        });
        let mut rt = MultiThread {
            shared: shared.clone(),
            threads: Vec::with_capacity(workers),
        };
        for (index, local) in locals.into_iter().enumerate() {
            let shared = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("evloop-worker-{index}"))
                .spawn(move || {
                    let worker = Worker::new(index, shared, local);
                    worker.run();
                });
            match spawned {
                Ok(t) => rt.threads.push(t),
                Err(e) => {
                    // The workers already started would wait for work forever: stop them.
                    rt.shutdown(Duration::from_secs(1));
                    return Err(e);
                }
            }
        }
        Ok(rt)
    }

    /// Runs `future` on this thread, parked between polls; tasks it spawns go to the workers.
    pub(super) fn block_on<F: Future>(&self, future: Pin<&mut F>) -> F::Output {
        let _enter = context::EnterMulti::new(&self.shared, None);
        let waker_state = Arc::new(ThreadWaker {
            thread: std::thread::current(),
            woken: AtomicBool::new(false),
        });
        let waker = Waker::from(waker_state.clone());
        let mut cx = Context::from_waker(&waker);
        let mut future = future;
        loop {
            crate::coop::reset();
            if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return out;
            }
            while !waker_state.woken.swap(false, Ordering::Acquire) {
                std::thread::park();
            }
        }
    }

    /// Stops the workers and cancels every task, waiting for the workers at most `timeout`.
    pub(super) fn shutdown(&mut self, timeout: Duration) {
        if self.shared.closed.load(Ordering::Acquire) {
            return;
        }
        // Saturating: `Duration::MAX` means "as long as it takes".
        let deadline = crate::time::deadline_after(Instant::now(), timeout);
        let shared = &*self.shared;
        shared.shutdown.store(true, Ordering::SeqCst);
        shared.idle.notify_all(|| shared.reactor.notify());

        let workers = self.threads.len();
        let (stops, cv) = &shared.stops;
        let mut stops = lock(stops);
        // The deadline bounds only the wait for a worker still inside a task's poll. A stopped worker
        // is dropping its tasks: waited for until it is done, so that every future it holds is dropped
        // when this returns (as tokio's drop does).
        while stops.exited < workers {
            let left = deadline.saturating_duration_since(Instant::now());
            stops = if stops.stopped < workers && !left.is_zero() {
                cv.wait_timeout(stops, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            } else if stops.exited < stops.stopped {
                cv.wait(stops).unwrap_or_else(|e| e.into_inner())
            } else {
                break; // the others are stuck in a task past the deadline
            };
        }
        let all_exited = stops.exited == workers;
        drop(stops);
        let threads = std::mem::take(&mut self.threads);
        if all_exited {
            for t in threads {
                let _ = t.join(); // each has already left `run`: this returns at once
            }
        } // else: dropping the handles detaches the stuck workers

        shared.closed.store(true, Ordering::SeqCst);
        shared.drain_injector();
        for remote in shared.remotes.iter() {
            remote.drain_after_shutdown();
        }
        // Timers hold wakers, which hold tasks.
        shared.timers.clear(Instant::now());
    }

    pub(super) fn task_count(&self) -> usize {
        self.shared.live_tasks.load(Ordering::Relaxed)
    }
}

impl Shared {
    /// Drops every task queued in the injector (they are all `Send`).
    pub(super) fn drain_injector(&self) {
        loop {
            match self.injector.steal() {
                Steal::Success(r) => drop(r),
                Steal::Empty => break,
                Steal::Retry => {}
            }
        }
    }
}

/// Spawns a `Send` task on the multi-thread runtime `shared`.
pub(super) fn spawn<F>(shared: &Arc<Shared>, future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let future = Tracked {
        future,
        guard: TaskGuard::new(shared),
    };
    let (runnable, task) = async_task::Builder::new()
        .metadata(TaskMeta::Multi {
            shared: shared.clone(),
            pinned: None,
        })
        .propagate_panic(true)
        .spawn(move |_| future, WithInfo(schedule));
    runnable.schedule();
    JoinHandle::new(task.fallible())
}

/// Spawns a task pinned to `worker`, the worker running on this thread.
pub(super) fn spawn_local<F>(worker: &Worker, future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let shared = &worker.shared;
    let future = Tracked {
        future,
        guard: TaskGuard::new(shared),
    };
    let (runnable, task) = async_task::Builder::new()
        .metadata(TaskMeta::Multi {
            shared: shared.clone(),
            pinned: Some(worker.index),
        })
        .propagate_panic(true)
        .spawn_local(move |_| future, WithInfo(schedule));
    runnable.schedule();
    JoinHandle::new(task.fallible())
}

/// The schedule function of every multi-thread task: onto the current worker's queues when called on
/// one of the runtime's workers, otherwise onto the injector (or the pinned worker's inbox), waking a
/// sleeping worker.
fn schedule(runnable: Runnable, info: ScheduleInfo) {
    let TaskMeta::Multi { shared, pinned } = runnable.metadata() else {
        unreachable!("a multi-thread task carries its runtime")
    };
    let pinned = *pinned;
    let runnable = with_worker(Arc::as_ptr(shared), |worker| match worker {
        Some(w) => w.schedule(runnable, pinned, info.woken_while_running),
        None => Some(runnable),
    });
    if let Some(runnable) = runnable {
        schedule_remote(runnable, pinned);
    }
}

/// Schedules from a thread that is not the worker the task must (or may) run on.
#[cold]
fn schedule_remote(runnable: Runnable, pinned: Option<usize>) {
    // Hold the runtime by a reference of our own: the task (and with it the metadata) may be run and
    // freed as soon as it is queued.
    let TaskMeta::Multi { shared, .. } = runnable.metadata() else {
        return;
    };
    let shared = shared.clone();
    match pinned {
        Some(i) => {
            if shared.closed.load(Ordering::SeqCst) {
                // Its worker is gone; a local task may not be dropped on another thread.
                std::mem::forget(runnable);
                return;
            }
            shared.remotes[i].push_inbox(runnable);
            shared.idle.notify_worker(i, || shared.reactor.notify());
        }
        None => {
            shared.injector.push(runnable);
            if shared.closed.load(Ordering::SeqCst) {
                // Shutdown drained the injector before this push, or drains it after: either way the
                // task is dropped, by one of us.
                shared.drain_injector();
                return;
            }
            shared.idle.notify_one(None, || shared.reactor.notify());
        }
    }
}

/// The waker of a multi-thread `block_on` future: unparks the calling thread.
struct ThreadWaker {
    thread: Thread,
    /// Set by a wake, consumed by `block_on` before it polls again.
    woken: AtomicBool,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.woken.swap(true, Ordering::Release) {
            self.thread.unpark();
        }
    }
}

/// A task's entry in the task table of the worker that first saw it go idle: its own waker, holding a
/// reference (a detached task that stores no waker anywhere would otherwise be freed by async-task with
/// its future never dropped, and the entry would dangle).
pub(super) struct TaskEntry {
    pub(super) waker: Waker,
}

/// Enters a task in the table of the worker on which it first returns `Pending`, and takes it out when
/// dropped.
struct TaskGuard {
    /// The task's runtime.
    ///
    /// # Invariant
    /// Valid while the guard lives: the task's metadata holds an `Arc<Shared>`, and async-task drops the
    /// metadata only after the future, which owns this guard.
    shared: *const Shared,
    /// `(worker, slot, waker data)` once entered.
    entry: Option<(usize, usize, *const ())>,
}

// SAFETY: `shared` points to a `Sync` value kept alive as its invariant says; the entry is plain data.
unsafe impl Send for TaskGuard {}

impl TaskGuard {
    fn new(shared: &Arc<Shared>) -> TaskGuard {
        shared.live_tasks.fetch_add(1, Ordering::Relaxed);
        TaskGuard {
            shared: Arc::as_ptr(shared),
            entry: None,
        }
    }
}

impl EnterWhenIdle for TaskGuard {
    fn entered(&self) -> bool {
        self.entry.is_some()
    }

    /// `waker` is the task's own waker: tasks are polled only by their runtime's workers.
    fn enter(&mut self, waker: &Waker) {
        with_worker(self.shared, |worker| {
            if let Some(w) = worker {
                let slot = w.remote().enter(TaskEntry {
                    waker: waker.clone(),
                });
                self.entry = Some((w.index, slot, waker.data()));
            }
        });
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        // SAFETY: see the field's invariant.
        let shared = unsafe { &*self.shared };
        if let Some((worker, slot, data)) = self.entry {
            shared.remotes[worker].leave(slot, data);
        }
        shared.live_tasks.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A worker's table of the tasks that first went idle on it.
pub(super) type TaskTable = Mutex<Slab<TaskEntry>>;

/// How many polls between two looks at the injector (and the pinned queue) before the local queues.
pub(super) const GLOBAL_INTERVAL: u32 = EVENT_INTERVAL;
