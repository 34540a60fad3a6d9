//! Example programs (tests/examples.rs, tests/rot13.rs, tests/http.rs): built like this test binary,
//! run with a time limit, or started as servers.

use super::*;

/// The features of this package, each with whether this test binary was built with it (cargo builds
/// the tests with the package's features), so that examples are built alike. A feature added to
/// Cargo.toml is added here too; tests/examples.rs fails on an example that needs one missing here.
const FEATURES: [(&str, bool); 2] = [
    ("hyper", cfg!(feature = "hyper")),
    ("test-util", cfg!(feature = "test-util")),
];

/// Whether this test binary was built with feature `name`; `None` for a feature not in [`FEATURES`].
pub fn feature_enabled(name: &str) -> Option<bool> {
    FEATURES.iter().find(|(f, _)| *f == name).map(|&(_, on)| on)
}

/// Builds the example programs `names` (once per test process) with the profile, target, features
/// and target directory this test binary was built with, and returns the directory they are in. A
/// plain `cargo test` has built them already (then this is a quick no-op); `cargo test --test NAME`
/// and `cargo test --tests` have not.
pub fn build_examples(names: &[&str]) -> std::path::PathBuf {
    use std::path::Path;
    use std::process::Command;
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let exe = std::env::current_exe().expect("current_exe");
    // <target dir>[/<triple>]/<profile>/deps/<test binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary is in <profile>/deps");
    let profile = profile_dir.file_name().unwrap().to_str().unwrap();
    // `<target dir>/<profile>`, or `<target dir>/<triple>/<profile>` for a `--target` build (the
    // sanitizer runs): a directory named like a triple (arch-vendor-os…) inside a cargo target
    // directory (one with a CACHEDIR.TAG) is the triple's.
    let above = profile_dir.parent().expect("a target directory");
    let above_name = above.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let triple = above
        .parent()
        .filter(|dir| above_name.matches('-').count() >= 2 && dir.join("CACHEDIR.TAG").exists())
        .map(|_| above_name);
    let target_dir = match triple {
        Some(_) => above.parent().unwrap(),
        None => above,
    };
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !built.iter().any(|b| b == n))
        .collect();
    if !missing.is_empty() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        // Cargo runs this test with the variables of a running target (CARGO_PKG_NAME,
        // CARGO_MANIFEST_DIR, ...). Build scripts that watch them (ring's does) would see them
        // changed and rerun, here and again in the next outer `cargo test`: the nested cargo gets
        // the environment cargo itself was started with.
        for key in std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()) {
            let of_the_target = key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_BIN_")
                || key.starts_with("CARGO_MANIFEST_")
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                    "OUT_DIR",
                ]
                .contains(&key.as_str());
            if of_the_target {
                cmd.env_remove(key);
            }
        }
        cmd.arg("build")
            .arg("--quiet")
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir);
        match profile {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        if let Some(triple) = triple {
            cmd.args(["--target", triple]);
        }
        let features: Vec<&str> = FEATURES.iter().filter(|f| f.1).map(|f| f.0).collect();
        if !features.is_empty() {
            cmd.args(["--features", &features.join(",")]);
        }
        for n in &missing {
            cmd.args(["--example", n]);
        }
        let status = cmd.status().expect("run cargo to build the examples");
        assert!(
            status.success(),
            "building the examples {missing:?} failed: {cmd:?}"
        );
        built.extend(missing.iter().map(|n| n.to_string()));
    }
    profile_dir.join("examples")
}

/// Builds (see [`build_examples`]) and runs example `name` with `args` to its end, stdin closed, and
/// collects its output; fails the test if it runs longer than `limit`.
pub fn run_example(name: &str, args: &[&str], limit: Duration) -> std::process::Output {
    use std::process::{Command, Stdio};
    let mut child = Command::new(build_examples(&[name]).join(name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run example {name}: {e}"));
    let start = std::time::Instant::now();
    while child.try_wait().expect("wait for the example").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("example {name} {args:?} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child
        .wait_with_output()
        .expect("collect the example's output")
}

/// An example server started as a program with `--addr 127.0.0.1:0`; its first line on stdout must
/// end with the address it bound (`http://` before it allowed). Killed when dropped, and on Linux also
/// when the thread that started it ends (so start it on the thread that uses it).
pub struct ExampleServer {
    pub name: &'static str,
    /// The arguments after `--addr 127.0.0.1:0`.
    pub args: Vec<String>,
    pub addr: std::net::SocketAddr,
    /// The line that announced `addr`, as printed.
    pub first_line: String,
    /// The rest of its stdout, kept open so the server can go on printing.
    pub stdout: std::io::BufReader<std::process::ChildStdout>,
    pub child: std::process::Child,
}

impl ExampleServer {
    /// Builds (see [`build_examples`]) and starts example `name` on a free loopback port.
    pub fn start(name: &'static str) -> ExampleServer {
        ExampleServer::start_with(name, &[])
    }

    /// [`start`](Self::start) with `args` after `--addr 127.0.0.1:0`.
    pub fn start_with(name: &'static str, args: &[&str]) -> ExampleServer {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let dir = build_examples(&[name]);
        let mut cmd = Command::new(dir.join(name));
        cmd.args(["--addr", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // A test that times out leaves its thread, and so this server, running until the test
        // process exits; the server must not outlive it (it would keep the test's stderr open).
        // PR_SET_PDEATHSIG is Linux's; elsewhere such a server lingers until killed by hand.
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: the closure runs in the child between fork and exec and only calls prctl,
            // which is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", dir.join(name).display()));
        let mut first_line = String::new();
        // Ends at the first line, or at EOF if the server fails to start (then it is empty).
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
        stdout
            .read_line(&mut first_line)
            .expect("read the server's stdout");
        let addr = first_line
            .split_whitespace()
            .last()
            .map(|a| a.trim_start_matches("http://"))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("{name} did not print its address on stdout; it printed {first_line:?}")
            });
        ExampleServer {
            name,
            args: args.iter().map(|a| a.to_string()).collect(),
            addr,
            first_line,
            stdout,
            child,
        }
    }

    /// Sends SIGINT (Ctrl-C) and waits for the server to exit, at most `limit`; its exit status.
    pub fn interrupt(&mut self, limit: Duration) -> std::process::ExitStatus {
        // SAFETY: `kill` has no memory preconditions; the pid is our live child's.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        assert_eq!(rc, 0, "kill -INT: {}", std::io::Error::last_os_error());
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the server") {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "{} {:?} did not exit within {limit:?} of SIGINT",
                    self.name, self.args
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The server's resident memory in KiB (`VmRSS` of /proc/PID/status; /proc is Linux's).
    #[cfg(target_os = "linux")]
    pub fn rss_kib(&self) -> u64 {
        vm_rss_kib_in(&format!("/proc/{}/status", self.child.id()))
    }
}

impl Drop for ExampleServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
