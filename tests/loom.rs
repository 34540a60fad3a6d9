//! Model tests (loom) of the multi-thread runtime's cross-thread paths: waking a parked worker, waking
//! the worker that drives the reactor, pinned tasks through a worker's inbox, and the LIFO slot.
//!
//! Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test --release --test loom
//! ```
//!
//! (Add `CARGO_TARGET_DIR=target/loom` to keep the normal build's cache.) Without `--cfg loom` this file
//! compiles to nothing.
//!
//! These drive the **real code** of `src/executor/idle.rs` (the `Idle` protocol: `park`, `try_drive`,
//! `notify_one`, `notify_worker`, `notify_all`) and `src/executor/handoff.rs` (`LifoSlot`, `Inbox`),
//! exposed through `evloop::loom_api`; under `--cfg loom` their atomics, mutex and `thread::park` are
//! loom's (`src/executor/sync.rs`). What is modelled rather than real: the run queues are a loom atomic
//! counter of queued work (the crossbeam-deque is not loom-aware; its push is at least a release store,
//! modelled here as the weaker relaxed store, so only the protocol's own fences can order it), and the
//! reactor is an eventfd modelled by a loom mutex + condvar (`Poller`). A lost wakeup shows up as a
//! loom deadlock (every thread blocked) or a failed assertion.
//!
//! The watcher's timed park (`idle.rs`, "Watchers") returns at once under loom: a timeout that fires
//! at whatever point loom chooses.
//!
//! Each model was seen to fail when the code is weakened (loom 0.7.3): without the `SeqCst` fence in
//! `Idle::park`, in `Idle::notify_one`, in `Idle::try_drive` or in `Idle::notify_worker`, or without
//! the last look for work in `park`, the models find the interleaving that leaves work queued with
//! every worker asleep (a deadlock); with the inbox flag set before the push, the flag model fails its
//! assertion; with the LIFO slot emptied by load + store instead of a swap, two threads take the same
//! task (a double free). The two watcher models (the vacated driver role, the uncapped driver) deadlock
//! without the fences or the wakes named in their comments.
//!
//! Note: `Idle::unpark` sets the wake token with a `swap`, not a `store`. loom 0.7 gives a plain store
//! that races with an RMW a modification order the real hardware cannot, so that the parked worker's
//! `swap(false)` after `unpark` may still read `false`: a false deadlock (reproduced with nothing but
//! loom: `flag.store(true); t.unpark()` against `loop { if flag.swap(false) { break } park() }`).
#![cfg(loom)]

use loom::sync::atomic::AtomicUsize;
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};

use evloop::loom_api::{Idle, Inbox, LifoSlot};

/// The reactor's eventfd: `notify` makes the current or next `wait` return.
#[derive(Default)]
struct Poller {
    fired: Mutex<bool>,
    cv: Condvar,
}

impl Poller {
    fn notify(&self) {
        *self.fired.lock().unwrap() = true;
        self.cv.notify_one();
    }

    /// `epoll_wait` with a zero timeout: consumes a pending notification (an edge) if there is one.
    fn poll_now(&self) {
        *self.fired.lock().unwrap() = false;
    }

    /// `epoll_wait` with no timeout: returns once notified, consuming the notification.
    fn wait(&self) {
        let mut fired = self.fired.lock().unwrap();
        while !*fired {
            fired = self.cv.wait(fired).unwrap();
        }
        *fired = false;
    }
}

/// One runtime's worth of shared state for a model.
struct Rt {
    idle: Idle,
    poller: Poller,
    /// Queued work any worker may take (the local queues and the injector).
    work: AtomicUsize,
    /// Work taken and "run".
    done: AtomicUsize,
    /// Set (and signalled) when work has run, for a thread that waits for it.
    ran: (Mutex<bool>, Condvar),
    stop: AtomicUsize,
}

