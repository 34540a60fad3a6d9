//! Microbenchmarks: evloop beside tokio (current_thread) and smol (`LocalExecutor`), in one run.
//!
//! ```text
//! cargo bench --bench micro                     # every benchmark, 7 rounds of >= 100 ms each
//! cargo bench --bench micro -- --quick          # smoke run: 3 rounds of >= 10 ms
//! cargo bench --bench micro -- timer            # only benchmarks whose name contains "timer"
//! taskset -c 1 target/release/deps/micro-*      # the built binary, pinned to one core
//! ```
//!
//! A plain harness rather than criterion: each runtime ("contender") is first calibrated to an
//! iteration count that takes at least the round time, then every contender of a benchmark runs one
//! round in turn, the starting contender rotating each round, so drift on a shared machine hits all of
//! them alike. The table gives the median ns per operation and the min–max over the rounds.
//!
//! Peers are configured as their users would: tokio's current_thread runtime with `enable_all` (I/O
//! and time drivers on, as evloop's reactor and timers always are), smol's `LocalExecutor` driven by
//! `smol::block_on` (async-io's reactor, where smol's timers live). Every benchmark uses the same
//! channel types (`futures::channel`, `std::sync::mpsc`) for all runtimes.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::StreamExt;
use futures_lite::future::poll_once;
use smol::LocalExecutor;

/// How one runtime performs one benchmark: `run(n)` does `n` operations and returns the time they took
/// (setup such as building the runtime or arming pending timers is done before, once).
struct Contender {
    name: &'static str,
    run: Box<dyn FnMut(u64) -> Duration>,
}

impl Contender {
    fn new(name: &'static str, run: impl FnMut(u64) -> Duration + 'static) -> Contender {
        Contender {
            name,
            run: Box::new(run),
        }
    }
}

struct Bench {
    name: &'static str,
    /// Issue #2 item 7's target for evloop, in ns per operation.
    target: Option<f64>,
    /// Builds the contenders (and their setup, e.g. the pending timers).
    make: fn() -> Vec<Contender>,
}

fn benches() -> Vec<Bench> {
    vec![
        Bench {
            name: "spawn+join",
            target: Some(100.0),
            make: spawn_join,
        },
        Bench {
            name: "JoinSet spawn+join_next (per task)",
            target: None,
            make: join_set,
        },
        Bench {
            name: "mt: JoinSet spawn+join_next (per task)",
            target: None,
            make: mt_join_set,
        },
        Bench {
            name: "yield",
            target: Some(30.0),
            make: yield_now,
        },
        Bench {
            name: "block_on(ready)",
            target: Some(10.0),
            make: block_on_ready,
        },
        Bench {
            name: "timer arm+cancel, 0 pending",
            target: Some(60.0),
            make: || timer(0),
        },
        Bench {
            name: "timer arm+cancel, 100k pending",
            target: Some(60.0),
            make: || timer(100_000),
        },
        Bench {
            name: "timer arm+cancel, 1M pending",
            target: Some(60.0),
            make: || timer(1_000_000),
        },
        Bench {
            name: "ping-pong (round trip)",
            target: None,
            make: ping_pong,
        },
        Bench {
            name: "cross-thread wake (round trip)",
            target: None,
            make: cross_thread,
        },
        Bench {
            name: "clock: Instant::now()",
            target: None,
            make: clock,
        },
        Bench {
            name: "mt: cpu-bound tasks (per task)",
            target: None,
            make: mt_cpu_bound,
        },
        Bench {
            name: "mt: spawn-many (per task)",
            target: None,
            make: mt_spawn_many,
        },
        Bench {
            name: "mt: chained spawn (per task)",
            target: None,
            make: mt_chained_spawn,
        },
        Bench {
            name: "mt: ping-pong (round trip)",
            target: None,
            make: mt_ping_pong,
        },
        Bench {
            name: "mt: yield-many (per yield)",
            target: None,
            make: mt_yield_many,
        },
    ]
}

fn evloop_rt() -> evloop::Runtime {
    evloop::Runtime::new().expect("evloop runtime")
}

