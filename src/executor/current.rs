//! The current-thread flavor: one thread runs the tasks, the reactor and a lock-free timer wheel.
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

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use slab::Slab;

use super::{
    context, lock, next_runtime_id, EnterWhenIdle, Runnable, TaskMeta, Tracked, EVENT_INTERVAL,
};
use crate::reactor::Reactor;
use crate::task::JoinHandle;
use crate::time::wheel::{TimerKey, TimerWheel};

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
    /// Every live task that has returned `Pending` at least once, so that dropping the runtime can
    /// cancel tasks nobody else would wake. (A task not yet polled, or not yet idle, sits in a queue or
    /// is running, where dropping the runtime finds it.)
    tasks: RefCell<Slab<TaskEntry>>,
    /// Numbers tasks, so that a task table slot reused by a new task is never freed by an old one.
    next_task_id: Cell<u64>,
    /// Tasks whose future is alive, polled or not.
    live_tasks: Cell<usize>,
    /// The waker of the future passed to `block_on`, made once.
    main_waker: Waker,
    /// The `block_on` future was woken from this thread (no atomics needed for that case).
    main_woken_here: Cell<bool>,
    /// Real until paused; then the loop polls through it (`time/clock.rs`).
    #[cfg(feature = "test-util")]
    pub(crate) clock: crate::time::clock::Clock,
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

impl Core {
    /// Creates a runtime core: an epoll (kqueue) instance, its notifier, and empty queues. Boxed so that
    /// its address, which the thread-local context points at, never moves.
    pub(super) fn new() -> io::Result<Box<Core>> {
        let id = next_runtime_id();
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
        Ok(Box::new(Core {
            shared,
            timers: RefCell::new(TimerWheel::new(now)),
            now: Cell::new(now),
            queue: RefCell::new(VecDeque::with_capacity(256)),
            tasks: RefCell::new(Slab::new()),
            next_task_id: Cell::new(0),
            live_tasks: Cell::new(0),
            main_waker,
            main_woken_here: Cell::new(false),
            #[cfg(feature = "test-util")]
            clock: Default::default(),
        }))
    }

    /// Runs `future` to completion on this thread (see `Runtime::block_on`).
    pub(super) fn block_on<F: Future>(&self, future: Pin<&mut F>) -> F::Output {
        let _enter = context::Enter::new(self);
        self.run(future)
    }

    /// Drops every unfinished task (their destructors run here, on this thread).
    pub(super) fn cancel_all_entered(&self) {
        let _enter = context::Enter::new(self);
        self.cancel_all();
    }

    /// How many tasks are alive (scheduled or waiting).
    pub(super) fn task_count(&self) -> usize {
        self.live_tasks.get()
    }

    /// How many timers are armed.
    pub(super) fn timer_count(&self) -> usize {
        self.apply_remote_timer_ops();
        self.timers.borrow().len()
    }

