//! Timers: `sleep` is never early and only a little late, timers fire in deadline order, a dropped
//! `Sleep` leaves nothing behind, `Sleep::reset`, `Interval` and its missed-tick behaviours, `timeout`,
//! and the edge cases (zero and maximal durations, instants in the past, use outside a runtime).

mod util;

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::Context;
use std::time::{Duration, Instant};

use evloop::time::{
    interval, interval_at, sleep, sleep_until, timeout, timeout_at, Elapsed, MissedTickBehavior,
};
use evloop::{spawn, spawn_local};
use futures::StreamExt;

use util::{expect_panic, with_deadline, CountingWaker, TEST_LIMIT};

/// A small deterministic generator, so that "random" orders are reproducible.
fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn sleep_never_completes_before_its_deadline() {
    let early = util::block_on(async {
        let mut seed = 1;
        let mut early = Vec::new();
        // One after another...
        for _ in 0..100 {
            let s = sleep(Duration::from_micros(lcg(&mut seed) % 3_000));
            let deadline = s.deadline();
            s.await;
            if Instant::now() < deadline {
                early.push(deadline);
            }
        }
        // ...and many at once.
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let s = sleep(Duration::from_micros(lcg(&mut seed) % 3_000));
                spawn(async move {
                    let deadline = s.deadline();
                    s.await;
                    Instant::now() >= deadline
                })
            })
            .collect();
        for t in tasks {
            if !t.await.unwrap() {
                early.push(Instant::now());
            }
        }
        early.len()
    });
    assert_eq!(early, 0, "sleeps completed before their deadline");
}

#[test]
fn sleep_lateness_on_an_idle_runtime_is_small() {
    let mut late = util::block_on(async {
        let mut late = Vec::new();
        for _ in 0..20 {
            let s = sleep(ms(3));
            let deadline = s.deadline();
            s.await;
            late.push(Instant::now() - deadline);
        }
        late
    });
    late.sort();
    let median = late[late.len() / 2];
    println!(
        "sleep(3 ms) lateness on an idle runtime: min {:?}, median {median:?}, max {:?}",
        late[0],
        late[late.len() - 1]
    );
    // Generous: the target is well under a millisecond, but other tests share the machine.
    assert!(median < ms(5), "median lateness {median:?}");
}

#[test]
fn timers_fire_in_deadline_order() {
    const N: usize = 300;
    let (order, early) = util::block_on(async {
        // Every timer is set before the first deadline (30 ms; longer where ThreadSanitizer slows
        // the spawning down), so the order seen is the wheel's.
        let base = Instant::now() + ms(30) * util::slowdown();
        let mut ids: Vec<usize> = (0..N).collect();
        let mut seed = 7;
        for i in (1..N).rev() {
            ids.swap(i, lcg(&mut seed) as usize % (i + 1));
        }
        let log = Arc::new(Mutex::new(Vec::with_capacity(N)));
        let tasks: Vec<_> = ids
            .into_iter()
            .map(|id| {
                let log = log.clone();
                // Distinct deadlines, 50 µs apart (the wheel's tick is 1 µs).
                let deadline = base + Duration::from_micros(50 * id as u64);
                spawn(async move {
                    sleep_until(deadline).await;
                    log.lock().unwrap().push(id);
                    Instant::now() < deadline
                })
            })
            .collect();
        let mut early = 0;
        for t in tasks {
            early += usize::from(t.await.unwrap());
        }
        let order = log.lock().unwrap().clone();
        (order, early)
    });
    assert_eq!(early, 0, "timers completed before their deadline");
    assert_eq!(order.len(), N);
    let out_of_order: Vec<_> = order.windows(2).filter(|w| w[0] > w[1]).collect();
    assert!(
        out_of_order.is_empty(),
        "timers fired out of deadline order: {out_of_order:?}"
    );
}

/// Polls `n` sleeps (of 20..70 ms) once with `waker` and keeps them.
fn arm(n: u64, waker: &std::task::Waker) -> Vec<evloop::time::Sleep> {
    let mut cx = Context::from_waker(waker);
    (0..n)
        .map(|i| {
            let mut s = sleep(ms(20 + i % 50));
            assert!(Pin::new(&mut s).poll(&mut cx).is_pending());
            s
        })
        .collect()
}

/// Polls `n` sleeps (of 20..70 ms) once with `waker`, dropping each at once.
fn poll_once_and_drop(n: u64, waker: &std::task::Waker) {
    let mut cx = Context::from_waker(waker);
    for i in 0..n {
        let mut s = sleep(ms(20 + i % 50));
        assert!(Pin::new(&mut s).poll(&mut cx).is_pending());
    }
}

