//! Tasks and timers on one thread: spawned tasks, a ticking interval, a timeout, and a task that
//! panics without taking the others down.
//!
//! Run with: `cargo run --example tasks_and_timers`

use std::time::{Duration, Instant};

use evloop::time::{interval, sleep, timeout};

/// This example takes no flags.
const USAGE: &str = "usage: tasks_and_timers";

fn main() {
    if let Some(flag) = std::env::args().nth(1) {
        if flag == "--help" {
            println!("{USAGE}");
            return;
        }
        eprintln!("tasks_and_timers: unknown flag {flag}\n{USAGE}");
        std::process::exit(2);
    }
    let start = Instant::now();
    evloop::block_on(async move {
        // Three workers that finish in the order of their sleeps, not of their spawning.
        let workers: Vec<_> = [30u64, 10, 20]
            .into_iter()
            .map(|ms| {
                evloop::spawn(async move {
                    sleep(Duration::from_millis(ms)).await;
                    println!(
                        "{:>5.1?}  worker that slept {ms} ms is done",
                        start.elapsed()
                    );
                    ms
                })
            })
            .collect();

        // A ticker running beside them.
        let ticker = evloop::spawn(async move {
            let mut every = interval(Duration::from_millis(8));
            for n in 0..4 {
                every.tick().await;
                println!("{:>5.1?}  tick {n}", start.elapsed());
            }
        });

        // A task that panics: its handle reports it, the runtime carries on.
        let bad = evloop::spawn(async { panic!("this task fails on purpose") });
        match bad.await {
            Err(e) if e.is_panic() => println!("{:>5.1?}  caught: {e}", start.elapsed()),
            other => println!("unexpected: {other:?}"),
        }

        // A future with a deadline.
        let slow = sleep(Duration::from_secs(60));
        if timeout(Duration::from_millis(15), slow).await.is_err() {
            println!(
                "{:>5.1?}  the 60 s sleep timed out after 15 ms",
                start.elapsed()
            );
        }

        let mut total = 0;
        for w in workers {
            total += w.await.expect("worker failed");
        }
        ticker.await.expect("ticker failed");
        println!(
            "{:>5.1?}  all done, slept {total} ms in total",
            start.elapsed()
        );
    });
}
