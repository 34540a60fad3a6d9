//! The echo server in libevent style: a `Listener` hands each connection to a `BufferEvent`, whose read
//! callback moves the input to the output and whose event callback frees it on EOF, error or idle
//! timeout.
//!
//! ```text
//! cargo run --release --example echo_callback -- [--addr 127.0.0.1:7001] [--idle-timeout-ms 0]
//! ```
//!
//! `--idle-timeout-ms N` closes a connection that sends nothing for N ms (0, the default: never).
//! Load it with `cargo run --release --example echo_client -- --addr 127.0.0.1:7001`.

use std::io;
use std::time::Duration;

use evloop::event::{BevFlags, BufferEvent, EventBase, Flags, Listener};

/// Output a connection may queue before the server stops reading from it.
const OUTPUT_HIGH: usize = 256 * 1024;

const USAGE: &str = "usage: echo_callback [--addr 127.0.0.1:7001] [--idle-timeout-ms N]";

fn main() -> io::Result<()> {
    let (addr, idle) = parse_args().unwrap_or_else(|e| {
        eprintln!("echo_callback: {e}\n{USAGE}");
        std::process::exit(2)
    });
    let base = EventBase::new()?;
    let handle = base.handle().clone();
    let listener = Listener::bind(&base, addr, move |stream, _peer| {
        if stream.set_nodelay(true).is_err() {
            return;
        }
        let bev = match BufferEvent::socket(&handle, stream, true) {
            Ok(bev) => bev,
            Err(e) => return eprintln!("buffer event: {e}"),
        };
        // The output is written right after this callback, in one syscall. A peer that sends but does
        // not read its echoes is not read from either until its output drains (backpressure).
        bev.set_read_cb(|bev| {
            let mut input = bev.input();
            bev.output().append_buffer(&mut input);
            drop(input);
            if bev.output().len() > OUTPUT_HIGH {
                bev.disable(Flags::READ);
            }
        });
        bev.set_watermark(Flags::WRITE, OUTPUT_HIGH / 2, 0);
        bev.set_write_cb(|bev| {
            if !bev.enabled().contains(Flags::READ) {
                bev.enable(Flags::READ);
            }
        });
        bev.set_event_cb(|bev, what| {
            if what.contains(BevFlags::ERROR) {
                eprintln!("connection error: {:?}", bev.take_error());
            } else if what.contains(BevFlags::EOF) && !bev.output().is_empty() {
                // The peer is done sending: finish echoing what it sent, then close.
                bev.disable(Flags::READ);
                bev.set_watermark(Flags::WRITE, 0, 0);
                bev.set_write_cb(|bev| bev.free());
                return;
            }
            bev.free(); // EOF, error or idle timeout: close the connection
        });
        bev.set_timeouts(idle, None);
        bev.enable(Flags::READ);
    })?;
    // E.g. out of descriptors: reported once; accepting pauses and resumes by itself.
    listener.set_error_cb(|e| eprintln!("accept: {e}"));
    println!("echo_callback listening on {}", listener.local_addr());
    base.dispatch();
    Ok(())
}

/// `--addr HOST:PORT` and `--idle-timeout-ms N`, parsed by hand; `--help` prints the usage and exits.
fn parse_args() -> io::Result<(std::net::SocketAddr, Option<Duration>)> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, m);
    let (mut addr, mut idle) = ("127.0.0.1:7001".to_string(), None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        // Taken by the arm of a known flag, so that an unknown one is reported as such.
        let mut value = || {
            args.next()
                .ok_or_else(|| bad(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--addr" => addr = value()?,
            "--idle-timeout-ms" => {
                let ms: u64 = value()?
                    .parse()
                    .map_err(|_| bad("--idle-timeout-ms takes a number"))?;
                idle = (ms > 0).then(|| Duration::from_millis(ms));
            }
            _ => return Err(bad(&format!("unknown flag {flag}"))),
        }
    }
    Ok((
        addr.parse().map_err(|_| bad("--addr takes HOST:PORT"))?,
        idle,
    ))
}