/// There is no public timer count, so this looks at the wakers: a timer left in the wheel keeps a clone
/// of the waker it was polled with (and would wake it once due).
#[test]
fn dropped_sleeps_leave_nothing_behind() {
    const N: u64 = 1_000_000;
    util::block_on(async {
        let (counter, waker) = CountingWaker::new();

        // The check can fail: armed timers do hold the waker.
        let kept = arm(1_000, &waker);
        assert_eq!(Arc::strong_count(&counter), 2 + kept.len());
        drop(kept);
        assert_eq!(Arc::strong_count(&counter), 2);

        let start = Instant::now();
        poll_once_and_drop(N, &waker);
        println!("{N} sleeps armed and dropped in {:?}", start.elapsed());
        assert_eq!(
            Arc::strong_count(&counter),
            2,
            "dropped sleeps left timers behind"
        );

        // Past every deadline: nothing may fire.
        sleep(ms(100)).await;
        assert_eq!(counter.wakes(), 0, "a dropped sleep woke its waker");

        // The runtime's timers still work.
        let s = sleep(ms(2));
        let deadline = s.deadline();
        s.await;
        assert!(Instant::now() >= deadline);
    });
}

#[test]
fn sleep_reset() {
    util::block_on(async {
        // Before the first poll.
        let mut s = sleep(Duration::from_secs(60));
        let new = Instant::now() + ms(10);
        s.reset(new);
        assert_eq!(s.deadline(), new);
        timeout(ms(2_000), &mut s)
            .await
            .expect("reset before the first poll was ignored");
        assert!(Instant::now() >= new && s.is_elapsed());

        // Armed, moved earlier.
        let mut s = sleep(Duration::from_secs(60));
        assert!(futures::poll!(&mut s).is_pending());
        let new = Instant::now() + ms(10);
        s.reset(new);
        timeout(ms(2_000), &mut s)
            .await
            .expect("moving an armed sleep earlier was ignored");
        assert!(Instant::now() >= new);

        // Armed, moved later: must not complete at the old deadline.
        let mut s = sleep(ms(5));
        assert!(futures::poll!(&mut s).is_pending());
        let new = Instant::now() + ms(40);
        s.reset(new);
        (&mut s).await;
        assert!(
            Instant::now() >= new,
            "a sleep moved later completed at its old deadline"
        );

        // After completion: one Sleep serves another wait.
        let new = Instant::now() + ms(10);
        s.reset(new);
        assert!(!s.is_elapsed());
        (&mut s).await;
        assert!(Instant::now() >= new);

        // Armed, moved into the past: completes promptly.
        let mut s = sleep(Duration::from_secs(60));
        assert!(futures::poll!(&mut s).is_pending());
        s.reset(Instant::now() - ms(1));
        timeout(ms(2_000), &mut s)
            .await
            .expect("a sleep reset into the past did not complete");
    });
}

#[test]
fn sleep_reset_from_another_task() {
    with_deadline(TEST_LIMIT, || {
        evloop::block_on(async {
            let s = Rc::new(RefCell::new(sleep(Duration::from_secs(60))));
            let waiter = {
                let s = s.clone();
                spawn_local(poll_fn(move |cx| Pin::new(&mut *s.borrow_mut()).poll(cx)))
            };
            sleep(ms(10)).await;
            let new = Instant::now() + ms(10);
            s.borrow_mut().reset(new);
            timeout(ms(2_000), waiter)
                .await
                .expect("a sleep reset by another task kept its old deadline")
                .unwrap();
            assert!(Instant::now() >= new);
        })
    });
}

#[test]
fn sleep_reset_from_another_thread_while_the_runtime_is_parked() {
    util::block_on(async {
        let s = Arc::new(Mutex::new(sleep(Duration::from_secs(60))));
        let new = Arc::new(Mutex::new(None));
        let resetter = {
            let (s, new) = (s.clone(), new.clone());
            std::thread::spawn(move || {
                // By now the runtime blocks in the poller with a 60 s deadline.
                std::thread::sleep(ms(30));
                let deadline = Instant::now() + ms(10);
                *new.lock().unwrap() = Some(deadline);
                s.lock().unwrap().reset(deadline);
            })
        };
        let waited = poll_fn(|cx| Pin::new(&mut *s.lock().unwrap()).poll(cx));
        // (A timeout re-polls `waited` when it fires, which would hide a lost wake: check the time.)
        let _ = timeout(ms(3_000), waited).await;
        resetter.join().unwrap();
        let deadline = new.lock().unwrap().expect("the reset ran");
        let late = Instant::now().saturating_duration_since(deadline);
        assert!(Instant::now() >= deadline);
        assert!(
            late < ms(1_500),
            "a sleep moved from another thread completed {late:?} after its new deadline"
        );
    });
}

