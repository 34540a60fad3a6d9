//! Channels and locks from the ecosystem between evloop tasks, on both runtime flavors:
//! `futures::channel` (mpsc, oneshot), `async-channel` (MPMC) and `async-lock` (Mutex, RwLock,
//! Semaphore, Barrier). None of these crates knows evloop: they park on the `Waker` evloop gives them,
//! so what is tested is that evloop's wakers are honoured from any task and any thread, with back
//! pressure (small bounded channels) and with guards held across `.await`.

mod util;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use evloop::task::yield_now;
use evloop::time::sleep;
use futures::channel::{mpsc, oneshot};
use futures::{SinkExt, StreamExt};

use util::on_each_flavor;

const PRODUCERS: u64 = 4;
const PER_PRODUCER: u64 = 10_000;

/// The sum of every value the producers send: producer `p` sends `p * PER_PRODUCER + i`.
fn expected_sum() -> u64 {
    let n = PRODUCERS * PER_PRODUCER;
    n * (n - 1) / 2
}

#[test]
fn futures_mpsc_carries_every_message_through_a_small_bounded_channel() {
    on_each_flavor(|| async {
        // Capacity 8 (plus one slot per sender) against 40,000 messages: producers park constantly.
        let (tx, mut rx) = mpsc::channel::<u64>(8);
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let mut tx = tx.clone();
                evloop::spawn(async move {
                    for i in 0..PER_PRODUCER {
                        tx.send(p * PER_PRODUCER + i)
                            .await
                            .expect("the receiver is alive");
                    }
                })
            })
            .collect();
        drop(tx);
        let consumer = evloop::spawn(async move {
            let mut seen = HashSet::new();
            let mut sum = 0;
            while let Some(v) = rx.next().await {
                assert!(seen.insert(v), "value {v} received twice");
                sum += v;
            }
            (seen.len() as u64, sum)
        });
        for p in producers {
            p.await.unwrap();
        }
        // The stream ends once every sender is gone.
        let (count, sum) = consumer.await.unwrap();
        assert_eq!(count, PRODUCERS * PER_PRODUCER);
        assert_eq!(sum, expected_sum());
    });
}

#[test]
fn futures_oneshot_replies_to_requests_sent_over_mpsc() {
    on_each_flavor(|| async {
        // The request/response shape of an actor: each request carries the sender of its reply.
        let (tx, mut rx) = mpsc::unbounded::<(u64, oneshot::Sender<u64>)>();
        let server = evloop::spawn(async move {
            let mut served = 0u64;
            while let Some((x, reply)) = rx.next().await {
                // A client that gave up is not the server's failure.
                let _ = reply.send(x * x);
                served += 1;
            }
            served
        });
        let clients: Vec<_> = (0..50u64)
            .map(|c| {
                let tx = tx.clone();
                evloop::spawn(async move {
                    for i in 0..20 {
                        let x = c * 20 + i;
                        let (reply_tx, reply_rx) = oneshot::channel();
                        tx.unbounded_send((x, reply_tx))
                            .expect("the server is alive");
                        assert_eq!(reply_rx.await.expect("the server replies"), x * x);
                    }
                })
            })
            .collect();
        drop(tx);
        for c in clients {
            c.await.unwrap();
        }
        assert_eq!(server.await.unwrap(), 1000);

        // A dropped sender is seen as `Canceled` by the receiver, not as a hang.
        let (reply_tx, reply_rx) = oneshot::channel::<u64>();
        evloop::spawn(async move {
            sleep(Duration::from_millis(5)).await;
            drop(reply_tx);
        });
        assert!(reply_rx.await.is_err());
    });
}

#[test]
fn async_channel_delivers_each_message_to_exactly_one_of_many_receivers() {
    on_each_flavor(|| async {
        let (tx, rx) = async_channel::bounded::<u64>(4);
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let tx = tx.clone();
                evloop::spawn(async move {
                    for i in 0..PER_PRODUCER {
                        tx.send(p * PER_PRODUCER + i)
                            .await
                            .expect("a receiver is alive");
                    }
                })
            })
            .collect();
        drop(tx);
        let consumers: Vec<_> = (0..4)
            .map(|_| {
                let rx = rx.clone();
                evloop::spawn(async move {
                    let mut got = Vec::new();
                    // `recv` fails once the channel is empty and every sender is gone.
                    while let Ok(v) = rx.recv().await {
                        got.push(v);
                    }
                    got
                })
            })
            .collect();
        drop(rx);
        for p in producers {
            p.await.unwrap();
        }
        let mut seen = HashSet::new();
        for c in consumers {
            for v in c.await.unwrap() {
                assert!(seen.insert(v), "value {v} delivered twice");
            }
        }
        assert_eq!(seen.len() as u64, PRODUCERS * PER_PRODUCER);
        assert_eq!(seen.iter().sum::<u64>(), expected_sum());
    });
}

