//! The echo server written as async tasks: one task per connection in a `JoinSet`, TCP_NODELAY on
//! each. On Ctrl-C it stops accepting, gives the open connections a grace period to finish, then
//! aborts the rest.
//!
//! ```text
//! cargo run --release --example echo_async -- [--addr 127.0.0.1:7000] [--idle-timeout-ms 0] [--threads 0] [--grace-ms 5000]
//! ```
//!
//! `--idle-timeout-ms N` closes a connection that sends nothing for N ms (0, the default: never).
//! `--threads N` runs on a multi-thread runtime with N workers (0, the default: `evloop::block_on`).
//! `--grace-ms N`: after Ctrl-C, how long open connections may go on before they are aborted
//! (default 5000).
//! Load it with `cargo run --release --example echo_client`.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use evloop::net::{TcpListener, TcpStream};
use evloop::task::JoinSet;
use futures::{AsyncReadExt, AsyncWriteExt};

/// Each connection's buffer; a read that fills less of it tells the reactor the socket is drained.
const BUF_SIZE: usize = 16 * 1024;

const USAGE: &str =
    "usage: echo_async [--addr 127.0.0.1:7000] [--idle-timeout-ms N] [--threads N] [--grace-ms N]";

fn main() -> io::Result<()> {
    let (addr, idle, threads, grace) = parse_args().unwrap_or_else(|e| {
        eprintln!("echo_async: {e}\n{USAGE}");
        std::process::exit(2)
    });
    let server = async move {
        let listener = TcpListener::bind(addr.as_str()).await?;
        println!("echo_async listening on {}", listener.local_addr()?);
        let mut conns = JoinSet::new();
        let mut ctrl_c = pin!(evloop::signal::ctrl_c());
        loop {
            let mut accept = pin!(listener.accept());
            let next = poll_fn(|cx| {
                if let Poll::Ready(res) = ctrl_c.as_mut().poll(cx) {
                    return Poll::Ready(Err(res));
                }
                // Take the outcomes of connections that ended, so the set holds only open ones.
                while let Poll::Ready(Some(_)) = conns.poll_join_next(cx) {}
                accept.as_mut().poll(cx).map(Ok)
            })
            .await;
            match next {
                Ok(Ok((stream, _peer))) => {
                    conns.spawn(serve(stream, idle));
                }
                // E.g. out of descriptors: reported once; the next accept waits until one is free.
                Ok(Err(e)) => eprintln!("accept: {e}"),
                Err(stop) => {
                    stop?;
                    break;
                }
            }
        }
        drop(listener); // stop accepting: new connections are refused from here on
        let open = conns.len();
        println!("echo_async: Ctrl-C, {open} open connection(s), {grace:?} grace");
        let drain = async { while conns.join_next().await.is_some() {} };
        if evloop::time::timeout(grace, drain).await.is_err() {
            println!("echo_async: aborting {} connection(s)", conns.len());
            conns.shutdown().await;
        }
        Ok(())
    };
    match threads {
        0 => evloop::block_on(server),
        n => evloop::Runtime::builder()
            .worker_threads(n)
            .build()?
            .block_on(server),
    }
}

/// Echoes until the peer closes, an error, or `idle` passes without data.
async fn serve(mut stream: TcpStream, idle: Option<Duration>) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    // The buffer is allocated once the peer first sends: an idle connection costs no buffer.
    if !matches!(within(idle, stream.readable()).await, Some(Ok(()))) {
        return;
    }
    let mut buf = vec![0; BUF_SIZE];
    loop {
        let read = stream.read(&mut buf);
        let n = match idle {
            None => read.await,
            Some(limit) => match evloop::time::timeout(limit, read).await {
                Ok(n) => n,
                Err(_elapsed) => return, // dropping the stream closes the connection
            },
        };
        match n {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// `io`'s output, or `None` if `limit` (when there is one) passes first.
async fn within<T>(limit: Option<Duration>, io: impl Future<Output = T>) -> Option<T> {
    match limit {
        None => Some(io.await),
        Some(limit) => evloop::time::timeout(limit, io).await.ok(),
    }
}

/// `--addr HOST:PORT`, `--idle-timeout-ms N`, `--threads N` and `--grace-ms N`, parsed by hand;
/// `--help` prints the usage and exits.
fn parse_args() -> io::Result<(String, Option<Duration>, usize, Duration)> {
    let mut addr = "127.0.0.1:7000".to_string();
    let mut idle = None;
    let mut threads = 0;
    let mut grace = Duration::from_millis(5000);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        // Taken by the arm of a known flag, so that an unknown one is reported as such.
        let mut value = || {
            args.next()
                .ok_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--addr" => addr = value()?,
            "--idle-timeout-ms" => {
                let ms: u64 = value()?
                    .parse()
                    .map_err(|_| usage("--idle-timeout-ms takes a number"))?;
                idle = (ms > 0).then(|| Duration::from_millis(ms));
            }
            "--threads" => {
                threads = value()?
                    .parse()
                    .map_err(|_| usage("--threads takes a number"))?;
            }
            "--grace-ms" => {
                let ms: u64 = value()?
                    .parse()
                    .map_err(|_| usage("--grace-ms takes a number"))?;
                grace = Duration::from_millis(ms);
            }
            _ => return Err(usage(&format!("unknown flag {flag}"))),
        }
    }
    Ok((addr, idle, threads, grace))
}

/// What is wrong with the command line, in one line (`main` prints it above the usage).
fn usage(problem: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, problem)
}
