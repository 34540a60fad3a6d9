//! An echo server on a Unix socket and a client for it, on one evloop thread: one task per connection
//! echoes with `futures::io::copy(&stream, &mut &stream)`; the client sends a few lines and checks them.
//!
//! ```text
//! cargo run --example unix_echo -- [--path /tmp/evloop-echo.sock]
//! cargo run --example unix_echo -- --serve        # the server alone, until interrupted
//! ```
//! With `--serve`, try `nc -U /tmp/evloop-echo.sock` from another terminal.

use std::io;
use std::path::PathBuf;

use evloop::net::{UnixListener, UnixStream};
use evloop::task::JoinHandle;
use futures::{AsyncReadExt, AsyncWriteExt};

fn main() -> io::Result<()> {
    let (path, serve_only) = parse_args().unwrap_or_else(|e| {
        eprintln!("unix_echo: {e}\n{USAGE}");
        std::process::exit(2)
    });
    // A socket file left by an earlier run would make `bind` fail with AddrInUse.
    let _ = std::fs::remove_file(&path);
    evloop::block_on(async {
        let listener = UnixListener::bind(&path)?;
        println!("unix_echo serving on {}", path.display());
        let server: JoinHandle<io::Result<()>> = evloop::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await?;
                evloop::spawn(async move {
                    let _ = futures::io::copy(&stream, &mut &stream).await;
                });
            }
        });
        if serve_only {
            return server.await.map_err(io::Error::other)?;
        }

        let mut client = UnixStream::connect(&path).await?;
        for line in ["hello\n", "over a Unix socket\n", "bye\n"] {
            client.write_all(line.as_bytes()).await?;
            let mut echo = vec![0; line.len()];
            client.read_exact(&mut echo).await?;
            assert_eq!(echo, line.as_bytes(), "the echo differs");
            print!("echoed: {line}");
        }
        Ok::<(), io::Error>(())
    })?;
    std::fs::remove_file(&path)
}

const USAGE: &str = "usage: unix_echo [--path /tmp/evloop-echo.sock] [--serve]";

/// The flags, parsed by hand; `--help` prints the usage and exits.
fn parse_args() -> io::Result<(PathBuf, bool)> {
    let mut path = std::env::temp_dir().join("evloop-echo.sock");
    let mut serve_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        match flag.as_str() {
            "--serve" => serve_only = true,
            "--path" => {
                path = PathBuf::from(args.next().ok_or_else(|| usage("--path needs a value"))?)
            }
            _ => return Err(usage(&format!("unknown flag {flag}"))),
        }
    }
    Ok((path, serve_only))
}

/// What is wrong with the command line, in one line (`main` prints it above the usage).
fn usage(problem: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, problem)
}
