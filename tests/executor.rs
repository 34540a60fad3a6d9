//! The executor: `spawn`/`spawn_local` and their handles, abort, panic isolation, what happens to
//! unfinished tasks when a runtime (or `evloop::block_on`) ends, misuse that must panic with a fix,
//! fairness between tasks and the reactor, and `spawn_blocking`.

mod util;

use std::cell::Cell;
use std::future::Future;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Context;
use std::time::{Duration, Instant};

use evloop::task::{yield_now, JoinError, JoinHandle};
use evloop::time::{sleep, sleep_until};
use evloop::{spawn, spawn_local, Async, Runtime, EVENT_INTERVAL};

use util::{expect_panic, with_deadline, TEST_LIMIT};

/// Yields until `done()` holds, at most `max` times; returns whether it held.
async fn yield_until(max: usize, done: impl Fn() -> bool) -> bool {
    for _ in 0..max {
        if done() {
            return true;
        }
        yield_now().await;
    }
    done()
}

/// Sleeps in short steps until `done()` holds, for at most 2 s; returns whether it held. (A fixed sleep
/// would race on a loaded machine: the main future runs before tasks woken in the same reactor turn.)
async fn eventually(done: impl Fn() -> bool) -> bool {
    for _ in 0..400 {
        if done() {
            return true;
        }
        sleep(Duration::from_millis(5)).await;
    }
    done()
}

#[test]
fn spawn_and_join_return_the_output() {
    util::block_on(async {
        let h = spawn(async {
            yield_now().await;
            "out"
        });
        assert_eq!(h.await.unwrap(), "out");

        // A task spawned from a task.
        let outer = spawn(async { spawn(async { 21 * 2 }).await.unwrap() });
        assert_eq!(outer.await.unwrap(), 42);
    });
}

#[test]
fn hundred_thousand_spawned_tasks_complete() {
    const N: u64 = 100_000;
    let ran = util::block_on(async {
        let ran = Arc::new(AtomicU64::new(0));
        let handles: Vec<JoinHandle<u64>> = (0..N)
            .map(|i| {
                let ran = ran.clone();
                spawn(async move {
                    if i % 2 == 0 {
                        yield_now().await;
                    }
                    ran.fetch_add(1, Ordering::Relaxed);
                    i
                })
            })
            .collect();
        let mut sum = 0;
        for h in handles {
            sum += h.await.unwrap();
        }
        assert_eq!(sum, N * (N - 1) / 2);
        ran.load(Ordering::Relaxed)
    });
    assert_eq!(ran, N);
}

#[test]
fn spawn_local_runs_a_non_send_future() {
    with_deadline(TEST_LIMIT, || {
        evloop::block_on(async {
            let counter = Rc::new(Cell::new(0));
            let c = counter.clone();
            let h = spawn_local(async move {
                yield_now().await;
                c.set(c.get() + 1);
                Rc::strong_count(&c)
            });
            assert_eq!(h.await.unwrap(), 2);
            assert_eq!(counter.get(), 1);
        })
    });
}

#[test]
fn dropping_a_handle_detaches_the_task() {
    util::block_on(async {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        drop(spawn(async move {
            sleep(Duration::from_millis(5)).await;
            d.store(true, Ordering::SeqCst);
        }));
        assert!(
            eventually(|| done.load(Ordering::SeqCst)).await,
            "a detached task must run on"
        );
    });
}

#[test]
fn runtime_keeps_tasks_between_block_on_calls() {
    with_deadline(TEST_LIMIT, || {
        let rt = Runtime::new().unwrap();
        // Spawned before any block_on: starts at the next one.
        let early = rt.spawn(async { "early" });
        let (tx, rx) = futures::channel::oneshot::channel::<u32>();
        // The handle is carried out of this block_on on purpose, to be awaited in the next one.
        #[allow(clippy::async_yields_async)]
        let waiting = rt.block_on(async { spawn(async move { rx.await.unwrap() + 1 }) });
        // `block_on` returned at its future's first poll: neither task has run yet; both stay queued.
        assert_eq!(rt.task_count(), 2);
        let out = rt.block_on(async move {
            tx.send(41).unwrap();
            (early.await.unwrap(), waiting.await.unwrap())
        });
        assert_eq!(out, ("early", 42));
        assert_eq!(rt.task_count(), 0);
    });
}

