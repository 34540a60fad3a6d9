//! The echo benchmark: the peer echo servers and THE load generator, in one binary.
//!
//! `benches/run.sh` drives it and writes the "Echo servers" section of BENCHMARKS.md, which says how
//! each figure is measured. By hand (the binary's path is printed by
//! `cargo bench --bench echo --no-run`):
//!
//! ```text
//! echo server tokio-ct|tokio-mt|smol|mio --addr 127.0.0.1:7100
//! echo wait   --addr 127.0.0.1:7100          # returns once the server accepts (10 s at most)
//! echo client --addr 127.0.0.1:7100 --type pp --conns 50 --size 64 --secs 3 [--server-pid PID]
//!             [--syscalls perf|strace]     # count the server's syscalls over the window instead
//! echo report results.txt [--update BENCHMARKS.md --machine "..." --command "..."]
//! ```
//!
//! Client types: `pp` (closed-loop ping-pong), `rate` (open loop at `--rate` messages/s), `stream`
//! (`--window` bytes in flight per connection, echoed in `--size` chunks), `fair` (`pp` plus one
//! connection that writes as fast as it can) and `idle` (`--conns` held open; needs `--server-pid`).
//!
//! The client is single-threaded on mio, so it depends on none of the runtimes under test; it sets
//! TCP_NODELAY, keeps one message in flight per ping-pong connection and checks every echoed byte
//! against what it sent. It prints one machine-readable `RESULT key=value ...` line and one human line.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

/// Per-connection buffer of every peer server: one 16 KiB chunk of the streaming scenario in one read.
const SERVER_BUF: usize = 16 * 1024;
/// Length of the byte pattern the client sends; prime, so a shifted or repeated chunk fails the check.
const PLEN: usize = 131_071; // prime, so a shifted or repeated chunk fails the check
/// Largest single read or write the client does.
const MAX_IO: usize = 64 * 1024;

fn main() {
    // `cargo bench` appends `--bench`; it means nothing here.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let result = match args.first().map(String::as_str) {
        Some("server") => server(&args[1..]),
        Some("client") => client(&Opts::parse(&args[1..])),
        Some("wait") => wait(&Opts::parse(&args[1..])),
        Some("report") => report(&args[1..]),
        _ => {
            eprintln!(
                "usage: see the header of benches/echo.rs; benches/run.sh runs the whole suite"
            );
            Ok(())
        }
    };
    if let Err(e) = result {
        eprintln!("echo: {e}");
        std::process::exit(1);
    }
}

/// `--key value` options; every key has a default so a missing flag never panics.
struct Opts(BTreeMap<String, String>);

impl Opts {
    fn parse(args: &[String]) -> Opts {
        let mut map = BTreeMap::new();
        let mut it = args.iter().peekable();
        while let Some(a) = it.next() {
            if let Some(key) = a.strip_prefix("--") {
                let value = match it.peek() {
                    Some(v) if !v.starts_with("--") => it.next().cloned().unwrap_or_default(),
                    _ => "1".to_string(),
                };
                map.insert(key.to_string(), value);
            }
        }
        Opts(map)
    }
    fn str(&self, key: &str, default: &str) -> String {
        self.0
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }
    fn num(&self, key: &str, default: f64) -> f64 {
        self.0
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
    fn addr(&self) -> io::Result<SocketAddr> {
        self.str("addr", "127.0.0.1:7100")
            .parse()
            .map_err(|e| io::Error::new(ErrorKind::InvalidInput, format!("--addr: {e}")))
    }
}

// ---------------------------------------------------------------------------------------------
// Peer servers
// ---------------------------------------------------------------------------------------------

fn server(args: &[String]) -> io::Result<()> {
    let kind = args.first().map(String::as_str).unwrap_or("");
    let addr = Opts::parse(args).addr()?;
    match kind {
        "tokio-ct" => tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?
            .block_on(tokio_server(addr)),
        "tokio-mt" => tokio::runtime::Builder::new_multi_thread()
            .enable_io()
            .build()?
            .block_on(tokio_server(addr)),
        "smol" => smol_server(addr),
        "mio" => mio_server(addr),
        other => Err(io::Error::new(
            ErrorKind::InvalidInput,
            format!("unknown server {other:?}: use tokio-ct, tokio-mt, smol or mio"),
        )),
    }
}

async fn tokio_server(addr: SocketAddr) -> io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => drop(tokio::spawn(tokio_conn(stream))),
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::task::yield_now().await;
            }
        }
    }
}

async fn tokio_conn(mut stream: tokio::net::TcpStream) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.set_nodelay(true)?;
    // The buffer is allocated on the first byte, so an idle connection costs only the task. (A fresh
    // stream's `readable()` resolves at once in tokio, hence the one-byte peek: one extra syscall per
    // connection, none per message.)
    stream.peek(&mut [0u8; 1]).await?;
    let mut buf = vec![0u8; SERVER_BUF];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

fn smol_server(addr: SocketAddr) -> io::Result<()> {
    use std::rc::Rc;
    let ex = Rc::new(smol::LocalExecutor::new());
    let spawner = ex.clone();
    smol::block_on(ex.run(async move {
        let listener = smol::Async::<std::net::TcpListener>::bind(addr)?;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => spawner.spawn(smol_conn(stream)).detach(),
                Err(e) => {
                    eprintln!("accept: {e}");
                    smol::future::yield_now().await;
                }
            }
        }
    }))
}

