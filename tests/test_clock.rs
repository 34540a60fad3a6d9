//! Paused time (feature `test-util`): `time::pause`, `resume`, `advance`, `Builder::start_paused`,
//! auto-advance in deadline order, `timeout`, `interval` in each missed-tick mode, TCP I/O while
//! paused, and the callback API's timer events on the virtual clock.
//!
//! Run with `cargo test --features test-util --test test_clock`.

mod util;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use evloop::event::{Event, EventBase, Flags};
use evloop::net::{TcpListener, TcpStream};
use evloop::task::yield_now;
use evloop::time::{advance, interval, now, pause, resume, sleep, timeout, MissedTickBehavior};
use evloop::{Builder, Runtime};
use futures::{AsyncReadExt, AsyncWriteExt};

use util::{expect_panic, with_deadline, TEST_LIMIT};

const MS: Duration = Duration::from_millis(1);

/// Runs `f()`'s future on a fresh thread's `evloop::block_on` after pausing its clock.
fn paused<F, Fut>(f: F) -> Fut::Output
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future + 'static,
    Fut::Output: Send + 'static,
{
    with_deadline(TEST_LIMIT, move || {
        evloop::block_on(async move {
            pause();
            f().await
        })
    })
}

#[test]
fn an_hour_long_sleep_takes_no_wall_time() {
    let (virtual_elapsed, wall) = paused(|| async {
        let wall = Instant::now();
        let start = now();
        sleep(Duration::from_secs(3600)).await;
        (now() - start, wall.elapsed())
    });
    assert_eq!(virtual_elapsed, Duration::from_secs(3600));
    assert!(wall < Duration::from_secs(1), "took {wall:?} of wall time");
}

#[test]
fn start_paused_builds_a_paused_current_thread_runtime() {
    with_deadline(TEST_LIMIT, || {
        let rt = Builder::new_current_thread()
            .start_paused(true)
            .build()
            .unwrap();
        let wall = Instant::now();
        let elapsed = rt.block_on(async {
            let start = now();
            sleep(Duration::from_secs(86_400)).await;
            now() - start
        });
        assert_eq!(elapsed, Duration::from_secs(86_400));
        assert!(wall.elapsed() < Duration::from_secs(1));
        // The runtime's clock stays paused across its `block_on` calls.
        let before = rt.block_on(async { now() });
        std::thread::sleep(2 * MS);
        assert_eq!(rt.block_on(async { now() }), before);
    });
    let err = Runtime::builder()
        .worker_threads(1)
        .start_paused(true)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("new_current_thread"), "{err}");
}