#[test]
fn abort_cancels_an_idle_task() {
    util::block_on(async {
        let alive = Arc::new(());
        let a = alive.clone();
        let h = spawn(async move {
            let _a = a;
            std::future::pending::<()>().await
        });
        yield_now().await; // let it start and go idle
        assert!(!h.is_finished());
        h.abort();
        let err = h.await.unwrap_err();
        assert!(err.is_cancelled() && !err.is_panic(), "{err:?}");
        assert!(
            yield_until(10, || Arc::strong_count(&alive) == 1).await,
            "the aborted task's future was never dropped"
        );
    });
}

/// `abort` documents that an idle task's future is dropped "at once"; a caller that sees the handle
/// resolve as cancelled can then rely on the task's resources being released (tokio's guarantee too).
#[test]
fn aborted_task_is_dropped_by_the_time_its_handle_resolves() {
    util::block_on(async {
        let alive = Arc::new(());
        let a = alive.clone();
        let h = spawn(async move {
            let _a = a;
            std::future::pending::<()>().await
        });
        yield_now().await;
        h.abort();
        assert!(h.await.unwrap_err().is_cancelled());
        assert_eq!(
            Arc::strong_count(&alive),
            1,
            "the handle of an aborted task resolved while its future (and what it owns) was still alive"
        );
    });
}

/// `is_finished` on a handle whose task is being cancelled must not lose the wake of whoever already
/// polled the handle.
#[test]
fn is_finished_does_not_steal_the_wake_of_an_aborted_tasks_awaiter() {
    util::block_on(async {
        let mut h = spawn(std::future::pending::<()>());
        yield_now().await;
        h.abort();
        let (counter, waker) = util::CountingWaker::new();
        let first_poll = Pin::new(&mut h).poll(&mut Context::from_waker(&waker));
        if first_poll.is_pending() {
            let _ = h.is_finished();
            // The runtime drops the aborted future, which must wake the awaiter.
            assert!(
                yield_until(10, || counter.wakes() > 0).await,
                "the awaiter of an aborted task was never woken"
            );
        }
        assert!(h.await.unwrap_err().is_cancelled());
    });
}

#[test]
fn abort_from_another_task() {
    util::block_on(async {
        let alive = Arc::new(());
        let a = alive.clone();
        let victim = spawn(async move {
            let _a = a;
            sleep(Duration::from_secs(3600)).await;
            "never"
        });
        let killer = spawn(async move {
            yield_now().await;
            victim.abort();
            victim.await
        });
        let err = killer.await.unwrap().unwrap_err();
        assert!(err.is_cancelled(), "{err:?}");
        assert!(yield_until(10, || Arc::strong_count(&alive) == 1).await);
    });
}

#[test]
fn abort_after_finish_keeps_the_output() {
    util::block_on(async {
        let h = spawn(async { 7 });
        assert!(
            yield_until(100, || h.is_finished()).await,
            "the task never finished"
        );
        h.abort();
        assert_eq!(h.await.unwrap(), 7);
    });
}

#[test]
fn a_panicking_task_is_reported_and_the_rest_carry_on() {
    util::block_on(async {
        let steady = spawn(async {
            let mut n = 0;
            for _ in 0..10 {
                sleep(Duration::from_millis(1)).await;
                n += 1;
            }
            n
        });
        let bad = spawn(async {
            sleep(Duration::from_millis(2)).await;
            panic!("task failed on purpose");
        });
        let err = bad.await.unwrap_err();
        assert!(err.is_panic() && !err.is_cancelled(), "{err:?}");
        assert_eq!(steady.await.unwrap(), 10);
        // The runtime still runs new work.
        assert_eq!(spawn(async { 1 }).await.unwrap(), 1);

        // The same for a local task.
        let local = spawn_local(async { panic!("local task failed on purpose") });
        assert!(local.await.unwrap_err().is_panic());
    });
}

