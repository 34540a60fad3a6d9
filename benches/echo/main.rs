//! The echo benchmark: the peer echo servers and THE load generator, in one binary.
//!
//! `benches/run.sh` drives it and writes the "Echo servers" section of BENCHMARKS.md, which says how
//! each figure is measured. By hand (the binary's path is printed by
//! `cargo bench --bench echo --no-run`):
//!
//! ```text
//! echo server tokio-ct|tokio-mt|smol|mio --addr 127.0.0.1:7100
//! echo wait   --addr 127.0.0.1:7100          # returns once the server accepts (10 s at most)
//! echo client --addr 127.0.0.1:7100 --type pp --conns 50 --size 64 --secs 3 [--server-pid PID]
//!             [--syscalls perf|strace]     # count the server's syscalls over the window instead
//! echo report results.txt [--update BENCHMARKS.md --machine "..." --command "..."]
//! ```
//!
//! Client types: `pp` (closed-loop ping-pong), `rate` (open loop at `--rate` messages/s), `stream`
//! (`--window` bytes in flight per connection, echoed in `--size` chunks), `fair` (`pp` plus one
//! connection that writes as fast as it can) and `idle` (`--conns` held open; needs `--server-pid`).
//!
//! The client is single-threaded on mio, so it depends on none of the runtimes under test; it sets
//! TCP_NODELAY, keeps one message in flight per ping-pong connection and checks every echoed byte
//! against what it sent. It prints one machine-readable `RESULT key=value ...` line and one human line.
//!
//! # Layout
//! - `main.rs`: the roles (`server`, `client`, `wait`, `report`) and `--key value` parsing.
//! - `servers.rs`: the peer servers (tokio current_thread and multi_thread, smol, the mio floor).
//! - `client.rs`: the load generator and its scenarios.
//! - `measure.rs`: what is read about the server: CPU and memory from /proc, syscalls with perf or strace.
//! - `report.rs`: the `RESULT` line the client prints, and the markdown tables made from those lines.

// The load generator is Linux only: it paces the open loop with a timerfd and sets PR_SET_TIMERSLACK,
// and what benches/run.sh measures around it (/proc, perf, strace) is Linux's too. Elsewhere the binary
// still builds (cross-checked), and its `client` and `wait` roles say they are not there; the parts only
// they use are then unused.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

#[cfg(target_os = "linux")]
mod client;
mod measure;
mod report;
mod servers;

use std::collections::BTreeMap;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;

#[cfg(target_os = "linux")]
use client::{client, wait};
use report::report;
use servers::server;

fn main() {
    // `cargo bench` appends `--bench`; it means nothing here.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let result = match args.first().map(String::as_str) {
        Some("server") => server(&args[1..]),
        #[cfg(target_os = "linux")]
        Some("client") => client(&Opts::parse(&args[1..])),
        #[cfg(target_os = "linux")]
        Some("wait") => wait(&Opts::parse(&args[1..])),
        #[cfg(not(target_os = "linux"))]
        Some(role @ ("client" | "wait")) => Err(io::Error::new(
            ErrorKind::Unsupported,
            format!(
                "the `{role}` role is Linux only (timerfd, PR_SET_TIMERSLACK); run it on Linux"
            ),
        )),
        Some("report") => report(&args[1..]),
        _ => {
            eprintln!(
                "usage: see the header of benches/echo/main.rs; benches/run.sh runs the whole suite"
            );
            Ok(())
        }
    };
    if let Err(e) = result {
        eprintln!("echo: {e}");
        std::process::exit(1);
    }
}

/// `--key value` options; every key has a default so a missing flag never panics.
pub(crate) struct Opts(pub(crate) BTreeMap<String, String>);

impl Opts {
    pub(crate) fn parse(args: &[String]) -> Opts {
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
    pub(crate) fn num(&self, key: &str, default: f64) -> f64 {
        self.0
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
    pub(crate) fn addr(&self) -> io::Result<SocketAddr> {
        self.str("addr", "127.0.0.1:7100")
            .parse()
            .map_err(|e| io::Error::new(ErrorKind::InvalidInput, format!("--addr: {e}")))
    }
}
