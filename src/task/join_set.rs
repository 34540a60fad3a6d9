//! [`JoinSet`]: a group of tasks, joined in the order they finish.
//!
//! # How a completion is found in O(1)
//! Every task of a set runs inside a [`Member`] wrapper whose last field, a [`Notifier`], is dropped
//! right after the task's future (on completion, panic or cancellation alike). Its destructor pushes
//! the task's slot onto the set's ready queue and wakes the set's waker, which it takes, so a burst of
//! completions wakes the set once. `join_next` pops the queue and polls that one task's join handle;
//! it never scans the set, so joining `n` tasks costs O(n) however many are still running.
//!
//! On a multi-thread runtime the notifier runs just before async-task records the outcome, so the
//! popped handle may still be pending for an instant; such slots are kept in `recheck`, and the handle
//! (polled with the set's waker) wakes the set once the outcome is there.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use slab::Slab;

use super::abort::{AbortFlag, AbortHandle};
use super::{JoinError, JoinHandle};

/// A set of tasks spawned on the current runtime, whose outcomes are taken in completion order.
///
/// Dropping the set aborts every task still in it (as [`abort_all`](Self::abort_all)); their futures
/// are dropped the next time the runtime gets to them. [`shutdown`](Self::shutdown) aborts them and
/// waits until they are all gone. Works on both runtime flavors.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use evloop::task::JoinSet;
///
/// evloop::block_on(async {
///     let mut set = JoinSet::new();
///     for ms in [30u64, 10, 20] {
///         set.spawn(async move {
///             evloop::time::sleep(Duration::from_millis(ms)).await;
///             ms
///         });
///     }
///     let mut order = Vec::new();
///     while let Some(res) = set.join_next().await {
///         order.push(res.unwrap());
///     }
///     assert_eq!(order, [10, 20, 30]);
/// });
/// ```
pub struct JoinSet<T> {
    /// The tasks not yet joined, by slot.
    tasks: Slab<Entry<T>>,
    /// Slots of finished tasks, in the order they finished; filled by the tasks' notifiers.
    ready: Arc<Ready>,
    /// Popped from `ready` while the task's outcome was still being recorded (multi-thread only).
    recheck: Vec<(usize, u64)>,
    /// Numbers spawns, so that a slot reused by a new task is never taken for an old one's.
    next_seq: u64,
}

struct Entry<T> {
    /// Joins the task; its output is `None` when the task ended on an abort.
    handle: JoinHandle<Option<T>>,
    flag: Arc<AbortFlag>,
    seq: u64,
}

/// The ready queue shared by a set and its tasks' notifiers.
#[derive(Default)]
struct Ready(Mutex<ReadyQueue>);

#[derive(Default)]
struct ReadyQueue {
    /// `(slot, seq)` of each finished task.
    done: VecDeque<(usize, u64)>,
    /// The set's waker, from a `join_next` that found nothing; taken by the first push.
    waker: Option<Waker>,
}

impl Ready {
    fn lock(&self) -> MutexGuard<'_, ReadyQueue> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pin_project_lite::pin_project! {
    /// A set's task: the user's future, abortable through `notify.flag`, then the notifier. Fields drop
    /// in order, so the future (and all it owns) is gone before the notifier reports the task done.
    struct Member<F> {
        #[pin]
        future: F,
        notify: Notifier,
    }
}