async fn smol_conn(mut stream: smol::Async<std::net::TcpStream>) -> io::Result<()> {
    use smol::io::{AsyncReadExt, AsyncWriteExt};
    stream.get_ref().set_nodelay(true)?;
    stream.readable().await?;
    let mut buf = vec![0u8; SERVER_BUF];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

/// One connection of the hand-written server.
struct MioConn {
    stream: TcpStream,
    /// Empty until the first readable event, so idle connections hold no buffer.
    buf: Vec<u8>,
    /// `buf[start..end]` was read but not yet written back.
    start: usize,
    end: usize,
}

/// The floor for readiness-based servers: edge-triggered, registered once for both directions (no
/// `epoll_ctl` per message), reads until a short read or WouldBlock, keeps unsent bytes.
fn mio_server(addr: SocketAddr) -> io::Result<()> {
    const LISTENER: Token = Token(usize::MAX);
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut listener = TcpListener::bind(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns = slab::Slab::<MioConn>::new();
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            stream.set_nodelay(true)?;
                            let entry = conns.vacant_entry();
                            let token = Token(entry.key());
                            poll.registry().register(
                                &mut stream,
                                token,
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            entry.insert(MioConn {
                                stream,
                                buf: Vec::new(),
                                start: 0,
                                end: 0,
                            });
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => {
                            // EMFILE and friends: give up on this edge; the next connection retries.
                            eprintln!("accept: {e}");
                            break;
                        }
                    }
                }
                continue;
            }
            let key = ev.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            if conn.buf.is_empty() && !ev.is_readable() {
                continue; // the first "writable" edge of a fresh, idle connection
            }
            if !mio_echo(conn) {
                let mut conn = conns.remove(key);
                let _ = poll.registry().deregister(&mut conn.stream);
            }
        }
    }
}