/// tokio's current_thread runtime, with its I/O and time drivers (`enable_all`, as `#[tokio::main]`
/// builds it) or without them. Without drivers tokio's scheduler never polls epoll, which makes its
/// `yield_now` cheaper; both are shown where it makes a difference.
fn tokio_rt(drivers: bool) -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    if drivers {
        builder.enable_all();
    }
    builder.build().expect("tokio runtime")
}

/// The tokio configurations compared: name and whether the drivers are on.
const TOKIO: [(&str, bool); 2] = [
    ("tokio ct (enable_all)", true),
    ("tokio ct (no drivers)", false),
];

/// The ways to drive a smol `LocalExecutor`: `smol::block_on` (async-io's, which also drives its
/// reactor while blocked) or `futures_lite::future::block_on` (a bare parker).
const SMOL: [(&str, bool); 2] = [
    ("smol (smol::block_on)", false),
    ("smol (futures_lite block_on)", true),
];

fn smol_block_on<T>(futures_lite: bool, f: impl Future<Output = T>) -> T {
    if futures_lite {
        futures_lite::future::block_on(f)
    } else {
        smol::block_on(f)
    }
}

/// Times `n` operations from inside a future, so entering the runtime is not counted.
async fn timed(f: impl Future<Output = ()>) -> Duration {
    let start = Instant::now();
    f.await;
    start.elapsed()
}

// ---- spawn+join: spawn a trivial task and await its handle, n times.

fn spawn_join() -> Vec<Contender> {
    let rt = evloop_rt();
    let mut out = vec![Contender::new("evloop", move |n| {
        rt.block_on(timed(async {
            for _ in 0..n {
                black_box(evloop::spawn(async { black_box(1) }).await.unwrap());
            }
        }))
    })];
    for (name, drivers) in TOKIO {
        let tk = tokio_rt(drivers);
        out.push(Contender::new(name, move |n| {
            tk.block_on(timed(async {
                for _ in 0..n {
                    black_box(tokio::spawn(async { black_box(1) }).await.unwrap());
                }
            }))
        }));
    }
    for (name, fl) in SMOL {
        let ex = LocalExecutor::new();
        out.push(Contender::new(name, move |n| {
            smol_block_on(
                fl,
                ex.run(timed(async {
                    for _ in 0..n {
                        black_box(ex.spawn(async { black_box(1) }).await);
                    }
                })),
            )
        }));
    }
    out
}

// ---- JoinSet (issue #14): spawn tasks into a set in batches of `JOIN_SET_BATCH`, then take every
// outcome with `join_next`; the figure is per task. Target: below tokio's `JoinSet` in the same run.

const JOIN_SET_BATCH: u64 = 100;

/// Spawns `n` trivial tasks into `$set` (`JoinSet::new()` of either runtime), a batch at a time,
/// joining each batch fully.
macro_rules! join_set_n {
    ($set:expr, $n:expr) => {{
        let mut set = $set;
        let mut left = $n;
        while left > 0 {
            let batch = left.min(JOIN_SET_BATCH);
            for i in 0..batch {
                set.spawn(async move { black_box(i) });
            }
            while let Some(res) = set.join_next().await {
                black_box(res.unwrap());
            }
            left -= batch;
        }
    }};
}

fn join_set() -> Vec<Contender> {
    let rt = evloop_rt();
    let mut out = vec![Contender::new("evloop", move |n| {
        rt.block_on(timed(async {
            join_set_n!(evloop::task::JoinSet::new(), n)
        }))
    })];
    for (name, drivers) in TOKIO {
        let tk = tokio_rt(drivers);
        out.push(Contender::new(name, move |n| {
            tk.block_on(timed(async { join_set_n!(tokio::task::JoinSet::new(), n) }))
        }));
    }
    out
}

/// As the other `mt:` shapes, the set lives in a task (on a worker), not in `block_on`.
fn mt_join_set() -> Vec<Contender> {
    let rt = evloop_mt(2);
    let tk = tokio_mt(2);
    vec![
        Contender::new("evloop mt", move |n| {
            rt.block_on(timed(async move {
                evloop::spawn(async move { join_set_n!(evloop::task::JoinSet::new(), n) })
                    .await
                    .unwrap()
            }))
        }),
        Contender::new("tokio mt", move |n| {
            tk.block_on(timed(async move {
                tokio::spawn(async move { join_set_n!(tokio::task::JoinSet::new(), n) })
                    .await
                    .unwrap()
            }))
        }),
    ]
}