#[test]
fn a_panicking_task_holding_a_join_handle_leaves_the_other_task_running() {
    util::block_on(async {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let holder = spawn(async move {
            let _other = spawn(async move {
                sleep(Duration::from_millis(10)).await;
                d.store(true, Ordering::SeqCst);
            });
            yield_now().await;
            panic!("holder failed on purpose");
        });
        assert!(holder.await.unwrap_err().is_panic());
        // Dropping the held handle in the unwinding detached the task: it runs to the end.
        assert!(
            eventually(|| done.load(Ordering::SeqCst)).await,
            "the other task did not survive its holder's panic"
        );
    });
}

#[test]
fn dropping_a_runtime_drops_every_unfinished_task() {
    /// Spawns a task from its destructor, as an unwary cleanup might: that task must be dropped too.
    struct SpawnOnDrop(Arc<()>);
    impl Drop for SpawnOnDrop {
        fn drop(&mut self) {
            let a = self.0.clone();
            drop(spawn(async move {
                let _a = a;
                std::future::pending::<()>().await
            }));
        }
    }

    with_deadline(TEST_LIMIT, || {
        let alive = Arc::new(());
        let (_never_sent, never) = futures::channel::oneshot::channel::<()>();
        let (sock, _peer) = UnixStream::pair().unwrap();
        let rt = Runtime::new().unwrap();

        // Never polled: its first poll is still queued when the runtime goes.
        let a = alive.clone();
        let mut handles = vec![rt.spawn(async move {
            let _a = a;
        })];

        handles.extend(rt.block_on(async {
            let mut hs: Vec<JoinHandle<()>> = Vec::new();
            let a = alive.clone();
            hs.push(spawn(async move {
                let _a = a;
                std::future::pending::<()>().await
            }));
            let a = alive.clone();
            hs.push(spawn(async move {
                let _a = a;
                sleep(Duration::from_secs(3600)).await
            }));
            let a = alive.clone();
            let sock = Async::new(sock).unwrap();
            hs.push(spawn(async move {
                let _a = a;
                let mut buf = [0; 8];
                let _ = sock.read_with(|mut s| s.read(&mut buf)).await;
            }));
            let a = alive.clone();
            hs.push(spawn(async move {
                let _a = a;
                let _ = never.await;
            }));
            let a = alive.clone();
            hs.push(spawn_local(async move {
                let _a = Rc::new(a);
                std::future::pending::<()>().await
            }));
            // Always runnable: in the run queue when block_on returns.
            let a = alive.clone();
            hs.push(spawn(async move {
                let _a = a;
                loop {
                    yield_now().await;
                }
            }));
            // Waits on another task's handle.
            let a = alive.clone();
            let inner = spawn(async { std::future::pending::<()>().await });
            hs.push(spawn(async move {
                let _a = a;
                let _ = inner.await;
            }));
            let a = alive.clone();
            hs.push(spawn(async move {
                let _guard = SpawnOnDrop(a);
                std::future::pending::<()>().await
            }));
            for _ in 0..3 {
                yield_now().await;
            }
            hs
        }));

        assert!(rt.task_count() >= 8, "tasks: {}", rt.task_count());
        assert!(Arc::strong_count(&alive) > 1);
        drop(rt);
        assert_eq!(
            Arc::strong_count(&alive),
            1,
            "some task (or one spawned by a destructor) outlived its runtime"
        );
        for h in handles {
            let err = futures::executor::block_on(h).unwrap_err();
            assert!(err.is_cancelled(), "{err:?}");
        }
    });
}

