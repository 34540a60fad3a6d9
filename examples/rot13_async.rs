//! The libevent book's ROT13 server as async tasks: one task per connection reads lines through a
//! `BufReader` and answers each with its ROT13. Compare `rot13_callback.rs` (buffer events) and
//! `rot13_callback_raw.rs` (raw events); `docs/from-libevent.md` walks through all three.
//!
//! ```text
//! cargo run --example rot13_async -- [--addr 127.0.0.1:7005]
//! ```
//!
//! Try it with `nc 127.0.0.1 7005`. The protocol, the same in the three servers (`tests/rot13.rs`
//! checks them byte for byte): every line is answered with its ROT13 (ASCII letters rotated by 13,
//! every other byte unchanged, its `\n` included) as soon as its `\n` arrives; a line longer than
//! 16 KiB is answered in 16 KiB pieces as it arrives, with nothing added between pieces; after the
//! peer's EOF a last line without `\n` is answered as it is, the answers still pending are written,
//! and the connection is closed. So what a client gets back is exactly the ROT13 of what it sent.
//!
//! The line reader is `futures::io::BufReader` (the `futures` crate is a dev-dependency of evloop,
//! which itself depends only on the `futures-io` traits): an evloop user adds `futures` anyway for
//! `AsyncReadExt`/`AsyncWriteExt`, which every async server here needs for `read` and `write_all`.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;

use evloop::net::{TcpListener, TcpStream};
use futures::io::{BufReader, BufWriter};
use futures::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// The longest piece of a line answered at once.
const MAX_LINE: usize = 16 * 1024;

const USAGE: &str = "usage: rot13_async [--addr HOST:PORT]
  --addr HOST:PORT  where to listen (default 127.0.0.1:7005; port 0 picks a free port)
  --help            print this and exit";

fn main() -> ExitCode {
    let addr = match parse_args() {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprintln!("rot13_async: {problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match evloop::block_on(run(addr)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rot13_async: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(addr: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    println!("rot13_async listening on {}", listener.local_addr()?);
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                evloop::spawn(async move {
                    if let Err(e) = serve(stream).await {
                        eprintln!("rot13_async: connection: {e}");
                    }
                });
            }
            // E.g. out of descriptors: reported once; the next accept waits until one is free.
            Err(e) => eprintln!("rot13_async: accept: {e}"),
        }
    }
}

/// Answers lines until the peer's EOF; the stream closes when it is dropped at the end.
async fn serve(stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    // `&TcpStream` reads and writes: one for the reader, one for the writer.
    let mut reader = BufReader::new(&stream);
    let mut writer = BufWriter::new(&stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Up to and including the next `\n`, but at most MAX_LINE bytes: a longer line comes in pieces.
        let n = (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(()); // EOF; every answer has been flushed below
        }
        rot13(&mut line); // leaves the `\n` as it is
        writer.write_all(&line).await?;
        // Send the answers once no more input is buffered, before waiting for more: one write for a
        // burst of lines. Until the peer takes them the task reads nothing (backpressure).
        if reader.buffer().is_empty() {
            writer.flush().await?;
        }
    }
}

fn rot13(bytes: &mut [u8]) {
    for b in bytes {
        *b = match *b {
            b'a'..=b'm' | b'A'..=b'M' => *b + 13,
            b'n'..=b'z' | b'N'..=b'Z' => *b - 13,
            other => other,
        };
    }
}

/// The address to listen on, or `None` for `--help`.
fn parse_args() -> Result<Option<SocketAddr>, String> {
    let mut addr = "127.0.0.1:7005".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--help" | "-h" => return Ok(None),
            "--addr" => addr = args.next().ok_or("--addr needs a value (HOST:PORT)")?,
            _ => return Err(format!("unknown argument `{arg}`")),
        }
    }
    let parsed = addr.parse();
    parsed
        .map(Some)
        .map_err(|_| format!("--addr takes HOST:PORT, not `{addr}`"))
}
