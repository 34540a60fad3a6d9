//! `--type scale`: C100K. Opens `--conns` connections (100,000 by default) from source addresses
//! 127.K.0.2, 127.K.0.3, ... (K is `--src-net`, default 0; `--per-addr` connections each, so the
//! ephemeral ports of one address suffice; a run after another uses a fresh K, because the ports of the
//! last one are still in TIME_WAIT), then measures, against the server whose pid is given:
//!
//! - the connect and accept rate (connections opened in batches of [`BATCH`], each batch waited on until
//!   the server holds it, so a full listen backlog never drops a SYN), and the server's CPU per accept;
//! - the server's resident memory per connection, idle (no byte sent yet) and after one 64-byte echo on
//!   every connection;
//! - p50/p99 of `--active` connections (1,000) ping-ponging 64 B for `--secs` while the rest sit idle;
//! - the time until the server has closed every connection after the client closed them all, and
//!   whether the server's descriptor count is back to its baseline.
//!
//! Both processes need RLIMIT_NOFILE above the connection count: this one raises its own limits (as
//! root, up to `fs.nr_open`); start the server under `prlimit --nofile=N:N`.

use super::*;

/// Connections opened between two checks that the server has accepted them: under the 1,024 backlog of
/// tokio's and libevent's listeners.
const BATCH: usize = 500;

