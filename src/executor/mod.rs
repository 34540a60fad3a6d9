//! The single-threaded executor: `block_on`, `spawn`, `spawn_local`, and the loop that runs tasks and
//! polls the reactor.
//!
//! A runtime is a `Core` (this thread's run queue and task table, not `Send`) plus a `Shared` part that
//! wakers on any thread can reach (the reactor, a queue for tasks woken elsewhere, and the flags that say
//! whether the loop is asleep in the poller). Tasks are `async_task` tasks; their schedule function pushes
//! onto the core's queue when it runs on the runtime's thread and onto the shared queue otherwise, and
//! only in that second case may it have to wake the poller.
//!
//! # Fairness
//! The loop polls the reactor (without blocking) at least once every [`EVENT_INTERVAL`] polls of tasks
//! or of the main future, so a set of tasks that are always ready cannot starve sockets and timers.

mod context;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use async_task::Runnable;
use slab::Slab;

use crate::reactor::Reactor;
use crate::task::JoinHandle;

pub(crate) use context::{current_reactor, reactor_or_err};

/// How many polls of tasks (and of the main future) may run between two polls of the reactor.
pub const EVENT_INTERVAL: u32 = 61;

/// A single-threaded runtime: a reactor, timers and a task queue, all driven by [`Runtime::block_on`].
///
/// [`evloop::block_on`](crate::block_on) uses one such runtime per thread, created on first use; make
/// your own when you need to keep tasks alive between `block_on` calls or to drop them at a chosen time.
///
/// A `Runtime` is not `Send`: it owns tasks made by [`spawn_local`](crate::spawn_local).
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<evloop::Runtime>();
/// ```
///
/// # Examples
/// ```
/// let rt = evloop::Runtime::new()?;
/// let answer = rt.block_on(async {
///     let task = evloop::spawn(async { 6 * 7 });
///     task.await.unwrap()
/// });
/// assert_eq!(answer, 42);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Runtime {
    /// Boxed so that its address, which the thread-local context points at, never moves.
    core: Box<Core>,
    /// Not `Send`: `spawn_local` tasks must stay on the thread that made them.
    _not_send: std::marker::PhantomData<*const ()>,
}

/// The part of a runtime that only its own thread touches.
pub(crate) struct Core {
    /// The part other threads reach through wakers.
    shared: Arc<Shared>,
    /// Tasks ready to run, in wake order.
    queue: RefCell<VecDeque<Runnable>>,
    /// Every live task's waker, so that dropping the runtime can cancel tasks nobody else would wake.
    tasks: RefCell<Slab<(u64, Waker)>>,
    /// Numbers tasks, so that a task table slot reused by a new task is never freed by an old one.
    next_task_id: Cell<u64>,
    /// The waker of the future passed to `block_on`, made once.
    main_waker: Waker,
}

/// The part of a runtime that wakers on any thread reach.
pub(crate) struct Shared {
    /// The runtime's reactor (I/O readiness and timers).
    reactor: Arc<Reactor>,
    /// Tasks woken from other threads; drained into the core's queue by the runtime's thread.
    injector: Mutex<VecDeque<Runnable>>,
    /// Set whenever `injector` may be non-empty, so the loop checks it without taking the lock.
    injected: AtomicBool,
    /// The loop is blocked in the poller (or about to be): a wake from another thread must notify it.
    sleeping: AtomicBool,
    /// The `block_on` future was woken and must be polled again.
    main_woken: AtomicBool,
}

impl Runtime {
    /// Creates a runtime: an epoll (kqueue) instance, its notifier, and empty queues.
    ///
    /// # Errors
    /// Fails when the OS refuses the poller, e.g. when the process is out of file descriptors (EMFILE).
    pub fn new() -> io::Result<Runtime> {
        let shared = Arc::new(Shared {
            reactor: Arc::new(Reactor::new()?),
            injector: Mutex::new(VecDeque::new()),
            injected: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            main_woken: AtomicBool::new(false),
        });
        let main_waker = Waker::from(Arc::new(MainWaker(shared.clone())));
        Ok(Runtime {
            core: Box::new(Core {
                shared,
                queue: RefCell::new(VecDeque::with_capacity(256)),
                tasks: RefCell::new(Slab::new()),
                next_task_id: Cell::new(0),
                main_waker,
            }),
            _not_send: std::marker::PhantomData,
        })
    }

