//! The echo server on raw events: each connection has a persistent READ event, its own `Vec` of
//! output the socket did not take yet, and a WRITE event that is added only while there is some.
//!
//! ```text
//! cargo run --release --example echo_callback_raw -- [--addr 127.0.0.1:7002] [--idle-timeout-ms 0]
//! ```
//!
//! `--idle-timeout-ms N` closes a connection that sends nothing for N ms (0, the default: never):
//! the READ event's timeout restarts each time it fires, so `TIMEOUT` means "silent for N ms".

use std::cell::RefCell;
use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use evloop::event::{BaseHandle, Event, EventBase, Flags, Listener};

/// A connection: the socket, its unsent bytes and its two events (dropped together to close it).
struct Conn {
    stream: TcpStream,
    pending: Vec<u8>,
    events: Option<(Event, Event)>,
}

fn main() -> io::Result<()> {
    let (addr, idle) = parse_args().unwrap_or_else(|e| {
        eprintln!("echo_callback_raw: {e}\n{USAGE}");
        std::process::exit(2)
    });
    let base = EventBase::new()?;
    let handle = base.handle().clone();
    let listener = Listener::bind(&base, addr, move |stream, _| {
        if let Err(e) = serve(&handle, stream, idle) {
            eprintln!("connection: {e}");
        }
    })?;
    println!("echo_callback_raw listening on {}", listener.local_addr());
    base.dispatch();
    Ok(())
}

fn serve(base: &BaseHandle, stream: TcpStream, idle: Option<Duration>) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let fd = stream.as_raw_fd();
    let conn = Rc::new(RefCell::new(Conn {
        stream,
        pending: Vec::new(),
        events: None,
    }));
    let c = conn.clone();
    let read = Event::new(base, fd, Flags::READ | Flags::PERSIST, move |_, what| {
        on_read(&c, what)
    })?;
    let c = conn.clone();
    let write = Event::new(base, fd, Flags::WRITE | Flags::PERSIST, move |_, _| {
        flush(&c)
    })?;
    read.add(idle)?;
    conn.borrow_mut().events = Some((read, write));
    Ok(())
}

thread_local! {
    /// One read buffer for all connections: zeroed once, not 16 KiB of `memset` on every read.
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; 16 * 1024].into_boxed_slice());
}

/// Reads what is there (level-triggered: one read per wake-up) and echoes it.
fn on_read(conn: &Rc<RefCell<Conn>>, what: Flags) {
    if what.contains(Flags::TIMEOUT) {
        return close(conn); // idle
    }
    let res = READ_BUF.with_borrow_mut(|buf| {
        let mut c = conn.borrow_mut();
        let n = (&c.stream).read(buf)?;
        c.send(&buf[..n])?;
        Ok(n)
    });
    match res {
        Ok(0) => close(conn), // EOF
        Ok(_) => {}
        Err(e) if retry_later(&e) => {}
        Err(_) => close(conn),
    }
}

impl Conn {
    /// Writes `data` after the pending output: straight from the caller's buffer when nothing is
    /// pending (the common case copies nothing); what the socket does not take waits in `pending`,
    /// with the WRITE event added.
    fn send(&mut self, mut data: &[u8]) -> io::Result<()> {
        if self.pending.is_empty() && !data.is_empty() {
            match (&self.stream).write(data) {
                Ok(n) => data = &data[n..],
                Err(e) if retry_later(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if !data.is_empty() {
            self.pending.extend_from_slice(data);
            if let Some((_, write)) = &self.events {
                if !write.is_pending() {
                    write.add(None)?;
                }
            }
        }
        Ok(())
    }
}

/// The WRITE event's callback: writes pending output, deletes the event once it is all written.
fn flush(conn: &Rc<RefCell<Conn>>) {
    let mut c = conn.borrow_mut();
    match (&c.stream).write(&c.pending) {
        Ok(n) => drop(c.pending.drain(..n)),
        Err(e) if retry_later(&e) => {}
        Err(_) => return drop(c.events.take()), // closes: the events go, then the socket with `conn`
    }
    if let (true, Some((_, write))) = (c.pending.is_empty(), &c.events) {
        write.del();
    }
}

fn retry_later(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
}

/// Drops the events (safe inside their own callbacks); the socket closes with the last `Rc<Conn>`.
fn close(conn: &Rc<RefCell<Conn>>) {
    let events = conn.borrow_mut().events.take();
    drop(events);
}

const USAGE: &str = "usage: echo_callback_raw [--addr 127.0.0.1:7002] [--idle-timeout-ms N]";

/// `--addr HOST:PORT` and `--idle-timeout-ms N`, parsed by hand; `--help` prints the usage and exits.
fn parse_args() -> io::Result<(std::net::SocketAddr, Option<Duration>)> {
    let bad = |m: String| io::Error::new(ErrorKind::InvalidInput, m);
    let (mut addr, mut idle) = ("127.0.0.1:7002".to_string(), None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        // Taken by the arm of a known flag, so that an unknown one is reported as such.
        let mut value = || {
            args.next()
                .ok_or_else(|| bad(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--addr" => addr = value()?,
            "--idle-timeout-ms" => {
                let ms: u64 = value()?
                    .parse()
                    .map_err(|_| bad("--idle-timeout-ms takes a number".into()))?;
                idle = (ms > 0).then(|| Duration::from_millis(ms));
            }
            _ => return Err(bad(format!("unknown flag {flag}"))),
        }
    }
    Ok((
        addr.parse()
            .map_err(|_| bad(format!("--addr {addr}: use HOST:PORT")))?,
        idle,
    ))
}
