//! `task::JoinSet` and `task::AbortHandle`: completion order, abort (also from another thread),
//! panics reported per task, dropping and shutting down a set (destructors run), 100,000 tasks, on
//! both runtime flavors.

mod util;

use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evloop::task::{yield_now, AbortHandle, JoinSet};
use evloop::Runtime;
use futures::channel::oneshot;

use util::{panic_message, with_deadline, TEST_LIMIT};

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<AbortHandle>();
    send_sync::<JoinSet<u32>>();
};

/// Runs `make()`'s future on a current-thread runtime, then on a 2-worker multi-thread runtime, each
/// on a fresh thread, failed after `TEST_LIMIT`.
fn on_both_flavors<F, Fut>(make: F)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let make = Arc::new(make);
    let m = make.clone();
    with_deadline(TEST_LIMIT, move || {
        Runtime::new().unwrap().block_on(m());
    });
    with_deadline(TEST_LIMIT, move || {
        let rt = Runtime::builder().worker_threads(2).build().unwrap();
        rt.block_on(make());
    });
}

/// Waits (yielding, then sleeping) until `done()` holds; false after about 5 s.
async fn eventually(done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if done() {
            return true;
        }
        yield_now().await;
        evloop::time::sleep(Duration::from_millis(1)).await;
    }
    done()
}

#[test]
fn join_next_gives_outcomes_in_completion_order() {
    on_both_flavors(|| async {
        let mut set = JoinSet::new();
        let mut release = Vec::new();
        for i in 0..4u32 {
            let (tx, rx) = oneshot::channel::<()>();
            release.push(Some(tx));
            set.spawn(async move {
                rx.await.unwrap();
                i
            });
        }
        assert_eq!(set.len(), 4);
        for i in [2usize, 0, 3, 1] {
            release[i].take().unwrap().send(()).unwrap();
            assert_eq!(set.join_next().await.unwrap().unwrap(), i as u32);
        }
        assert!(set.is_empty());
        assert!(set.join_next().await.is_none());
    });
}

#[test]
fn try_join_next_takes_only_finished_tasks() {
    on_both_flavors(|| async {
        let mut set = JoinSet::new();
        let (tx, rx) = oneshot::channel::<()>();
        set.spawn(async move { rx.await.is_ok() });
        assert!(set.try_join_next().is_none());
        tx.send(()).unwrap();
        let start = Instant::now();
        let got = loop {
            if let Some(got) = set.try_join_next() {
                break got;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the task never finished"
            );
            evloop::time::sleep(Duration::from_millis(1)).await;
        };
        assert!(got.unwrap());
        assert!(set.try_join_next().is_none());
    });
}

#[test]
fn abort_cancels_one_task_and_the_others_run_on() {
    on_both_flavors(|| async {
        let mut set = JoinSet::new();
        let stuck = set.spawn(std::future::pending::<u32>());
        let (tx, rx) = oneshot::channel::<()>();
        set.spawn(async move {
            rx.await.unwrap();
            7
        });
        assert!(!stuck.is_finished());
        stuck.abort();
        let first = set.join_next().await.unwrap();
        assert!(first.unwrap_err().is_cancelled());
        assert!(stuck.is_finished());
        tx.send(()).unwrap();
        assert_eq!(set.join_next().await.unwrap().unwrap(), 7);
    });
}

#[test]
fn abort_all_reports_every_task_cancelled() {
    on_both_flavors(|| async {
        let mut set = JoinSet::new();
        for _ in 0..50 {
            set.spawn(std::future::pending::<()>());
        }
        set.abort_all();
        let mut cancelled = 0;
        while let Some(res) = set.join_next().await {
            assert!(res.unwrap_err().is_cancelled());
            cancelled += 1;
        }
        assert_eq!(cancelled, 50);
    });
}

#[test]
fn a_panic_is_reported_for_its_task_only() {
    on_both_flavors(|| async {
        let mut set = JoinSet::new();
        for i in 0..5u32 {
            set.spawn(async move {
                yield_now().await;
                if i == 3 {
                    panic!("task three failed");
                }
                i
            });
        }
        let (mut ok, mut panics) = (Vec::new(), Vec::new());
        while let Some(res) = set.join_next().await {
            match res {
                Ok(i) => ok.push(i),
                Err(e) => {
                    assert!(e.is_panic());
                    panics.push(panic_message(&*e.into_panic()));
                }
            }
        }
        ok.sort();
        assert_eq!(ok, [0, 1, 2, 4]);
        assert_eq!(panics, ["task three failed"]);
    });
}

