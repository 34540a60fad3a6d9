//! Files: writing and reading a 256 MiB file with `evloop::fs`, `tokio::fs` and plain `std::fs`,
//! alternated in one run (issue #13 item 4).
//!
//! ```text
//! cargo bench --bench fs                        # 5 repetitions of every shape, 256 MiB
//! cargo bench --bench fs -- --reps 3 --mib 64   # fewer, smaller
//! ```
//!
//! Shapes: `File` written in 1 MiB and in 64 KiB `write_all` calls, then flushed (`close`); `File` read
//! to the end in 1 MiB and in 64 KiB reads; the whole file in one call (`fs::write`, `fs::read`). Each
//! contender writes and reads its own file in a temporary directory; nothing is synced, so writes go to
//! the page cache and every read is of a file just written (cached): this measures the runtimes'
//! overhead over the system calls, not the disk. evloop and tokio run on a current-thread runtime (their
//! blocking pools do the I/O); std runs the same loop on the main thread.
//!
//! Figures per shape and contender: MB/s (wall time) and CPU µs per MB (the process's utime+stime,
//! pool threads included), as median (min–max) over the repetitions; and, paired repetition by
//! repetition, each contender's wall and CPU time over tokio's and over std's (median of the ratios). The contenders'
//! order rotates each repetition.

use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const USAGE: &str = "usage: fs [--reps N] [--mib M] [--only TEXT] [--contenders LIST] [--help]
  --reps N           repetitions of every shape and contender (default 5)
  --mib M            file size in MiB (default 256)
  --only TEXT        only the shapes whose name contains TEXT (e.g. \"64 KiB\")
  --contenders LIST  comma-separated subset of evloop,tokio,std (e.g. for strace; default all)";

const MIB: usize = 1 << 20;

#[derive(Clone, Copy, PartialEq)]
enum Contender {
    Evloop,
    Tokio,
    Std,
}

const CONTENDERS: [Contender; 3] = [Contender::Evloop, Contender::Tokio, Contender::Std];

impl Contender {
    fn name(self) -> &'static str {
        match self {
            Contender::Evloop => "evloop::fs",
            Contender::Tokio => "tokio::fs",
            Contender::Std => "std::fs",
        }
    }
}

#[derive(Clone, Copy)]
enum Shape {
    /// `File`, `write_all` of this many bytes at a time, then `close`/`flush`.
    Write(usize),
    /// `File`, reads of this many bytes until the end.
    Read(usize),
    WholeWrite,
    WholeRead,
}

const SHAPES: [Shape; 6] = [
    Shape::Write(MIB),
    Shape::Write(64 * 1024),
    Shape::WholeWrite,
    Shape::Read(MIB),
    Shape::Read(64 * 1024),
    Shape::WholeRead,
];

impl Shape {
    fn name(self) -> String {
        let kib = |n: usize| {
            if n >= MIB {
                format!("{} MiB", n / MIB)
            } else {
                format!("{} KiB", n / 1024)
            }
        };
        match self {
            Shape::Write(n) => format!("File write, {} writes", kib(n)),
            Shape::Read(n) => format!("File read, {} reads", kib(n)),
            Shape::WholeWrite => "fs::write (whole file)".into(),
            Shape::WholeRead => "fs::read (whole file)".into(),
        }
    }
}