/// Period of the interval tests: long enough that a stall of 5.5 periods is unambiguous on a busy
/// machine, short enough to keep each test well under a second.
const P: Duration = Duration::from_millis(60);

/// Ticks once at `start`, then stalls the runtime's thread for 5.5 periods (ticks 1..=5 are missed).
/// Returns the interval and when the stall ended.
async fn stalled_interval(
    behavior: MissedTickBehavior,
) -> (evloop::time::Interval, Instant, Instant) {
    let start = Instant::now();
    let mut iv = interval_at(start, P);
    iv.set_missed_tick_behavior(behavior);
    assert_eq!(iv.missed_tick_behavior(), behavior);
    assert_eq!(iv.tick().await, start);
    std::thread::sleep(P * 11 / 2);
    (iv, start, Instant::now())
}

#[test]
fn interval_burst_fires_missed_ticks_back_to_back() {
    util::block_on(async {
        let (mut iv, start, _) = stalled_interval(MissedTickBehavior::Burst).await;
        for k in 1..=5 {
            assert_eq!(iv.tick().await, start + P * k, "burst tick {k}");
        }
        assert!(
            Instant::now() < start + P * 6,
            "the missed ticks were not delivered back to back"
        );
        assert_eq!(iv.tick().await, start + P * 6);
        assert!(Instant::now() >= start + P * 6);
    });
}

#[test]
fn interval_delay_shifts_the_schedule() {
    util::block_on(async {
        let (mut iv, start, stall_end) = stalled_interval(MissedTickBehavior::Delay).await;
        let late = iv.tick().await;
        assert!(
            late < start + P * 2,
            "the late tick fires at once: {:?}",
            late - start
        );
        let next = iv.tick().await;
        // One period after the late tick was taken (which was after the stall ended).
        assert!(next >= stall_end + P, "next {:?}", next - start);
        assert!(Instant::now() >= next);
    });
}

/// With no tick missed, `Delay` must keep the schedule like the other behaviours: each tick is one
/// period after the previous *scheduled* instant, not after the moment the task got to run.
#[test]
fn interval_delay_does_not_drift_when_no_tick_is_missed() {
    const Q: Duration = Duration::from_millis(10);
    util::block_on(async {
        let mut iv = interval(Q);
        iv.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // (scheduled instant, when the tick was seen) of the previous tick.
        let mut prev: Option<(Instant, Instant)> = None;
        for k in 0..10 {
            let scheduled = iv.tick().await;
            let seen = Instant::now();
            // Only a tick taken a full period late may shift the schedule (a loaded machine can do that).
            if let Some((prev_scheduled, _)) = prev.filter(|&(s, seen)| seen < s + Q) {
                assert_eq!(scheduled, prev_scheduled + Q, "tick {k} drifted");
            }
            prev = Some((scheduled, seen));
        }
    });
}

#[test]
fn interval_skip_drops_missed_ticks_and_stays_aligned() {
    util::block_on(async {
        let (mut iv, start, stall_end) = stalled_interval(MissedTickBehavior::Skip).await;
        assert_eq!(iv.tick().await, start + P, "the late tick fires at once");
        let next = iv.tick().await;
        let offset = next - start;
        assert_eq!(
            offset.as_nanos() % P.as_nanos(),
            0,
            "not aligned: {offset:?}"
        );
        let k = offset.as_nanos() / P.as_nanos();
        // 5.5 periods of stall: the next aligned tick is the 6th (later on a very slow machine).
        assert!((6..=9).contains(&k), "skipped to tick {k}");
        assert!(next > stall_end && Instant::now() >= next);
    });
}

#[test]
fn interval_is_a_stream() {
    util::block_on(async {
        let start = Instant::now();
        let iv = interval_at(start, ms(5));
        assert_eq!(iv.period(), ms(5));
        assert_eq!(iv.missed_tick_behavior(), MissedTickBehavior::Burst);
        let ticks: Vec<Instant> = iv.take(4).collect().await;
        let expected: Vec<Instant> = (0..4).map(|k| start + ms(5) * k).collect();
        assert_eq!(ticks, expected);
        assert!(Instant::now() >= start + ms(15));
    });
}

#[test]
fn interval_with_a_zero_period_panics() {
    let msg = expect_panic(|| interval(Duration::ZERO));
    assert!(msg.contains("non-zero"), "message: {msg}");
}

#[test]
fn interval_with_the_maximal_period_does_not_panic() {
    for behavior in [
        MissedTickBehavior::Burst,
        MissedTickBehavior::Delay,
        MissedTickBehavior::Skip,
    ] {
        util::block_on(async move {
            let mut iv = interval(Duration::MAX);
            iv.set_missed_tick_behavior(behavior);
            iv.tick().await; // the first tick is at once
            assert!(
                futures::poll!(Box::pin(iv.tick())).is_pending(),
                "{behavior:?}"
            );
            iv.reset();
            assert!(
                futures::poll!(Box::pin(iv.tick())).is_pending(),
                "{behavior:?}"
            );
        });
    }
}

