//! The libevent book's ROT13 server with buffer events: a `Listener` hands each connection to a
//! `BufferEvent`, whose read callback takes the complete lines out of its input buffer and appends
//! their ROT13 to its output buffer, which the buffer event writes by itself. Compare
//! `rot13_callback_raw.rs` (raw events, own buffers) and `rot13_async.rs`; `docs/from-libevent.md`
//! walks through all three.
//!
//! ```text
//! cargo run --example rot13_callback -- [--addr 127.0.0.1:7004]
//! ```
//!
//! The protocol is the same in the three servers (see `rot13_async.rs`; `tests/rot13.rs` checks them
//! byte for byte): what a client gets back is exactly the ROT13 of what it sent, each line answered
//! when its `\n` arrives, a line longer than 16 KiB in 16 KiB pieces as it arrives (nothing added
//! between pieces), a last line without `\n` at EOF as it is; then the connection is closed.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;

use evloop::event::{BaseHandle, BevFlags, Buffer, BufferEvent, Eol, EventBase, Flags, Listener};

/// The longest piece of a line answered at once.
const MAX_LINE: usize = 16 * 1024;
/// Answers a connection may have waiting before the server stops reading from it.
const OUTPUT_HIGH: usize = 256 * 1024;

const USAGE: &str = "usage: rot13_callback [--addr HOST:PORT]
  --addr HOST:PORT  where to listen (default 127.0.0.1:7004; port 0 picks a free port)
  --help            print this and exit";

fn main() -> ExitCode {
    let addr = match parse_args() {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprintln!("rot13_callback: {problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rot13_callback: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(addr: SocketAddr) -> io::Result<()> {
    let base = EventBase::new()?;
    let handle = base.handle().clone();
    let listener = Listener::bind(&base, addr, move |stream, _peer| {
        if let Err(e) = serve(&handle, stream) {
            eprintln!("rot13_callback: connection: {e}");
        }
    })?;
    // E.g. out of descriptors: reported once; accepting pauses and resumes by itself.
    listener.set_error_cb(|e| eprintln!("rot13_callback: accept: {e}"));
    println!("rot13_callback listening on {}", listener.local_addr());
    base.dispatch();
    Ok(())
}

fn serve(base: &BaseHandle, stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let bev = BufferEvent::socket(base, stream, true)?;
    let mut line = Vec::new(); // reused for every line of this connection
    bev.set_read_cb(move |bev| {
        answer_lines(&mut bev.input(), &mut bev.output(), &mut line);
        // Backpressure: a peer that does not read its answers is not read from either.
        if bev.output().len() > OUTPUT_HIGH {
            bev.disable(Flags::READ);
        }
    });
    // Resume reading once the waiting answers are down to half the bound.
    bev.set_watermark(Flags::WRITE, OUTPUT_HIGH / 2, 0);
    bev.set_write_cb(|bev| {
        if !bev.enabled().contains(Flags::READ) {
            bev.enable(Flags::READ);
        }
    });
    bev.set_event_cb(|bev, what| {
        if what.contains(BevFlags::EOF) {
            // The last line, if it has no `\n`, is answered as it is.
            let mut rest = Vec::new();
            bev.input().remove_to_vec(usize::MAX, &mut rest);
            rot13(&mut rest);
            bev.output().append(&rest);
            if !bev.output().is_empty() {
                // Free once every answer is written (the write callback runs when output is empty).
                bev.set_watermark(Flags::WRITE, 0, 0);
                bev.set_write_cb(|bev| bev.free());
                return;
            }
        } else if what.contains(BevFlags::ERROR) {
            eprintln!("rot13_callback: connection: {:?}", bev.take_error());
        }
        bev.free(); // closes the socket
    });
    bev.enable(Flags::READ);
    Ok(())
}

/// Moves every complete line of `input`, and 16 KiB pieces of a longer one, to `output` in ROT13.
fn answer_lines(input: &mut Buffer, output: &mut Buffer, line: &mut Vec<u8>) {
    loop {
        line.clear();
        if input.read_line_into(Eol::Lf, line) {
            line.push(b'\n'); // the reader drops the terminator
        } else if input.len() >= MAX_LINE {
            input.remove_to_vec(MAX_LINE, line);
        } else {
            return; // a partial line waits for more input
        }
        rot13(line);
        output.append(line);
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
    let mut addr = "127.0.0.1:7004".to_string();
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