/// utime + stime of the whole process (pool threads included).
fn cpu_time() -> Duration {
    // SAFETY: all-zero is a valid rusage; getrusage only writes to it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, exclusive rusage for the call.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

struct Env {
    data: Vec<u8>,
    tokio: tokio::runtime::Runtime,
}

/// Runs `f` on the contender's runtime (std: directly).
fn run_on<T>(env: &Env, who: Contender, f: impl Future<Output = T>) -> T {
    match who {
        Contender::Evloop => evloop::block_on(f),
        Contender::Tokio => env.tokio.block_on(f),
        Contender::Std => futures::executor::block_on(f),
    }
}

/// One measured run: returns (wall, cpu). Reads check the length they got.
fn measure(env: &Env, who: Contender, shape: Shape, path: &Path) -> (Duration, Duration) {
    let data = &env.data;
    let len = data.len();
    let (wall0, cpu0) = (Instant::now(), cpu_time());
    let got = match (who, shape) {
        (Contender::Evloop, Shape::Write(n)) => run_on(env, who, async {
            let mut f = evloop::fs::File::create(path).await.unwrap();
            for chunk in data.chunks(n) {
                f.write_all(chunk).await.unwrap();
            }
            f.close().await.unwrap();
            len
        }),
        (Contender::Tokio, Shape::Write(n)) => run_on(env, who, async {
            let mut f = tokio::fs::File::create(path).await.unwrap();
            for chunk in data.chunks(n) {
                f.write_all(chunk).await.unwrap();
            }
            f.flush().await.unwrap();
            len
        }),
        (Contender::Std, Shape::Write(n)) => {
            let mut f = std::fs::File::create(path).unwrap();
            for chunk in data.chunks(n) {
                f.write_all(chunk).unwrap();
            }
            len
        }
        (Contender::Evloop, Shape::Read(n)) => run_on(env, who, async {
            let mut f = evloop::fs::File::open(path).await.unwrap();
            let (mut buf, mut total) = (vec![0; n], 0);
            loop {
                match f.read(&mut buf).await.unwrap() {
                    0 => break total,
                    k => total += k,
                }
            }
        }),
        (Contender::Tokio, Shape::Read(n)) => run_on(env, who, async {
            let mut f = tokio::fs::File::open(path).await.unwrap();
            let (mut buf, mut total) = (vec![0; n], 0);
            loop {
                match f.read(&mut buf).await.unwrap() {
                    0 => break total,
                    k => total += k,
                }
            }
        }),
        (Contender::Std, Shape::Read(n)) => {
            let mut f = std::fs::File::open(path).unwrap();
            let (mut buf, mut total) = (vec![0; n], 0);
            loop {
                match f.read(&mut buf).unwrap() {
                    0 => break total,
                    k => total += k,
                }
            }
        }
        (Contender::Evloop, Shape::WholeWrite) => run_on(env, who, async {
            evloop::fs::write(path, data).await.unwrap();
            len
        }),
        (Contender::Tokio, Shape::WholeWrite) => run_on(env, who, async {
            tokio::fs::write(path, data).await.unwrap();
            len
        }),
        (Contender::Std, Shape::WholeWrite) => {
            std::fs::write(path, data).unwrap();
            len
        }
        (Contender::Evloop, Shape::WholeRead) => run_on(env, who, async {
            evloop::fs::read(path).await.unwrap().len()
        }),
        (Contender::Tokio, Shape::WholeRead) => run_on(env, who, async {
            tokio::fs::read(path).await.unwrap().len()
        }),
        (Contender::Std, Shape::WholeRead) => std::fs::read(path).unwrap().len(),
    };
    let out = (wall0.elapsed(), cpu_time() - cpu0);
    assert_eq!(got, len, "{} {}: wrong length", who.name(), shape.name());
    out
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct Options {
    reps: usize,
    mib: usize,
    only: Option<String>,
    contenders: Vec<Contender>,
}

fn options() -> Options {
    let (mut reps, mut mib, mut only, mut contenders) = (5, 256, None, CONTENDERS.to_vec());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |what: &str| -> usize {
            match args
                .next()
                .and_then(|v| v.parse().ok())
                .filter(|&v: &usize| v > 0)
            {
                Some(v) => v,
                None => {
                    eprintln!("fs: {what} needs a positive number\n{USAGE}");
                    std::process::exit(2);
                }
            }
        };
        match arg.as_str() {
            "--reps" => reps = number("--reps"),
            "--mib" => mib = number("--mib"),
            "--only" => only = args.next(),
            "--contenders" => {
                let list = args.next().unwrap_or_default();
                contenders = CONTENDERS
                    .into_iter()
                    .filter(|c| list.split(',').any(|w| c.name().starts_with(w)))
                    .collect();
                if contenders.is_empty() {
                    eprintln!("fs: --contenders needs some of evloop,tokio,std\n{USAGE}");
                    std::process::exit(2);
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            // `cargo bench` passes `--bench` to every harness=false target.
            "--bench" => {}
            other => {
                eprintln!("fs: unknown argument {other}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    Options {
        reps,
        mib,
        only,
        contenders,
    }
}

fn main() {
    let Options {
        reps,
        mib,
        only,
        contenders,
    } = options();
    let dir: PathBuf = std::env::temp_dir().join(format!("evloop-bench-fs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the benchmark's directory");
    let env = Env {
        data: (0..mib * MIB).map(|i| (i % 251) as u8).collect(),
        tokio: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime"),
    };
    let path = |who: Contender| dir.join(who.name().replace("::", "-"));
    eprintln!(
        "{mib} MiB, {reps} repetitions, files in {} (page cache, not synced)",
        dir.display()
    );
    // Warm-up: each contender writes its file once, so every read below is of a cached file and the
    // pools have their threads.
    for &who in &contenders {
        measure(&env, who, Shape::WholeWrite, &path(who));
    }
    println!(
        "| shape | contender | MB/s | CPU µs/MB | wall / CPU vs tokio (paired) | wall / CPU vs std (paired) |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    let shapes = SHAPES
        .into_iter()
        .filter(|s| only.as_ref().is_none_or(|o| s.name().contains(o.as_str())));
    for shape in shapes {
        // [contender][rep] = (wall, cpu)
        let mut runs = vec![Vec::new(); contenders.len()];
        for rep in 0..reps {
            for k in 0..contenders.len() {
                let c = (k + rep) % contenders.len();
                let who = contenders[c];
                runs[c].push(measure(&env, who, shape, &path(who)));
            }
        }
        let mb = (mib * MIB) as f64 / 1e6;
        let tokio = contenders.iter().position(|&c| c == Contender::Tokio);
        let std = contenders.iter().position(|&c| c == Contender::Std);
        for (c, who) in contenders.iter().enumerate() {
            let mut rates: Vec<f64> = runs[c].iter().map(|r| mb / r.0.as_secs_f64()).collect();
            let mut cpus: Vec<f64> = runs[c]
                .iter()
                .map(|r| r.1.as_secs_f64() * 1e6 / mb)
                .collect();
            let (lo, hi) = (
                rates.iter().cloned().fold(f64::MAX, f64::min),
                rates.iter().cloned().fold(0.0, f64::max),
            );
            let (clo, chi) = (
                cpus.iter().cloned().fold(f64::MAX, f64::min),
                cpus.iter().cloned().fold(0.0, f64::max),
            );
            // Median over the repetitions of (this contender's time / the peer's), wall and CPU.
            let paired = |peer: Option<usize>| -> String {
                let Some(peer) = peer else {
                    return "-".into();
                };
                if peer == c {
                    return "1.00x / 1.00x".into();
                }
                let ratio = |f: fn(&(Duration, Duration)) -> Duration| {
                    let mut v: Vec<f64> = (0..reps)
                        .map(|r| f(&runs[c][r]).as_secs_f64() / f(&runs[peer][r]).as_secs_f64())
                        .collect();
                    median(&mut v)
                };
                format!("{:.2}x / {:.2}x", ratio(|r| r.0), ratio(|r| r.1))
            };
            println!(
                "| {} | {} | {:.0} ({:.0}–{:.0}) | {:.0} ({:.0}–{:.0}) | {} | {} |",
                shape.name(),
                who.name(),
                median(&mut rates),
                lo,
                hi,
                median(&mut cpus),
                clo,
                chi,
                paired(tokio),
                paired(std)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
