//! A shell-less pipeline, `seq 1 100000 | sort -r | head`, wired with evloop pipes: each child's
//! `ChildStdout` becomes the next child's stdin (`Stdio::try_from`, which hands the pipe over in
//! blocking mode), and the last one's output is read on the reactor.
//!
//! ```text
//! cargo run --example process_pipeline
//! cargo run --example process_pipeline -- --count 5000 --lines 3
//! ```

use std::process::ExitCode;

use evloop::process::{Command, ExitStatus, Stdio};
use futures::AsyncReadExt;

const USAGE: &str = "usage: process_pipeline [--count N] [--lines N]
  runs `seq 1 COUNT | sort -r | head -n LINES` without a shell and prints the result
  --count N   the last number seq prints (default 100000)
  --lines N   how many lines head keeps (default 10)";

fn main() -> ExitCode {
    let (count, lines) = match parse(std::env::args().skip(1)) {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("process_pipeline: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match evloop::block_on(pipeline(count, lines)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("process_pipeline: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn pipeline(count: u64, lines: u64) -> std::io::Result<()> {
    let mut seq = Command::new("seq")
        .args(["1", &count.to_string()])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut sort = Command::new("sort")
        .arg("-r")
        .stdin(Stdio::try_from(seq.stdout.take().expect("piped"))?)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut head = Command::new("head")
        .args(["-n", &lines.to_string()])
        .stdin(Stdio::try_from(sort.stdout.take().expect("piped"))?)
        .stdout(Stdio::piped())
        .spawn()?;

    let mut text = String::new();
    head.stdout
        .take()
        .expect("piped")
        .read_to_string(&mut text)
        .await?;
    print!("{text}");

    for (name, status) in [
        ("seq", seq.wait().await?),
        ("sort", sort.wait().await?),
        ("head", head.wait().await?),
    ] {
        report(name, status);
    }
    Ok(())
}

/// Says how a stage ended. Once `head` has its lines it exits, and the stages before it may then be
/// killed by `SIGPIPE` writing to it, as in a shell.
fn report(name: &str, status: ExitStatus) {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(libc::SIGPIPE) => eprintln!("{name}: stopped by SIGPIPE (head had read enough)"),
        Some(sig) => eprintln!("{name}: killed by signal {sig}"),
        None => eprintln!("{name}: {status}"),
    }
}

/// `Ok(None)` for `--help`.
fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<(u64, u64)>, String> {
    let (mut count, mut lines) = (100_000, 10);
    while let Some(arg) = args.next() {
        let slot = match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--count" => &mut count,
            "--lines" => &mut lines,
            other => return Err(format!("unknown argument `{other}`")),
        };
        let value = args.next().ok_or(format!("{arg} needs a number"))?;
        *slot = value
            .parse()
            .map_err(|_| format!("{arg} needs a number, not `{value}`"))?;
    }
    Ok(Some((count, lines)))
}