impl Rt {
    fn new(workers: usize) -> Arc<Rt> {
        Arc::new(Rt {
            idle: Idle::new(workers),
            poller: Poller::default(),
            work: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            ran: (Mutex::new(false), Condvar::new()),
            stop: AtomicUsize::new(0),
        })
    }

    /// Makes one unit of work visible and wakes someone, as `schedule_remote` does.
    fn push_remote(&self) {
        self.work.fetch_add(1, Relaxed);
        self.idle.notify_one(None, || self.poller.notify());
    }

    fn take_work(&self) -> bool {
        let mut n = self.work.load(Relaxed);
        while n > 0 {
            match self.work.compare_exchange(n, n - 1, Relaxed, Relaxed) {
                Ok(_) => return true,
                Err(m) => n = m,
            }
        }
        false
    }

    fn has_work(&self) -> bool {
        self.work.load(Relaxed) > 0
    }

    fn stopped(&self) -> bool {
        self.stop.load(SeqCst) != 0
    }

    /// The body of `Worker::run` + `Worker::sleep`: run work until `stop`, or until `quota` units are
    /// done when `quota` is set; when idle, drive the reactor if no one does, else park.
    fn worker(&self, i: usize, may_drive: bool, quota: Option<usize>) {
        self.idle.register(i);
        loop {
            if self.stopped() || quota.is_some_and(|q| self.done.load(SeqCst) >= q) {
                return;
            }
            if self.take_work() {
                self.done.fetch_add(1, SeqCst);
                *self.ran.0.lock().unwrap() = true;
                self.ran.1.notify_all();
                continue;
            }
            if may_drive && self.idle.try_drive(i) {
                if !self.has_work() && !self.stopped() {
                    self.poller.wait();
                }
                self.idle
                    .stop_driving(i, self.has_work(), || self.poller.notify());
            } else {
                self.idle.park(i, || self.has_work(), || self.stopped());
            }
        }
    }
}

/// A parked worker and a remote push: the worker is woken or sees the work before it parks.
#[test]
fn remote_push_wakes_a_parked_worker() {
    loom::model(|| {
        let rt = Rt::new(2);
        // Worker 1 holds the driver role (and never returns from its poll in this model), so worker 0
        // parks, and stops watching when it sees the role held.
        assert!(rt.idle.try_drive(1));
        let pusher = {
            let rt = rt.clone();
            thread::spawn(move || rt.push_remote())
        };
        rt.worker(0, false, Some(1));
        pusher.join().unwrap();
        assert_eq!(rt.done.load(SeqCst), 1);
    });
}

/// The only worker drives the reactor: a remote push must notify the poller unless the driver sees the
/// work before it blocks.
#[test]
fn remote_push_wakes_the_driver() {
    loom::model(|| {
        let rt = Rt::new(1);
        let pusher = {
            let rt = rt.clone();
            thread::spawn(move || rt.push_remote())
        };
        rt.worker(0, true, Some(1));
        pusher.join().unwrap();
        assert_eq!(rt.done.load(SeqCst), 1);
    });
}

/// Two workers (one ends up driving, the other parked) and a remote push: the work is run, and then
/// shutdown (`notify_all`) reaches both wherever they sleep.
#[test]
fn two_workers_remote_push_then_shutdown() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(|| {
        let rt = Rt::new(2);
        let workers: Vec<_> = (0..2)
            .map(|i| {
                let rt = rt.clone();
                thread::spawn(move || rt.worker(i, true, None))
            })
            .collect();
        rt.push_remote();
        // Block until some worker has run it: if none ever does, loom reports the deadlock.
        let mut ran = rt.ran.0.lock().unwrap();
        while !*ran {
            ran = rt.ran.1.wait(ran).unwrap();
        }
        drop(ran);
        rt.stop.store(1, SeqCst);
        rt.idle.notify_all(|| rt.poller.notify());
        for w in workers {
            w.join().unwrap();
        }
    });
}

