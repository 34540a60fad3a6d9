//! The load generator: one single-threaded mio loop driving every scenario (ping-pong, open loop,
//! streaming, fairness, idle connections), checking every echoed byte.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

mod scale;

use crate::measure::{clock_ticks_per_sec, cpu_ticks, fd_count, status_kb, SyscallCounter};
use crate::report::Report;
use crate::Opts;

/// Length of the byte pattern the client sends; prime, so a shifted or repeated chunk fails the check.
const PLEN: usize = 131_071; // prime, so a shifted or repeated chunk fails the check
/// Largest single read or write the client does.
const MAX_IO: usize = 64 * 1024;

/// Retries connecting every 10 ms until the server accepts, for 10 s at most.
pub(crate) fn wait(o: &Opts) -> io::Result<()> {
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
    /// Ping-pong messages started.
    started: u64,
    /// `--rts N`: no message is started once `N` have been (a fixed amount of work, for callgrind).
    limit: Option<u64>,
    /// Bytes echoed back on stream and hog connections.
    stream_bytes: u64,
    /// Bytes written and not yet echoed, over all connections.
    outstanding: u64,
    errors: u64,
}

impl Client {
    fn new(poll: Poll, conns: Vec<Conn>, size: u64, open_loop: Option<OpenLoop>) -> Client {
        Client {
            poll,
            conns,
            pat: Client::pattern(),
            scratch: vec![0u8; MAX_IO],
            size,
            open_loop,
            draining: false,
            recording: false,
            lat: Vec::with_capacity(1 << 20),
            rts: 0,
            started: 0,
            limit: None,
            stream_bytes: 0,
            outstanding: 0,
            errors: 0,
        }
    }

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
        self.started += 1;
    }

    /// Whether `--rts N` messages have been started already.
    fn at_limit(&self) -> bool {
        self.limit.is_some_and(|n| self.started >= n)
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
        let stop = self.draining || self.at_limit();
        let c = &mut self.conns[i];
        if self.recording {
            self.lat
                .push((now - c.started).as_nanos().min(u32::MAX as u128) as u32);
        }
        self.rts += 1;
        if stop {
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
            if matches!(self.conns[i].role, Role::PingPong) && !self.at_limit() {
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

pub(crate) fn client(o: &Opts) -> io::Result<()> {
    let addr = o.addr()?;
    let kind = o.str("type", "pp");
    let pid = o.0.get("server-pid").and_then(|p| p.parse::<u32>().ok());
    if kind == "idle" {
        return idle(o, addr, pid);
    }
    if kind == "scale" {
        return scale::scale(o, addr, pid);
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
    let mut c = Client::new(poll, list, size, open_loop);

    if let Some(n) = o.0.get("rts").and_then(|v| v.parse::<u64>().ok()) {
        return fixed_round_trips(o, &mut c, &kind, n);
    }
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

/// `--rts N`: exactly `N` ping-pong round trips over the connections, no warm-up and no clock: the
/// amount of work is fixed, so a server counted by callgrind can be divided by it (benches/run.sh
/// `--instructions` runs two counts and takes the difference, which cancels startup and accepting).
fn fixed_round_trips(o: &Opts, c: &mut Client, kind: &str, n: u64) -> io::Result<()> {
    if kind != "pp" {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            "--rts works with --type pp only",
        ));
    }
    c.limit = Some(n);
    let t0 = Instant::now();
    c.start_all();
    c.run(t0 + Duration::from_secs(900), true)?;
    if c.rts != n || c.outstanding != 0 {
        return Err(io::Error::other(format!(
            "{} of {n} round trips completed within 900 s",
            c.rts
        )));
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let mut r = Report::new(o, kind);
    r.put("rt", c.rts);
    r.put("secs", format!("{elapsed:.3}"));
    r.put("rt_per_s", format!("{:.0}", c.rts as f64 / elapsed));
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