#[test]
fn block_on_drops_leftover_tasks_at_return() {
    with_deadline(TEST_LIMIT, || {
        let alive = Arc::new(());
        let ran_late = Arc::new(AtomicBool::new(false));
        let (a, r) = (alive.clone(), ran_late.clone());
        evloop::block_on(async move {
            drop(spawn(async move {
                let _a = a;
                sleep(Duration::from_millis(20)).await;
                r.store(true, Ordering::SeqCst);
            }));
            yield_now().await;
        });
        assert_eq!(
            Arc::strong_count(&alive),
            1,
            "a leftover task survived block_on"
        );
        // The next call on this thread (same thread-local runtime) must not run it.
        evloop::block_on(sleep(Duration::from_millis(40)));
        assert!(!ran_late.load(Ordering::SeqCst));
    });
}

#[test]
fn block_on_drops_leftover_tasks_when_its_future_panics() {
    with_deadline(TEST_LIMIT, || {
        let alive = Arc::new(());
        let ran_late = Arc::new(AtomicBool::new(false));
        let (a, r) = (alive.clone(), ran_late.clone());
        let res = catch_unwind(AssertUnwindSafe(|| {
            evloop::block_on(async move {
                drop(spawn(async move {
                    let _a = a;
                    sleep(Duration::from_millis(20)).await;
                    r.store(true, Ordering::SeqCst);
                }));
                yield_now().await;
                panic!("main future failed on purpose");
            })
        }));
        assert!(res.is_err());
        // A later, unrelated block_on on this thread must not run the failed call's tasks.
        evloop::block_on(sleep(Duration::from_millis(40)));
        assert!(
            !ran_late.load(Ordering::SeqCst),
            "a task spawned by a block_on whose future panicked ran in the next block_on"
        );
        assert_eq!(Arc::strong_count(&alive), 1);
    });
}

#[test]
fn nested_block_on_panics_naming_the_fix() {
    util::block_on(async {
        let msg = expect_panic(|| evloop::block_on(async { 1 }));
        assert!(
            msg.contains("`.await`") && msg.contains("spawn"),
            "message: {msg}"
        );
        let msg = expect_panic(|| Runtime::new().unwrap().block_on(async { 1 }));
        assert!(
            msg.contains("`.await`") && msg.contains("spawn"),
            "message: {msg}"
        );

        // From a task: reported through its handle, and the runtime carries on.
        let err = spawn(async { evloop::block_on(async {}) })
            .await
            .unwrap_err();
        assert!(
            err.is_panic() && err.to_string().contains("`.await`"),
            "{err}"
        );
        assert_eq!(spawn(async { 5 }).await.unwrap(), 5);
    });
}

#[test]
fn spawn_outside_a_runtime_panics_naming_the_fix() {
    let msg = expect_panic(|| spawn(async {}));
    assert!(msg.contains("evloop::block_on"), "message: {msg}");
    let msg = expect_panic(|| spawn_local(async {}));
    assert!(msg.contains("evloop::block_on"), "message: {msg}");

    // A plain thread started from inside a runtime is still outside it.
    util::block_on(async {
        let msg = std::thread::spawn(|| expect_panic(|| spawn(async {})))
            .join()
            .unwrap();
        assert!(msg.contains("evloop::block_on"), "message: {msg}");
    });
}

#[test]
fn yield_now_interleaves_two_tasks() {
    let log = util::block_on(async {
        let log = Arc::new(Mutex::new(String::new()));
        let run = |name: char| {
            let log = log.clone();
            spawn(async move {
                for _ in 0..50 {
                    log.lock().unwrap().push(name);
                    yield_now().await;
                }
            })
        };
        let (a, b) = (run('a'), run('b'));
        a.await.unwrap();
        b.await.unwrap();
        let log = log.lock().unwrap().clone();
        log
    });
    assert_eq!(log.len(), 100);
    assert_eq!(log, "ab".repeat(50), "yielding tasks must take turns");
}

