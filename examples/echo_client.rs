//! Load generator for the echo servers: N connections, each sending M messages of S bytes, one message
//! in flight per connection, TCP_NODELAY, every echoed byte checked. Prints round trips per second and
//! p50/p99 latency. Single-threaded, on evloop.
//!
//! ```text
//! cargo run --release --example echo_client -- [--addr 127.0.0.1:7000] [--conns 50] [--msgs 10000] [--size 64]
//! ```

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use evloop::net::TcpStream;
use futures::{AsyncReadExt, AsyncWriteExt};

/// Latency histogram resolution is 1 µs; anything slower than this lands in the last bucket.
const MAX_LATENCY_US: usize = 1_000_000;

const USAGE: &str =
    "usage: echo_client [--addr 127.0.0.1:7000] [--conns 50] [--msgs 10000] [--size 64]";

/// Round trips counted by latency in µs, shared by the connection tasks (all on this thread).
type Histogram = Rc<RefCell<Vec<u64>>>;

fn main() -> io::Result<()> {
    let (addr, conns, msgs, size) = parse_args().unwrap_or_else(|e| {
        eprintln!("echo_client: {e}\n{USAGE}");
        std::process::exit(2)
    });
    let histogram = Rc::new(RefCell::new(vec![0u64; MAX_LATENCY_US + 1]));
    let start = Instant::now();
    evloop::block_on(async {
        let tasks: Vec<_> = (0..conns)
            .map(|c| {
                evloop::spawn_local(connection(addr.clone(), c, msgs, size, histogram.clone()))
            })
            .collect();
        for task in tasks {
            task.await.map_err(io::Error::other)??;
        }
        Ok::<(), io::Error>(())
    })?;
    let (elapsed, histogram) = (start.elapsed(), histogram.borrow());
    println!(
        "{conns} conns x {msgs} msgs x {size} B: {:.0} round trips/s, p50 {:?}, p99 {:?} ({:.2?} total)",
        (conns * msgs) as f64 / elapsed.as_secs_f64(),
        percentile(&histogram, 0.50),
        percentile(&histogram, 0.99),
        elapsed
    );
    Ok(())
}

/// One connection: send a message, wait for all of it to come back, check it, repeat.
async fn connection(
    addr: String,
    c: usize,
    msgs: usize,
    size: usize,
    hist: Histogram,
) -> io::Result<()> {
    let mut stream = TcpStream::connect(addr.as_str()).await?;
    stream.set_nodelay(true)?;
    let (mut msg, mut echo) = (vec![0u8; size], vec![0u8; size]);
    for m in 0..msgs {
        for (k, b) in msg.iter_mut().enumerate() {
            *b = (c * 7 + m * 13 + k) as u8;
        }
        let sent = Instant::now();
        stream.write_all(&msg).await?;
        stream.read_exact(&mut echo).await?;
        hist.borrow_mut()[(sent.elapsed().as_micros() as usize).min(MAX_LATENCY_US)] += 1;
        if echo != msg {
            let k = (0..size).find(|&k| echo[k] != msg[k]).unwrap_or(0);
            let why = format!("connection {c}, message {m}: byte {k} differs");
            return Err(io::Error::new(io::ErrorKind::InvalidData, why));
        }
    }
    Ok(())
}

/// The latency below which a fraction `q` of the round trips fall.
fn percentile(histogram: &[u64], q: f64) -> Duration {
    let total: u64 = histogram.iter().sum();
    let target = ((total as f64 * q).ceil() as u64).max(1);
    let mut seen = 0;
    let us = histogram.iter().position(|&n| {
        seen += n;
        seen >= target
    });
    Duration::from_micros(us.unwrap_or(0) as u64)
}

/// `(addr, conns, msgs, size)` from `--addr --conns --msgs --size`, parsed by hand; `--help` prints the
/// usage and exits.
fn parse_args() -> io::Result<(String, usize, usize, usize)> {
    let mut out = ["127.0.0.1:7000", "50", "10000", "64"].map(String::from);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let slot = match flag.as_str() {
            "--addr" => 0,
            "--conns" => 1,
            "--msgs" => 2,
            "--size" => 3,
            _ => return Err(usage(&format!("unknown flag {flag}"))),
        };
        out[slot] = args
            .next()
            .ok_or_else(|| usage(&format!("{flag} needs a value")))?;
    }
    let [addr, conns, msgs, size] = out;
    Ok((addr, num(&conns)?, num(&msgs)?, num(&size)?))
}

fn num(s: &str) -> io::Result<usize> {
    s.parse()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| usage(&format!("`{s}` is not a positive number")))
}

/// What is wrong with the command line, in one line (`main` prints it above the usage).
fn usage(problem: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, problem)
}
