//! The libevent book's low-level ROT13 server: raw READ and WRITE events on each connection, and a
//! per-connection state struct with its own input buffer (the line being read) and output buffer
//! (answers not yet sent). The WRITE event is added only while answers are pending. Compare
//! `rot13_callback.rs`, where a `BufferEvent` does this bookkeeping, and `rot13_async.rs`;
//! `docs/from-libevent.md` walks through all three.
//!
//! ```text
//! cargo run --example rot13_callback_raw -- [--addr 127.0.0.1:7003]
//! ```
//!
//! The protocol is the same in the three servers (see `rot13_async.rs`; `tests/rot13.rs` checks them
//! byte for byte): what a client gets back is exactly the ROT13 of what it sent, each line answered
//! when its `\n` arrives, a line longer than 16 KiB in 16 KiB pieces as it arrives (nothing added
//! between pieces), a last line without `\n` at EOF as it is; then the connection is closed.

use std::cell::RefCell;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::rc::Rc;

use evloop::event::{BaseHandle, Event, EventBase, Flags, Listener};

/// The input buffer's size: the longest piece of a line answered at once.
const MAX_LINE: usize = 16 * 1024;
/// Answers a connection may have waiting before the server stops reading from it.
const OUTPUT_HIGH: usize = 256 * 1024;

/// One connection (the book's `struct fd_state`).
struct Conn {
    stream: TcpStream,
    /// The start of a line whose `\n` has not arrived: `input[..used]`. Zeroed once, when the
    /// connection is made; reads go straight into its free part.
    input: Box<[u8]>,
    used: usize,
    /// Answers not yet sent: `output[sent..]`.
    output: Vec<u8>,
    sent: usize,
    /// The peer sent EOF: close once the answers are sent.
    eof: bool,
    /// (READ, WRITE), both persistent; dropping them (and so their callbacks, which hold the other
    /// `Rc`s of this `Conn`) closes the connection.
    events: Option<(Event, Event)>,
}

const USAGE: &str = "usage: rot13_callback_raw [--addr HOST:PORT]
  --addr HOST:PORT  where to listen (default 127.0.0.1:7003; port 0 picks a free port)
  --help            print this and exit";

fn main() -> ExitCode {
    let addr = match parse_args() {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprintln!("rot13_callback_raw: {problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rot13_callback_raw: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(addr: SocketAddr) -> io::Result<()> {
    let base = EventBase::new()?;
    let handle = base.handle().clone();
    // The listener is itself a persistent READ event whose callback accepts (see the guide).
    let listener = Listener::bind(&base, addr, move |stream, _peer| {
        if let Err(e) = serve(&handle, stream) {
            eprintln!("rot13_callback_raw: connection: {e}");
        }
    })?;
    listener.set_error_cb(|e| eprintln!("rot13_callback_raw: accept: {e}"));
    println!("rot13_callback_raw listening on {}", listener.local_addr());
    base.dispatch();
    Ok(())
}

fn serve(base: &BaseHandle, stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?; // accepted sockets are non-blocking already
    let fd = stream.as_raw_fd();
    let conn = Rc::new(RefCell::new(Conn {
        stream,
        input: vec![0; MAX_LINE].into_boxed_slice(),
        used: 0,
        output: Vec::new(),
        sent: 0,
        eof: false,
        events: None,
    }));
    let c = conn.clone();
    let read = Event::new(base, fd, Flags::READ | Flags::PERSIST, move |_, _| {
        on_readable(&mut c.borrow_mut())
    })?;
    let c = conn.clone();
    let write = Event::new(base, fd, Flags::WRITE | Flags::PERSIST, move |_, _| {
        flush(&mut c.borrow_mut())
    })?;
    read.add(None)?;
    conn.borrow_mut().events = Some((read, write));
    Ok(())
}

/// One read (level-triggered: the event fires again while more is waiting), then the answers to the
/// lines it completed, written at once if the socket takes them.
fn on_readable(c: &mut Conn) {
    let used = c.used;
    match (&c.stream).read(&mut c.input[used..]) {
        Ok(0) => {
            // EOF: the last line, if it has no `\n`, is answered as it is.
            c.eof = true;
            let rest = std::mem::take(&mut c.used);
            answer(&mut c.output, &c.input[..rest]);
            if let Some((read, _)) = &c.events {
                read.del(); // a socket at EOF stays readable: stop watching it
            }
        }
        Ok(n) => {
            c.used += n;
            answer_lines(c, used);
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => return,
        Err(_) => return close(c),
    }
    flush(c);
}

/// Answers the lines completed in `input`, whose bytes before `new` held no `\n`; keeps the rest,
/// unless it fills the whole buffer, which is then answered as a 16 KiB piece.
fn answer_lines(c: &mut Conn, new: usize) {
    let mut start = 0;
    while let Some(i) = c.input[new.max(start)..c.used]
        .iter()
        .position(|&b| b == b'\n')
    {
        let end = new.max(start) + i + 1;
        answer(&mut c.output, &c.input[start..end]);
        start = end;
    }
    if start == 0 && c.used == MAX_LINE {
        answer(&mut c.output, &c.input[..MAX_LINE]);
        start = MAX_LINE;
    }
    // What is left came in with this read, so moving it costs at most one read's worth.
    c.input.copy_within(start..c.used, 0);
    c.used -= start;
}

fn answer(output: &mut Vec<u8>, bytes: &[u8]) {
    output.extend(bytes.iter().map(|&b| match b {
        b'a'..=b'm' | b'A'..=b'M' => b + 13,
        b'n'..=b'z' | b'N'..=b'Z' => b - 13,
        other => other,
    }));
}

/// Writes what is pending (one `send`; a short one means the socket's buffer is full), then keeps
/// the WRITE event added exactly while answers are pending, and the READ event added while fewer
/// than OUTPUT_HIGH bytes wait (half of it to resume). Closes once EOF came and all is sent.
fn flush(c: &mut Conn) {
    if c.sent < c.output.len() {
        match (&c.stream).write(&c.output[c.sent..]) {
            Ok(n) => c.sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return close(c),
        }
    }
    let pending = c.output.len() - c.sent;
    if pending == 0 {
        c.output.clear();
        c.output.shrink_to(MAX_LINE); // an idle connection does not keep a burst's worth
        c.sent = 0;
        if c.eof {
            return close(c);
        }
    } else if c.sent > c.output.len() / 2 {
        c.output.drain(..c.sent); // the sent half is dropped: each byte moves at most once
        c.sent = 0;
    }
    let Some((read, write)) = &c.events else {
        return;
    };
    match (pending > 0, write.is_pending()) {
        (true, false) => drop(write.add(None)), // fails only once the base is gone
        (false, true) => write.del(),
        _ => {}
    }
    if c.eof {
        return;
    }
    if pending > OUTPUT_HIGH && read.is_pending() {
        read.del(); // backpressure: not read from until the peer reads its answers
    } else if pending <= OUTPUT_HIGH / 2 && !read.is_pending() {
        drop(read.add(None));
    }
}

/// Drops the events (safe inside their own callbacks); the socket closes with the last `Rc<Conn>`.
fn close(c: &mut Conn) {
    drop(c.events.take());
}

/// The address to listen on, or `None` for `--help`.
fn parse_args() -> Result<Option<SocketAddr>, String> {
    let mut addr = "127.0.0.1:7003".to_string();
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