/// A pinned task woken on another thread goes to its worker's inbox and `notify_worker` wakes that
/// worker, whether it is parked (another worker drives) or driving the reactor itself.
#[test]
fn inbox_push_wakes_its_worker() {
    for driving in [false, true] {
        loom::model(move || {
            let idle = Arc::new(Idle::new(2));
            let inbox = Arc::new(Inbox::default());
            let poller = Arc::new(Poller::default());
            if !driving {
                // Worker 1 holds the driver role (and never returns from its poll in this model).
                assert!(idle.try_drive(1));
            }
            let pusher = {
                let (idle, inbox, poller) = (idle.clone(), inbox.clone(), poller.clone());
                thread::spawn(move || {
                    inbox.push(7);
                    idle.notify_worker(0, || poller.notify());
                })
            };
            idle.register(0);
            let got = loop {
                let got = inbox.drain();
                if !got.is_empty() {
                    break got;
                }
                if idle.try_drive(0) {
                    if !inbox.may_have_items() {
                        poller.wait();
                    }
                    idle.stop_driving(0, false, || poller.notify());
                } else {
                    idle.park(0, || inbox.may_have_items(), || false);
                }
            };
            assert_eq!(got, [7]);
            pusher.join().unwrap();
        });
    }
}

/// Pushes racing with drains never leave items behind a clear flag: after the pusher is done, one more
/// flag-guarded drain finds everything not drained yet.
#[test]
fn inbox_flag_is_never_clear_with_items_queued() {
    loom::model(|| {
        let inbox = Arc::new(Inbox::default());
        let pusher = {
            let inbox = inbox.clone();
            thread::spawn(move || {
                inbox.push(1);
                inbox.push(2);
            })
        };
        let mut got = inbox.drain();
        got.extend(inbox.drain());
        pusher.join().unwrap();
        got.extend(inbox.drain());
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    });
}

/// The owner fills its LIFO slot (displacing into its queue) while another worker steals from it:
/// every task is taken exactly once.
#[test]
fn lifo_slot_hands_each_task_to_exactly_one_taker() {
    loom::model(|| {
        let slot = Arc::new(LifoSlot::default());
        let thief = {
            let slot = slot.clone();
            thread::spawn(move || slot.take().into_iter().collect::<Vec<_>>())
        };
        let mut owner = Vec::new();
        owner.extend(slot.put(1));
        owner.extend(slot.put(2));
        owner.extend(slot.take());
        let mut all = thief.join().unwrap();
        all.extend(owner);
        all.extend(slot.take());
        all.sort_unstable();
        assert_eq!(all, [1, 2]);
        assert!(!slot.is_full());
    });
}

/// Worker 0 is busy and polls the reactor between two tasks while worker 1 goes idle and may become the
/// driver; then the runtime shuts down. The busy worker's poll must not consume the notify that the
/// driver needs to leave the poller (before `poll_if_undriven`, the busy worker polled whenever it saw
/// no driver, and this model deadlocked: worker 1 blocked in the poller for good).
#[test]
fn busy_poll_does_not_swallow_the_drivers_wakeup() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(|| {
        let rt = Rt::new(2);
        let busy = {
            let rt = rt.clone();
            thread::spawn(move || {
                rt.idle.register(0);
                // One EVENT_INTERVAL's worth of `Worker::run`, then the shutdown check.
                rt.idle.poll_if_undriven(
                    0,
                    || {
                        rt.poller.poll_now();
                        false
                    },
                    || rt.poller.notify(),
                );
                while !rt.stopped() {
                    thread::yield_now();
                }
            })
        };
        let idle = {
            let rt = rt.clone();
            thread::spawn(move || rt.worker(1, true, None))
        };
        rt.stop.store(1, SeqCst);
        rt.idle.notify_all(|| rt.poller.notify());
        busy.join().unwrap();
        idle.join().unwrap();
    });
}

