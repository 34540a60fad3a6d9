//! The client's `RESULT k=v ...` line, and `report`: the markdown tables made from those lines,
//! written between the echo-results markers of BENCHMARKS.md.

use std::collections::BTreeMap;
use std::io;

use crate::Opts;

/// The client's output: one `RESULT k=v ...` line for `report`, then one line for people.
pub(crate) struct Report(Vec<(String, String)>);

impl Report {
    pub(crate) fn new(o: &Opts, kind: &str) -> Report {
        let mut r = Report(Vec::new());
        r.put("name", o.str("name", kind));
        r.put("label", o.str("label", "server"));
        r.put("type", kind);
        r.put("run", o.str("syscalls", "measure"));
        r.put("conns", o.str("conns", ""));
        r.put("size", o.str("size", ""));
        r
    }
    pub(crate) fn put(&mut self, key: &str, value: impl ToString) {
        self.0
            .push((key.to_string(), value.to_string().replace(' ', "_")));
    }
    pub(crate) fn print(&self) {
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

const BEGIN: &str =
    "<!-- echo-results:begin (written by benches/run.sh; edits inside are lost) -->";
const END: &str = "<!-- echo-results:end -->";

pub(crate) fn report(args: &[String]) -> io::Result<()> {
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
    let unpinned = o.str("unpinned", "");
    let unpinned: Vec<&str> = unpinned.split_whitespace().collect();
    let tables = tables(&rows, &o.str("baseline", "tokio-ct"), &unpinned);
    println!("{tables}");
    if let Some(file) = o.0.get("update") {
        let extra = match o.0.get("extra") {
            Some(f) => std::fs::read_to_string(f).unwrap_or_default(),
            None => String::new(),
        };
        let section = format!(
            "{BEGIN}\n## Echo servers\n\n{}\n\nMeasured {} at commit {} on {}.\nCommand: `{}`\n\nHow: {}{METHOD}\n{tables}{extra}{END}\n\n",
            GOALS,
            o.str("date", "?"),
            o.str("commit", "?"),
            o.str("machine", "?"),
            o.str("command", "benches/run.sh"),
            pinning(&unpinned),
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

/// How the servers were placed on the cores: `--unpinned` lists those that ran without `taskset`.
fn pinning(unpinned: &[&str]) -> String {
    let pinned = "every server runs alone, pinned with `taskset -c 0`";
    match unpinned {
        [] => pinned.to_string(),
        list => format!(
            "{pinned}, except {} (marked *unpinned*: multi-threaded, so its workers may run on both cores \
             and share core 1 with the load generator)",
            list.join(", ")
        ),
    }
}

/// The method, after the sentence on pinning.
const METHOD: &str = "; the one load generator (`benches/echo/client.rs`: \
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

fn tables(rows: &[BTreeMap<String, String>], baseline: &str, unpinned: &[&str]) -> String {
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
        let ratio_to = |label: &str, base: &str, key: &str| match (
            median(label, "measure", key),
            median(base, "measure", key),
        ) {
            (Some(a), Some(b)) if b > 0.0 => format!("{a:.2}x", a = a / b),
            _ => "-".into(),
        };
        let ratio = |label: &str, key: &str| ratio_to(label, baseline, key);
        // The i-th run of `label` against the i-th of `base` (the same repetition: run.sh alternates
        // the servers within each): geometric mean of the ratios, and in how many `label` is >= `base`.
        let paired = |label: &str, base: &str, key: &str| -> Option<(f64, usize, usize)> {
            let (a, b) = (vals(label, "measure", key), vals(base, "measure", key));
            let n = a.len().min(b.len());
            if n == 0 || a.iter().chain(&b).any(|&x| x <= 0.0) {
                return None;
            }
            let mean_log = (0..n).map(|i| (a[i] / b[i]).ln()).sum::<f64>() / n as f64;
            let ahead = (0..n).filter(|&i| a[i] >= b[i]).count();
            Some((mean_log.exp(), ahead, n))
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
            let shown = if unpinned.contains(l) {
                format!("{l} (*unpinned*)")
            } else {
                l.to_string()
            };
            out += &format!("| {shown} | {} |\n", row.join(" | "));
        }
        // The goals (see the top of the section) beside this table's figures.
        if kind == "pp" {
            let goals: Vec<String> = labels
                .iter()
                .filter(|l| l.starts_with("evloop"))
                .map(|l| {
                    let goal = match *l {
                        "evloop-async" => "goal ≤ 0.9x tokio-ct and ≤ 2.05 syscalls",
                        l if l.starts_with("evloop-callback") => "goal ≤ 2.5 syscalls",
                        _ => "no goal set",
                    };
                    // A multi-threaded server is set beside the multi-threaded peer.
                    let base = if l.ends_with("-mt") && labels.contains(&"tokio-mt") {
                        "tokio-mt"
                    } else {
                        baseline
                    };
                    let mut s = format!(
                        "{l} CPU/rt {} of {base}",
                        ratio_to(l, base, "cpu_us_per_rt")
                    );
                    if labels.contains(&"libevent") {
                        s += &format!(", {} of libevent", ratio_to(l, "libevent", "cpu_us_per_rt"));
                    }
                    s += &format!(", {} syscalls/rt ({goal})", sys(l));
                    // Run-to-run noise on a shared machine moves every server together for tens of
                    // seconds; a run divided by the base's run of the same repetition cancels it.
                    if let (Some((rt, ahead, n)), Some((cpu, _, _))) = (
                        paired(l, base, "rt_per_s"),
                        paired(l, base, "cpu_us_per_rt"),
                    ) {
                        s += &format!(
                            "; paired with {base} run by run: round trips {rt:.3}x (ahead in {ahead} of {n}), CPU/rt {cpu:.3}x"
                        );
                    }
                    s
                })
                .collect();
            if !goals.is_empty() {
                out += &format!("\nAgainst the goals: {}.\n", goals.join("; "));
            }
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