/// Moves bytes until the socket has nothing more to give or cannot take more; false closes it.
fn mio_echo(c: &mut MioConn) -> bool {
    if c.buf.is_empty() {
        c.buf = vec![0u8; SERVER_BUF];
    }
    loop {
        while c.start < c.end {
            match c.stream.write(&c.buf[c.start..c.end]) {
                Ok(n) => c.start += n,
                // Wait for the writable edge; reading more now would only grow what we owe.
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        match c.stream.read(&mut c.buf) {
            Ok(0) => return false,
            Ok(n) => {
                (c.start, c.end) = (0, n);
                let drained = n < c.buf.len();
                while c.start < c.end {
                    match c.stream.write(&c.buf[c.start..c.end]) {
                        Ok(n) => c.start += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => return false,
                    }
                }
                // A short read means the socket was drained: the next byte brings a new edge, so
                // the read that would only return EAGAIN is skipped.
                if drained {
                    return true;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The load generator
// ---------------------------------------------------------------------------------------------

/// Retries connecting every 10 ms until the server accepts, for 10 s at most.
fn wait(o: &Opts) -> io::Result<()> {
    let addr = o.addr()?;
    let deadline = Instant::now() + Duration::from_secs_f64(o.num("timeout", 10.0));
    loop {
        match std::net::TcpStream::connect(addr) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

enum Role {
    /// One message of `size` bytes in flight; the next starts when it is fully echoed.
    PingPong,
    /// Keeps `window` bytes in flight, written and checked as a stream.
    Stream { window: u64 },
    /// Writes whenever the socket takes more (the `fair` scenario's bully).
    Hog,
}

struct Conn {
    stream: TcpStream,
    role: Role,
    /// Offset into the pattern, so no two connections send the same bytes.
    seed: u64,
    /// Bytes written so far (the stream offset of the next byte to write).
    sent: u64,
    /// Bytes echoed back and checked.
    recvd: u64,
    /// Ping-pong: the stream offset where the message in flight ends.
    target: u64,
    /// Ping-pong: when the message in flight was sent (open loop: when it was meant to be sent).
    started: Instant,
    /// Open loop: index of the message in flight on this connection.
    k: u64,
    dead: bool,
}

/// The open-loop schedule: message k of connection i is due at `t0 + (k * conns + i) * interval`.
struct OpenLoop {
    t0: Instant,
    interval_ns: f64,
    conns: u64,
    /// Connections waiting for their next due time, earliest first.
    due: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Messages sent later than due because the previous one was still in flight.
    late: u64,
    /// Wakes the loop at the next due time.
    timer: Timer,
}

/// A timerfd in the client's poll: epoll_wait's timeout has whole milliseconds, a message is due every
/// 50 µs, and spinning instead would make the client look CPU-bound to the scheduler.
struct Timer {
    fd: OwnedFd,
    /// The due time it is armed for, so it is not re-armed (one syscall) for the same instant.
    armed: Option<Instant>,
}

/// The timer's token; connections use their index.
const TIMER: Token = Token(usize::MAX);

impl Timer {
    fn new(poll: &Poll) -> io::Result<Timer> {
        // SAFETY: timerfd_create takes no pointers.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        poll.registry()
            .register(&mut SourceFd(&fd.as_raw_fd()), TIMER, Interest::READABLE)?;
        Ok(Timer { fd, armed: None })
    }

    fn arm(&mut self, at: Instant) -> io::Result<()> {
        if self.armed == Some(at) {
            return Ok(());
        }
        // Zero would disarm it: a due time already past fires after 1 µs.
        let d = at
            .saturating_duration_since(Instant::now())
            .max(Duration::from_micros(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec and the old value is not asked for.
        if unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } < 0
        {
            return Err(io::Error::last_os_error());
        }
        self.armed = Some(at);
        Ok(())
    }

    fn fired(&mut self) {
        let mut expirations = [0u8; 8];
        // SAFETY: reads at most 8 bytes into an 8-byte buffer; EAGAIN is fine (edge-triggered).
        unsafe { libc::read(self.fd.as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
        self.armed = None;
    }
}

impl OpenLoop {
    fn due_at(&self, conn: usize, k: u64) -> Instant {
        let n = (k * self.conns + conn as u64) as f64;
        self.t0 + Duration::from_nanos((n * self.interval_ns) as u64)
    }
}

struct Client {
    poll: Poll,
    conns: Vec<Conn>,
    /// The bytes every connection sends: byte `o` of connection `c` is `pat[(o + c.seed) % PLEN]`;
    /// `PLEN + MAX_IO` long so every read or write is one contiguous slice.
    pat: Vec<u8>,
    scratch: Vec<u8>,
    size: u64,
    open_loop: Option<OpenLoop>,
    /// No new message or chunk is started (used to quiesce around a syscall-counting window).
    draining: bool,
    /// Latencies are recorded only inside the measured window.
    recording: bool,
    /// Ping-pong latencies in nanoseconds.
    lat: Vec<u32>,
    /// Ping-pong round trips completed.
    rts: u64,
    /// Bytes echoed back on stream and hog connections.
    stream_bytes: u64,
    /// Bytes written and not yet echoed, over all connections.
    outstanding: u64,
    errors: u64,
}

impl Client {
    fn pattern() -> Vec<u8> {
        let mut x: u32 = 0x9E37_79B9;
        let mut pat: Vec<u8> = (0..PLEN)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect();
        pat.extend_from_within(..MAX_IO);
        pat
    }

    fn kill(&mut self, i: usize, why: &str) {
        let c = &mut self.conns[i];
        if !c.dead {
            c.dead = true;
            self.errors += 1;
            self.outstanding -= c.sent - c.recvd;
            let _ = self.poll.registry().deregister(&mut c.stream);
            eprintln!("client: connection {i}: {why}");
        }
    }

    fn start_msg(&mut self, i: usize, at: Instant) {
        let c = &mut self.conns[i];
        c.target = c.sent + self.size;
        c.started = at;
    }

    fn pump_write(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.dead {
            return;
        }
        let target = match c.role {
            Role::PingPong => c.target,
            Role::Stream { .. } | Role::Hog if self.draining => c.sent,
            Role::Stream { window } => c.recvd + window,
            Role::Hog => u64::MAX,
        };
        loop {
            let want = target.saturating_sub(c.sent).min(MAX_IO as u64) as usize;
            if want == 0 {
                return;
            }
            let off = ((c.sent + c.seed) % PLEN as u64) as usize;
            match c.stream.write(&self.pat[off..off + want]) {
                Ok(n) => {
                    c.sent += n as u64;
                    self.outstanding += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.kill(i, &format!("write: {e}")),
            }
        }
    }

    fn pump_read(&mut self, i: usize) {
        loop {
            let c = &mut self.conns[i];
            if c.dead {
                return;
            }
            match c.stream.read(&mut self.scratch) {
                Ok(0) => return self.kill(i, "closed by the server"),
                Ok(n) => {
                    if c.recvd + n as u64 > c.sent {
                        return self.kill(i, "the server sent more bytes than it was sent");
                    }
                    let off = ((c.recvd + c.seed) % PLEN as u64) as usize;
                    if self.scratch[..n] != self.pat[off..off + n] {
                        eprintln!(
                            "client: connection {i}: echoed bytes differ at offset {}",
                            c.recvd
                        );
                        std::process::exit(2);
                    }
                    c.recvd += n as u64;
                    self.outstanding -= n as u64;
                    match c.role {
                        Role::PingPong if c.recvd == c.target => self.complete(i),
                        Role::PingPong => {}
                        Role::Stream { .. } | Role::Hog => self.stream_bytes += n as u64,
                    }
                    if n < self.scratch.len() {
                        break; // short read: drained
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.kill(i, &format!("read: {e}")),
            }
        }
        self.pump_write(i);
    }

    /// A ping-pong message came back whole: record it and start the next one.
    fn complete(&mut self, i: usize) {
        let now = Instant::now();
        let c = &mut self.conns[i];
        if self.recording {
            self.lat
                .push((now - c.started).as_nanos().min(u32::MAX as u128) as u32);
        }
        self.rts += 1;
        if self.draining {
            return;
        }
        match &mut self.open_loop {
            None => self.start_msg(i, now),
            Some(ol) => {
                c.k += 1;
                let due = ol.due_at(i, c.k);
                if due <= now {
                    ol.late += 1;
                    self.start_msg(i, due);
                } else {
                    ol.due.push(Reverse((due, i)));
                }
            }
        }
    }

    /// Starts every connection (again, after a drain).
    fn start_all(&mut self) {
        self.draining = false;
        let now = Instant::now();
        if let Some(ol) = &mut self.open_loop {
            ol.t0 = now + Duration::from_millis(1);
            for i in 0..self.conns.len() {
                let due = ol.due_at(i, 0);
                ol.due.push(Reverse((due, i)));
            }
            return;
        }
        for i in 0..self.conns.len() {
            if matches!(self.conns[i].role, Role::PingPong) {
                self.start_msg(i, now);
            }
            self.pump_write(i);
        }
    }

    /// Runs the event loop until `deadline`, or until nothing is in flight if `until_drained`.
    fn run(&mut self, deadline: Instant, until_drained: bool) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            if now >= deadline || (until_drained && self.outstanding == 0) {
                return Ok(());
            }
            if self.conns.iter().all(|c| c.dead) {
                return Err(io::Error::other("every connection failed"));
            }
            if self.open_loop.is_some() && !self.draining {
                self.send_due(now)?;
            }
            match self.poll.poll(&mut events, Some(deadline - now)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                if ev.token() == TIMER {
                    if let Some(ol) = &mut self.open_loop {
                        ol.timer.fired();
                    }
                    continue;
                }
                let i = ev.token().0;
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.pump_read(i);
                }
                if ev.is_writable() {
                    self.pump_write(i);
                }
            }
        }
    }

    /// Open loop: sends every message that is due, then arms the timer for the next one.
    fn send_due(&mut self, now: Instant) -> io::Result<()> {
        loop {
            let Some(ol) = self.open_loop.as_mut() else {
                return Ok(());
            };
            match ol.due.peek() {
                Some(&Reverse((due, i))) if due <= now => {
                    ol.due.pop();
                    self.start_msg(i, due);
                    self.pump_write(i);
                }
                Some(&Reverse((due, _))) => return ol.timer.arm(due),
                None => return Ok(()),
            }
        }
    }

    fn drain(&mut self) -> io::Result<()> {
        self.draining = true;
        if let Some(ol) = &mut self.open_loop {
            ol.due.clear();
        }
        self.run(Instant::now() + Duration::from_secs(10), true)?;
        if self.outstanding != 0 {
            return Err(io::Error::other(
                "the server did not echo everything within 10 s",
            ));
        }
        Ok(())
    }
}

/// Connects `n` blocking sockets in batches; with the server's pid known, each batch waits until
/// the server has accepted it, so a short listen backlog never drops a SYN (a 1 s retransmit).
fn connect_all(
    addr: SocketAddr,
    n: usize,
    pid: Option<u32>,
) -> io::Result<Vec<std::net::TcpStream>> {
    const BATCH: usize = 100;
    let base = pid.map(fd_count).transpose()?;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        for _ in 0..BATCH.min(n - out.len()) {
            let s = std::net::TcpStream::connect(addr)?;
            s.set_nodelay(true)?;
            out.push(s);
        }
        if let (Some(pid), Some(base)) = (pid, base) {
            let deadline = Instant::now() + Duration::from_secs(5);
            // One less than expected: the `wait` probe's connection may not have been closed yet.
            while fd_count(pid)? + 1 < base + out.len() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(500));
            }
        }
    }
    Ok(out)
}

fn client(o: &Opts) -> io::Result<()> {
    let addr = o.addr()?;
    let kind = o.str("type", "pp");
    let pid = o.0.get("server-pid").and_then(|p| p.parse::<u32>().ok());
    if kind == "idle" {
        return idle(o, addr, pid);
    }
    let conns = o.num("conns", 50.0) as usize;
    let size = o.num("size", 64.0) as u64;
    let warmup = Duration::from_secs_f64(o.num("warmup", 0.5));
    let secs = Duration::from_secs_f64(o.num("secs", 3.0));
    let counter = o.0.get("syscalls").cloned();
    if counter.is_some() && pid.is_none() {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            "--syscalls needs --server-pid",
        ));
    }

    // Timers (the open loop's timerfd, epoll timeouts) fire on time, not up to 50 µs late.
    // SAFETY: PR_SET_TIMERSLACK takes an integer argument and only affects this process.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let poll = Poll::new()?;
    let mut roles: Vec<Role> = (0..conns)
        .map(|_| match kind.as_str() {
            "stream" => Role::Stream {
                window: o.num("window", 262_144.0) as u64,
            },
            _ => Role::PingPong,
        })
        .collect();
    if kind == "fair" {
        roles.push(Role::Hog);
    }
    let streams = connect_all(addr, roles.len(), pid)?;
    let now = Instant::now();
    let mut list = Vec::with_capacity(roles.len());
    for (i, (s, role)) in streams.into_iter().zip(roles).enumerate() {
        s.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(s);
        poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let seed = (i as u64 * 7919) % PLEN as u64;
        list.push(Conn {
            stream,
            role,
            seed,
            sent: 0,
            recvd: 0,
            target: 0,
            started: now,
            k: 0,
            dead: false,
        });
    }
    let open_loop = (kind == "rate")
        .then(|| -> io::Result<OpenLoop> {
            Ok(OpenLoop {
                t0: now,
                interval_ns: 1e9 / o.num("rate", 20_000.0),
                conns: conns as u64,
                due: BinaryHeap::new(),
                late: 0,
                timer: Timer::new(&poll)?,
            })
        })
        .transpose()?;
    let mut c = Client {
        poll,
        conns: list,
        pat: Client::pattern(),
        scratch: vec![0u8; MAX_IO],
        size,
        open_loop,
        draining: false,
        recording: false,
        lat: Vec::with_capacity(1 << 20),
        rts: 0,
        stream_bytes: 0,
        outstanding: 0,
        errors: 0,
    };

    c.start_all();
    c.run(Instant::now() + warmup, false)?;
    let mut strace = None;
    if let (Some(pid), Some(tool)) = (pid, &counter) {
        // Quiesce, so that the syscalls counted and the round trips counted cover the same work.
        c.drain()?;
        strace = Some(SyscallCounter::attach(tool, pid)?);
        c.start_all();
    }
    let (rts0, bytes0, late0) = (
        c.rts,
        c.stream_bytes,
        c.open_loop.as_ref().map_or(0, |l| l.late),
    );
    let cpu0 = pid.map(cpu_ticks).transpose()?;
    let t0 = Instant::now();
    c.recording = true;
    c.run(t0 + secs, false)?;
    c.recording = false;
    if strace.is_some() {
        c.drain()?;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = pid.map(cpu_ticks).transpose()?;
    let syscalls = strace.map(SyscallCounter::finish).transpose()?;

    let mut r = Report::new(o, &kind);
    let stream_bytes = c.stream_bytes - bytes0;
    let rt = if kind == "stream" {
        stream_bytes / size
    } else {
        c.rts - rts0
    };
    r.put("rt", rt);
    r.put("secs", format!("{elapsed:.3}"));
    r.put("rt_per_s", format!("{:.0}", rt as f64 / elapsed));
    if kind == "stream" || kind == "fair" {
        r.put(
            "mb_per_s",
            format!("{:.1}", stream_bytes as f64 / elapsed / 1e6),
        );
    }
    if let Some(ol) = &c.open_loop {
        r.put("late", ol.late - late0);
    }
    if !c.lat.is_empty() {
        c.lat.sort_unstable();
        for (key, q) in [("p50_us", 0.50), ("p99_us", 0.99), ("p999_us", 0.999)] {
            let idx = ((q * c.lat.len() as f64).ceil() as usize).clamp(1, c.lat.len()) - 1;
            r.put(key, format!("{:.1}", c.lat[idx] as f64 / 1e3));
        }
    }
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        if rt > 0 {
            let us = (b - a) as f64 * 1e6 / clock_ticks_per_sec() / rt as f64;
            r.put("cpu_us_per_rt", format!("{us:.3}"));
        }
    }
    if let Some((total, calls)) = syscalls {
        r.put(
            "syscalls_per_rt",
            format!("{:.3}", total as f64 / rt.max(1) as f64),
        );
        let mut by_count: Vec<_> = calls.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1));
        for (name, n) in by_count.into_iter().take(6) {
            r.put(
                &format!("sc_{name}"),
                format!("{:.3}", *n as f64 / rt.max(1) as f64),
            );
        }
    }
    if let Some(pid) = pid {
        r.put("peak_rss_kb", status_kb(pid, "VmHWM:")?);
    }
    r.put("errors", c.errors);
    r.print();
    Ok(())
}

/// Holds `--conns` connections open and reads the server's RSS: idle (no byte sent yet, so a lazily
/// allocated buffer does not exist), then after one 64-byte echo on each connection.
fn idle(o: &Opts, addr: SocketAddr, pid: Option<u32>) -> io::Result<()> {
    let pid =
        pid.ok_or_else(|| io::Error::new(ErrorKind::InvalidInput, "idle needs --server-pid"))?;
    let n = o.num("conns", 10_000.0) as usize;
    settle(pid)?;
    let base = status_kb(pid, "VmRSS:")?;
    let mut streams = connect_all(addr, n, Some(pid))?;
    settle(pid)?;
    let idle_kb = status_kb(pid, "VmRSS:")?;
    let pat = Client::pattern();
    for (i, s) in streams.iter_mut().enumerate() {
        s.write_all(&pat[i % PLEN..][..64])?;
    }
    let mut buf = [0u8; 64];
    for (i, s) in streams.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.read_exact(&mut buf)?;
        if buf[..] != pat[i % PLEN..][..64] {
            return Err(io::Error::other(format!(
                "connection {i}: echoed bytes differ"
            )));
        }
    }
    settle(pid)?;
    let echo_kb = status_kb(pid, "VmRSS:")?;
    let mut r = Report::new(o, "idle");
    r.put("base_rss_kb", base);
    r.put(
        "kb_per_conn_idle",
        format!("{:.2}", idle_kb.saturating_sub(base) as f64 / n as f64),
    );
    r.put(
        "kb_per_conn_echoed",
        format!("{:.2}", echo_kb.saturating_sub(base) as f64 / n as f64),
    );
    r.put("peak_rss_kb", status_kb(pid, "VmHWM:")?);
    r.put("errors", 0);
    r.print();
    Ok(())
}

/// Waits (3 s at most) until the server has used no CPU for 200 ms: it has finished reacting.
fn settle(pid: u32) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = cpu_ticks(pid)?;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let now = cpu_ticks(pid)?;
        if now == last {
            break;
        }
        last = now;
    }
    Ok(())
}

/// The client's output: one `RESULT k=v ...` line for `report`, then one line for people.
struct Report(Vec<(String, String)>);

impl Report {
    fn new(o: &Opts, kind: &str) -> Report {
        let mut r = Report(Vec::new());
        r.put("name", o.str("name", kind));
        r.put("label", o.str("label", "server"));
        r.put("type", kind);
        r.put("run", o.str("syscalls", "measure"));
        r.put("conns", o.str("conns", ""));
        r.put("size", o.str("size", ""));
        r
    }
    fn put(&mut self, key: &str, value: impl ToString) {
        self.0
            .push((key.to_string(), value.to_string().replace(' ', "_")));
    }
    fn print(&self) {
        let kv: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("RESULT {}", kv.join(" "));
        let human: Vec<String> = self
            .0
            .iter()
            .filter(|(k, _)| k != "type" && k != "run")
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("  {}", human.join(", "));
    }
}

// ---------------------------------------------------------------------------------------------
// /proc and strace
// ---------------------------------------------------------------------------------------------

/// utime + stime of the whole process (every thread), in clock ticks.
fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it do not.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3 of proc(5), so utime (14) and stime (15) are at 11 and 12.
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    match (num(11), num(12)) {
        (Some(u), Some(s)) => Ok(u + s),
        _ => Err(io::Error::other(format!("cannot parse /proc/{pid}/stat"))),
    }
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// A `kB` line of /proc/PID/status, e.g. "VmRSS:" or "VmHWM:".
fn status_kb(pid: u32, key: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no {key} in /proc/{pid}/status")))
}

fn fd_count(pid: u32) -> io::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// Counts the server's syscalls over the measured window, attached to the running process.
///
/// `perf`: `perf stat` on the `raw_syscalls:sys_enter` tracepoint (and one `sys_enter_*` tracepoint per
/// call of interest): it costs the server little, so it does not change what the server does.
/// `strace`: `strace -c -f`, which stops the server at every syscall. That slowdown changes the counts
/// of servers that read optimistically (smol): the next message is always already there, so no read
/// returns EAGAIN and no epoll_wait is needed. Kept as a cross-check and for machines without perf.
struct SyscallCounter {
    child: std::process::Child,
    out: std::path::PathBuf,
    perf: bool,
}

/// The calls `perf` counts one by one (those that exist on this kernel); the rest is "other".
const PERF_CALLS: &[&str] = &[
    "read",
    "readv",
    "recvfrom",
    "recvmsg",
    "write",
    "writev",
    "sendto",
    "sendmsg",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_ctl",
    "ioctl",
    "futex",
    "accept4",
    "timerfd_settime",
    "sched_yield",
    "close",
];

impl SyscallCounter {
    fn attach(tool: &str, pid: u32) -> io::Result<SyscallCounter> {
        let perf = match tool {
            "perf" => true,
            "strace" => false,
            other => {
                return Err(io::Error::new(
                    ErrorKind::InvalidInput,
                    format!("--syscalls {other}: use perf or strace"),
                ))
            }
        };
        let out =
            std::env::temp_dir().join(format!("echo-{tool}-{}-{pid}.txt", std::process::id()));
        let mut cmd = if perf {
            let mut cmd = Command::new("perf");
            cmd.args([
                "stat",
                "-x",
                ",",
                "-p",
                &pid.to_string(),
                "-e",
                "raw_syscalls:sys_enter",
            ]);
            for call in PERF_CALLS {
                let tp = format!("/sys/kernel/tracing/events/syscalls/sys_enter_{call}");
                if std::path::Path::new(&tp).exists() {
                    cmd.args(["-e", &format!("syscalls:sys_enter_{call}")]);
                }
            }
            cmd
        } else {
            let mut cmd = Command::new("strace");
            cmd.args([
                "-c",
                "-f",
                "-U",
                "name,calls,errors",
                "-p",
                &pid.to_string(),
            ]);
            cmd
        };
        let mut child = cmd
            .arg("-o")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{tool}: {e} (benches/run.sh installs it)"),
                )
            })?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| io::Error::other("no stderr"))?;
        let mut lines = BufReader::new(stderr).lines();
        if !perf {
            // strace says "Process N attached" once it traces every thread; nothing is in flight now.
            loop {
                match lines.next() {
                    Some(Ok(l)) if l.contains("attached") => break,
                    Some(Ok(_)) => {}
                    _ => return Err(io::Error::other("strace exited before attaching")),
                }
            }
        }
        // Keep draining its stderr so it can never block on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        // perf prints nothing once attached: give it time (nothing is in flight, so nothing is missed).
        std::thread::sleep(Duration::from_millis(if perf { 300 } else { 50 }));
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!(
                "{tool} exited at once ({status})"
            )));
        }
        Ok(SyscallCounter { child, out, perf })
    }

    /// Detaches; returns the total number of syscalls and the number per call.
    fn finish(mut self) -> io::Result<(u64, BTreeMap<String, u64>)> {
        // SAFETY: kill(2) on our own child's pid; SIGINT makes it detach and write its summary.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        self.child.wait()?;
        let text = std::fs::read_to_string(&self.out)?;
        let _ = std::fs::remove_file(&self.out);
        let mut calls = BTreeMap::new();
        let mut total = None;
        for line in text.lines() {
            if self.perf {
                // CSV: count,unit,event,...
                let f: Vec<&str> = line.split(',').collect();
                let (Some(n), Some(event)) = (f.first(), f.get(2)) else {
                    continue;
                };
                let Ok(n) = n.parse::<u64>() else { continue };
                if *event == "raw_syscalls:sys_enter" {
                    total = Some(n);
                } else if let Some(call) = event.strip_prefix("syscalls:sys_enter_") {
                    calls.insert(call.to_string(), n);
                }
            } else {
                let f: Vec<&str> = line.split_whitespace().collect();
                if let [name, n, ..] = f[..] {
                    if let (Ok(n), true) = (n.parse::<u64>(), name != "total") {
                        calls.insert(name.to_string(), n);
                    }
                }
            }
        }
        let named: u64 = calls.values().sum();
        let total = match total {
            Some(t) => t,
            None if self.perf => {
                return Err(io::Error::other(format!("perf wrote no count: {text}")))
            }
            None => named,
        };
        if total > named {
            calls.insert("other".to_string(), total - named);
        }
        Ok((total, calls))
    }
}