    /// Unregisters the runtime from the table used by remote timer operations.
    pub(super) fn forget(&self) {
        lock(&LIVE).remove(&self.shared.id);
    }
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentThread")
            .field("tasks", &self.tasks.borrow().len())
            .field("queued", &self.queue.borrow().len())
            .field("reactor", &self.shared.reactor)
            .finish()
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

impl Core {
    /// The loop of `block_on`.
    fn run<F: Future>(&self, mut future: Pin<&mut F>) -> F::Output {
        let mut cx = Context::from_waker(&self.main_waker);
        self.main_woken_here.set(true);
        // Polls since the reactor was last polled.
        let mut polls: u32 = 0;
        loop {
            if self.take_main_wake() {
                crate::coop::reset();
                if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                    return out;
                }
                polls += 1;
            }

            while polls < EVENT_INTERVAL {
                let Some(runnable) = self.next_task() else {
                    break;
                };
                crate::coop::reset();
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

    /// Whether the `block_on` future has been woken, from here or elsewhere. Asked after every task.
    #[inline]
    fn main_woken(&self) -> bool {
        self.main_woken_here.get() || self.shared.main_woken.load(Ordering::Relaxed)
    }

    /// Consumes a pending wake of the `block_on` future.
    fn take_main_wake(&self) -> bool {
        let here = self.main_woken_here.replace(false);
        let elsewhere = self.shared.main_woken.load(Ordering::Relaxed)
            && self.shared.main_woken.swap(false, Ordering::Acquire);
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
        #[cfg(feature = "test-util")]
        let polled = if self.clock.is_virtual() {
            let has_work = || {
                !self.queue.borrow().is_empty()
                    || self.main_woken()
                    || self.shared.injected.load(Ordering::SeqCst)
            };
            self.clock
                .poll(&self.shared.reactor, &self.timers, block, has_work)
        } else {
            self.shared.reactor.poll(block, &self.timers)
        };
        #[cfg(not(feature = "test-util"))]
        let polled = self.shared.reactor.poll(block, &self.timers);
        match polled {
            Ok(now) => self.now.set(now),
            // The poller fails only on programming errors (EBADF, EFAULT, EINVAL); there is no one to
            // report to, and spinning on it would burn the CPU.
            Err(e) => panic!("evloop: the poller failed: {e}"),
        }
    }

    /// Applies what other threads did to this runtime's timers.
    fn apply_remote_timer_ops(&self) {
        if self
            .shared
            .has_remote_timer_ops
            .swap(false, Ordering::Acquire)
        {
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

    #[inline]
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
            .metadata(TaskMeta::Current(self.shared.clone()))
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
            .metadata(TaskMeta::Current(self.shared.clone()))
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
            if tasks.is_empty()
                && self.queue.borrow().is_empty()
                && !self.shared.injected.load(Ordering::Acquire)
            {
                return;
            }
            for task in &tasks {
                task.waker.wake_by_ref();
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
#[inline]
fn schedule(runnable: Runnable) {
    let owner = match runnable.metadata() {
        TaskMeta::Current(shared) => Arc::as_ptr(shared),
        _ => std::ptr::null(),
    };
    let runnable = context::with_core(|core| match core {
        Some(core) if std::ptr::eq(Arc::as_ptr(&core.shared), owner) => {
            core.queue.borrow_mut().push_back(runnable);
            None
        }
        _ => Some(runnable),
    });
    if let Some(runnable) = runnable {
        schedule_from_elsewhere(runnable);
    }
}

/// `schedule` off the runtime's thread, out of line: the common case above then saves no registers
/// for it.
#[cold]
#[inline(never)]
fn schedule_from_elsewhere(runnable: Runnable) {
    // Hold the runtime by a reference of our own, since the task (and with it the metadata) may be run
    // and freed as soon as it is queued.
    let TaskMeta::Current(shared) = runnable.metadata() else {
        return;
    };
    let shared = shared.clone();
    let mut injector = lock(&shared.injector);
    injector.push_back(runnable);
    shared.injected.store(true, Ordering::SeqCst);
    drop(injector);
    shared.wake_from_elsewhere();
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

/// A task's entry in its runtime's task table.
struct TaskEntry {
    /// Matches the `TaskGuard::id` of the task that owns the entry.
    id: u64,
    /// The task's own waker, holding a reference: a detached task that stores no waker anywhere (say,
    /// one awaiting `pending()`) would otherwise be freed by async-task with its future never dropped,
    /// and the entry would dangle.
    waker: Waker,
}

/// Enters a task in its runtime's task table at its first poll, and takes it out when dropped.
struct TaskGuard {
    /// Address of the runtime's `Shared`, used only to recognise it (never dereferenced).
    shared: usize,
    /// The task's slot in the table, once entered.
    slot: Option<usize>,
    id: u64,
}

impl EnterWhenIdle for TaskGuard {
    fn entered(&self) -> bool {
        self.slot.is_some()
    }

    /// `waker` is the task's own waker: tasks are polled only by their runtime, on its thread.
    fn enter(&mut self, waker: &Waker) {
        context::with_core(|core| {
            if let Some(core) = core.filter(|c| Arc::as_ptr(&c.shared) as usize == self.shared) {
                let entry = TaskEntry {
                    id: self.id,
                    waker: waker.clone(),
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
                    let entry = tasks
                        .get(slot)
                        .is_some_and(|t| t.id == self.id)
                        .then(|| tasks.remove(slot));
                    drop(tasks);
                    drop(entry); // its waker, outside the borrow
                }
            }
        });
    }
}
