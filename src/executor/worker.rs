//! A worker of the multi-thread runtime: its queues, the order it takes work in, stealing, and what it
//! does when idle or told to shut down. The queue design is described at the top of `multi.rs`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_deque::{Steal, Stealer, Worker as Deque};
use slab::Slab;

use super::context::EnterMulti;
use super::handoff::{Inbox, LifoSlot};
use super::multi::{Shared, TaskEntry, TaskTable, GLOBAL_INTERVAL};
use super::{Runnable, EVENT_INTERVAL};

/// How many tasks in a row a worker may take from its LIFO slot before it goes back to its queue.
pub(crate) const MAX_LIFO_RUNS: u32 = 3;

/// The parts of a worker that other threads reach.
pub(crate) struct Remote {
    /// Steals from the worker's local queue.
    stealer: Stealer<Runnable>,
    /// The LIFO slot. Other workers may steal it, so that a task put there by a worker that then
    /// blocks in a long poll is not stranded.
    lifo: LifoSlot<Runnable>,
    /// Pinned (`spawn_local`) tasks woken from other threads, for the worker to move to its pinned
    /// queue.
    inbox: Inbox<Runnable>,
    /// Tasks that first went idle on this worker, so that shutdown can cancel tasks nobody would wake.
    tasks: TaskTable,
    /// Set by the worker when it leaves its thread's body: it touches its queues and table no more, and
    /// shutdown may empty them.
    exited: AtomicBool,
}

impl Remote {
    /// A new worker's local queue and the parts of it others reach.
    pub(super) fn new() -> (Deque<Runnable>, Remote) {
        let local = Deque::new_fifo();
        let remote = Remote {
            stealer: local.stealer(),
            lifo: LifoSlot::new(),
            inbox: Inbox::new(),
            tasks: std::sync::Mutex::new(Slab::new()),
            exited: AtomicBool::new(false),
        };
        (local, remote)
    }

    /// Puts `r` in the LIFO slot; returns the task it displaced.
    fn put_lifo(&self, r: Runnable) -> Option<Runnable> {
        self.lifo.put(r)
    }

    /// Takes the task in the LIFO slot, if any (from any thread).
    fn take_lifo(&self) -> Option<Runnable> {
        self.lifo.take()
    }

    /// Queues a pinned task woken on another thread.
    pub(super) fn push_inbox(&self, r: Runnable) {
        self.inbox.push(r);
    }

    /// Enters a task in the table; returns its slot.
    pub(super) fn enter(&self, entry: TaskEntry) -> usize {
        super::lock(&self.tasks).insert(entry)
    }

    /// Takes a task's entry out of the table, unless shutdown already did and the slot was reused.
    pub(super) fn leave(&self, slot: usize, data: *const ()) {
        let mut tasks = super::lock(&self.tasks);
        let entry = tasks
            .get(slot)
            .is_some_and(|t| t.waker.data() == data)
            .then(|| tasks.remove(slot));
        drop(tasks);
        drop(entry); // its waker, outside the lock
    }

    /// Whether work this worker could run is queued here (for the last look before sleeping).
    fn has_stealable(&self) -> bool {
        !self.stealer.is_empty() || self.lifo.is_full()
    }

    /// After shutdown, on the caller's thread: drops the LIFO slot's task (always `Send`). Once the
    /// worker has exited, also wakes the tasks still entered in its table, which drops them (the
    /// injector that their wakes now reach is drained by the waker, as `closed` is set), and leaks the
    /// pinned tasks still in the inbox (they may only be dropped on their worker, which is gone). A
    /// worker that has not exited may still come back from a long poll and do it itself.
    ///
    /// A task is left in an exited worker's table when another worker, which had not yet seen the
    /// shutdown, stole it from this one's queue while this one was cancelling, and polled it after
    /// this one had exited.
    pub(super) fn drain_after_shutdown(&self) {
        drop(self.take_lifo());
        if self.exited.load(Ordering::Acquire) {
            for r in self.inbox.take_all() {
                std::mem::forget(r);
            }
            // Taken out before the wakes: dropping a task takes its entry out of this table.
            let stranded = std::mem::take(&mut *super::lock(&self.tasks));
            for (_, entry) in stranded {
                entry.waker.wake();
            }
        }
    }
}

/// A worker thread's own state; lives on its stack for the thread's life.
pub(crate) struct Worker {
    pub(crate) index: usize,
    pub(crate) shared: Arc<Shared>,
    /// The local FIFO queue; other workers steal from its far end.
    local: Deque<Runnable>,
    /// `spawn_local` tasks pinned to this worker, ready to run.
    pinned: RefCell<VecDeque<Runnable>>,
    /// A task is being polled on this worker: a wake or spawn it makes goes to the LIFO slot.
    in_task: Cell<bool>,
    /// This worker is polling the reactor: the tasks the poll wakes are queued without waking anyone;
    /// once the poll is over, a sleeper is woken if there is more than this worker runs next.
    polling: Cell<bool>,
    /// Tasks taken from the LIFO slot in a row.
    lifo_runs: Cell<u32>,
    /// Counts picks, to look at the injector and the pinned queue first every `GLOBAL_INTERVAL`.
    ticks: Cell<u32>,
    /// Xorshift state choosing where stealing starts.
    rng: Cell<u32>,
}