// ---------------------------------------------------------------------------------------------
// Report: the markdown tables from the RESULT lines
// ---------------------------------------------------------------------------------------------

const BEGIN: &str =
    "<!-- echo-results:begin (written by benches/run.sh; edits inside are lost) -->";
const END: &str = "<!-- echo-results:end -->";

fn report(args: &[String]) -> io::Result<()> {
    let path = args
        .first()
        .ok_or_else(|| io::Error::other("report: give the results file"))?;
    let o = Opts::parse(&args[1..]);
    let text = std::fs::read_to_string(path)?;
    let rows: Vec<BTreeMap<String, String>> = text
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .map(|l| {
            l.split(' ')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.into(), v.into()))
                .collect()
        })
        .collect();
    let tables = tables(&rows, &o.str("baseline", "tokio-ct"));
    println!("{tables}");
    if let Some(file) = o.0.get("update") {
        let extra = match o.0.get("extra") {
            Some(f) => std::fs::read_to_string(f).unwrap_or_default(),
            None => String::new(),
        };
        let section = format!(
            "{BEGIN}\n## Echo servers\n\n{}\n\nMeasured {} at commit {} on {}.\nCommand: `{}`\n\n{METHOD}\n{tables}{extra}{END}\n\n",
            GOALS,
            o.str("date", "?"),
            o.str("commit", "?"),
            o.str("machine", "?"),
            o.str("command", "benches/run.sh"),
        );
        let old = std::fs::read_to_string(file).unwrap_or_else(|_| "# Benchmarks\n".to_string());
        let new = match (old.find(BEGIN), old.find(END)) {
            (Some(b), Some(e)) if b < e => format!(
                "{}{section}{}",
                &old[..b],
                old[e + END.len()..].trim_start_matches('\n')
            ),
            _ => format!("{}\n\n{section}", old.trim_end()),
        };
        std::fs::write(file, new)?;
        eprintln!("rewrote the Echo servers section of {file}");
    }
    Ok(())
}