// ---- yield: one spawned task calls yield_now n times.

fn yield_now() -> Vec<Contender> {
    let rt = evloop_rt();
    let mut out = vec![Contender::new("evloop", move |n| {
        rt.block_on(timed(async move {
            evloop::spawn(async move {
                for _ in 0..n {
                    evloop::task::yield_now().await;
                }
            })
            .await
            .unwrap()
        }))
    })];
    for (name, drivers) in TOKIO {
        let tk = tokio_rt(drivers);
        out.push(Contender::new(name, move |n| {
            tk.block_on(timed(async move {
                tokio::spawn(async move {
                    for _ in 0..n {
                        tokio::task::yield_now().await;
                    }
                })
                .await
                .unwrap()
            }))
        }));
    }
    for (name, fl) in SMOL {
        let ex = LocalExecutor::new();
        out.push(Contender::new(name, move |n| {
            smol_block_on(
                fl,
                ex.run(timed(async {
                    ex.spawn(async move {
                        for _ in 0..n {
                            futures_lite::future::yield_now().await;
                        }
                    })
                    .await
                })),
            )
        }));
    }
    out
}

// ---- block_on of a ready future, n times from outside any runtime.

fn block_on_ready() -> Vec<Contender> {
    // Each block_on returns at once: `timed` cannot be used, the loop itself is outside.
    fn outside(n: u64, mut f: impl FnMut() -> i32) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            black_box(f());
        }
        start.elapsed()
    }
    let rt = evloop_rt();
    let mut out = vec![
        Contender::new("evloop (evloop::block_on)", |n| {
            outside(n, || evloop::block_on(async { black_box(1) }))
        }),
        Contender::new("evloop (Runtime::block_on)", move |n| {
            outside(n, || rt.block_on(async { black_box(1) }))
        }),
    ];
    for (name, drivers) in TOKIO {
        let tk = tokio_rt(drivers);
        out.push(Contender::new(name, move |n| {
            outside(n, || tk.block_on(async { black_box(1) }))
        }));
    }
    for (name, fl) in SMOL {
        out.push(Contender::new(name, move |n| {
            outside(n, || smol_block_on(fl, async { black_box(1) }))
        }));
    }
    out
}
// ---- timer arm+cancel: make a 10 s sleep, poll it once so it is armed, drop it; `pending` long
// sleeps (1 to 2 hours, spread) armed beforehand stay in the runtime's timer store throughout.

const ARMED: Duration = Duration::from_secs(10);

/// The deadlines of the pending timers: spread pseudo-randomly over an hour, starting an hour out,
/// so none fires during the run and they occupy many slots/levels of a wheel.
fn pending_delays(pending: usize) -> impl Iterator<Item = Duration> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..pending).map(move |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Duration::from_secs(3_600) + Duration::from_micros(x % 3_600_000_000)
    })
}

fn timer(pending: usize) -> Vec<Contender> {
    let rt = evloop_rt();
    let held = rt.block_on(async {
        let mut held = Vec::with_capacity(pending);
        for d in pending_delays(pending) {
            let mut s = evloop::time::sleep(d);
            assert!(poll_once(&mut s).await.is_none());
            held.push(s);
        }
        held
    });
    // Fields drop in order: the pending timers before their runtime.
    let evloop_state = (held, rt);

    let tk = tokio_rt(true);
    let held = tk.block_on(async {
        let mut held = Vec::with_capacity(pending);
        for d in pending_delays(pending) {
            let mut s = Box::pin(tokio::time::sleep(d));
            assert!(poll_once(s.as_mut()).await.is_none());
            held.push(s);
        }
        held
    });
    let tokio_state = (held, tk);

    let ex = LocalExecutor::new();
    let held = smol::block_on(async {
        let mut held = Vec::with_capacity(pending);
        for d in pending_delays(pending) {
            let mut t = smol::Timer::after(d);
            assert!(poll_once(&mut t).await.is_none());
            held.push(t);
        }
        held
    });
    let smol_state = (held, ex);

    vec![
        Contender::new("evloop", move |n| {
            let (held, rt) = &evloop_state;
            black_box(held.len());
            rt.block_on(timed(async {
                for _ in 0..n {
                    let mut s = evloop::time::sleep(ARMED);
                    black_box(poll_once(&mut s).await);
                }
            }))
        }),
        Contender::new("tokio ct (enable_all)", move |n| {
            let (held, tk) = &tokio_state;
            black_box(held.len());
            tk.block_on(timed(async {
                for _ in 0..n {
                    let mut s = pin!(tokio::time::sleep(ARMED));
                    black_box(poll_once(s.as_mut()).await);
                }
            }))
        }),
        Contender::new("smol (smol::block_on; async-io Timer)", move |n| {
            let (held, ex) = &smol_state;
            black_box(held.len());
            smol::block_on(ex.run(timed(async {
                for _ in 0..n {
                    let mut t = smol::Timer::after(ARMED);
                    black_box(poll_once(&mut t).await);
                }
            })))
        }),
    ]
}