impl Worker {
    pub(super) fn new(index: usize, shared: Arc<Shared>, local: Deque<Runnable>) -> Worker {
        Worker {
            index,
            shared,
            local,
            pinned: RefCell::new(VecDeque::new()),
            in_task: Cell::new(false),
            polling: Cell::new(false),
            lifo_runs: Cell::new(0),
            ticks: Cell::new(0),
            rng: Cell::new(0x9E37_79B9 ^ (index as u32).wrapping_mul(0x85EB_CA6B) | 1),
        }
    }

    pub(super) fn remote(&self) -> &Remote {
        &self.shared.remotes[self.index]
    }

    /// The worker thread's body: runs tasks until shutdown, then cancels its own.
    pub(super) fn run(&self) {
        /// Counts the worker out when it leaves, also by a panic.
        struct Exit<'a> {
            worker: &'a Worker,
            /// The worker has been counted as stopped already.
            stopped: Cell<bool>,
        }
        impl Drop for Exit<'_> {
            fn drop(&mut self) {
                let w = self.worker;
                w.remote().exited.store(true, Ordering::Release);
                w.shared.worker_exited(!self.stopped.get());
            }
        }
        let exit = Exit {
            worker: self,
            stopped: Cell::new(false),
        };
        let _enter = EnterMulti::new(&self.shared, Some(self));
        self.shared.idle.register(self.index);
        let mut polls = 0u32;
        loop {
            if self.shared.shutdown.load(Ordering::Acquire) {
                break;
            }
            match self.next_task() {
                Some(r) => {
                    self.in_task.set(true);
                    crate::coop::reset();
                    r.run();
                    self.in_task.set(false);
                    polls += 1;
                    if polls >= EVENT_INTERVAL {
                        polls = 0;
                        let shared = &*self.shared;
                        shared.idle.poll_if_undriven(
                            self.index,
                            || self.poll_reactor(false, None),
                            || shared.reactor.notify(),
                        );
                    }
                }
                None => {
                    polls = 0;
                    self.sleep();
                }
            }
        }
        self.shared.worker_stopped();
        exit.stopped.set(true);
        self.cancel_own_tasks();
    }

    /// Schedules a task woken (or spawned) on this worker. Returns it if it must go elsewhere (a task
    /// pinned to another worker).
    pub(super) fn schedule(
        &self,
        r: Runnable,
        pinned: Option<usize>,
        woken_while_running: bool,
    ) -> Option<Runnable> {
        match pinned {
            Some(i) if i == self.index => {
                self.pinned.borrow_mut().push_back(r);
                None
            }
            Some(_) => Some(r),
            None if self.in_task.get() && !woken_while_running => {
                // Message-passing locality: the woken task runs next, on this core's warm cache.
                if let Some(old) = self.remote().put_lifo(r) {
                    self.push_local(old);
                }
                None
            }
            // A task that yields (woken while it ran) goes to the back, as do wakes from the reactor.
            None => {
                self.push_local(r);
                None
            }
        }
    }

    fn push_local(&self, r: Runnable) {
        self.local.push(r);
        if self.polling.get() {
            return; // see `polling`
        }
        let shared = &*self.shared;
        shared
            .idle
            .notify_one(Some(self.index), || shared.reactor.notify());
    }

    /// The next task to run, in the order described in `multi.rs`.
    fn next_task(&self) -> Option<Runnable> {
        let tick = self.ticks.get().wrapping_add(1);
        self.ticks.set(tick);
        if tick.is_multiple_of(GLOBAL_INTERVAL) {
            if let Some(r) = self.pop_pinned().or_else(|| self.steal_injector()) {
                return Some(r);
            }
        }
        let remote = self.remote();
        if self.lifo_runs.get() < MAX_LIFO_RUNS {
            if let Some(r) = remote.take_lifo() {
                self.lifo_runs.set(self.lifo_runs.get() + 1);
                return Some(r);
            }
        } else if let Some(r) = remote.take_lifo() {
            self.local.push(r);
        }
        self.lifo_runs.set(0);
        self.local
            .pop()
            .or_else(|| self.pop_pinned())
            .or_else(|| self.steal_injector())
            .or_else(|| self.steal_others())
    }

    fn pop_pinned(&self) -> Option<Runnable> {
        let mut pinned = self.pinned.borrow_mut();
        self.remote().inbox.drain_into(&mut pinned);
        pinned.pop_front()
    }

    fn steal_injector(&self) -> Option<Runnable> {
        loop {
            match self.shared.injector.steal_batch_and_pop(&self.local) {
                Steal::Success(r) => return Some(r),
                Steal::Empty => return None,
                Steal::Retry => {}
            }
        }
    }

    /// Steals half of another worker's queue (or its LIFO slot), starting at a random victim.
    fn steal_others(&self) -> Option<Runnable> {
        let remotes = &self.shared.remotes;
        let n = remotes.len();
        if n == 1 {
            return None;
        }
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng.set(x);
        let start = x as usize % n;
        for k in 0..n {
            let i = (start + k) % n;
            if i == self.index {
                continue;
            }
            loop {
                match remotes[i].stealer.steal_batch_and_pop(&self.local) {
                    Steal::Success(r) => return Some(r),
                    Steal::Empty => break,
                    Steal::Retry => {}
                }
            }
            if let Some(r) = remotes[i].take_lifo() {
                return Some(r);
            }
        }
        None
    }

    /// The last look for work before sleeping (see the protocol in `idle.rs`).
    fn has_work(&self) -> bool {
        let remote = self.remote();
        !self.local.is_empty()
            || !self.pinned.borrow().is_empty()
            || remote.inbox.may_have_items()
            || !self.shared.injector.is_empty()
            || self.shared.remotes.iter().any(Remote::has_stealable)
    }

    /// Nothing to run: drive the reactor if no one does, otherwise park.
    fn sleep(&self) {
        let shared = &*self.shared;
        if shared.idle.try_drive(self.index) {
            // While another worker may be running a task, block for at most `WATCH` at a time and look
            // for work in between (`Idle::block_cap`): a task queued in that worker's LIFO slot woke
            // nobody, and is stranded if the running task blocks.
            while !self.has_work() && !shared.shutdown.load(Ordering::SeqCst) {
                let cap = shared.idle.block_cap();
                self.poll_reactor(true, cap);
                shared.idle.polled();
                if cap.is_none() || !self.local.is_empty() || !self.pinned.borrow().is_empty() {
                    break;
                }
                shared.idle.announce_blocked();
            }
            // The poll may have woken tasks onto this worker (without waking anyone: see `polling`). If
            // there is more than the one it runs next, a sleeper is woken to steal some and to take the
            // driver role that this worker leaves for as long as its next task runs. A lone task is
            // not worth a futex wake and a move to another core: this worker runs it, and polls again
            // when it runs out of work; a watching sleeper takes the role if the task runs long.
            let more = self.has_more();
            shared
                .idle
                .stop_driving(self.index, more, || shared.reactor.notify());
        } else {
            shared.idle.park(
                self.index,
                || self.has_work(),
                || shared.shutdown.load(Ordering::SeqCst),
            );
            shared.idle.woke(|| shared.reactor.notify());
        }
    }

    /// Polls the reactor (blocking or not); returns whether this worker now has more queued than the
    /// one task it runs next, so that a sleeper should be woken to share it.
    fn poll_reactor(&self, block: bool, cap: Option<Duration>) -> bool {
        self.polling.set(true);
        let polled = self
            .shared
            .reactor
            .poll_at_most(block, cap, &self.shared.timers);
        self.polling.set(false);
        if let Err(e) = polled {
            // As in the current-thread loop: only programming errors make the poller fail.
            panic!("evloop: the poller failed: {e}");
        }
        self.has_more()
    }

    /// More is queued on this worker than the one task it runs next: worth waking a sleeper to share.
    fn has_more(&self) -> bool {
        self.local.len() > 1
    }

    /// At shutdown, on this worker's thread: wakes every task in this worker's table so that it lands
    /// in a queue, and drops what the queues hold, which drops the futures (`spawn_local` ones here,
    /// on their own thread). Repeats while destructors wake or spawn more (bounded).
    fn cancel_own_tasks(&self) {
        let remote = self.remote();
        for _ in 0..16 {
            {
                let tasks = super::lock(&remote.tasks);
                for (_, task) in tasks.iter() {
                    task.waker.wake_by_ref();
                }
            }
            let mut dropped = false;
            while let Some(r) = remote
                .take_lifo()
                .or_else(|| self.local.pop())
                .or_else(|| self.pop_pinned())
            {
                dropped = true;
                drop(r);
            }
            if !dropped {
                break;
            }
        }
    }
}

impl Shared {
    /// A worker has left its run loop: it polls no more tasks.
    fn worker_stopped(&self) {
        let (stops, cv) = &self.stops;
        super::lock(stops).stopped += 1;
        cv.notify_all();
    }

    /// A worker has dropped its tasks and leaves its thread's body; `also_stopped` when it leaves
    /// without having been counted as stopped (a panic).
    fn worker_exited(&self, also_stopped: bool) {
        let (stops, cv) = &self.stops;
        let mut stops = super::lock(stops);
        stops.stopped += usize::from(also_stopped);
        stops.exited += 1;
        drop(stops);
        cv.notify_all();
    }
}