const GOALS: &str = "Goals (issues #3 and #4), 64-byte echo at 50 and 1,000 connections: evloop `echo_async` at most \
2.05 syscalls per round trip and at most 0.9x the server CPU per round trip of tokio current_thread; the \
callback echoes at most 2.5 syscalls per round trip (libevent's bufferevent: about 5.1); at most 0.5 KB per \
idle connection beyond the user's own buffers (tokio and smol: about 0.8 KB).";

const METHOD: &str = "How: every server runs alone, pinned with `taskset -c 0`; the one load generator (`benches/echo.rs client`: \
single-threaded on mio, TCP_NODELAY, one message in flight per ping-pong connection, every echoed byte checked) \
runs on `taskset -c 1`. Servers alternate within each repetition; cells are `median (min-max)` over the \
repetitions. *CPU/rt*: the server's utime+stime from /proc/PID/stat over the measured window, divided by round trips. \
*Syscalls/rt*: a separate run, counted by `perf stat -e raw_syscalls:sys_enter -p PID` (plus one \
`syscalls:sys_enter_*` tracepoint per call of interest) attached after all connections are quiesced and detached after \
they are quiesced again, divided by the round trips of that window. `strace -c -f -p PID` is run too, on fewer \
shapes, as a cross-check (and is the fallback without perf); it stops the server at each syscall, and with the \
server that slow a server that reads before waiting (smol) always finds the next message there: strace reports \
about 2.0 for smol where perf counts over 5. *Peak RSS*: VmHWM. *Idle*: VmRSS growth after opening the connections (no byte sent: buffers \
that are allocated lazily do not exist yet), then after one 64-byte echo on each, divided by the number of \
connections. Peer servers allocate their 16 KiB buffer on the first readable byte. Latency of the open-loop \
scenario is measured from each message's intended send time (no coordinated omission). The machines are \
shared 2-core VMs: round trips/s and latency vary widely between repetitions (see the ranges); CPU µs per round \
trip and syscalls per round trip are the steady figures.\n";