// ---- ping-pong: two tasks bounce a message over a pair of `futures::channel::mpsc` channels; one
// operation is one round trip (two sends, two wakes, two task polls).

/// The two tasks: `ping` sends `n` messages, each after the previous reply; `pong` echoes until its
/// input closes.
fn ping_pong_pair(n: u64) -> (impl Future<Output = ()>, impl Future<Output = ()>) {
    let (to_pong, mut pong_rx) = mpsc::unbounded::<u64>();
    let (to_ping, mut ping_rx) = mpsc::unbounded::<u64>();
    let ping = async move {
        for i in 0..n {
            to_pong.unbounded_send(i).unwrap();
            black_box(ping_rx.next().await.unwrap());
        }
    };
    let pong = async move {
        while let Some(i) = pong_rx.next().await {
            to_ping.unbounded_send(i).unwrap();
        }
    };
    (ping, pong)
}

fn ping_pong() -> Vec<Contender> {
    let rt = evloop_rt();
    let mut out = vec![Contender::new("evloop", move |n| {
        rt.block_on(async move {
            let (ping, pong) = ping_pong_pair(n);
            let pong = evloop::spawn(pong);
            let took = timed(async { evloop::spawn(ping).await.unwrap() }).await;
            pong.await.unwrap();
            took
        })
    })];
    for (name, drivers) in TOKIO {
        let tk = tokio_rt(drivers);
        out.push(Contender::new(name, move |n| {
            tk.block_on(async move {
                let (ping, pong) = ping_pong_pair(n);
                let pong = tokio::spawn(pong);
                let took = timed(async { tokio::spawn(ping).await.unwrap() }).await;
                pong.await.unwrap();
                took
            })
        }));
    }
    for (name, fl) in SMOL {
        let ex = LocalExecutor::new();
        out.push(Contender::new(name, move |n| {
            smol_block_on(
                fl,
                ex.run(async {
                    let (ping, pong) = ping_pong_pair(n);
                    let pong = ex.spawn(pong);
                    let took = timed(ex.spawn(ping)).await;
                    pong.await;
                    took
                }),
            )
        }));
    }
    out
}

// ---- cross-thread wake: a std::thread sends a number over `futures::channel::mpsc` to a task that is
// blocked in its runtime (idle, in the poller); the task sends it back over a `std::sync::mpsc`
// channel. The thread times the round trips with Instant.

type Echo = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs the std::thread side of `n` round trips while `drive` runs the runtime with the echo task.
fn round_trips(n: u64, drive: impl FnOnce(Echo)) -> Duration {
    let (tx, mut rx) = mpsc::unbounded::<u64>();
    let (back_tx, back_rx) = std_mpsc::channel::<u64>();
    let echo = async move {
        while let Some(i) = rx.next().await {
            back_tx.send(i).unwrap();
        }
    };
    std::thread::scope(|s| {
        let waker = s.spawn(move || {
            let start = Instant::now();
            for i in 0..n {
                tx.unbounded_send(i).unwrap();
                assert_eq!(back_rx.recv().unwrap(), i);
            }
            start.elapsed()
            // `tx` drops here: the echo task ends and the runtime returns.
        });
        drive(Box::pin(echo));
        waker.join().unwrap()
    })
}

