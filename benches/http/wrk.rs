//! One measured run: `wrk` against a running server, the server's CPU time around it, one `RESULT`
//! line out.

use std::io;
use std::process::Command;

use crate::Opts;

pub(crate) fn run(opts: &Opts) -> io::Result<()> {
    let addr = opts.str("addr", "127.0.0.1:7100");
    let conns = opts.num("conns", 50)?;
    let secs = opts.num("secs", 5)?;
    let pid = opts.num("server-pid", 0)? as u32;
    if pid == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--server-pid PID is required (the server's CPU time is read from /proc/PID/stat)",
        ));
    }
    let label = opts.str("label", "?");
    let rep = opts.str("rep", "0");

    let cpu_before = cpu_ticks(pid)?;
    // The caller pins this process (and so wrk) to the load generator's core.
    let output = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
        ])
        .arg(format!("http://{addr}/"))
        .output()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run wrk: {e} (apt-get install wrk)"),
            )
        })?;
    let cpu_after = cpu_ticks(pid)?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "wrk failed ({}): {}{text}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let w = parse(&text)
        .ok_or_else(|| io::Error::other(format!("cannot read wrk's output:\n{text}")))?;
    let cpu_us = (cpu_after - cpu_before) as f64 * 1e6 / clock_ticks_per_sec();
    let cpu_us_per_req = if w.requests > 0 {
        cpu_us / w.requests as f64
    } else {
        0.0
    };
    println!(
        "RESULT label={label} rep={rep} conns={conns} secs={secs} requests={} rps={:.0} p50_us={:.1} p99_us={:.1} cpu_us_per_req={cpu_us_per_req:.3} socket_errors={} non2xx={}",
        w.requests, w.rps, w.p50_us, w.p99_us, w.socket_errors, w.non2xx
    );
    println!(
        "  {label:<12} {conns:>5} conns: {:>9.0} req/s  p50 {:>8.1} µs  p99 {:>8.1} µs  CPU {cpu_us_per_req:.2} µs/req  errors {} non-2xx {}",
        w.rps, w.p50_us, w.p99_us, w.socket_errors, w.non2xx
    );
    Ok(())
}

/// What is read from wrk's `--latency` output.
struct WrkRun {
    requests: u64,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    /// connect + read + write + timeout of the "Socket errors:" line (absent when there were none).
    socket_errors: u64,
    /// The "Non-2xx or 3xx responses:" line (absent when there were none).
    non2xx: u64,
}

fn parse(text: &str) -> Option<WrkRun> {
    let mut run = WrkRun {
        requests: 0,
        rps: 0.0,
        p50_us: 0.0,
        p99_us: 0.0,
        socket_errors: 0,
        non2xx: 0,
    };
    let (mut p50, mut p99) = (None, None);
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("50%") {
            p50 = duration_us(v.trim());
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = duration_us(v.trim());
        } else if let Some(v) = line.strip_prefix("Requests/sec:") {
            run.rps = v.trim().parse().ok()?;
        } else if let Some((n, _)) = line.split_once(" requests in ") {
            run.requests = n.trim().parse().ok()?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            run.socket_errors = v
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            run.non2xx = v.trim().parse().ok()?;
        }
    }
    run.p50_us = p50?;
    run.p99_us = p99?;
    (run.requests > 0).then_some(run)
}

/// wrk's durations: "412.00us", "1.20ms", "2.01s".
fn duration_us(s: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60e6)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    Some(num.parse::<f64>().ok()? * scale)
}

/// utime + stime of the whole process (every thread), in clock ticks.
fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("/proc/{pid}/stat: {e} (is the server running?)"),
        )
    })?;
    // The command name (field 2) may contain spaces: count fields after its closing parenthesis,
    // where state is field 3 of proc(5), so utime (14) and stime (15) are at 11 and 12.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    match (
        fields.get(11).and_then(|v| v.parse::<u64>().ok()),
        fields.get(12).and_then(|v| v.parse::<u64>().ok()),
    ) {
        (Some(u), Some(s)) => Ok(u + s),
        _ => Err(io::Error::other(format!("cannot parse /proc/{pid}/stat"))),
    }
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}