/// Reports a task's end to its set when dropped.
struct Notifier {
    flag: Arc<AbortFlag>,
    ready: Arc<Ready>,
    slot: usize,
    seq: u64,
    /// The task's waker has been stored in the flag (to be released with the future).
    waiting: bool,
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.flag.set_finished(self.waiting);
        let mut q = self.ready.lock();
        q.done.push_back((self.slot, self.seq));
        let waker = q.waker.take();
        drop(q);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<F: Future> Future for Member<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        let this = self.project();
        if this.notify.flag.is_aborted() {
            return Poll::Ready(None);
        }
        match this.future.poll(cx) {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            Poll::Pending => {
                // Stored once, at the first wait: a task done at its first poll never locks the flag.
                if !this.notify.waiting {
                    this.notify.waiting = true;
                    if this.notify.flag.store_waker(cx.waker()) {
                        return Poll::Ready(None);
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl<T: 'static> JoinSet<T> {
    /// An empty set.
    pub fn new() -> JoinSet<T> {
        JoinSet {
            tasks: Slab::new(),
            ready: Arc::new(Ready::default()),
            recheck: Vec::new(),
            next_seq: 0,
        }
    }

    /// How many tasks are in the set: running, or finished and not yet joined.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// True when the set holds no task.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Spawns a `Send` task on the current runtime (as [`evloop::spawn`](crate::spawn)) into the set.
    ///
    /// # Panics
    /// Panics outside a runtime: call it inside `evloop::block_on`, or from a task.
    pub fn spawn<F>(&mut self, future: F) -> AbortHandle
    where
        F: Future<Output = T> + Send + 'static,
        T: Send,
    {
        self.insert(future, crate::spawn)
    }

    /// Spawns a task that need not be `Send` on the current thread (as
    /// [`evloop::spawn_local`](crate::spawn_local)) into the set.
    ///
    /// # Panics
    /// As [`evloop::spawn_local`](crate::spawn_local).
    pub fn spawn_local<F>(&mut self, future: F) -> AbortHandle
    where
        F: Future<Output = T> + 'static,
    {
        self.insert(future, crate::spawn_local)
    }

    fn insert<F: Future<Output = T>>(
        &mut self,
        future: F,
        spawn: impl FnOnce(Member<F>) -> JoinHandle<Option<T>>,
    ) -> AbortHandle {
        let slot = self.tasks.vacant_key();
        let seq = self.next_seq;
        self.next_seq += 1;
        let flag = Arc::new(AbortFlag::default());
        let member = Member {
            future,
            notify: Notifier {
                flag: flag.clone(),
                ready: self.ready.clone(),
                slot,
                seq,
                waiting: false,
            },
        };
        // If `spawn` panics (no runtime), the dropped member pushes a `seq` no entry has: harmless.
        let handle = spawn(member);
        self.tasks.insert(Entry {
            handle,
            flag: flag.clone(),
            seq,
        });
        AbortHandle::from_flag(flag)
    }

    /// Waits for the next task to finish and gives its outcome: `Ok(output)`, or a [`JoinError`] if it
    /// panicked or was aborted. `None` once the set is empty.
    ///
    /// Cancel safe: dropping the future before it completes loses no outcome.
    pub async fn join_next(&mut self) -> Option<Result<T, JoinError>> {
        std::future::poll_fn(|cx| self.poll_join_next(cx)).await
    }

    /// Polls for the next finished task; see [`join_next`](Self::join_next).
    pub fn poll_join_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, JoinError>>> {
        self.next_done(cx, true)
    }

    /// The outcome of a task that has finished, if any, without waiting.
    pub fn try_join_next(&mut self) -> Option<Result<T, JoinError>> {
        let mut cx = Context::from_waker(Waker::noop());
        match self.next_done(&mut cx, false) {
            Poll::Ready(res) => res,
            Poll::Pending => None,
        }
    }

    fn next_done(
        &mut self,
        cx: &mut Context<'_>,
        register: bool,
    ) -> Poll<Option<Result<T, JoinError>>> {
        let mut i = 0;
        while i < self.recheck.len() {
            let (slot, seq) = self.recheck[i];
            match self.poll_entry(slot, seq, cx) {
                Some(Poll::Pending) => i += 1,
                Some(Poll::Ready(res)) => {
                    self.recheck.swap_remove(i);
                    return Poll::Ready(Some(res));
                }
                None => {
                    self.recheck.swap_remove(i);
                }
            }
        }
        loop {
            let mut q = self.ready.lock();
            let Some((slot, seq)) = q.done.pop_front() else {
                if self.tasks.is_empty() {
                    return Poll::Ready(None);
                }
                if register && !q.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    q.waker = Some(cx.waker().clone());
                }
                return Poll::Pending;
            };
            drop(q);
            match self.poll_entry(slot, seq, cx) {
                Some(Poll::Ready(res)) => return Poll::Ready(Some(res)),
                Some(Poll::Pending) => self.recheck.push((slot, seq)),
                None => {} // a task that never made it into the set
            }
        }
    }

    /// Polls the join handle in `slot` if it is task `seq`'s; removes the entry once it is ready.
    fn poll_entry(
        &mut self,
        slot: usize,
        seq: u64,
        cx: &mut Context<'_>,
    ) -> Option<Poll<Result<T, JoinError>>> {
        let entry = self.tasks.get_mut(slot).filter(|e| e.seq == seq)?;
        let res = match Pin::new(&mut entry.handle).poll(cx) {
            Poll::Pending => return Some(Poll::Pending),
            Poll::Ready(res) => res,
        };
        self.tasks.remove(slot);
        Some(Poll::Ready(match res {
            Ok(Some(out)) => Ok(out),
            Ok(None) => Err(JoinError::cancelled()),
            Err(e) => Err(e),
        }))
    }

    /// Aborts every task in the set. They stay in it: `join_next` reports each as cancelled (or with
    /// its output, if it finished first).
    pub fn abort_all(&mut self) {
        for (_, entry) in &self.tasks {
            entry.flag.abort();
        }
    }

    /// Removes every task from the set without aborting them: they run on, detached.
    pub fn detach_all(&mut self) {
        self.tasks.clear();
        self.recheck.clear();
        // The detached tasks report to the old queue, which nobody reads any more.
        self.ready = Arc::new(Ready::default());
    }

    /// Aborts every task and waits until all of them are gone (their futures dropped), discarding
    /// their outcomes.
    pub async fn shutdown(&mut self) {
        self.abort_all();
        while self.join_next().await.is_some() {}
    }
}

impl<T: 'static> Default for JoinSet<T> {
    fn default() -> JoinSet<T> {
        JoinSet::new()
    }
}

impl<T> Drop for JoinSet<T> {
    fn drop(&mut self) {
        for (_, entry) in &self.tasks {
            entry.flag.abort();
        }
    }
}

impl<T> fmt::Debug for JoinSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinSet")
            .field("len", &self.tasks.len())
            .finish()
    }
}
