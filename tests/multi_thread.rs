//! The multi-thread runtime: many tasks over two workers, wakes across workers, stealing, `spawn_local`
//! pinning, panic isolation, I/O and timers on it, and idle workers that use no CPU.

mod util;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream as StdTcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use evloop::net::TcpListener;
use evloop::task::{yield_now, JoinHandle};
use evloop::time::sleep;
use evloop::{spawn, spawn_local, Runtime};
use futures::{AsyncReadExt, AsyncWriteExt};

use util::{expect_panic, with_deadline, TEST_LIMIT};

fn two_workers() -> Runtime {
    Runtime::builder()
        .worker_threads(2)
        .build()
        .expect("build the runtime")
}

#[test]
fn million_tasks_over_two_workers_complete() {
    const N: u64 = 1_000_000;
    let sum = with_deadline(TEST_LIMIT, || {
        let rt = two_workers();
        rt.block_on(async {
            let done = Arc::new(AtomicU64::new(0));
            // Spawned from a task, so the workers' local queues and stealing carry them.
            let spawner = {
                let done = done.clone();
                spawn(async move {
                    let mut handles = Vec::with_capacity(1000);
                    let mut sum = 0;
                    for chunk in 0..N / 1000 {
                        for i in 0..1000 {
                            let done = done.clone();
                            handles.push(spawn(async move {
                                done.fetch_add(1, Ordering::Relaxed);
                                chunk * 1000 + i
                            }));
                        }
                        for h in handles.drain(..) {
                            sum += h.await.unwrap();
                        }
                    }
                    sum
                })
            };
            let sum = spawner.await.unwrap();
            assert_eq!(done.load(Ordering::Relaxed), N);
            sum
        })
    });
    assert_eq!(sum, N * (N - 1) / 2);
}

#[test]
fn spawn_from_block_on_runs_on_the_workers() {
    with_deadline(TEST_LIMIT, || {
        let rt = two_workers();
        let main = std::thread::current().id();
        let ids = rt.block_on(async move {
            let hs: Vec<JoinHandle<ThreadId>> = (0..100)
                .map(|_| spawn(async { std::thread::current().id() }))
                .collect();
            let mut ids = HashSet::new();
            for h in hs {
                ids.insert(h.await.unwrap());
            }
            ids
        });
        assert!(!ids.contains(&main), "tasks ran on the block_on thread");
    });
}

#[test]
fn wakes_cross_workers() {
    with_deadline(TEST_LIMIT, || {
        let rt = two_workers();
        rt.block_on(async {
            // Two tasks hand a token back and forth through channels, each keeping the other's worker
            // busy part of the time, so wakes land on both workers and from one to the other.
            let (to_b, mut b_rx) = futures::channel::mpsc::channel::<u32>(1);
            let (to_a, mut a_rx) = futures::channel::mpsc::channel::<u32>(1);
            let a = spawn(async move {
                use futures::{SinkExt, StreamExt};
                let mut to_b = to_b;
                for i in 0..10_000 {
                    to_b.send(i).await.unwrap();
                    assert_eq!(a_rx.next().await, Some(i));
                }
            });
            let b = spawn(async move {
                use futures::{SinkExt, StreamExt};
                let mut to_a = to_a;
                while let Some(i) = b_rx.next().await {
                    if i % 100 == 0 {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                    to_a.send(i).await.unwrap();
                }
            });
            a.await.unwrap();
            b.await.unwrap();

            // A task woken by a plain thread (through the injector).
            let (tx, rx) = futures::channel::oneshot::channel::<u32>();
            let waiter = spawn(async move { rx.await.unwrap() });
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                tx.send(7).unwrap();
            });
            assert_eq!(waiter.await.unwrap(), 7);
        });
    });
}