#[test]
fn timeout_ok_and_err() {
    util::block_on(async {
        assert_eq!(timeout(ms(50), async { 5 }).await, Ok(5));
        let quick = timeout(ms(2_000), async {
            sleep(ms(5)).await;
            "in time"
        });
        assert_eq!(quick.await, Ok("in time"));

        let start = Instant::now();
        let err = timeout(ms(20), std::future::pending::<()>())
            .await
            .unwrap_err();
        assert!(
            start.elapsed() >= ms(20),
            "timed out early: {:?}",
            start.elapsed()
        );
        assert_eq!(err, Elapsed::clone(&err));
        assert_eq!(err.to_string(), "deadline has elapsed");
        let io: std::io::Error = err.into();
        assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);

        let t = timeout(ms(1), async { 9 });
        assert_eq!(t.into_inner().await, 9);
    });
}

#[test]
fn zero_durations_complete_at_once() {
    util::block_on(async {
        assert!(futures::poll!(sleep(Duration::ZERO)).is_ready());
        assert!(futures::poll!(timeout(Duration::ZERO, std::future::pending::<()>())).is_ready());
        assert_eq!(timeout(Duration::ZERO, async { 1 }).await, Ok(1));
        assert!(timeout(Duration::ZERO, std::future::pending::<()>())
            .await
            .is_err());
        // Even a future that would be ready at once wins against a zero deadline: it is polled first.
        assert_eq!(timeout(Duration::ZERO, sleep(Duration::ZERO)).await, Ok(()));
    });
}

#[test]
fn maximal_durations_never_fire_and_do_not_disturb_other_timers() {
    util::block_on(async {
        let forever = sleep(Duration::MAX);
        assert!(forever.deadline() > Instant::now() + Duration::from_secs(86_400 * 365));
        // The poller must cope with a deadline years away while a near timer is pending.
        let start = Instant::now();
        let near = sleep(ms(10));
        match futures::future::select(forever, near).await {
            futures::future::Either::Right(_) => {}
            futures::future::Either::Left(_) => panic!("sleep(Duration::MAX) completed"),
        }
        assert!(start.elapsed() < ms(2_000), "took {:?}", start.elapsed());

        // Only the far timer pending: the runtime parks with it and still wakes for a spawned task.
        let far = spawn(sleep(Duration::MAX));
        assert_eq!(timeout(Duration::MAX, async { 3 }).await, Ok(3));
        assert_eq!(timeout(Duration::MAX, sleep(ms(5))).await, Ok(()));
        assert!(!far.is_finished());
        far.abort();
    });
}

#[test]
fn instants_in_the_past() {
    util::block_on(async {
        let past = Instant::now()
            .checked_sub(ms(500))
            .expect("the monotonic clock started");
        assert!(futures::poll!(sleep_until(past)).is_ready());
        assert!(futures::poll!(timeout_at(past, std::future::pending::<()>())).is_ready());
        assert_eq!(timeout_at(past, async { 2 }).await, Ok(2));

        // An interval that started in the past fires at once, then catches up (burst, by default).
        let mut iv = interval_at(past, ms(100));
        assert_eq!(iv.tick().await, past);
        for k in 1..=4 {
            assert_eq!(iv.tick().await, past + ms(100) * k);
        }
        assert!(
            Instant::now() < past + ms(500) + ms(100) * 2,
            "the catch-up ticks waited"
        );
    });
}

#[test]
fn timers_outside_a_runtime_panic_naming_the_fix() {
    let msg = expect_panic(|| futures::executor::block_on(sleep(ms(1))));
    assert!(msg.contains("evloop::block_on"), "message: {msg}");
    let msg =
        expect_panic(|| futures::executor::block_on(timeout(ms(1), std::future::pending::<()>())));
    assert!(msg.contains("evloop::block_on"), "message: {msg}");
    // A future ready at once needs no timer, hence no runtime.
    assert_eq!(
        futures::executor::block_on(timeout(ms(1), async { 4 })),
        Ok(4)
    );
}

#[test]
fn a_sleep_polled_once_and_forgotten_is_harmless_after_its_runtime() {
    // An armed Sleep outliving its runtime is dropped without touching the dead runtime's thread state.
    let s = with_deadline(TEST_LIMIT, || {
        let rt = evloop::Runtime::new().unwrap();
        let mut s = Box::pin(sleep(Duration::from_secs(60)));
        rt.block_on(async {
            assert!(futures::poll!(s.as_mut()).is_pending());
        });
        drop(rt);
        s
    });
    drop(s);
}