fn cross_thread() -> Vec<Contender> {
    let rt = evloop_rt();
    let mut out = vec![Contender::new("evloop", move |n| {
        round_trips(n, |echo| {
            rt.block_on(async { evloop::spawn(echo).await.unwrap() })
        })
    })];
    for (name, drivers) in TOKIO {
        let tk = tokio_rt(drivers);
        out.push(Contender::new(name, move |n| {
            round_trips(n, |echo| {
                tk.block_on(async { tokio::spawn(echo).await.unwrap() })
            })
        }));
    }
    for (name, fl) in SMOL {
        let ex = LocalExecutor::new();
        out.push(Contender::new(name, move |n| {
            round_trips(n, |echo| {
                smol_block_on(fl, ex.run(async { ex.spawn(echo).await }))
            })
        }));
    }
    out
}
// ---- the cost of reading the clock, which every timer arm pays once (deadline = now + duration).

fn clock() -> Vec<Contender> {
    vec![Contender::new("Instant::now()", |n| {
        let start = Instant::now();
        for _ in 0..n {
            black_box(Instant::now());
        }
        start.elapsed()
    })]
}

// ---- harness

struct Options {
    rounds: usize,
    round_time: Duration,
    filters: Vec<String>,
    /// Only contenders whose name contains this (e.g. `evloop`, for profiling).
    runtime: Option<String>,
    /// `--exact`: the filters and `--runtime` must equal the names, not be contained in them.
    exact: bool,
    /// `--iters N`: run each selected contender once for exactly `N` operations, no calibration and no
    /// table (for counting instructions under callgrind: `benches/run.sh --instructions`).
    iters: Option<u64>,
    /// `--list-runtimes`: print the contenders' names of the selected benchmarks, one a line.
    list_runtimes: bool,
}

fn options() -> Options {
    let mut opts = Options {
        rounds: 7,
        round_time: Duration::from_millis(100),
        filters: Vec::new(),
        runtime: None,
        exact: false,
        iters: None,
        list_runtimes: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // `cargo bench` passes `--bench` to every bench binary.
            "--bench" => {}
            "--quick" => {
                opts.rounds = 3;
                opts.round_time = Duration::from_millis(10);
            }
            "--rounds" => {
                opts.rounds = args
                    .next()
                    .and_then(|r| r.parse().ok())
                    .filter(|&r| r > 0)
                    .expect("--rounds takes a positive number");
            }
            "--runtime" => opts.runtime = Some(args.next().expect("--runtime takes a name")),
            "--exact" => opts.exact = true,
            "--list-runtimes" => opts.list_runtimes = true,
            "--iters" => {
                opts.iters = Some(
                    args.next()
                        .and_then(|r| r.parse().ok())
                        .expect("--iters takes a number"),
                )
            }
            "--help" | "-h" => {
                println!(
                    "usage: micro [--quick] [--rounds N] [--runtime NAME] [--exact] [--iters N] \
                     [--list-runtimes] [FILTER...]"
                );
                for b in benches() {
                    println!("  {}", b.name);
                }
                std::process::exit(0);
            }
            other if other.starts_with("--") => panic!("unknown option {other}; try --help"),
            filter => opts.filters.push(filter.to_string()),
        }
    }
    opts
}

/// Finds an iteration count whose run takes at least `round_time` (this also warms up). The count is
/// confirmed by a second run, so one slow outlier during calibration cannot leave the rounds short.
fn calibrate(c: &mut Contender, round_time: Duration) -> u64 {
    let mut n: u64 = 16;
    let mut confirmed = false;
    for _ in 0..64 {
        let took = (c.run)(n);
        if took >= round_time {
            if confirmed {
                return n;
            }
            confirmed = true;
            continue;
        }
        confirmed = false;
        let scale = round_time.as_secs_f64() / took.as_secs_f64().max(1e-9) * 1.2;
        n = (n as f64 * scale.clamp(1.2, 100.0)) as u64;
    }
    n
}

struct Row {
    bench: &'static str,
    runtime: &'static str,
    target: Option<f64>,
    iters: u64,
    median: f64,
    min: f64,
    max: f64,
}