#[test]
fn an_idle_worker_steals_from_a_blocked_one() {
    with_deadline(TEST_LIMIT, || {
        let rt = two_workers();
        let release = Arc::new(AtomicBool::new(false));
        let ran = Arc::new(AtomicUsize::new(0));
        let r2 = release.clone();
        let ran2 = ran.clone();
        let blocker = rt.spawn(async move {
            // Spawned here, these land on this worker's own queue (and LIFO slot)...
            for _ in 0..100 {
                let ran = ran2.clone();
                spawn(async move {
                    ran.fetch_add(1, Ordering::SeqCst);
                });
            }
            // ...and this worker then blocks: only the other one can run them.
            let start = Instant::now();
            while !r2.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let start = Instant::now();
        while ran.load(Ordering::SeqCst) < 100 && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let stolen = ran.load(Ordering::SeqCst);
        release.store(true, Ordering::SeqCst);
        rt.block_on(blocker).unwrap();
        assert_eq!(
            stolen, 100,
            "tasks queued behind a blocked worker were not stolen"
        );
    });
}

/// A task spawned by a running task goes to that worker's LIFO slot and wakes nobody (it is meant to
/// run next, on that worker). If the spawner then blocks its thread, the idle worker must still find
/// it: the driver polls at most every 2 ms while another worker is busy, and looks for work between.
#[test]
fn a_task_left_in_a_blocked_workers_lifo_slot_is_stolen() {
    with_deadline(TEST_LIMIT, || {
        let rt = two_workers();
        for _ in 0..5 {
            // Let both workers go idle first: one drives the reactor, the other parks.
            std::thread::sleep(Duration::from_millis(20));
            let (tx, rx) = mpsc::channel();
            let spawner = rt.spawn(async move {
                let blocked_at = Instant::now();
                spawn(async move {
                    tx.send(Instant::now()).unwrap();
                });
                std::thread::sleep(Duration::from_millis(300));
                blocked_at
            });
            let ran_at = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            let blocked_at = rt.block_on(spawner).unwrap();
            let delay = ran_at.saturating_duration_since(blocked_at);
            // About 2 ms; the spawner's 300 ms block must not show (generous bound).
            assert!(
                delay < Duration::from_millis(150),
                "the task in the blocked worker's LIFO slot waited {delay:?}"
            );
        }
    });
}

#[test]
fn spawn_local_stays_on_its_worker() {
    with_deadline(TEST_LIMIT, || {
        let rt = two_workers();
        let seen = rt.block_on(async {
            let outer = spawn(async {
                let here = std::thread::current().id();
                // Not `Send`: an `Rc` lives across the awaits.
                let local = spawn_local(async move {
                    let rc = std::rc::Rc::new(());
                    let mut seen = HashSet::new();
                    for i in 0..2000 {
                        seen.insert(std::thread::current().id());
                        if i % 10 == 0 {
                            sleep(Duration::from_micros(100)).await;
                        } else {
                            yield_now().await;
                        }
                    }
                    drop(rc);
                    seen
                });
                // Keep the other worker busy with stealable work meanwhile.
                for _ in 0..200 {
                    spawn(async {
                        std::thread::sleep(Duration::from_micros(200));
                    });
                }
                (here, local.await.unwrap())
            });
            outer.await.unwrap()
        });
        let (home, threads) = seen;
        assert_eq!(
            threads.len(),
            1,
            "a pinned task ran on {} threads",
            threads.len()
        );
        assert!(threads.contains(&home));
    });
}

#[test]
fn spawn_local_in_multi_thread_block_on_panics() {
    with_deadline(TEST_LIMIT, || {
        let rt = two_workers();
        let msg = expect_panic(|| rt.block_on(async { drop(spawn_local(async {})) }));
        assert!(msg.contains("spawn_local"), "{msg}");
    });
}

#[test]
fn panics_are_isolated() {
    with_deadline(TEST_LIMIT, || {
        let rt = two_workers();
        rt.block_on(async {
            let bad: Vec<_> = (0..20).map(|_| spawn(async { panic!("boom") })).collect();
            let good: Vec<_> = (0..20u32).map(|i| spawn(async move { i })).collect();
            for h in bad {
                assert!(h.await.unwrap_err().is_panic());
            }
            for (i, h) in good.into_iter().enumerate() {
                assert_eq!(h.await.unwrap(), i as u32);
            }
            // The workers are still there.
            assert_eq!(spawn(async { 5 }).await.unwrap(), 5);
        });
    });
}

#[test]
fn timers_fire() {
    with_deadline(TEST_LIMIT, || {
        let rt = two_workers();
        rt.block_on(async {
            let start = Instant::now();
            sleep(Duration::from_millis(30)).await; // on the block_on thread
            assert!(start.elapsed() >= Duration::from_millis(30));
            let hs: Vec<_> = (0..50u64)
                .map(|i| {
                    spawn(async move {
                        let start = Instant::now();
                        sleep(Duration::from_millis(10 + i % 20)).await;
                        start.elapsed() >= Duration::from_millis(10 + i % 20)
                    })
                })
                .collect();
            for h in hs {
                assert!(h.await.unwrap());
            }
            let never = std::future::pending::<()>();
            assert!(evloop::time::timeout(Duration::from_millis(5), never)
                .await
                .is_err());
        });
    });
}

#[test]
fn tcp_echo() {
    with_deadline(TEST_LIMIT, || {
        let rt = two_workers();
        let (addr_tx, addr_rx) = mpsc::channel();
        let server = rt.spawn(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            for _ in 0..8 {
                let (mut s, _) = listener.accept().await.unwrap();
                spawn(async move {
                    let mut buf = [0; 1024];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => s.write_all(&buf[..n]).await.unwrap(),
                        }
                    }
                });
            }
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let clients: Vec<_> = (0..8u8)
            .map(|c| {
                std::thread::spawn(move || {
                    let mut s = StdTcpStream::connect(addr).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    for i in 0..100u8 {
                        let msg = [c, i, 1, 2, 3];
                        s.write_all(&msg).unwrap();
                        let mut back = [0; 5];
                        s.read_exact(&mut back).unwrap();
                        assert_eq!(back, msg);
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        rt.block_on(server).unwrap();
    });
}

#[test]
fn idle_workers_use_no_cpu() {
    // Process CPU time: measured in a child process, away from the other tests.
    if util::child_role().is_none() {
        util::run_in_child("idle_workers_use_no_cpu", "idle");
        return;
    }
    with_deadline(TEST_LIMIT, || {
        let rt = two_workers();
        // Let the workers settle (one drives the reactor, one parks), with a timer pending far away.
        rt.spawn(sleep(Duration::from_secs(60)));
        std::thread::sleep(Duration::from_millis(50));
        let (before, switches_before) = (util::cpu_time_process(), context_switches());
        std::thread::sleep(Duration::from_millis(200));
        let used = util::cpu_time_process() - before;
        let switches = context_switches() - switches_before;
        assert!(
            used < Duration::from_millis(40),
            "idle runtime used {used:?} of CPU in 200 ms"
        );
        // The parked worker watches for a vacant driver role every 2 ms only until it sees the role
        // held; then it parks until woken. Waking every 2 ms would be about 100 switches here.
        assert!(
            switches < 20,
            "idle runtime's threads were switched in {switches} times in 200 ms"
        );
        drop(rt);
    });
}

/// Context switches of every thread of this process so far (voluntary and not).
fn context_switches() -> u64 {
    // SAFETY: `getrusage` writes a `rusage` into the zeroed one we pass; RUSAGE_SELF sums every thread.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    (usage.ru_nvcsw + usage.ru_nivcsw) as u64
}

#[test]
fn many_runtimes_and_the_current_thread_one_coexist() {
    with_deadline(TEST_LIMIT, || {
        let a = two_workers();
        let b = Runtime::builder().worker_threads(1).build().unwrap();
        let counter = Arc::new(Mutex::new(0));
        let c = counter.clone();
        let x = a.block_on(async move {
            let h = spawn(async move {
                *c.lock().unwrap() += 1;
                3
            });
            h.await.unwrap()
        });
        let y = b.block_on(async { spawn(async { 4 }).await.unwrap() });
        let z = evloop::block_on(async { spawn(async { 5 }).await.unwrap() });
        assert_eq!((x, y, z), (3, 4, 5));
        assert_eq!(*counter.lock().unwrap(), 1);
    });
}