    /// Runs `future` to completion on this thread, together with the tasks it spawns, the reactor and the
    /// timers. Tasks still unfinished when it returns stay in the runtime and go on at the next
    /// `block_on`; they are dropped with the runtime.
    ///
    /// # Panics
    /// Panics when called inside another `block_on` on the same thread (blocking a runtime's thread would
    /// stop that runtime): `.await` the future instead, or spawn it.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        if context::in_runtime() {
            panic!(
                "evloop: `block_on` called inside a runtime: this would block the runtime's thread; \
                 `.await` the future instead, or `evloop::spawn` it"
            );
        }
        let core = &*self.core;
        let _enter = context::Enter::new(core);
        core.run(pin!(future))
    }

    /// Spawns a task onto this runtime; it starts at the next `block_on`. See [`spawn`](crate::spawn).
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.core.spawn(future)
    }

    /// Drops every unfinished task (their destructors run here, on this thread).
    pub(crate) fn cancel_all(&self) {
        let _enter = context::Enter::new(&self.core);
        self.core.cancel_all();
    }

    /// How many tasks are alive (scheduled or waiting).
    pub fn task_count(&self) -> usize {
        self.core.tasks.borrow().len()
    }

    #[cfg(test)]
    pub(crate) fn reactor(&self) -> &Arc<Reactor> {
        &self.core.shared.reactor
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.cancel_all();
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("tasks", &self.core.tasks.borrow().len())
            .field("queued", &self.core.queue.borrow().len())
            .field("reactor", &self.core.shared.reactor)
            .finish()
    }
}

impl Core {
    /// The loop of `block_on`.
    fn run<F: Future>(&self, mut future: Pin<&mut F>) -> F::Output {
        let shared = &*self.shared;
        let mut cx = Context::from_waker(&self.main_waker);
        shared.main_woken.store(true, Ordering::Relaxed);
        // Polls since the reactor was last polled.
        let mut polls: u32 = 0;
        loop {
            if shared.main_woken.load(Ordering::Relaxed) && shared.main_woken.swap(false, Ordering::Acquire) {
                if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                    return out;
                }
                polls += 1;
            }

            while polls < EVENT_INTERVAL {
                let Some(runnable) = self.next_task() else {
                    break;
                };
                runnable.run();
                polls += 1;
                if shared.main_woken.load(Ordering::Relaxed) {
                    break;
                }
            }

            if polls >= EVENT_INTERVAL {
                polls = 0;
                self.poll_reactor(false);
                self.drain_injector();
            } else if !shared.main_woken.load(Ordering::Relaxed) && self.queue.borrow().is_empty() {
                polls = 0;
                self.park();
            }
        }
    }

    /// Blocks in the poller until an event, a due timer, or a wake from another thread.
    fn park(&self) {
        let shared = &*self.shared;
        // SeqCst pairs with the loads in `Shared::wake_from_elsewhere`: either the waker sees `sleeping`
        // and notifies, or this thread sees its work below and does not block.
        shared.sleeping.store(true, Ordering::SeqCst);
        let must_run = shared.main_woken.load(Ordering::SeqCst) || shared.injected.load(Ordering::SeqCst);
        self.poll_reactor(!must_run);
        shared.sleeping.store(false, Ordering::SeqCst);
        self.drain_injector();
    }

    fn poll_reactor(&self, block: bool) {
        if let Err(e) = self.shared.reactor.poll(block) {
            // The poller fails only on programming errors (EBADF, EFAULT, EINVAL); there is no one to
            // report to, and spinning on it would burn the CPU.
            panic!("evloop: the poller failed: {e}");
        }
    }

    fn next_task(&self) -> Option<Runnable> {
        if let Some(r) = self.queue.borrow_mut().pop_front() {
            return Some(r);
        }
        self.drain_injector();
        self.queue.borrow_mut().pop_front()
    }

    /// Moves tasks woken from other threads onto the local queue.
    fn drain_injector(&self) {
        let shared = &*self.shared;
        if shared.injected.load(Ordering::Acquire) {
            let mut injector = shared.injector.lock().unwrap_or_else(|e| e.into_inner());
            shared.injected.store(false, Ordering::Relaxed);
            self.queue.borrow_mut().extend(injector.drain(..));
        }
    }

    /// Spawns a `Send` task.
    pub(crate) fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (guard, schedule) = self.prepare();
        let (slot, id) = (guard.slot, guard.id);
        let future = Tracked { future, _guard: guard };
        let (runnable, task) = async_task::Builder::new()
            .propagate_panic(true)
            .spawn(move |_| future, schedule);
        self.finish_spawn(slot, id, runnable, task)
    }

    /// Spawns a task that is not `Send`; it always runs on this runtime's thread.
    pub(crate) fn spawn_local<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let (guard, schedule) = self.prepare();
        let (slot, id) = (guard.slot, guard.id);
        let future = Tracked { future, _guard: guard };
        let (runnable, task) = async_task::Builder::new()
            .propagate_panic(true)
            .spawn_local(move |_| future, schedule);
        self.finish_spawn(slot, id, runnable, task)
    }

    /// Reserves a task-table slot and makes the schedule function.
    fn prepare(&self) -> (TaskGuard, impl Fn(Runnable) + Send + Sync + 'static) {
        let id = self.next_task_id.get();
        self.next_task_id.set(id + 1);
        let slot = self.tasks.borrow().vacant_key();
        let shared = self.shared.clone();
        let schedule = move |runnable: Runnable| shared.schedule(runnable);
        let guard = TaskGuard {
            shared: Arc::as_ptr(&self.shared) as usize,
            slot,
            id,
        };
        (guard, schedule)
    }

    /// Records the task's waker in the slot `prepare` reserved, and queues its first poll.
    fn finish_spawn<T>(
        &self,
        slot: usize,
        id: u64,
        runnable: Runnable,
        task: async_task::Task<T>,
    ) -> JoinHandle<T> {
        let mut tasks = self.tasks.borrow_mut();
        let entry = tasks.vacant_entry();
        debug_assert_eq!(entry.key(), slot, "the task table changed during spawn");
        entry.insert((id, runnable.waker()));
        drop(tasks);
        runnable.schedule();
        JoinHandle::new(task.fallible())
    }

    /// Drops every task: wakes each so that its `Runnable` lands in a queue, then drops the queued
    /// `Runnable`s, which drops their futures. Repeats while destructors spawn new tasks (bounded).
    fn cancel_all(&self) {
        for _ in 0..16 {
            let wakers: Vec<Waker> = self.tasks.borrow_mut().drain().map(|(_, w)| w).collect();
            if wakers.is_empty() && self.queue.borrow().is_empty() && !self.shared.injected.load(Ordering::Acquire) {
                return;
            }
            for w in wakers {
                w.wake();
            }
            loop {
                self.drain_injector();
                let next = self.queue.borrow_mut().pop_front();
                match next {
                    // Dropping a Runnable cancels its task and drops the future.
                    Some(r) => drop(r),
                    None => break,
                }
            }
        }
    }
}