#[test]
fn dropping_the_set_aborts_its_tasks_and_runs_their_destructors() {
    on_both_flavors(|| async {
        let owned = Arc::new(());
        let mut set = JoinSet::new();
        for _ in 0..20 {
            let o = owned.clone();
            set.spawn(async move {
                let _o = o;
                std::future::pending::<()>().await
            });
        }
        yield_now().await;
        assert_eq!(Arc::strong_count(&owned), 21);
        drop(set);
        assert!(eventually(|| Arc::strong_count(&owned) == 1).await);
    });
}

#[test]
fn shutdown_returns_once_every_future_is_gone() {
    on_both_flavors(|| async {
        let owned = Arc::new(());
        let mut set = JoinSet::new();
        for i in 0..20 {
            let o = owned.clone();
            set.spawn(async move {
                let _o = o;
                if i % 2 == 0 {
                    evloop::time::sleep(Duration::from_secs(3600)).await;
                }
            });
        }
        set.shutdown().await;
        assert!(set.is_empty());
        assert_eq!(Arc::strong_count(&owned), 1);
    });
}

#[test]
fn detach_all_leaves_the_tasks_running() {
    on_both_flavors(|| async {
        let done = Arc::new(AtomicBool::new(false));
        let mut set = JoinSet::new();
        let (tx, rx) = oneshot::channel::<()>();
        let d = done.clone();
        set.spawn(async move {
            rx.await.unwrap();
            d.store(true, Ordering::SeqCst);
        });
        set.detach_all();
        assert!(set.is_empty());
        drop(set);
        tx.send(()).unwrap();
        assert!(eventually(|| done.load(Ordering::SeqCst)).await);
    });
}

#[test]
fn abort_from_another_thread() {
    on_both_flavors(|| async {
        // A set's task.
        let mut set = JoinSet::new();
        let handle = set.spawn(std::future::pending::<()>());
        std::thread::spawn(move || handle.abort()).join().unwrap();
        assert!(set.join_next().await.unwrap().unwrap_err().is_cancelled());

        // A lone task, through its join handle's abort handle.
        let task = evloop::spawn(std::future::pending::<()>());
        let abort = task.abort_handle();
        let clone = abort.clone();
        std::thread::spawn(move || clone.abort()).join().unwrap();
        assert!(task.await.unwrap_err().is_cancelled());
        assert!(abort.is_finished());
    });
}

#[test]
fn an_abort_handle_outlives_its_join_handle() {
    on_both_flavors(|| async {
        let owned = Arc::new(());
        let o = owned.clone();
        let task = evloop::spawn(async move {
            let _o = o;
            std::future::pending::<()>().await
        });
        let abort = task.abort_handle();
        drop(task);
        yield_now().await;
        assert!(!abort.is_finished());
        abort.abort();
        assert!(eventually(|| Arc::strong_count(&owned) == 1).await);
        assert!(abort.is_finished());
    });
}

#[test]
fn spawn_local_tasks_join_too() {
    with_deadline(TEST_LIMIT, || {
        evloop::block_on(async {
            let shared = Rc::new(5);
            let mut set = JoinSet::new();
            for i in 0..3 {
                let s = shared.clone();
                set.spawn_local(async move {
                    yield_now().await;
                    *s + i
                });
            }
            let stuck = set.spawn_local(std::future::pending::<i32>());
            std::thread::spawn(move || stuck.abort()).join().unwrap();
            let mut sum = 0;
            let mut cancelled = 0;
            while let Some(res) = set.join_next().await {
                match res {
                    Ok(v) => sum += v,
                    Err(e) => {
                        assert!(e.is_cancelled());
                        cancelled += 1;
                    }
                }
            }
            assert_eq!((sum, cancelled), (18, 1));
            assert_eq!(Rc::strong_count(&shared), 1);
        });
    });
}

#[test]
fn hundred_thousand_tasks_join() {
    on_both_flavors(|| async {
        const N: u64 = 100_000;
        let mut set = JoinSet::new();
        for i in 0..N {
            set.spawn(async move {
                if i % 2 == 0 {
                    yield_now().await;
                }
                i
            });
        }
        assert_eq!(set.len(), N as usize);
        let mut sum = 0;
        let mut joined = 0;
        while let Some(res) = set.join_next().await {
            sum += res.unwrap();
            joined += 1;
        }
        assert_eq!(joined, N);
        assert_eq!(sum, N * (N - 1) / 2);
    });
}
