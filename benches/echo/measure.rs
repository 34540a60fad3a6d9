//! What is read about the server under test: CPU time, memory and descriptors from /proc, and its
//! syscalls counted by perf (or strace) over the measured window.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, ErrorKind};
use std::process::{Command, Stdio};
use std::time::Duration;

/// utime + stime of the whole process (every thread), in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> io::Result<u64> {
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

pub(crate) fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// A `kB` line of /proc/PID/status, e.g. "VmRSS:" or "VmHWM:".
pub(crate) fn status_kb(pid: u32, key: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no {key} in /proc/{pid}/status")))
}

pub(crate) fn fd_count(pid: u32) -> io::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// Counts the server's syscalls over the measured window, attached to the running process.
///
/// `perf`: `perf stat` on the `raw_syscalls:sys_enter` tracepoint (and one `sys_enter_*` tracepoint per
/// call of interest): it costs the server little, so it does not change what the server does.
/// `strace`: `strace -c -f`, which stops the server at every syscall. That slowdown changes the counts
/// of servers that read optimistically (smol): the next message is always already there, so no read
/// returns EAGAIN and no epoll_wait is needed. Kept as a cross-check and for machines without perf.
pub(crate) struct SyscallCounter {
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
    pub(crate) fn attach(tool: &str, pid: u32) -> io::Result<SyscallCounter> {
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
    pub(crate) fn finish(mut self) -> io::Result<(u64, BTreeMap<String, u64>)> {
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