/// With a task that yields forever, waits for `wait` and returns how many polls the spinning task got
/// between the moment `happened()` first held (as seen by the spinner) and the wake of `wait`.
async fn spinner_polls_before_wake(
    happened: impl Fn() -> bool + Send + 'static,
    wait: impl Future,
) -> u64 {
    const NOT_SEEN: u64 = u64::MAX;
    let polls = Arc::new(AtomicU64::new(0));
    let seen_at = Arc::new(AtomicU64::new(NOT_SEEN));
    let stop = Arc::new(AtomicBool::new(false));
    let give_up = Instant::now() + Duration::from_secs(5);
    let spinner = {
        let (polls, seen_at, stop) = (polls.clone(), seen_at.clone(), stop.clone());
        spawn(async move {
            // Bounded, so a starved reactor fails the test instead of hanging it.
            while !stop.load(Ordering::SeqCst) && Instant::now() < give_up {
                let n = polls.fetch_add(1, Ordering::SeqCst) + 1;
                if seen_at.load(Ordering::SeqCst) == NOT_SEEN && happened() {
                    seen_at.store(n, Ordering::SeqCst);
                }
                yield_now().await;
            }
        })
    };
    wait.await;
    let woke_at = polls.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    spinner.await.unwrap();
    match seen_at.load(Ordering::SeqCst) {
        NOT_SEEN => 0, // woken before the spinner ran again
        seen => woke_at.saturating_sub(seen),
    }
}

/// The reactor's due-timer check and the I/O poll each come at most `EVENT_INTERVAL` polls apart; a
/// deadline that falls inside a µs tick may need one more round.
const POLL_BOUND: u64 = 3 * EVENT_INTERVAL as u64;

#[test]
fn a_yielding_task_does_not_starve_timers() {
    util::block_on(async {
        let deadline = Instant::now() + Duration::from_millis(20);
        let polls =
            spinner_polls_before_wake(move || Instant::now() >= deadline, sleep_until(deadline))
                .await;
        println!("spinner polls between the deadline and the timer's wake: {polls}");
        assert!(polls <= POLL_BOUND, "{polls} polls > {POLL_BOUND}");
    });
}

#[test]
fn a_yielding_task_does_not_starve_sockets() {
    util::block_on(async {
        let (a, mut b) = UnixStream::pair().unwrap();
        let a = Async::new(a).unwrap();
        let written = Arc::new(AtomicBool::new(false));
        let w = written.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            b.write_all(b"x").unwrap();
            w.store(true, Ordering::SeqCst);
            b
        });
        let mut buf = [0; 1];
        let read = a.read_with(|mut s| s.read(&mut buf));
        let polls = spinner_polls_before_wake(move || written.load(Ordering::SeqCst), async {
            assert_eq!(read.await.unwrap(), 1);
        })
        .await;
        writer.join().unwrap();
        println!("spinner polls between the write and the reader's wake: {polls}");
        assert!(polls <= POLL_BOUND, "{polls} polls > {POLL_BOUND}");
    });
}

#[test]
fn a_yielding_task_does_not_starve_wakes_from_other_threads() {
    util::block_on(async {
        let (tx, rx) = futures::channel::oneshot::channel::<u8>();
        let sent = Arc::new(AtomicBool::new(false));
        let s = sent.clone();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(1).unwrap();
            s.store(true, Ordering::SeqCst);
        });
        // Awaited inside a task, so the wake goes through the injector rather than the main waker.
        let receiver = spawn(async move { rx.await.unwrap() });
        let polls = spinner_polls_before_wake(move || sent.load(Ordering::SeqCst), async {
            assert_eq!(receiver.await.unwrap(), 1);
        })
        .await;
        sender.join().unwrap();
        println!("spinner polls between the send and the receiver's wake: {polls}");
        assert!(polls <= POLL_BOUND, "{polls} polls > {POLL_BOUND}");
    });
}

#[test]
fn spawn_blocking_returns_the_result() {
    util::block_on(async {
        let h = evloop::spawn_blocking(|| {
            std::thread::sleep(Duration::from_millis(5));
            (1..=100u32).sum::<u32>()
        });
        assert_eq!(h.await.unwrap(), 5050);
    });
}

