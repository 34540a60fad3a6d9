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

pub(crate) mod context;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::mem::ManuallyDrop;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Wake, Waker};
use std::time::Instant;

use slab::Slab;

use crate::reactor::Reactor;
use crate::task::JoinHandle;
use crate::time::wheel::{TimerKey, TimerWheel};

pub(crate) use context::{current_reactor, reactor_or_err};

/// What every task carries in its header: the runtime that schedules it (`None` for blocking-pool jobs).
/// Keeping it there rather than in the schedule closure makes that closure zero-sized, which spares
/// async-task a reference-count round trip on every wake.
pub(crate) type TaskMeta = Option<Arc<Shared>>;

/// A task ready to be polled.
pub(crate) type Runnable = async_task::Runnable<TaskMeta>;

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
    pub(crate) shared: Arc<Shared>,
    /// The runtime's timers. Owned by its thread, so arming and cancelling take no lock; a timer dropped
    /// on another thread is cancelled through `Shared::remote_cancels`.
    pub(crate) timers: RefCell<TimerWheel>,
    /// The time read by the last reactor poll: a deadline at or before it has certainly passed.
    pub(crate) now: Cell<Instant>,
    /// Tasks ready to run, in wake order.
    queue: RefCell<VecDeque<Runnable>>,
    /// Every live task that has been polled, so that dropping the runtime can cancel tasks nobody else
    /// would wake. (A task not yet polled sits in a queue, where dropping the runtime finds it.)
    tasks: RefCell<Slab<TaskEntry>>,
    /// Numbers tasks, so that a task table slot reused by a new task is never freed by an old one.
    next_task_id: Cell<u64>,
    /// Tasks whose future is alive, polled or not.
    live_tasks: Cell<usize>,
    /// The waker of the future passed to `block_on`, made once.
    main_waker: Waker,
    /// The `block_on` future was woken from this thread (no atomics needed for that case).
    main_woken_here: Cell<bool>,
}

