//! The echo server written as async tasks: one spawned task per connection, TCP_NODELAY on each.
//!
//! ```text
//! cargo run --release --example echo_async -- [--addr 127.0.0.1:7000] [--idle-timeout-ms 0]
//! ```
//!
//! `--idle-timeout-ms N` closes a connection that sends nothing for N ms (0, the default: never).
//! Load it with `cargo run --release --example echo_client`.

use std::io;
use std::time::Duration;

use evloop::net::{TcpListener, TcpStream};
use futures::{AsyncReadExt, AsyncWriteExt};

/// Each connection's buffer; a read that fills less of it tells the reactor the socket is drained.
const BUF_SIZE: usize = 16 * 1024;

fn main() -> io::Result<()> {
    let (addr, idle) = parse_args()?;
    evloop::block_on(async move {
        let listener = TcpListener::bind(addr.as_str()).await?;
        println!("echo_async listening on {}", listener.local_addr()?);
        loop {
            match listener.accept().await {
                Ok((stream, _peer)) => {
                    evloop::spawn(serve(stream, idle));
                }
                // E.g. out of descriptors: reported once; the next accept waits until one is free.
                Err(e) => eprintln!("accept: {e}"),
            }
        }
    })
}

/// Echoes until the peer closes, an error, or `idle` passes without data.
async fn serve(mut stream: TcpStream, idle: Option<Duration>) {
    if stream.set_nodelay(true).is_err() {
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

/// `--addr HOST:PORT` and `--idle-timeout-ms N`, parsed by hand.
fn parse_args() -> io::Result<(String, Option<Duration>)> {
    let mut addr = "127.0.0.1:7000".to_string();
    let mut idle = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| usage(&format!("{flag} needs a value")))?;
        match flag.as_str() {
            "--addr" => addr = value,
            "--idle-timeout-ms" => {
                let ms: u64 = value
                    .parse()
                    .map_err(|_| usage("--idle-timeout-ms takes a number"))?;
                idle = (ms > 0).then(|| Duration::from_millis(ms));
            }
            _ => return Err(usage(&format!("unknown flag {flag}"))),
        }
    }
    Ok((addr, idle))
}

fn usage(problem: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{problem}\nusage: echo_async [--addr 127.0.0.1:7000] [--idle-timeout-ms N]"),
    )
}
