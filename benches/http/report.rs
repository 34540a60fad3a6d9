//! Markdown tables from the `RESULT` lines of `http wrk` and the `CALLGRIND` lines of run.sh: per
//! connection count, each server's median (min–max) over the repetitions, then evloop paired run by
//! run with tokio of the same flavor (the same repetition: run.sh alternates the servers within it).

use std::collections::BTreeMap;
use std::io;

type Row = BTreeMap<String, String>;

/// evloop's servers and the tokio peer each is compared with.
const PAIRS: [(&str, &str); 2] = [("evloop-ct", "tokio-ct"), ("evloop-mt", "tokio-mt")];

pub(crate) fn run(path: Option<&str>) -> io::Result<()> {
    let path = path.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "usage: http report RESULTS_FILE",
        )
    })?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
    let rows = |tag: &str| -> Vec<Row> {
        text.lines()
            .filter_map(|l| l.strip_prefix(tag))
            .map(|l| {
                l.split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .collect()
    };
    print!("{}", tables(&rows("RESULT "), &rows("CALLGRIND ")));
    Ok(())
}

fn num(r: &Row, key: &str) -> f64 {
    r.get(key).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

fn median(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let m = if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    };
    Some((m, v[0], v[v.len() - 1]))
}

fn cell(v: Vec<f64>, digits: usize) -> String {
    match median(v) {
        Some((m, lo, hi)) => format!("{m:.digits$} ({lo:.digits$}–{hi:.digits$})"),
        None => "-".into(),
    }
}

fn tables(results: &[Row], callgrind: &[Row]) -> String {
    let mut out = String::new();
    let mut labels: Vec<&str> = Vec::new();
    for r in results.iter().chain(callgrind) {
        let l = r.get("label").map_or("?", String::as_str);
        if !labels.contains(&l) {
            labels.push(l);
        }
    }
    labels.sort_unstable();
    let mut conn_counts: Vec<u64> = results.iter().map(|r| num(r, "conns") as u64).collect();
    conn_counts.sort_unstable();
    conn_counts.dedup();
    for conns in conn_counts {
        let of = |label: &str| -> Vec<&Row> {
            results
                .iter()
                .filter(|r| {
                    num(r, "conns") as u64 == conns
                        && r.get("label").map(String::as_str) == Some(label)
                })
                .collect()
        };
        // A run with socket errors or non-2xx answers is not a result.
        let clean = |r: &&Row| num(r, "socket_errors") == 0.0 && num(r, "non2xx") == 0.0;
        out += &format!("### {conns} connections\n\n| server | runs | requests/s | p50 µs | p99 µs | server CPU µs/request |\n|---|---|---|---|---|---|\n");
        for &l in &labels {
            let all = of(l);
            if all.is_empty() {
                continue;
            }
            let ok: Vec<&Row> = all.iter().copied().filter(clean).collect();
            let bad = all.len() - ok.len();
            let runs = if bad > 0 {
                format!("{} ({bad} with errors, left out)", ok.len())
            } else {
                ok.len().to_string()
            };
            let col = |key: &str| ok.iter().map(|r| num(r, key)).collect::<Vec<_>>();
            out += &format!(
                "| {l} | {runs} | {} | {} | {} | {} |\n",
                cell(col("rps"), 0),
                cell(col("p50_us"), 0),
                cell(col("p99_us"), 0),
                cell(col("cpu_us_per_req"), 2)
            );
        }
        out += "\n";
        for (ev, tk) in PAIRS {
            // Runs of the same repetition, both clean.
            let by_rep = |label: &str| -> BTreeMap<String, &Row> {
                of(label)
                    .into_iter()
                    .filter(clean)
                    .map(|r| (r.get("rep").cloned().unwrap_or_default(), r))
                    .collect()
            };
            let (a, b) = (by_rep(ev), by_rep(tk));
            let pairs: Vec<(&Row, &Row)> = a
                .iter()
                .filter_map(|(rep, ra)| b.get(rep).map(|rb| (*ra, *rb)))
                .collect();
            if pairs.is_empty() {
                continue;
            }
            let ratios = |key: &str| -> String {
                let rs: Vec<f64> = pairs
                    .iter()
                    .map(|(x, y)| num(x, key) / num(y, key))
                    .collect();
                let geo = (rs.iter().map(|r| r.ln()).sum::<f64>() / rs.len() as f64).exp();
                let each: Vec<String> = rs.iter().map(|r| format!("{r:.2}")).collect();
                format!("{geo:.3}x ({})", each.join(", "))
            };
            out += &format!(
                "- {ev} / {tk}, paired run by run over {} repetitions (geometric mean, then each): requests/s {}; p99 {}; CPU/request {}\n",
                pairs.len(),
                ratios("rps"),
                ratios("p99_us"),
                ratios("cpu_us_per_req")
            );
        }
        out += "\n";
    }
    if !callgrind.is_empty() {
        out += "### Instructions per request (callgrind, user space)\n\n| server | requests | instructions | of which startup and exit | instructions/request |\n|---|---|---|---|---|\n";
        let per_req =
            |r: &Row| (num(r, "instructions") - num(r, "startup")) / num(r, "requests").max(1.0);
        for r in callgrind {
            out += &format!(
                "| {} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
                r.get("label").map_or("?", String::as_str),
                num(r, "requests"),
                num(r, "instructions"),
                num(r, "startup"),
                per_req(r)
            );
        }
        out += "\n";
        for (ev, tk) in PAIRS {
            let find = |l: &str| {
                callgrind
                    .iter()
                    .find(|r| r.get("label").map(String::as_str) == Some(l))
            };
            if let (Some(a), Some(b)) = (find(ev), find(tk)) {
                out += &format!(
                    "- {ev} / {tk}: instructions/request {:.3}x\n",
                    per_req(a) / per_req(b)
                );
            }
        }
        out += "\n";
    }
    out
}