fn run_bench(b: &Bench, opts: &Options) -> Vec<Row> {
    let mut contenders = (b.make)();
    if let Some(only) = &opts.runtime {
        contenders.retain(|c| matches(opts.exact, c.name, only));
    }
    let iters: Vec<u64> = contenders
        .iter_mut()
        .map(|c| calibrate(c, opts.round_time))
        .collect();
    let mut samples = vec![Vec::with_capacity(opts.rounds); contenders.len()];
    for round in 0..opts.rounds {
        for k in 0..contenders.len() {
            let i = (round + k) % contenders.len();
            let took = (contenders[i].run)(iters[i]);
            samples[i].push(took.as_nanos() as f64 / iters[i] as f64);
        }
    }
    contenders
        .iter()
        .zip(iters)
        .zip(samples)
        .map(|((c, iters), mut s)| {
            s.sort_by(f64::total_cmp);
            Row {
                bench: b.name,
                runtime: c.name,
                target: b.target.filter(|_| c.name.starts_with("evloop")),
                iters,
                median: s[s.len() / 2],
                min: s[0],
                max: s[s.len() - 1],
            }
        })
        .collect()
}

/// Whether `name` is selected by `filter` (equal with `--exact`, else contained).
fn matches(exact: bool, name: &str, filter: &str) -> bool {
    if exact {
        name == filter
    } else {
        name.contains(filter)
    }
}

fn main() {
    let opts = options();
    let selected: Vec<Bench> = benches()
        .into_iter()
        .filter(|b| {
            opts.filters.is_empty() || opts.filters.iter().any(|f| matches(opts.exact, b.name, f))
        })
        .collect();
    assert!(
        !selected.is_empty(),
        "no benchmark matches {:?}; try --help",
        opts.filters
    );
    if opts.list_runtimes || opts.iters.is_some() {
        for b in &selected {
            let mut contenders = (b.make)();
            if let Some(only) = &opts.runtime {
                contenders.retain(|c| matches(opts.exact, c.name, only));
            }
            for c in &mut contenders {
                match opts.iters {
                    None => println!("{}", c.name),
                    Some(n) => {
                        let took = (c.run)(n);
                        eprintln!("{} / {}: {n} operations in {took:?}", b.name, c.name);
                    }
                }
            }
        }
        return;
    }
    eprintln!(
        "{} round(s) of >= {:?} per runtime, alternating; ns per operation",
        opts.rounds, opts.round_time
    );
    let mut rows = Vec::new();
    for b in &selected {
        for row in run_bench(b, &opts) {
            eprintln!(
                "  {:<32} {:<30} {:>10.1} ns",
                row.bench, row.runtime, row.median
            );
            rows.push(row);
        }
    }
    println!();
    println!(
        "| benchmark | runtime | median ns/op | min–max ns/op | iterations/round | evloop target |"
    );
    println!("|---|---|---:|---:|---:|---|");
    for r in &rows {
        let target = match r.target {
            Some(t) if r.median <= t => format!("≤ {t} ns: met"),
            Some(t) => format!("≤ {t} ns: **missed** ({:.1}×)", r.median / t),
            None => String::new(),
        };
        println!(
            "| {} | {} | {:.1} | {:.1}–{:.1} | {} | {} |",
            r.bench, r.runtime, r.median, r.min, r.max, r.iters, target
        );
    }
}

// ---- Multi-thread runtimes (issue #6): evloop's `Runtime::builder()` against tokio's multi_thread
// runtime (`enable_all`), both with 2 workers unless the name says otherwise; the shapes of tokio's
// `rt_multi_threaded` benchmarks. Every task is spawned from inside a task, so it starts on a worker.

fn evloop_mt(workers: usize) -> evloop::Runtime {
    evloop::Runtime::builder()
        .worker_threads(workers)
        .build()
        .expect("evloop runtime")
}

fn tokio_mt(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// About 20 µs of work that the optimiser cannot remove.
fn cpu_work(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    black_box(x)
}

/// Runs `n` tasks of `body` spawned from one task, waiting for all of them through a counter and a
/// channel (so the join itself costs nothing per task).
macro_rules! spawn_n {
    ($spawn:path, $n:expr, $body:expr) => {{
        let n = $n;
        let left = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(n));
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        let tx = std::sync::Arc::new(std::sync::Mutex::new(Some(tx)));
        $spawn(async move {
            for i in 0..n {
                let left = left.clone();
                let tx = tx.clone();
                $spawn(async move {
                    $body(i);
                    if left.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
                        let _ = tx.lock().unwrap().take().unwrap().send(());
                    }
                });
            }
        });
        let _ = rx.await;
    }};
}