impl Shared {
    /// The schedule function of every task of this runtime.
    fn schedule(&self, runnable: Runnable) {
        let pushed_locally = context::with_core(|core| match core {
            Some(core) if std::ptr::eq(Arc::as_ptr(&core.shared), self) => {
                core.queue.borrow_mut().push_back(runnable);
                None
            }
            _ => Some(runnable),
        });
        if let Some(runnable) = pushed_locally {
            let mut injector = self.injector.lock().unwrap_or_else(|e| e.into_inner());
            injector.push_back(runnable);
            self.injected.store(true, Ordering::SeqCst);
            drop(injector);
            self.wake_from_elsewhere();
        }
    }

    /// After making work visible from another thread: wakes the loop if it sleeps in the poller.
    fn wake_from_elsewhere(&self) {
        if self.sleeping.load(Ordering::SeqCst) && self.sleeping.swap(false, Ordering::SeqCst) {
            self.reactor.notify();
        }
    }
}

/// The waker of the future given to `block_on`.
struct MainWaker(Arc<Shared>);

impl Wake for MainWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let shared = &*self.0;
        shared.main_woken.store(true, Ordering::SeqCst);
        if !context::is_current(shared) {
            shared.wake_from_elsewhere();
        }
    }
}

pin_project_lite::pin_project! {
    /// A task's future plus the guard that takes it out of the task table when it completes or is
    /// dropped. The future is declared first, so it is dropped before the guard runs.
    struct Tracked<F> {
        #[pin]
        future: F,
        _guard: TaskGuard,
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().future.poll(cx)
    }
}

/// Frees a task's slot in its runtime's task table.
struct TaskGuard {
    /// Address of the runtime's `Shared`, used only to recognise it (never dereferenced).
    shared: usize,
    slot: usize,
    id: u64,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        context::with_core(|core| {
            // Futures are dropped on their runtime's thread; elsewhere (only after the runtime is gone)
            // there is no table left to update.
            if let Some(core) = core.filter(|c| Arc::as_ptr(&c.shared) as usize == self.shared) {
                let mut tasks = core.tasks.borrow_mut();
                if tasks.get(self.slot).is_some_and(|(id, _)| *id == self.id) {
                    tasks.remove(self.slot);
                }
            }
        });
    }
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
        let out = rt.block_on(future);
        if rt.task_count() > 0 {
            rt.cancel_all();
        }
        out
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
        None => no_runtime("evloop::spawn"),
    })
}

/// Spawns a task that need not be `Send`; it runs on the current thread.
///
/// # Panics
/// Panics outside a runtime: call it inside `evloop::block_on`, or from a task.
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
        None => no_runtime("evloop::spawn_local"),
    })
}

#[track_caller]
pub(crate) fn no_runtime(what: &str) -> ! {
    panic!(
        "{what} used outside an evloop runtime: call it inside `evloop::block_on(...)` \
         (or `Runtime::block_on`), or from a task spawned there"
    )
}