fn rows_have(rows: &[&BTreeMap<String, String>], run: &str) -> bool {
    rows.iter()
        .any(|r| r.get("run").map(String::as_str) == Some(run))
}

/// Median, min and max of one metric over the repetitions.
fn stats(vals: &[f64]) -> Option<(f64, f64, f64)> {
    if vals.is_empty() {
        return None;
    }
    let mut v = vals.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    };
    Some((median, v[0], v[v.len() - 1]))
}

/// Counts in thousands ("84k"); latencies (`_us` keys) stay in whole microseconds.
fn fmt_num(x: f64, key: &str) -> String {
    let a = x.abs();
    if a >= 10_000.0 && !key.ends_with("_us") {
        format!("{:.0}k", x / 1e3)
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn tables(rows: &[BTreeMap<String, String>], baseline: &str) -> String {
    let mut names: Vec<&str> = Vec::new();
    for r in rows {
        let n = r.get("name").map(String::as_str).unwrap_or("?");
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let mut out = String::new();
    for name in names {
        let of_name: Vec<_> = rows
            .iter()
            .filter(|r| r.get("name").map(String::as_str) == Some(name))
            .collect();
        let kind = of_name[0].get("type").cloned().unwrap_or_default();
        let mut labels: Vec<&str> = Vec::new();
        for r in &of_name {
            let l = r.get("label").map(String::as_str).unwrap_or("?");
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
        let vals = |label: &str, run: &str, key: &str| -> Vec<f64> {
            of_name
                .iter()
                .filter(|r| {
                    r.get("label").map(String::as_str) == Some(label)
                        && r.get("run").map(String::as_str) == Some(run)
                })
                .filter_map(|r| r.get(key)?.parse().ok())
                .collect()
        };
        let cell = |label: &str, key: &str| match stats(&vals(label, "measure", key)) {
            Some((m, lo, hi)) if lo != hi => {
                format!(
                    "{} ({}-{})",
                    fmt_num(m, key),
                    fmt_num(lo, key),
                    fmt_num(hi, key)
                )
            }
            Some((m, _, _)) => fmt_num(m, key),
            None => "-".into(),
        };
        let median = |label: &str, run: &str, key: &str| stats(&vals(label, run, key)).map(|s| s.0);
        let ratio = |label: &str, key: &str| match (
            median(label, "measure", key),
            median(baseline, "measure", key),
        ) {
            (Some(a), Some(b)) if b > 0.0 => format!("{a:.2}x", a = a / b),
            _ => "-".into(),
        };
        // perf's count when there is one: strace's slowdown changes what some servers do.
        let counter = if rows_have(&of_name, "perf") {
            "perf"
        } else {
            "strace"
        };
        let sys = |label: &str| {
            median(label, counter, "syscalls_per_rt").map_or("-".into(), |v| format!("{v:.2}"))
        };
        let rss = |label: &str| {
            median(label, "measure", "peak_rss_kb")
                .map_or("-".into(), |v| format!("{:.1}", v / 1024.0))
        };
        let reps = of_name
            .iter()
            .filter(|r| r.get("run").map(String::as_str) == Some("measure"))
            .count()
            / labels.len().max(1);
        let first = of_name[0];
        let conns = first.get("conns").cloned().unwrap_or_default();
        let size = first.get("size").cloned().unwrap_or_default();
        let (title, header) = match kind.as_str() {
            "pp" => (
                format!("ping-pong, {size}-byte messages, {conns} connections"),
                "| server | round trips/s | vs tokio-ct | p50 µs | p99 µs | CPU µs/rt | CPU vs tokio-ct | syscalls/rt | peak RSS MB |",
            ),
            "rate" => (
                format!("open loop, {size}-byte messages over {conns} connections at a fixed rate"),
                "| server | achieved msgs/s | p50 µs | p99 µs | p99.9 µs | CPU µs/msg | late sends | peak RSS MB |",
            ),
            "fair" => (
                format!("fairness: {conns} ping-pong connections ({size} B) plus one that never stops sending"),
                "| server | ping-pong rt/s | ping-pong p50 µs | ping-pong p99 µs | bully MB/s | peak RSS MB |",
            ),
            "stream" => (
                format!("streaming, {conns} connection(s), echoed in {size}-byte chunks"),
                "| server | MB/s | vs tokio-ct | CPU µs per chunk | syscalls per chunk | peak RSS MB |",
            ),
            _ => (
                format!("{conns} idle connections"),
                "| server | KB per idle connection | KB per connection after one echo | peak RSS MB |",
            ),
        };
        out += &format!("### {name}: {title} ({reps} runs each)\n\n{header}\n");
        out += &format!("|{}\n", "---|".repeat(header.matches('|').count() - 1));
        for l in &labels {
            let row = match kind.as_str() {
                "pp" => vec![
                    cell(l, "rt_per_s"),
                    ratio(l, "rt_per_s"),
                    cell(l, "p50_us"),
                    cell(l, "p99_us"),
                    cell(l, "cpu_us_per_rt"),
                    ratio(l, "cpu_us_per_rt"),
                    sys(l),
                    rss(l),
                ],
                "rate" => vec![
                    cell(l, "rt_per_s"),
                    cell(l, "p50_us"),
                    cell(l, "p99_us"),
                    cell(l, "p999_us"),
                    cell(l, "cpu_us_per_rt"),
                    cell(l, "late"),
                    rss(l),
                ],
                "fair" => vec![
                    cell(l, "rt_per_s"),
                    cell(l, "p50_us"),
                    cell(l, "p99_us"),
                    cell(l, "mb_per_s"),
                    rss(l),
                ],
                "stream" => vec![
                    cell(l, "mb_per_s"),
                    ratio(l, "mb_per_s"),
                    cell(l, "cpu_us_per_rt"),
                    sys(l),
                    rss(l),
                ],
                _ => vec![
                    cell(l, "kb_per_conn_idle"),
                    cell(l, "kb_per_conn_echoed"),
                    rss(l),
                ],
            };
            out += &format!("| {l} | {} |\n", row.join(" | "));
        }
        // Which syscalls make up the count.
        let breakdown = |run: &str| -> Vec<String> {
            let mut parts = Vec::new();
            for l in &labels {
                let Some(r) = of_name.iter().find(|r| {
                    r.get("label").map(String::as_str) == Some(l)
                        && r.get("run").map(String::as_str) == Some(run)
                }) else {
                    continue;
                };
                let total: f64 = r
                    .get("syscalls_per_rt")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                let calls: Vec<String> = r
                    .iter()
                    .filter_map(|(k, v)| Some((k.strip_prefix("sc_")?, v.parse::<f64>().ok()?)))
                    .filter(|(_, v)| *v >= 0.01)
                    .map(|(k, v)| format!("{k} {v:.2}"))
                    .collect();
                parts.push(format!("{l} {total:.2}: {}", calls.join(", ")));
            }
            parts
        };
        let by_perf = breakdown("perf");
        if !by_perf.is_empty() {
            out += &format!(
                "\nSyscalls per round trip by call (`perf stat`, syscall tracepoints): {}.\n",
                by_perf.join("; ")
            );
        }
        let by_strace = breakdown("strace");
        if !by_strace.is_empty() {
            out += &format!(
                "\nThe same counted with `strace -c -f`{}: {}.\n",
                if by_perf.is_empty() {
                    ""
                } else {
                    " (cross-check; strace stops the server at every call, which changes what optimistic readers such as smol do)"
                },
                by_strace.join("; ")
            );
        }
        let errors: f64 = of_name
            .iter()
            .filter_map(|r| r.get("errors")?.parse::<f64>().ok())
            .sum();
        if errors > 0.0 {
            out += &format!("\n**{errors} connection errors in these runs** (see the run log).\n");
        }
        out += "\n";
    }
    out
}
