//! Load: thousands of concurrent connections, each echoing a pattern with every byte checked, against
//! the async echo (current-thread, and multi-thread with 2 workers) and the callback echo, in this
//! process on loopback. Afterwards `/proc/self/fd` is back to its baseline and resident memory back
//! near it.
//!
//! The normal suite runs 1,000 connections x 64 KiB per server. The issue's full size, 10,000 x
//! 256 KiB, is too slow for a debug `cargo test` on 2 cores; run it with
//!
//! ```text
//! cargo test --release --test load -- --ignored --nocapture
//! ```
//!
//! Each size runs in a child process of its own (descriptor counts and RLIMIT_NOFILE are process-wide).
//! The child raises its soft RLIMIT_NOFILE to the hard limit; both ends of every connection live here,
//! so if the limit cannot hold two descriptors per connection the count is scaled down, and that is
//! printed.

mod util;

use std::io;
use std::time::{Duration, Instant};

use evloop::net::TcpStream;

use util::{
    child_role, echo_and_check, fd_targets, open_fds, pattern_table, raise_nofile_limit,
    run_in_child_for, trim_allocator, vm_rss_kib, EchoKind, EchoServer,
};

/// Descriptors kept free for the runtimes, the test harness and the allocator's maps.
const FD_MARGIN: usize = 200;
/// Connections opened at once while connecting (the rest wait their turn; all stay open). Below 128,
/// the listen backlog `event::Listener::bind` gets from std: a larger burst overflows it and the
/// connections the kernel drops are accepted seconds later, or not at all (see RELIABILITY.md and
/// `faults.rs`'s `a_connect_burst_of_300_fits_the_callback_listeners_backlog`).
const CONNECT_BATCH: usize = 100;

/// Result of one server's run, printed by the child.
struct Run {
    conns: usize,
    elapsed: Duration,
    rss_peak_kib: u64,
    rss_after_kib: u64,
}

/// Connects `conns` clients to `addr`, waits until all of them are accepted (so they are open at the
/// same time), then echoes `table` on every one at once, checking every byte.
fn run_clients(
    server: &EchoServer,
    conns: usize,
    len: usize,
    fds_before: usize,
) -> io::Result<u64> {
    let addr = server.addr;
    let stats = server.stats.clone();
    let table = pattern_table(len);
    util::with_deadline(Duration::from_secs(600), move || {
        evloop::block_on(async move {
            let mut streams = Vec::with_capacity(conns);
            while streams.len() < conns {
                let batch = CONNECT_BATCH.min(conns - streams.len());
                let connects = (0..batch).map(|_| TcpStream::connect(addr));
                for s in futures::future::join_all(connects).await {
                    streams.push(s?);
                }
            }
            // Every connection is open at both ends before any data moves.
            let start = Instant::now();
            while stats.live.load(std::sync::atomic::Ordering::SeqCst) < conns {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "the server accepted {} of {conns} connections",
                    stats.live.load(std::sync::atomic::Ordering::SeqCst)
                );
                evloop::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(
                open_fds() >= fds_before + 2 * conns,
                "{} descriptors open with {conns} connections (baseline {fds_before})",
                open_fds()
            );
            let tasks: Vec<_> = streams
                .into_iter()
                .enumerate()
                .map(|(c, stream)| {
                    let table = table.clone();
                    evloop::spawn(async move { echo_and_check(&stream, &table, c).await })
                })
                .collect();
            // Samples resident memory while the transfers run.
            let peak = std::rc::Rc::new(std::cell::Cell::new(vm_rss_kib()));
            let p = peak.clone();
            let sampler = evloop::spawn_local(async move {
                loop {
                    p.set(p.get().max(vm_rss_kib()));
                    evloop::time::sleep(Duration::from_millis(20)).await;
                }
            });
            for task in tasks {
                task.await.expect("client task")?;
            }
            sampler.abort();
            Ok(peak.get())
        })
    })
}

/// Runs `conns` x `len` against each server in turn; checks descriptors and memory after each.
fn load(conns_wanted: usize, len: usize) {
    let soft = raise_nofile_limit() as usize;
    let fds_before = open_fds();
    let fit = soft.saturating_sub(fds_before + FD_MARGIN) / 2;
    let conns = conns_wanted.min(fit);
    if conns < conns_wanted {
        println!(
            "RLIMIT_NOFILE hard limit {soft} holds two descriptors for only {conns} connections: \
             running {conns} instead of {conns_wanted} (raise the hard limit, e.g. `ulimit -Hn 21000` \
             as root, for the full count)"
        );
    }
    assert!(
        conns >= 100,
        "RLIMIT_NOFILE {soft} is too low for a load test"
    );
    trim_allocator();
    let rss_before = vm_rss_kib();
    let mut runs = Vec::new();
    for kind in [
        EchoKind::AsyncCurrent,
        EchoKind::AsyncMulti(2),
        EchoKind::Callback,
    ] {
        let start = Instant::now();
        let server = EchoServer::start(kind, None);
        let rss_peak_kib = run_clients(&server, conns, len, fds_before)
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        eprintln!("{kind:?}: clients done after {:.1?}", start.elapsed());
        let accepted = server
            .stats
            .accepted
            .load(std::sync::atomic::Ordering::SeqCst);
        server.stop();
        let elapsed = start.elapsed();
        assert_eq!(accepted, conns, "{kind:?}: accepted connections");
        assert_eq!(
            open_fds(),
            fds_before,
            "{kind:?}: descriptors after the run (baseline {fds_before}): {:?}",
            fd_targets()
        );
        trim_allocator();
        let rss_after_kib = vm_rss_kib();
        let run = Run {
            conns,
            elapsed,
            rss_peak_kib,
            rss_after_kib,
        };
        println!(
            "{kind:?}: {} conns x {} KiB echoed and checked in {:.1?}; RSS {} MiB before, {} MiB peak, \
             {} MiB after (malloc_trim); fds back to {fds_before}",
            run.conns,
            len / 1024,
            run.elapsed,
            rss_before / 1024,
            run.rss_peak_kib / 1024,
            run.rss_after_kib / 1024
        );
        runs.push((kind, run));
    }
    // Near baseline: what is left is the allocator's fragmentation and the three runtimes' thread
    // stacks' touched pages, not per-connection state (which would be hundreds of MiB at this size).
    let bound = rss_before + 64 * 1024;
    for (kind, run) in &runs {
        assert!(
            !util::rss_is_meaningful() || run.rss_after_kib <= bound,
            "{kind:?}: RSS {} MiB after the run, baseline {} MiB",
            run.rss_after_kib / 1024,
            rss_before / 1024
        );
    }
}

#[test]
fn echo_1000_connections_of_64_kib_on_each_server() {
    if child_role().as_deref() != Some("load-small") {
        return run_in_child_for(
            "echo_1000_connections_of_64_kib_on_each_server",
            "load-small",
            Duration::from_secs(180),
        );
    }
    load(1_000, 64 * 1024);
}

#[test]
#[ignore = "10,000 x 256 KiB x 3 servers: run with `cargo test --release --test load -- --ignored`"]
fn echo_10000_connections_of_256_kib_on_each_server() {
    if child_role().as_deref() != Some("load-full") {
        return run_in_child_for(
            "echo_10000_connections_of_256_kib_on_each_server",
            "load-full",
            Duration::from_secs(1800),
        );
    }
    load(10_000, 256 * 1024);
}