fn mt_cpu_bound() -> Vec<Contender> {
    let mut out = Vec::new();
    for (name, workers) in [("evloop mt, 1 worker", 1), ("evloop mt, 2 workers", 2)] {
        let rt = evloop_mt(workers);
        out.push(Contender::new(name, move |n| {
            rt.block_on(timed(async { spawn_n!(evloop::spawn, n, cpu_work) }))
        }));
    }
    for (name, workers) in [("tokio mt, 1 worker", 1), ("tokio mt, 2 workers", 2)] {
        let tk = tokio_mt(workers);
        out.push(Contender::new(name, move |n| {
            tk.block_on(timed(async { spawn_n!(tokio::spawn, n, cpu_work) }))
        }));
    }
    out
}

fn mt_spawn_many() -> Vec<Contender> {
    let rt = evloop_mt(2);
    let tk = tokio_mt(2);
    vec![
        Contender::new("evloop mt", move |n| {
            rt.block_on(timed(async {
                spawn_n!(evloop::spawn, n, black_box::<u64>)
            }))
        }),
        Contender::new("tokio mt", move |n| {
            tk.block_on(timed(async { spawn_n!(tokio::spawn, n, black_box::<u64>) }))
        }),
    ]
}

/// Each task spawns the next; the last one signals.
macro_rules! chain {
    ($spawn:path, $name:ident) => {
        fn $name(left: u64, done: futures::channel::oneshot::Sender<()>) {
            if left == 0 {
                let _ = done.send(());
            } else {
                $spawn(async move { $name(left - 1, done) });
            }
        }
    };
}
chain!(evloop::spawn, evloop_chain);
chain!(tokio::spawn, tokio_chain);

fn mt_chained_spawn() -> Vec<Contender> {
    let rt = evloop_mt(2);
    let tk = tokio_mt(2);
    vec![
        Contender::new("evloop mt", move |n| {
            rt.block_on(timed(async move {
                let (tx, rx) = futures::channel::oneshot::channel();
                evloop::spawn(async move { evloop_chain(n, tx) });
                let _ = rx.await;
            }))
        }),
        Contender::new("tokio mt", move |n| {
            tk.block_on(timed(async move {
                let (tx, rx) = futures::channel::oneshot::channel();
                tokio::spawn(async move { tokio_chain(n, tx) });
                let _ = rx.await;
            }))
        }),
    ]
}

fn mt_ping_pong() -> Vec<Contender> {
    let rt = evloop_mt(2);
    let tk = tokio_mt(2);
    vec![
        Contender::new("evloop mt", move |n| {
            rt.block_on(timed(async move {
                let (a, b) = ping_pong_pair(n);
                let b = evloop::spawn(b);
                evloop::spawn(a).await.unwrap();
                b.await.unwrap();
            }))
        }),
        Contender::new("tokio mt", move |n| {
            tk.block_on(timed(async move {
                let (a, b) = ping_pong_pair(n);
                let b = tokio::spawn(b);
                tokio::spawn(a).await.unwrap();
                b.await.unwrap();
            }))
        }),
    ]
}

/// 200 tasks yield `n / 200` times each.
const YIELDERS: u64 = 200;

fn mt_yield_many() -> Vec<Contender> {
    let rt = evloop_mt(2);
    let tk = tokio_mt(2);
    vec![
        Contender::new("evloop mt", move |n| {
            let per = n.div_ceil(YIELDERS);
            rt.block_on(timed(async move {
                let hs: Vec<_> = (0..YIELDERS)
                    .map(|_| {
                        evloop::spawn(async move {
                            for _ in 0..per {
                                evloop::task::yield_now().await;
                            }
                        })
                    })
                    .collect();
                for h in hs {
                    h.await.unwrap();
                }
            }))
        }),
        Contender::new("tokio mt", move |n| {
            let per = n.div_ceil(YIELDERS);
            tk.block_on(timed(async move {
                let hs: Vec<_> = (0..YIELDERS)
                    .map(|_| {
                        tokio::spawn(async move {
                            for _ in 0..per {
                                tokio::task::yield_now().await;
                            }
                        })
                    })
                    .collect();
                for h in hs {
                    h.await.unwrap();
                }
            }))
        }),
    ]
}
