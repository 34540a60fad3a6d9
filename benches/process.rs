//! Child processes: spawn + wait of `/bin/true`, evloop's `process` against `tokio::process`, in one
//! run.
//!
//! ```text
//! cargo bench --bench process                    # 1,000 children per measurement, 7 rounds
//! cargo bench --bench process -- --quick         # smoke run: 200 children, 3 rounds
//! cargo bench --bench process -- --children N --rounds R
//! ```
//!
//! Two shapes: **sequential** (spawn, wait, then the next) and **50 at a time** (50 tasks, each
//! spawning and waiting for its share in turn, so 50 children are in flight). Both runtimes run
//! their current-thread flavor (tokio with `enable_all`, which its process support needs). Each round
//! runs every shape for both runtimes, the one going first alternating from round to round, so drift
//! on a shared machine hits both alike.
//!
//! Figures per child: wall time; this process's CPU time (user + system, `getrusage(RUSAGE_SELF)`:
//! the runtime's own cost, plus the parent's share of fork/exec); and the total with the children's
//! CPU (`RUSAGE_CHILDREN`, which counts reaped children). The table gives the median over the rounds,
//! the min–max, and the median of the per-round ratios evloop / tokio (below 1: evloop is cheaper).

use std::time::{Duration, Instant};

const IN_FLIGHT: usize = 50;
const PROGRAM: &str = "/bin/true";

/// One measurement: per-child wall time, self CPU and self + children CPU, in microseconds.
#[derive(Clone, Copy)]
struct Sample {
    wall: f64,
    cpu_self: f64,
    cpu_total: f64,
}

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: all-zero is a valid rusage; getrusage only writes to it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, exclusive rusage for the call.
    let rc = unsafe { libc::getrusage(who, &mut usage) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Runs `f` (which spawns and waits for `n` children) and measures it.
fn measure(n: usize, f: impl FnOnce()) -> Sample {
    let (s0, c0, t0) = (
        rusage(libc::RUSAGE_SELF),
        rusage(libc::RUSAGE_CHILDREN),
        Instant::now(),
    );
    f();
    let wall = t0.elapsed();
    let cpu_self = rusage(libc::RUSAGE_SELF) - s0;
    let cpu_children = rusage(libc::RUSAGE_CHILDREN) - c0;
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    Sample {
        wall: per(wall),
        cpu_self: per(cpu_self),
        cpu_total: per(cpu_self + cpu_children),
    }
}

fn evloop_run(rt: &evloop::Runtime, n: usize, in_flight: usize) {
    rt.block_on(async {
        let per_task = n / in_flight;
        let tasks: Vec<_> = (0..in_flight)
            .map(|_| {
                evloop::spawn_local(async move {
                    for _ in 0..per_task {
                        let mut child = evloop::process::Command::new(PROGRAM).spawn().unwrap();
                        assert!(child.wait().await.unwrap().success());
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

fn tokio_run(rt: &tokio::runtime::Runtime, n: usize, in_flight: usize) {
    let local = tokio::task::LocalSet::new();
    local.block_on(rt, async {
        let per_task = n / in_flight;
        let tasks: Vec<_> = (0..in_flight)
            .map(|_| {
                tokio::task::spawn_local(async move {
                    for _ in 0..per_task {
                        let mut child = tokio::process::Command::new(PROGRAM).spawn().unwrap();
                        assert!(child.wait().await.unwrap().success());
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// Picks one figure out of a sample.
type Figure = fn(&Sample) -> f64;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn range(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:.0}–{hi:.0}")
}

const USAGE: &str = "usage: process [--quick] [--children N] [--rounds R] [--only evloop|tokio]
  --only runs one runtime (for strace/perf), sequential shape only, and prints no table";

fn main() {
    let (mut children, mut rounds) = (1000usize, 7usize);
    let mut only = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |what: &str| -> usize {
            match args.next().and_then(|v| v.parse().ok()) {
                Some(v) if v > 0 => v,
                _ => {
                    eprintln!("process: {what} needs a positive number\n{USAGE}");
                    std::process::exit(2)
                }
            }
        };
        match arg.as_str() {
            "--quick" => (children, rounds) = (200, 3),
            "--children" => children = number("--children"),
            "--rounds" => rounds = number("--rounds"),
            "--only" => match args.next().as_deref() {
                Some("evloop") => only = Some(0),
                Some("tokio") => only = Some(1),
                _ => {
                    eprintln!("process: --only needs `evloop` or `tokio`\n{USAGE}");
                    std::process::exit(2)
                }
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            // `cargo bench` passes --bench to harness=false targets.
            "--bench" => {}
            other => {
                eprintln!("process: unknown argument `{other}`\n{USAGE}");
                std::process::exit(2)
            }
        }
    }
    let children = children.div_ceil(IN_FLIGHT) * IN_FLIGHT; // an equal share per task

    let ev = evloop::Runtime::new().expect("evloop runtime");
    let tk = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Some(who) = only {
        for _ in 0..rounds {
            if who == 0 {
                evloop_run(&ev, children, 1);
            } else {
                tokio_run(&tk, children, 1);
            }
        }
        return;
    }
    // Warm-up: the first spawn pays for loading the program and the runtimes' lazy setup.
    evloop_run(&ev, IN_FLIGHT, IN_FLIGHT);
    tokio_run(&tk, IN_FLIGHT, IN_FLIGHT);

    let shapes = [("sequential", 1), ("50 at a time", IN_FLIGHT)];
    // samples[shape][0 = evloop, 1 = tokio][round]
    let mut samples = vec![[Vec::new(), Vec::new()]; shapes.len()];
    for round in 0..rounds {
        for (s, &(_, in_flight)) in shapes.iter().enumerate() {
            for k in 0..2 {
                let who = (k + round) % 2;
                let sample = if who == 0 {
                    measure(children, || evloop_run(&ev, children, in_flight))
                } else {
                    measure(children, || tokio_run(&tk, children, in_flight))
                };
                samples[s][who].push(sample);
            }
        }
    }

    println!(
        "spawn + wait of {PROGRAM}: {children} children per measurement, {rounds} rounds, \
         current-thread runtimes; µs per child, median (min–max); ratio = median of evloop/tokio per round"
    );
    println!();
    println!("| shape | figure | evloop | tokio | ratio |");
    println!("|---|---|---|---|---|");
    for (s, (shape, _)) in shapes.iter().enumerate() {
        let figures: [(&str, Figure); 3] = [
            ("wall", |x| x.wall),
            ("CPU, this process", |x| x.cpu_self),
            ("CPU, with the children", |x| x.cpu_total),
        ];
        for (name, get) in figures {
            let e: Vec<f64> = samples[s][0].iter().map(get).collect();
            let t: Vec<f64> = samples[s][1].iter().map(get).collect();
            let ratios: Vec<f64> = e.iter().zip(&t).map(|(a, b)| a / b).collect();
            println!(
                "| {shape} | {name} | {:.0} ({}) | {:.0} ({}) | {:.2} |",
                median(e.clone()),
                range(&e),
                median(t.clone()),
                range(&t),
                median(ratios)
            );
        }
    }
}
