//! Every example answers `--help` with its usage on stdout and exit code 0, and a bad flag with one
//! line saying what is wrong plus the same usage on stderr and exit code 2.
//!
//! The examples are found in the `examples/` directory, so a new one is covered without editing this
//! file. They are built with this test's profile and features (`util::build_examples`, a no-op after a
//! plain `cargo test`, which builds them too) and run from there. An example whose `required-features`
//! (in Cargo.toml) this test was built without is skipped.

mod util;

use std::path::Path;
use std::time::Duration;

use util::{build_examples, feature_enabled, run_example};

/// How long one example may take to answer.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);

/// An example target: its name and the features Cargo.toml says it needs.
struct Example {
    name: String,
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
    let enabled = |ex: &&Example| {
        ex.required_features.iter().all(|f| {
            feature_enabled(f).unwrap_or_else(|| {
                panic!(
                    "example {} needs feature {f:?}, which tests/util/mod.rs's FEATURES does not \
                     list: add it there",
                    ex.name
                )
            })
        })
    };
    let (runnable, skipped): (Vec<&Example>, Vec<&Example>) = all.iter().partition(enabled);
    for ex in &skipped {
        println!(
            "skipped {}: needs features {:?}",
            ex.name, ex.required_features
        );
    }
    let names: Vec<&str> = runnable.iter().map(|ex| ex.name.as_str()).collect();
    build_examples(&names);
    let mut checked = 0;
    for ex in runnable {
        let help = run_example(&ex.name, &["--help"], ANSWER_LIMIT);
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

        let bad = run_example(&ex.name, &["--no-such-flag"], ANSWER_LIMIT);
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