#[test]
fn spawn_blocking_reports_a_panic() {
    util::block_on(async {
        let err = evloop::spawn_blocking(|| -> u8 { panic!("blocking job failed on purpose") })
            .await
            .unwrap_err();
        assert!(err.is_panic(), "{err:?}");
        assert!(
            err.to_string().contains("blocking job failed on purpose"),
            "{err}"
        );
        // The pool survives.
        assert_eq!(evloop::spawn_blocking(|| 3).await.unwrap(), 3);
    });
}

#[test]
fn spawn_blocking_runs_many_jobs_at_once() {
    const JOBS: usize = 32;
    util::block_on(async {
        let arrived = Arc::new(AtomicUsize::new(0));
        // Each job waits (bounded) for all the others: they can only all succeed if they run at once.
        let handles: Vec<_> = (0..JOBS)
            .map(|_| {
                let arrived = arrived.clone();
                evloop::spawn_blocking(move || {
                    arrived.fetch_add(1, Ordering::SeqCst);
                    let give_up = Instant::now() + Duration::from_secs(5);
                    while arrived.load(Ordering::SeqCst) < JOBS && Instant::now() < give_up {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    arrived.load(Ordering::SeqCst) == JOBS
                })
            })
            .collect();
        for h in handles {
            assert!(h.await.unwrap(), "blocking jobs did not run concurrently");
        }
    });
}

#[test]
fn join_handle_and_join_error_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<JoinHandle<u32>>();
    assert_send_sync::<JoinHandle<Vec<String>>>();
    assert_send_sync::<JoinError>();
    assert_send_sync::<evloop::task::YieldNow>();
}

#[test]
fn join_error_display_and_panic_payload() {
    util::block_on(async {
        // A run-time argument, so that the payload is a formatted `String` (a literal would be folded
        // into a `&'static str`).
        let n = std::hint::black_box(1);
        let err = spawn(async move { panic!("boom {n}") }).await.unwrap_err();
        assert_eq!(err.to_string(), "task panicked: boom 1");
        assert!(format!("{err:?}").contains("boom 1"));
        let payload = err.into_panic();
        assert_eq!(
            payload.downcast_ref::<String>().map(String::as_str),
            Some("boom 1")
        );

        let err = spawn(async { panic!("static boom") }).await.unwrap_err();
        assert_eq!(*err.into_panic().downcast::<&str>().unwrap(), "static boom");

        let err = spawn(async { std::panic::panic_any(42u32) })
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "task panicked");
        assert_eq!(
            *err.try_into_panic().unwrap().downcast::<u32>().unwrap(),
            42
        );

        let io: std::io::Error = spawn(async { panic!("as io") }).await.unwrap_err().into();
        assert!(io.to_string().contains("as io"), "{io}");

        let h = spawn(std::future::pending::<()>());
        h.abort();
        let err = h.await.unwrap_err();
        assert_eq!(err.to_string(), "task was cancelled");
        let err = err.try_into_panic().unwrap_err();
        assert!(err.is_cancelled());
        let msg = expect_panic(move || err.into_panic());
        assert!(msg.contains("cancelled"), "message: {msg}");
    });
}

/// A task that blocks its thread delays everything else on it; the delay shows in `max_poll_gap`.
#[test]
fn a_task_blocking_its_thread_shows_in_max_poll_gap() {
    with_deadline(TEST_LIMIT, || {
        let rt = Runtime::new().unwrap();
        rt.block_on(async {
            sleep(Duration::from_millis(1)).await;
        });
        assert!(
            rt.max_poll_gap() < Duration::from_millis(100),
            "{:?}",
            rt.max_poll_gap()
        );
        rt.block_on(async {
            spawn(async { std::thread::sleep(Duration::from_millis(120)) })
                .await
                .unwrap();
            sleep(Duration::from_millis(1)).await;
        });
        assert!(
            rt.max_poll_gap() >= Duration::from_millis(100),
            "a 120 ms block left max_poll_gap at {:?}",
            rt.max_poll_gap()
        );
    });
}