/// The driver's poll woke a lone task: it leaves the role without waking anyone and runs the task,
/// which here never ends until another worker has taken the driver role (a task stuck for good). The
/// other worker, parked while the role was held, watches: it must take the role, whether it looks at
/// the role before or after it was left, or the driver must wake it. Without the fence in
/// `Idle::vacated`, or without its wake, this model deadlocks. (Without the watcher's fence in `park`
/// it still passes: that side's accesses are all `SeqCst`, which loom already orders.)
#[test]
fn a_lone_task_stuck_after_the_poll_leaves_someone_to_drive() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(|| {
        let idle = Arc::new(Idle::new(2));
        let driven = Arc::new((Mutex::new(false), Condvar::new()));
        assert!(idle.try_drive(0));
        let other = {
            let (idle, driven) = (idle.clone(), driven.clone());
            thread::spawn(move || {
                idle.register(1);
                loop {
                    if idle.try_drive(1) {
                        *driven.0.lock().unwrap() = true;
                        driven.1.notify_all();
                        idle.stop_driving(1, false, || {});
                        return;
                    }
                    idle.park(1, || false, || false);
                }
            })
        };
        idle.register(0);
        // Worker 0's poll returned one task: leave the role, then run the task.
        idle.stop_driving(0, false, || {});
        let mut d = driven.0.lock().unwrap();
        while !*d {
            d = driven.1.wait(d).unwrap();
        }
        drop(d);
        other.join().unwrap();
    });
}

/// The driver blocks without a cap only while every other worker sleeps (`Idle::block_cap`); a worker
/// woken meanwhile must make it poll again, with a cap, or a task that worker leaves in its LIFO slot
/// before blocking would wait for its task to end. Here worker 1 parks and a remote thread wakes it
/// while worker 0 decides how to block: worker 0 either blocks capped or is notified. Without the
/// fence in `Idle::woke` or in `Idle::block_cap`, or without the notify in `woke`, this model deadlocks.
#[test]
fn a_worker_woken_while_the_driver_blocks_uncapped_makes_it_cap() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(|| {
        let idle = Arc::new(Idle::new(2));
        let poller = Arc::new(Poller::default());
        let stop = Arc::new(AtomicUsize::new(0));
        assert!(idle.try_drive(0));
        let sleeper = {
            let (idle, poller, stop) = (idle.clone(), poller.clone(), stop.clone());
            thread::spawn(move || {
                idle.register(1);
                idle.park(1, || false, || stop.load(SeqCst) != 0);
                idle.woke(|| poller.notify());
            })
        };
        let waker = {
            let (idle, poller) = (idle.clone(), poller.clone());
            thread::spawn(move || idle.notify_one(None, || poller.notify()))
        };
        idle.register(0);
        if idle.block_uncapped() {
            poller.wait();
        }
        idle.polled();
        waker.join().unwrap();
        stop.store(1, SeqCst);
        idle.notify_all(|| poller.notify());
        sleeper.join().unwrap();
    });
}

/// A worker counts itself as a sleeper under the same lock that lists it: a waker that takes it off
/// the list (here `notify_all`, at shutdown) and then uncounts it never finds the count without it.
/// Counted after the unlock, the count wrapped to `usize::MAX` in between, and `block_cap`'s `+ 1`
/// overflowed (found by the ThreadSanitizer run); this model sees the wrapped count.
#[test]
fn the_sleeper_count_never_misses_a_listed_sleeper() {
    loom::model(|| {
        let idle = Arc::new(Idle::new(1));
        let stop = Arc::new(AtomicUsize::new(0));
        let sleeper = {
            let (idle, stop) = (idle.clone(), stop.clone());
            thread::spawn(move || {
                idle.register(0);
                idle.park(0, || false, || stop.load(SeqCst) != 0);
            })
        };
        stop.store(1, SeqCst);
        idle.notify_all(|| {});
        let count = idle.sleeper_count();
        assert!(count <= 1, "sleeper count {count} with one worker");
        sleeper.join().unwrap();
        assert_eq!(idle.sleeper_count(), 0);
    });
}