/// The part of a runtime that wakers on any thread reach.
pub(crate) struct Shared {
    /// Names the runtime (never reused), so that a timer can tell whether it runs on its own runtime.
    pub(crate) id: u64,
    /// The runtime's reactor (I/O readiness).
    pub(crate) reactor: Arc<Reactor>,
    /// Timers dropped (`None`) or moved (`Some(deadline)`) on other threads, to be applied to the wheel
    /// by the runtime's thread.
    remote_timer_ops: Mutex<Vec<(TimerKey, Option<Instant>)>>,
    /// Set whenever `remote_timer_ops` may be non-empty.
    has_remote_timer_ops: AtomicBool,
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
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            id,
            reactor: Arc::new(Reactor::new()?),
            remote_timer_ops: Mutex::new(Vec::new()),
            has_remote_timer_ops: AtomicBool::new(false),
            injector: Mutex::new(VecDeque::new()),
            injected: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            main_woken: AtomicBool::new(false),
        });
        let main_waker = Waker::from(Arc::new(MainWaker(shared.clone())));
        lock(&LIVE).insert(id, Arc::downgrade(&shared));
        let now = Instant::now();
        Ok(Runtime {
            core: Box::new(Core {
                shared,
                timers: RefCell::new(TimerWheel::new(now)),
                now: Cell::new(now),
                queue: RefCell::new(VecDeque::with_capacity(256)),
                tasks: RefCell::new(Slab::new()),
                next_task_id: Cell::new(0),
                live_tasks: Cell::new(0),
                main_waker,
                main_woken_here: Cell::new(false),
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

    /// How many tasks are alive (scheduled or waiting). A statistic, for tests and monitoring.
    pub fn task_count(&self) -> usize {
        self.core.live_tasks.get()
    }

    /// How many timers are armed. A statistic, for tests and monitoring.
    pub fn timer_count(&self) -> usize {
        self.core.apply_remote_timer_ops();
        self.core.timers.borrow().len()
    }

    /// How many file descriptors are registered with the reactor. A statistic, for tests and monitoring.
    pub fn source_count(&self) -> usize {
        self.core.shared.reactor.source_count()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.cancel_all();
        lock(&LIVE).remove(&self.core.shared.id);
    }
}

/// Every live runtime by id, for the rare timer dropped away from its runtime's thread.
static LIVE: Mutex<BTreeMap<u64, Weak<Shared>>> = Mutex::new(BTreeMap::new());

/// Cancels (`deadline: None`) or moves a timer of runtime `id` from a thread that is not running it.
/// Returns false if that runtime is gone. A move wakes the runtime, which may be asleep with a
/// deadline computed before it.
pub(crate) fn change_timer_remotely(id: u64, key: TimerKey, deadline: Option<Instant>) -> bool {
    let shared = lock(&LIVE).get(&id).and_then(Weak::upgrade);
    let Some(shared) = shared else {
        return false;
    };
    lock(&shared.remote_timer_ops).push((key, deadline));
    shared.has_remote_timer_ops.store(true, Ordering::Release);
    if deadline.is_some() {
        shared.reactor.notify();
    }
    true
}

/// Locks a mutex, ignoring poison: no user code runs under the executor's locks.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
        let mut cx = Context::from_waker(&self.main_waker);
        self.main_woken_here.set(true);
        // Polls since the reactor was last polled.
        let mut polls: u32 = 0;
        loop {
            if self.take_main_wake() {
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
                if self.main_woken() {
                    break;
                }
            }

            if polls >= EVENT_INTERVAL {
                polls = 0;
                self.poll_reactor(false);
                self.drain_injector();
            } else if !self.main_woken() && self.queue.borrow().is_empty() {
                polls = 0;
                self.park();
            }
        }
    }

    /// Whether the `block_on` future has been woken, from here or elsewhere.
    fn main_woken(&self) -> bool {
        self.main_woken_here.get() || self.shared.main_woken.load(Ordering::Relaxed)
    }

    /// Consumes a pending wake of the `block_on` future.
    fn take_main_wake(&self) -> bool {
        let here = self.main_woken_here.replace(false);
        let elsewhere =
            self.shared.main_woken.load(Ordering::Relaxed) && self.shared.main_woken.swap(false, Ordering::Acquire);
        here || elsewhere
    }

    /// Blocks in the poller until an event, a due timer, or a wake from another thread.
    fn park(&self) {
        let shared = &*self.shared;
        // SeqCst pairs with the loads in `Shared::wake_from_elsewhere`: either the waker sees `sleeping`
        // and notifies, or this thread sees its work below and does not block.
        shared.sleeping.store(true, Ordering::SeqCst);
        let must_run = self.main_woken_here.get()
            || shared.main_woken.load(Ordering::SeqCst)
            || shared.injected.load(Ordering::SeqCst);
        self.poll_reactor(!must_run);
        shared.sleeping.store(false, Ordering::SeqCst);
        self.drain_injector();
    }

    fn poll_reactor(&self, block: bool) {
        self.apply_remote_timer_ops();
        match self.shared.reactor.poll(block, &self.timers) {
            Ok(now) => self.now.set(now),
            // The poller fails only on programming errors (EBADF, EFAULT, EINVAL); there is no one to
            // report to, and spinning on it would burn the CPU.
            Err(e) => panic!("evloop: the poller failed: {e}"),
        }
    }

    /// Applies what other threads did to this runtime's timers.
    fn apply_remote_timer_ops(&self) {
        if self.shared.has_remote_timer_ops.swap(false, Ordering::Acquire) {
            let ops = std::mem::take(&mut *lock(&self.shared.remote_timer_ops));
            let mut timers = self.timers.borrow_mut();
            for (key, deadline) in ops {
                match deadline {
                    None => timers.remove(key),
                    Some(deadline) => timers.reset(key, deadline),
                };
            }
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
            let mut injector = lock(&shared.injector);
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
        let future = Tracked {
            future,
            guard: self.new_guard(),
        };
        let (runnable, task) = async_task::Builder::new()
            .metadata(Some(self.shared.clone()))
            .propagate_panic(true)
            .spawn(move |_| future, schedule);
        runnable.schedule();
        JoinHandle::new(task.fallible())
    }

    /// Spawns a task that is not `Send`; it always runs on this runtime's thread.
    pub(crate) fn spawn_local<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let future = Tracked {
            future,
            guard: self.new_guard(),
        };
        let (runnable, task) = async_task::Builder::new()
            .metadata(Some(self.shared.clone()))
            .propagate_panic(true)
            .spawn_local(move |_| future, schedule);
        runnable.schedule();
        JoinHandle::new(task.fallible())
    }

    /// Makes the guard that will enter a new task in the task table.
    fn new_guard(&self) -> TaskGuard {
        let id = self.next_task_id.get();
        self.next_task_id.set(id + 1);
        self.live_tasks.set(self.live_tasks.get() + 1);
        TaskGuard {
            shared: Arc::as_ptr(&self.shared) as usize,
            slot: None,
            id,
        }
    }

    /// Drops every task: wakes each so that its `Runnable` lands in a queue, then drops the queued
    /// `Runnable`s, which drops their futures. Repeats while destructors spawn new tasks (bounded).
    fn cancel_all(&self) {
        for _ in 0..16 {
            let tasks: Vec<TaskEntry> = self.tasks.borrow_mut().drain().collect();
            if tasks.is_empty() && self.queue.borrow().is_empty() && !self.shared.injected.load(Ordering::Acquire) {
                return;
            }
            for task in &tasks {
                // SAFETY: an entry leaves the table when its task's future is dropped (`TaskGuard`), and
                // the future lives inside the task's allocation, so every entry still in the table (the
                // ones just drained, whose futures are alive) names a live task. `wake_by_ref` on an
                // async-task waker takes no reference count, and the `ManuallyDrop` gives none back.
                let waker = ManuallyDrop::new(unsafe { Waker::from_raw(RawWaker::new(task.data, task.vtable)) });
                waker.wake_by_ref();
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

/// The schedule function of every runtime task: onto the core's queue when called on the runtime's own
/// thread, otherwise onto the shared queue, waking the runtime if it sleeps.
fn schedule(runnable: Runnable) {
    let owner = runnable.metadata().as_ref().map_or(std::ptr::null(), Arc::as_ptr);
    let runnable = context::with_core(|core| match core {
        Some(core) if std::ptr::eq(Arc::as_ptr(&core.shared), owner) => {
            core.queue.borrow_mut().push_back(runnable);
            None
        }
        _ => Some(runnable),
    });
    if let Some(runnable) = runnable {
        // Off the runtime's thread: hold the runtime by a reference of our own, since the task (and
        // with it the metadata) may be run and freed as soon as it is queued.
        let Some(shared) = runnable.metadata().clone() else {
            return;
        };
        let mut injector = lock(&shared.injector);
        injector.push_back(runnable);
        shared.injected.store(true, Ordering::SeqCst);
        drop(injector);
        shared.wake_from_elsewhere();
    }
}

impl Shared {
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
        let here = context::with_core(|core| match core {
            Some(core) if std::ptr::eq(Arc::as_ptr(&core.shared), shared) => {
                core.main_woken_here.set(true);
                true
            }
            _ => false,
        });
        if !here {
            shared.main_woken.store(true, Ordering::SeqCst);
            shared.wake_from_elsewhere();
        }
    }
}

pin_project_lite::pin_project! {
    /// A task's future plus the guard that keeps it in the task table while the future is alive. The
    /// future is declared first, so it is dropped before the guard runs.
    struct Tracked<F> {
        #[pin]
        future: F,
        guard: TaskGuard,
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if this.guard.slot.is_none() {
            this.guard.enter(cx.waker());
        }
        this.future.poll(cx)
    }
}

/// A task's entry in its runtime's task table: the parts of its own waker, borrowed without a
/// reference count (the entry lives exactly as long as the task's future).
struct TaskEntry {
    /// Matches the `TaskGuard::id` of the task that owns the entry.
    id: u64,
    data: *const (),
    vtable: &'static RawWakerVTable,
}

/// Enters a task in its runtime's task table at its first poll, and takes it out when dropped.
struct TaskGuard {
    /// Address of the runtime's `Shared`, used only to recognise it (never dereferenced).
    shared: usize,
    /// The task's slot in the table, once entered.
    slot: Option<usize>,
    id: u64,
}

impl TaskGuard {
    /// `waker` is the task's own waker: tasks are polled only by their runtime, on its thread.
    fn enter(&mut self, waker: &Waker) {
        context::with_core(|core| {
            if let Some(core) = core.filter(|c| Arc::as_ptr(&c.shared) as usize == self.shared) {
                let entry = TaskEntry {
                    id: self.id,
                    data: waker.data(),
                    vtable: waker.vtable(),
                };
                self.slot = Some(core.tasks.borrow_mut().insert(entry));
            }
        });
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        context::with_core(|core| {
            // Futures are dropped on their runtime's thread; elsewhere (only after the runtime is gone)
            // there is no table left to update.
            if let Some(core) = core.filter(|c| Arc::as_ptr(&c.shared) as usize == self.shared) {
                core.live_tasks.set(core.live_tasks.get() - 1);
                if let Some(slot) = self.slot {
                    let mut tasks = core.tasks.borrow_mut();
                    if tasks.get(slot).is_some_and(|t| t.id == self.id) {
                        tasks.remove(slot);
                    }
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
        // Leftover tasks go when the call ends, also when the future panics.
        struct CancelLeftovers<'a>(&'a Runtime);
        impl Drop for CancelLeftovers<'_> {
            fn drop(&mut self) {
                if self.0.task_count() > 0 {
                    self.0.cancel_all();
                }
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
