//! Every example answers `--help` with its usage on stdout and exit code 0, and a bad flag with one
//! line saying what is wrong plus the same usage on stderr and exit code 2.
//!
//! The examples are found in the `examples/` directory, so a new one is covered without editing this
//! file. They are run from the binaries cargo builds next to this test (`cargo test` builds every
//! example its features allow); one that is missing or older than its source is built first with
//! `cargo build --examples`. An example whose `required-features` (in Cargo.toml) are off is skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// How long one example may take to answer.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);

/// An example target: its name, its source (a file, or the directory of a `main.rs`), and the features
/// Cargo.toml says it needs.
struct Example {
    name: String,
    source: PathBuf,
    required_features: Vec<String>,
}

/// Every example in `examples/`: `NAME.rs` files and `NAME/main.rs` directories, as cargo finds them.
fn examples() -> Vec<Example> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("read Cargo.toml");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root.join("examples")).expect("read examples/") {
        let path = entry.expect("read examples/").path();
        let name = if path.extension().is_some_and(|e| e == "rs") {
            path.file_stem()
        } else if path.join("main.rs").is_file() {
            path.file_name()
        } else {
            None // a module shared by examples, not an example
        };
        if let Some(name) = name.and_then(|n| n.to_str()) {
            found.push(Example {
                name: name.to_string(),
                required_features: required_features(&manifest, name),
                source: path,
            });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// The `required-features` of the `[[example]]` named `name` in `manifest` (none if it has no entry).
/// A small reader for the one form Cargo.toml uses: `name = "..."` and `required-features = [...]` on
/// one line each, inside an `[[example]]` table.
fn required_features(manifest: &str, name: &str) -> Vec<String> {
    let mut in_example = false;
    let mut this_one = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_example = line == "[[example]]";
            this_one = false;
        } else if in_example {
            let (key, value) = match line.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None => continue,
            };
            if key == "name" {
                this_one = value.trim_matches('"') == name;
            } else if key == "required-features" && this_one {
                return value
                    .trim_matches(|c| c == '[' || c == ']')
                    .split(',')
                    .map(|f| f.trim().trim_matches('"').to_string())
                    .filter(|f| !f.is_empty())
                    .collect();
            }
        }
    }
    Vec::new()
}

/// Where cargo put this profile's example binaries: `<profile dir>/examples/`, next to the `deps/`
/// directory that holds this test.
fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("the test binary's directory");
    deps.parent()
        .expect("the profile directory")
        .join("examples")
}

/// The newest modification time under `path` (a file, or every file of a directory).
fn newest_mtime(path: &Path) -> std::time::SystemTime {
    let meta = std::fs::metadata(path).expect("stat the example's source");
    if !meta.is_dir() {
        return meta.modified().expect("mtime");
    }
    std::fs::read_dir(path)
        .expect("read the example's directory")
        .map(|e| newest_mtime(&e.expect("read the example's directory").path()))
        .max()
        .unwrap_or(std::time::UNIX_EPOCH)
}

/// True if the binary of `ex` exists and is newer than its source.
fn is_built(ex: &Example) -> bool {
    let bin = examples_dir().join(&ex.name);
    match std::fs::metadata(&bin).and_then(|m| m.modified()) {
        Ok(built) => built >= newest_mtime(&ex.source),
        Err(_) => false,
    }
}

/// Builds the examples (default features) into this test's profile directory.
fn build_examples() {
    let profile_dir = examples_dir()
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str().map(String::from))
        .unwrap_or_default();
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--examples", "--quiet"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    // The dev profile builds into `debug/`; every other profile into a directory of its name.
    if profile_dir != "debug" {
        cmd.args(["--profile", &profile_dir]);
    }
    let status = cmd.status().expect("run cargo build --examples");
    assert!(status.success(), "cargo build --examples failed: {status}");
}

/// Runs example `name` with `args` and collects its output, failing after [`ANSWER_LIMIT`].
fn run(name: &str, args: &[&str]) -> Output {
    let mut child = Command::new(examples_dir().join(name))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run example {name}: {e}"));
    let start = Instant::now();
    while child.try_wait().expect("wait for the example").is_none() {
        if start.elapsed() > ANSWER_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("example {name} {args:?} did not exit within {ANSWER_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child
        .wait_with_output()
        .expect("collect the example's output")
}

#[test]
fn every_example_answers_help_and_rejects_a_bad_flag() {
    // The examples themselves are not instrumented by scripts/sanitize.sh (which sets this), and
    // building them here would need its --target and flags; the normal suite covers them.
    if std::env::var_os("EVLOOP_SANITIZER").is_some() {
        return;
    }
    let all = examples();
    assert!(
        all.len() >= 8,
        "found only {} examples in examples/",
        all.len()
    );
    if all
        .iter()
        .any(|ex| ex.required_features.is_empty() && !is_built(ex))
    {
        build_examples();
    }
    let mut checked = 0;
    for ex in &all {
        if !is_built(ex) {
            // cargo builds an example only when its required features are on.
            assert!(
                !ex.required_features.is_empty(),
                "example {} was not built: `cargo build --examples` should have built it",
                ex.name
            );
            println!(
                "skipped {}: needs features {:?}",
                ex.name, ex.required_features
            );
            continue;
        }
        let help = run(&ex.name, &["--help"]);
        let usage = String::from_utf8_lossy(&help.stdout).into_owned();
        assert_eq!(
            help.status.code(),
            Some(0),
            "{} --help: exit status {}; stderr: {}",
            ex.name,
            help.status,
            String::from_utf8_lossy(&help.stderr)
        );
        assert!(
            usage.starts_with("usage: ") && usage.contains(&ex.name),
            "{} --help should print its usage (\"usage: {} ...\") on stdout, printed {usage:?}",
            ex.name,
            ex.name
        );
        assert!(
            help.stderr.is_empty(),
            "{} --help wrote to stderr: {}",
            ex.name,
            String::from_utf8_lossy(&help.stderr)
        );

        let bad = run(&ex.name, &["--no-such-flag"]);
        let stderr = String::from_utf8_lossy(&bad.stderr).into_owned();
        assert_eq!(
            bad.status.code(),
            Some(2),
            "{} --no-such-flag: exit status {}; stderr: {stderr}",
            ex.name,
            bad.status
        );
        assert!(
            bad.stdout.is_empty(),
            "{} --no-such-flag wrote to stdout: {}",
            ex.name,
            String::from_utf8_lossy(&bad.stdout)
        );
        // One line naming the problem, then exactly what --help prints.
        let (first, rest) = stderr.split_once('\n').unwrap_or((&stderr, ""));
        assert!(
            first.contains("--no-such-flag")
                && !first.contains("Error {")
                && !first.contains("Custom {"),
            "{}: the first line of stderr should name the bad flag in words, got {first:?}",
            ex.name
        );
        assert_eq!(
            rest, usage,
            "{}: after the problem, stderr should hold the usage that --help prints",
            ex.name
        );
        checked += 1;
    }
    println!("{checked} examples checked");
}
