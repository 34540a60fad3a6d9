//! Shutting a multi-thread runtime down: `shutdown_timeout` returns in time even when a worker or a
//! blocking task is stuck, unfinished tasks are cancelled (their futures dropped, `spawn_local` ones on
//! their own worker), and dropping a runtime does the same within its bound.

mod util;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use evloop::time::sleep;
use evloop::{spawn, spawn_blocking, spawn_local, Runtime};

use util::{with_deadline, TEST_LIMIT};

/// Sends its thread's id when dropped.
struct DropProbe(Option<mpsc::Sender<ThreadId>>);

impl Drop for DropProbe {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(std::thread::current().id());
        }
    }
}

#[test]
fn shutdown_timeout_returns_in_time_with_a_stuck_blocking_task() {
    with_deadline(TEST_LIMIT, || {
        let rt = Runtime::builder().worker_threads(2).build().unwrap();
        let release = Arc::new(AtomicBool::new(false));
        let r = release.clone();
        let started = Arc::new(AtomicBool::new(false));
        let s = started.clone();
        let (tx, rx) = mpsc::channel();
        rt.spawn(async move {
            let _probe = DropProbe(Some(tx));
            spawn_blocking(move || {
                s.store(true, Ordering::SeqCst);
                // "Never" returns (bounded, so the test process can end).
                while !r.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
            .await
            .unwrap();
        });
        while !started.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let t = Instant::now();
        rt.shutdown_timeout(Duration::from_millis(200));
        let took = t.elapsed();
        assert!(
            took < Duration::from_millis(1500),
            "shutdown_timeout took {took:?}"
        );
        // The task awaiting the blocking job was cancelled: its future was dropped.
        rx.recv_timeout(Duration::from_secs(1))
            .expect("the waiting task was dropped");
        release.store(true, Ordering::SeqCst);
    });
}

#[test]
fn shutdown_timeout_returns_in_time_with_a_stuck_worker() {
    with_deadline(TEST_LIMIT, || {
        let rt = Runtime::builder().worker_threads(2).build().unwrap();
        let release = Arc::new(AtomicBool::new(false));
        let r = release.clone();
        let started = Arc::new(AtomicBool::new(false));
        let s = started.clone();
        rt.spawn(async move {
            s.store(true, Ordering::SeqCst);
            // Blocks its worker: a badly behaved task.
            let t = Instant::now();
            while !r.load(Ordering::SeqCst) && t.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        while !started.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let t = Instant::now();
        rt.shutdown_timeout(Duration::from_millis(200));
        let took = t.elapsed();
        release.store(true, Ordering::SeqCst);
        assert!(
            took >= Duration::from_millis(150),
            "returned before the deadline: {took:?}"
        );
        assert!(
            took < Duration::from_millis(1500),
            "shutdown_timeout took {took:?}"
        );
    });
}

#[test]
fn shutdown_cancels_pending_tasks_and_local_ones_on_their_worker() {
    with_deadline(TEST_LIMIT, || {
        let rt = Runtime::builder().worker_threads(2).build().unwrap();
        let (tx, rx) = mpsc::channel();
        let (home_tx, home_rx) = mpsc::channel();
        let ready = Arc::new(AtomicUsize::new(0));
        for _ in 0..10 {
            let probe = DropProbe(Some(tx.clone()));
            let ready = ready.clone();
            rt.spawn(async move {
                let _probe = probe;
                ready.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
            });
        }
        let (local_tx, local_rx) = mpsc::channel();
        let r = ready.clone();
        rt.spawn(async move {
            home_tx.send(std::thread::current().id()).unwrap();
            spawn_local(async move {
                let _probe = DropProbe(Some(local_tx));
                r.fetch_add(1, Ordering::SeqCst);
                sleep(Duration::from_secs(60)).await;
            });
        });
        let home = home_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let t = Instant::now();
        while ready.load(Ordering::SeqCst) < 11 && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(ready.load(Ordering::SeqCst), 11);
        assert_eq!(rt.task_count(), 11);
        rt.shutdown_timeout(Duration::from_secs(2));
        for _ in 0..10 {
            rx.recv_timeout(Duration::from_secs(1))
                .expect("a pending task was dropped");
        }
        let dropped_on = local_rx
            .recv_timeout(Duration::from_secs(1))
            .expect("the local task was dropped");
        assert_eq!(
            dropped_on, home,
            "a spawn_local task was dropped away from its worker"
        );
    });
}

#[test]
fn dropping_a_runtime_cancels_its_tasks() {
    with_deadline(TEST_LIMIT, || {
        let rt = Runtime::builder().worker_threads(2).build().unwrap();
        let (tx, rx) = mpsc::channel();
        let (started_tx, started_rx) = mpsc::channel();
        let h = rt.spawn(async move {
            let _probe = DropProbe(Some(tx));
            started_tx.send(()).unwrap();
            sleep(Duration::from_secs(60)).await;
        });
        started_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let t = Instant::now();
        drop(rt);
        assert!(t.elapsed() < Duration::from_millis(1500));
        rx.recv_timeout(Duration::from_secs(1))
            .expect("the task was dropped");
        // Its handle reports the cancellation.
        assert!(evloop::block_on(h).unwrap_err().is_cancelled());
    });
}

/// Detached tasks that store their waker nowhere (awaiting `pending()`) are still found and dropped
/// when the runtime ends: the task table holds a reference to each task (a regression: it used to hold
/// a borrowed waker, which dangled once async-task freed such a task).
#[test]
fn detached_tasks_that_no_one_can_wake_are_dropped_safely() {
    with_deadline(TEST_LIMIT, || {
        for _ in 0..200 {
            evloop::block_on(async {
                for _ in 0..10 {
                    spawn(std::future::pending::<()>());
                }
                evloop::task::yield_now().await;
            });
        }
        for _ in 0..20 {
            let rt = Runtime::builder().worker_threads(2).build().unwrap();
            rt.block_on(async {
                let hs: Vec<_> = (0..10)
                    .map(|_| spawn(async { evloop::task::yield_now().await }))
                    .collect();
                for _ in 0..10 {
                    spawn(std::future::pending::<()>());
                }
                for h in hs {
                    h.await.unwrap();
                }
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    });
}

/// A busy worker's non-blocking look at the reactor must not swallow the notify meant for the worker
/// that is about to block in it (the shutdown notify included): every shutdown here returns promptly.
#[test]
fn shutdown_is_prompt_while_workers_trade_the_reactor() {
    with_deadline(TEST_LIMIT, || {
        let start = Instant::now();
        let mut rounds = 0;
        while rounds < 300 && start.elapsed() < Duration::from_secs(10) {
            rounds += 1;
            let rt = Runtime::builder().worker_threads(2).build().unwrap();
            // Yields without end: the workers keep passing the task (and the reactor) around.
            rt.spawn(async {
                loop {
                    evloop::task::yield_now().await;
                }
            });
            std::thread::sleep(Duration::from_millis(2));
            let t = Instant::now();
            rt.shutdown_timeout(Duration::from_secs(3));
            let took = t.elapsed();
            assert!(
                took < Duration::from_secs(1),
                "round {rounds}: shutdown_timeout took {took:?}"
            );
        }
    });
}
