//! A UDP echo server and a client for it, on one evloop thread: the server task echoes each datagram
//! to its sender; the client sends numbered datagrams, checks each echo, and prints the round-trip time.
//!
//! ```text
//! cargo run --example udp_echo -- [--addr 127.0.0.1:7001] [--count 5]
//! cargo run --example udp_echo -- --serve          # the server alone, until interrupted
//! ```
//! With `--serve`, try `nc -u 127.0.0.1 7001` from another terminal.

use std::io;
use std::time::{Duration, Instant};

use evloop::net::UdpSocket;
use evloop::task::JoinHandle;
use evloop::time::timeout;

fn main() -> io::Result<()> {
    let (addr, count, serve_only) = parse_args().unwrap_or_else(|e| {
        eprintln!("udp_echo: {e}\n{USAGE}");
        std::process::exit(2)
    });
    evloop::block_on(async move {
        let server = UdpSocket::bind(addr.as_str()).await?;
        let server_addr = server.local_addr()?;
        println!("udp_echo serving on {server_addr}");
        let echo: JoinHandle<io::Result<()>> = evloop::spawn(async move {
            let mut buf = vec![0; 64 * 1024];
            loop {
                let (n, from) = server.recv_from(&mut buf).await?;
                server.send_to(&buf[..n], from).await?;
            }
        });
        if serve_only {
            return echo.await.map_err(io::Error::other)?;
        }

        let client = UdpSocket::bind("127.0.0.1:0").await?;
        client.connect(server_addr).await?;
        let mut buf = [0; 64];
        for i in 0..count {
            let msg = format!("datagram {i}");
            let start = Instant::now();
            client.send(msg.as_bytes()).await?;
            // UDP may drop a datagram: never wait forever for its echo.
            let n = timeout(Duration::from_secs(1), client.recv(&mut buf))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no echo within 1 s"))??;
            assert_eq!(&buf[..n], msg.as_bytes(), "the echo differs");
            println!("{msg}: echoed in {:?}", start.elapsed());
        }
        Ok(())
    })
}

const USAGE: &str = "usage: udp_echo [--addr 127.0.0.1:7001] [--count N] [--serve]";

/// The flags, parsed by hand; `--help` prints the usage and exits.
fn parse_args() -> io::Result<(String, u32, bool)> {
    let mut addr = "127.0.0.1:7001".to_string();
    let (mut count, mut serve_only) = (5u32, false);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        match flag.as_str() {
            "--serve" => serve_only = true,
            "--addr" => addr = args.next().ok_or_else(|| usage("--addr needs a value"))?,
            "--count" => {
                let n = args.next().and_then(|v| v.parse().ok());
                count = n.ok_or_else(|| usage("--count takes a number"))?;
            }
            _ => return Err(usage(&format!("unknown flag {flag}"))),
        }
    }
    Ok((addr, count, serve_only))
}

/// What is wrong with the command line, in one line (`main` prints it above the usage).
fn usage(problem: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, problem)
}