#[test]
fn auto_advance_fires_sleeps_in_deadline_order_at_their_exact_times() {
    let order = paused(|| async {
        let start = now();
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut tasks = Vec::new();
        for secs in [50u64, 10, 30, 20, 40] {
            let log = log.clone();
            tasks.push(evloop::spawn_local(async move {
                sleep(Duration::from_secs(secs)).await;
                log.borrow_mut().push((secs, now() - start));
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        Rc::try_unwrap(log).unwrap().into_inner()
    });
    let expected: Vec<_> = [10u64, 20, 30, 40, 50]
        .iter()
        .map(|&s| (s, Duration::from_secs(s)))
        .collect();
    assert_eq!(order, expected);
}

#[test]
fn timeout_fires_before_a_later_sleep() {
    let log = paused(|| async {
        let start = now();
        let log = Rc::new(RefCell::new(Vec::new()));
        let l = log.clone();
        let later = evloop::spawn_local(async move {
            sleep(Duration::from_secs(15)).await;
            l.borrow_mut().push(("sleep", now() - start));
        });
        let res = timeout(Duration::from_secs(10), sleep(Duration::from_secs(20))).await;
        assert!(res.is_err());
        log.borrow_mut().push(("timeout", now() - start));
        later.await.unwrap();
        Rc::try_unwrap(log).unwrap().into_inner()
    });
    assert_eq!(
        log,
        [
            ("timeout", Duration::from_secs(10)),
            ("sleep", Duration::from_secs(15))
        ]
    );
}

/// Ticks of an interval (period 10 ms) made late by an `advance` of 35 ms after its first tick:
/// `(scheduled, now)` for each tick, relative to the start.
fn late_ticks(mode: MissedTickBehavior) -> Vec<(Duration, Duration)> {
    paused(move || async move {
        let start = now();
        let mut every = interval(10 * MS);
        every.set_missed_tick_behavior(mode);
        let mut ticks = Vec::new();
        // On time: each tick at its scheduled instant, exactly a period apart.
        for _ in 0..3 {
            let at = every.tick().await;
            ticks.push((at - start, now() - start));
        }
        // Late: 35 ms pass without the interval being polled (the clock is then at 55 ms).
        advance(35 * MS).await;
        for _ in 0..4 {
            let at = every.tick().await;
            ticks.push((at - start, now() - start));
        }
        ticks
    })
}

fn ms(pairs: &[(u64, u64)]) -> Vec<(Duration, Duration)> {
    pairs
        .iter()
        .map(|&(a, b)| (Duration::from_millis(a), Duration::from_millis(b)))
        .collect()
}

#[test]
fn interval_burst_catches_up_then_stays_aligned() {
    assert_eq!(
        late_ticks(MissedTickBehavior::Burst),
        ms(&[
            (0, 0),
            (10, 10),
            (20, 20),
            (30, 55),
            (40, 55),
            (50, 55),
            (60, 60)
        ])
    );
}

#[test]
fn interval_delay_restarts_the_schedule_from_the_late_tick() {
    assert_eq!(
        late_ticks(MissedTickBehavior::Delay),
        ms(&[
            (0, 0),
            (10, 10),
            (20, 20),
            (30, 55),
            (65, 65),
            (75, 75),
            (85, 85)
        ])
    );
}

#[test]
fn interval_skip_drops_missed_ticks_and_stays_aligned() {
    assert_eq!(
        late_ticks(MissedTickBehavior::Skip),
        ms(&[
            (0, 0),
            (10, 10),
            (20, 20),
            (30, 55),
            (60, 60),
            (70, 70),
            (80, 80)
        ])
    );
}

#[test]
fn advance_wakes_exactly_the_timers_whose_deadlines_it_passes() {
    let fired = paused(|| async {
        // The checks run in a task, so that after `advance` yields, the woken tasks (queued before
        // it) have run.
        evloop::spawn_local(async {
            let fired = Rc::new(RefCell::new(Vec::new()));
            for d in [10u64, 20, 30, 40] {
                let fired = fired.clone();
                evloop::spawn_local(async move {
                    sleep(Duration::from_millis(d)).await;
                    fired.borrow_mut().push(d);
                });
            }
            yield_now().await; // the sleeps arm
            let mut seen = Vec::new();
            advance(25 * MS).await;
            seen.push(fired.borrow().clone());
            advance(5 * MS).await; // exactly onto the 30 ms deadline
            seen.push(fired.borrow().clone());
            advance(9 * MS).await; // 39 ms: not yet 40
            seen.push(fired.borrow().clone());
            advance(MS).await;
            seen.push(fired.borrow().clone());
            seen
        })
        .await
        .unwrap()
    });
    assert_eq!(
        fired,
        [
            vec![10, 20],
            vec![10, 20, 30],
            vec![10, 20, 30],
            vec![10, 20, 30, 40]
        ]
    );
}

#[test]
fn tcp_echo_works_while_paused() {
    let (echoed, slept) = paused(|| async {
        let start = now();
        // A long timer is pending the whole time: the clock may jump to it only when nothing can run.
        let sleeper = evloop::spawn_local(async move {
            sleep(Duration::from_secs(3600)).await;
            now() - start
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = evloop::spawn_local(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = [0; 1024];
            loop {
                let n = conn.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                conn.write_all(&buf[..n]).await.unwrap();
            }
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        let mut echoed = Vec::new();
        for round in 0..20u8 {
            let msg = [round; 100];
            client.write_all(&msg).await.unwrap();
            let mut back = [0; 100];
            client.read_exact(&mut back).await.unwrap();
            echoed.extend_from_slice(&back);
        }
        drop(client);
        server.await.unwrap();
        (echoed.len(), sleeper.await.unwrap())
    });
    assert_eq!(echoed, 2000);
    assert_eq!(slept, Duration::from_secs(3600));
}

#[test]
fn resume_lets_time_run_again_from_the_virtual_instant() {
    paused(|| async {
        let start = now();
        advance(Duration::from_secs(100)).await;
        resume();
        let resumed = now();
        assert!(resumed - start >= Duration::from_secs(100));
        sleep(5 * MS).await; // a real 5 ms
        let after = now();
        assert!(after - resumed >= 5 * MS);
        assert!(after - resumed < Duration::from_secs(5));
        pause();
        let frozen = now();
        std::thread::sleep(2 * MS);
        assert_eq!(now(), frozen);
    });
}

#[test]
fn block_on_ends_with_the_clock_real_again() {
    with_deadline(TEST_LIMIT, || {
        evloop::block_on(async {
            pause();
            advance(Duration::from_secs(3600)).await;
        });
        evloop::block_on(async {
            let real = Instant::now();
            let n = now();
            assert!(n >= real && n - real < Duration::from_secs(1));
        });
    });
}

#[test]
fn misuse_panics_with_the_fix() {
    let msg = expect_panic(pause);
    assert!(msg.contains("evloop::block_on"), "{msg}");
    let msg = with_deadline(TEST_LIMIT, || {
        expect_panic(|| {
            let rt = Runtime::builder().worker_threads(1).build().unwrap();
            rt.block_on(async { pause() })
        })
    });
    assert!(msg.contains("current-thread"), "{msg}");
    let msg = with_deadline(TEST_LIMIT, || {
        expect_panic(|| evloop::block_on(async { resume() }))
    });
    assert!(msg.contains("not paused"), "{msg}");
}

#[test]
fn callback_timer_events_follow_the_virtual_clock() {
    with_deadline(TEST_LIMIT, || {
        let base = EventBase::new().unwrap();
        let log = Rc::new(RefCell::new(Vec::new()));
        let wall = Instant::now();
        let start = base.block_on(async {
            pause();
            now()
        });
        let mut events = Vec::new();
        for secs in [7200u64, 60] {
            let log = log.clone();
            let ev = Event::timer(&base, move |_ctx, what| {
                assert_eq!(what, Flags::TIMEOUT);
                log.borrow_mut().push((secs, now() - start));
            });
            // Added inside the runtime, so that the deadline is computed on its (virtual) clock.
            base.block_on(async { ev.add(Some(Duration::from_secs(secs))) })
                .unwrap();
            events.push(ev);
        }
        base.dispatch();
        assert_eq!(
            *log.borrow(),
            [
                (60, Duration::from_secs(60)),
                (7200, Duration::from_secs(7200))
            ]
        );
        assert!(wall.elapsed() < Duration::from_secs(1));
    });
}

#[test]
fn auto_advance_waits_for_a_blocking_job() {
    let res = paused(|| async {
        let job = evloop::spawn_blocking(|| {
            std::thread::sleep(30 * MS);
            7
        });
        timeout(Duration::from_secs(1), job).await
    });
    assert_eq!(res.unwrap().unwrap(), 7);
}