pub(crate) fn scale(o: &Opts, addr: SocketAddr, pid: Option<u32>) -> io::Result<()> {
    let pid =
        pid.ok_or_else(|| io::Error::new(ErrorKind::InvalidInput, "scale needs --server-pid"))?;
    let n = o.num("conns", 100_000.0) as usize;
    let active = (o.num("active", 1000.0) as usize).min(n);
    // 5,000 a source address: bind(2) to port 0 takes the even half of the ephemeral range first and
    // slows down badly beyond it (about 14,000 ports), which made 18,000 connections from one address
    // connect at under 1,000 a second.
    let per_addr = (o.num("per-addr", 5_000.0) as usize).max(1);
    let secs = Duration::from_secs_f64(o.num("secs", 3.0));
    let net = o.num("src-net", 0.0) as u8;
    if n.div_ceil(per_addr) > 250 * 250 {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            "too many source addresses needed: raise --per-addr",
        ));
    }
    raise_nofile(n as u64 + 1000)?;
    settle(pid)?;
    let base_fds = fd_count(pid)?;
    let base_kb = status_kb(pid, "VmRSS:")?;

    // Connect.
    let cpu0 = cpu_ticks(pid)?;
    let t0 = Instant::now();
    let mut streams = Vec::with_capacity(n);
    while streams.len() < n {
        for _ in 0..BATCH.min(n - streams.len()) {
            let i = streams.len();
            let j = i / per_addr;
            let src = std::net::Ipv4Addr::new(127, net, (j / 250) as u8, 2 + (j % 250) as u8);
            streams.push(connect_from(src, addr)?);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        // One less than expected: the `wait` probe's connection may not have been closed yet.
        while fd_count(pid)? + 1 < base_fds + streams.len() {
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "the server accepted {} of {} connections within 10 s",
                    fd_count(pid)?.saturating_sub(base_fds),
                    streams.len()
                )));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let connect_secs = t0.elapsed().as_secs_f64();
    let accept_cpu = cpu_ticks(pid)? - cpu0;
    settle(pid)?;
    let idle_kb = status_kb(pid, "VmRSS:")?;

    // One echo on every connection.
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

    // Ping-pong on the first `active` connections while the others stay open and idle.
    let idle_streams = streams.split_off(active);
    let poll = Poll::new()?;
    let mut conns = Vec::with_capacity(active);
    for (i, s) in streams.into_iter().enumerate() {
        s.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(s);
        poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns.push(Conn {
            stream,
            role: Role::PingPong,
            // The first echo above used the pattern from offset i; continue after it.
            seed: (i as u64 % PLEN as u64) + 64,
            sent: 0,
            recvd: 0,
            target: 0,
            started: Instant::now(),
            k: 0,
            dead: false,
        });
    }
    let mut c = Client::new(poll, conns, 64, None);
    c.start_all();
    c.run(Instant::now() + Duration::from_millis(300), false)?;
    let rts0 = c.rts;
    let t1 = Instant::now();
    c.recording = true;
    c.run(t1 + secs, false)?;
    c.recording = false;
    let active_secs = t1.elapsed().as_secs_f64();
    let rts = c.rts - rts0;
    c.drain()?;

    // Close everything; wait for the server to notice.
    let (mut lat, errors) = (std::mem::take(&mut c.lat), c.errors);
    let t2 = Instant::now();
    drop(c);
    drop(idle_streams);
    let deadline = t2 + Duration::from_secs(60);
    let mut fds = fd_count(pid)?;
    while fds > base_fds && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
        fds = fd_count(pid)?;
    }
    let close_secs = t2.elapsed().as_secs_f64();

    let mut r = Report::new(o, "scale");
    r.put("connect_per_s", format!("{:.0}", n as f64 / connect_secs));
    r.put(
        "accept_cpu_us",
        format!(
            "{:.2}",
            accept_cpu as f64 * 1e6 / clock_ticks_per_sec() / n as f64
        ),
    );
    r.put(
        "kb_per_conn_idle",
        format!("{:.3}", idle_kb.saturating_sub(base_kb) as f64 / n as f64),
    );
    r.put(
        "kb_per_conn_echoed",
        format!("{:.3}", echo_kb.saturating_sub(base_kb) as f64 / n as f64),
    );
    r.put("active", active);
    r.put("rt_per_s", format!("{:.0}", rts as f64 / active_secs));
    if !lat.is_empty() {
        lat.sort_unstable();
        for (key, q) in [("p50_us", 0.50), ("p99_us", 0.99)] {
            let idx = ((q * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
            r.put(key, format!("{:.1}", lat[idx] as f64 / 1e3));
        }
    }
    r.put("close_s", format!("{close_secs:.3}"));
    r.put("fds_left", fds.saturating_sub(base_fds));
    r.put("base_rss_kb", base_kb);
    r.put("peak_rss_kb", status_kb(pid, "VmHWM:")?);
    r.put("errors", errors);
    r.print();
    Ok(())
}

/// A blocking TCP connection from `src` (an ephemeral port of that address) to `addr`, TCP_NODELAY on.
fn connect_from(src: std::net::Ipv4Addr, addr: SocketAddr) -> io::Result<std::net::TcpStream> {
    let SocketAddr::V4(dst) = addr else {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            "scale: --addr must be an IPv4 loopback address",
        ));
    };
    let sin = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: socket() takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nothing else; the stream closes it on every path.
    let stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    let local = sin(src, 0);
    // SAFETY: `local` is a valid sockaddr_in of `len` bytes.
    if unsafe { libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("bind to {src}: {e} (ephemeral ports of one source address used up? lower --per-addr)"),
        ));
    }
    let remote = sin(*dst.ip(), dst.port());
    loop {
        // SAFETY: `remote` is a valid sockaddr_in of `len` bytes.
        if unsafe { libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) } == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != ErrorKind::Interrupted {
            return Err(io::Error::new(
                e.kind(),
                format!("connect from {src} to {addr}: {e}"),
            ));
        }
    }
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Raises this process's RLIMIT_NOFILE (soft and, as root, hard) to at least `want`.
fn raise_nofile(want: u64) -> io::Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur >= want {
        return Ok(());
    }
    let new = libc::rlimit {
        rlim_cur: want,
        rlim_max: lim.rlim_max.max(want),
    };
    // SAFETY: `new` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!(
                "cannot raise RLIMIT_NOFILE to {want} ({e}): run as root, or under `prlimit --nofile={want}:{want}`"
            ),
        ));
    }
    Ok(())
}
