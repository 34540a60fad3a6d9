//! The HTTP benchmark's peer server (hyper on hyper-util + tokio), its `wrk` driver and its report.
//!
//! `benches/run.sh --http` drives it against `examples/http_server.rs` (evloop) and writes nothing by
//! itself; the "HTTP" section of BENCHMARKS.md says how each figure is measured. By hand (the binary's
//! path is printed by `cargo bench --bench http --no-run`):
//!
//! ```text
//! http server --flavor current_thread|multi_thread [--threads 2] --addr 127.0.0.1:7100
//! http wrk    --addr 127.0.0.1:7100 --conns 50 --secs 5 --server-pid PID --label L --rep 0
//! http report results.txt
//! ```
//!
//! The server answers `GET /` exactly as `examples/http_server.rs` does (same status, headers and body)
//! and anything else with 404, so `wrk` measures the same exchange on both runtimes.
//!
//! `wrk` runs `wrk -t1 -cN -dSs --latency` (pinned by the caller) and the driver prints one
//! `RESULT key=value ...` line: requests/s, p50/p99 latency, server CPU µs per request (utime+stime of
//! the server from /proc/PID/stat before and after, divided by the requests wrk counted), and wrk's
//! socket errors and non-2xx responses (a run with any is reported as failed, not as a result).
//!
//! # Layout
//! - `main.rs`: the roles and `--key value` parsing.
//! - `server.rs`: the hyper-on-tokio hello-world server.
//! - `wrk.rs`: running wrk, parsing its output, reading the server's CPU time.
//! - `report.rs`: the markdown tables and paired ratios made from the `RESULT` lines.

mod report;
mod server;
mod wrk;

use std::collections::BTreeMap;
use std::io;

fn main() {
    // `cargo bench` appends `--bench`; it means nothing here.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let opts = Opts::parse(args.get(1..).unwrap_or(&[]));
    let result = match args.first().map(String::as_str) {
        Some("server") => server::run(&opts),
        Some("wrk") => wrk::run(&opts),
        Some("report") => report::run(args.get(1).map(String::as_str)),
        _ => {
            eprintln!(
                "usage: see the header of benches/http/main.rs; benches/run.sh --http runs it"
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("http: {e}");
        std::process::exit(1);
    }
}

/// `--key value` options; every key has a default so a missing flag never panics.
pub(crate) struct Opts(BTreeMap<String, String>);

impl Opts {
    fn parse(args: &[String]) -> Opts {
        let mut map = BTreeMap::new();
        let mut it = args.iter().peekable();
        while let Some(a) = it.next() {
            if let Some(key) = a.strip_prefix("--") {
                let value = match it.peek() {
                    Some(v) if !v.starts_with("--") => it.next().cloned().unwrap_or_default(),
                    _ => "1".to_string(),
                };
                map.insert(key.to_string(), value);
            }
        }
        Opts(map)
    }

    pub(crate) fn str(&self, key: &str, default: &str) -> String {
        self.0
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    pub(crate) fn num(&self, key: &str, default: u64) -> io::Result<u64> {
        match self.0.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("--{key} {v}: expected a whole number"),
                )
            }),
        }
    }
}