#[test]
fn async_channel_wakes_a_task_from_a_plain_thread() {
    on_each_flavor(|| async {
        // The sender is a std thread outside any runtime: each send must wake the parked task through
        // evloop's cross-thread wake path. Both directions, so the thread also parks on the channel.
        let (to_task, from_thread) = async_channel::bounded::<u32>(1);
        let (to_thread, from_task) = async_channel::bounded::<u32>(1);
        let thread = std::thread::spawn(move || {
            for i in 0..2_000 {
                to_task.send_blocking(i).expect("the task is alive");
                assert_eq!(from_task.recv_blocking().expect("the task replies"), i + 1);
            }
        });
        for i in 0..2_000 {
            assert_eq!(from_thread.recv().await.unwrap(), i);
            to_thread.send(i + 1).await.unwrap();
        }
        assert!(
            from_thread.recv().await.is_err(),
            "the thread has dropped its sender"
        );
        thread.join().unwrap();
    });
}

#[test]
fn async_lock_mutex_guards_a_counter_held_across_awaits() {
    on_each_flavor(|| async {
        const TASKS: usize = 8;
        const ROUNDS: usize = 2_000;
        // The inner value is read, the task yields while holding the guard, then writes: any two tasks
        // inside at once would lose an increment.
        let counter = Arc::new(async_lock::Mutex::new(0usize));
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let counter = counter.clone();
                evloop::spawn(async move {
                    for _ in 0..ROUNDS {
                        let mut guard = counter.lock().await;
                        let v = *guard;
                        yield_now().await;
                        *guard = v + 1;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*counter.lock().await, TASKS * ROUNDS);
    });
}

#[test]
fn async_lock_rwlock_lets_readers_share_and_writers_exclude() {
    on_each_flavor(|| async {
        let lock = Arc::new(async_lock::RwLock::new((0u64, 0u64)));
        let readers_inside = Arc::new(AtomicUsize::new(0));
        let most_readers = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (lock, inside, most) = (lock.clone(), readers_inside.clone(), most_readers.clone());
            tasks.push(evloop::spawn(async move {
                for _ in 0..200 {
                    let pair = lock.read().await;
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    // A writer updates both halves under one guard: a reader never sees them differ.
                    assert_eq!(pair.0, pair.1, "a reader saw a half-done write");
                    sleep(Duration::from_micros(200)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    drop(pair);
                }
            }));
        }
        for _ in 0..2 {
            let lock = lock.clone();
            tasks.push(evloop::spawn(async move {
                for _ in 0..200 {
                    let mut pair = lock.write().await;
                    pair.0 += 1;
                    yield_now().await;
                    pair.1 += 1;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*lock.read().await, (400, 400));
        // Readers sleep while holding the lock, so some overlapped.
        assert!(
            most_readers.load(Ordering::SeqCst) >= 2,
            "readers never shared the lock"
        );
    });
}

#[test]
fn async_lock_semaphore_bounds_concurrency_and_barrier_releases_all() {
    on_each_flavor(|| async {
        const PERMITS: usize = 3;
        let semaphore = Arc::new(async_lock::Semaphore::new(PERMITS));
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (semaphore, inside, most) = (semaphore.clone(), inside.clone(), most.clone());
                evloop::spawn(async move {
                    for _ in 0..5 {
                        let _permit = semaphore.acquire_arc().await;
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        sleep(Duration::from_millis(1)).await;
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // 20 tasks sleep while holding a permit: all three are used, never a fourth.
        assert_eq!(most.load(Ordering::SeqCst), PERMITS);

        // A barrier of 10: nobody passes before the tenth arrives, and exactly one is the leader.
        let barrier = Arc::new(async_lock::Barrier::new(10));
        let arrived = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..10u64)
            .map(|i| {
                let (barrier, arrived) = (barrier.clone(), arrived.clone());
                evloop::spawn(async move {
                    sleep(Duration::from_millis(i)).await;
                    arrived.fetch_add(1, Ordering::SeqCst);
                    let result = barrier.wait().await;
                    assert_eq!(
                        arrived.load(Ordering::SeqCst),
                        10,
                        "passed the barrier early"
                    );
                    result.is_leader()
                })
            })
            .collect();
        let mut leaders = 0;
        for t in tasks {
            leaders += usize::from(t.await.unwrap());
        }
        assert_eq!(leaders, 1);
    });
}
