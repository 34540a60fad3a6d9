//! Child processes on the reactor: [`Command`], [`Child`], and the pipes to a child
//! ([`ChildStdin`], [`ChildStdout`], [`ChildStderr`]), shaped like `tokio::process`.
//!
//! A [`Command`] wraps a `std::process::Command` (which does the fork/exec, and opens every pipe
//! close-on-exec); evloop adds non-blocking pipes registered with the reactor, and a way to wait for
//! the child's exit that costs no thread and no polling.
//!
//! # How waiting works
//! [`Child::wait`] first asks `waitpid(pid, WNOHANG)` (through `std::process::Child::try_wait`); while
//! the child runs, the task sleeps on one of these, chosen per child when it is first waited for:
//! - **Linux**: a pidfd (`pidfd_open`, kernel 5.3 and later), which polls readable once the child has
//!   exited, registered with the reactor like a socket (`pidfd.rs`). Only the waiting task is woken.
//! - **macOS, iOS and the BSDs**: a private kqueue holding one `EVFILT_PROC`/`NOTE_EXIT` filter for the
//!   child; a kqueue fd is readable while it has pending events, so it is registered with the reactor
//!   like any fd (`kqueue.rs`). Only the waiting task is woken.
//! - **Elsewhere, or when the above fail** (an old kernel answering `ENOSYS`, a sandbox refusing the
//!   call, no descriptors left), and on Android, whose seccomp filters may kill a process for a
//!   syscall they do not know: `SIGCHLD`, through [`evloop::signal`](crate::signal). Each delivery
//!   wakes every task waiting this way, and each checks its own child with `waitpid(pid, WNOHANG)`.
//!
//! Setting the environment variable `EVLOOP_PROCESS_WAIT=sigchld` (read once, at the first wait)
//! forces the `SIGCHLD` way everywhere: a workaround where pidfds misbehave, and how the tests
//! exercise that path.
//!
//! # No zombies
//! A [`Child`] dropped before its exit was collected is handed to a process-wide orphan list
//! (`orphan.rs`), after `SIGKILL` if [`Command::kill_on_drop`] was set. A task on the runtime where
//! the drop happened (one per runtime, started on demand) listens for `SIGCHLD` and reaps the orphans
//! as they exit, then ends when the list is empty. Orphans left when that runtime goes away, or
//! dropped outside any runtime, are reaped by the reapers of other runtimes, or by the next
//! [`Command::spawn`] or orphan on any runtime.
//!
//! # Examples
//! ```
//! use evloop::process::Command;
//!
//! evloop::block_on(async {
//!     let out = Command::new("echo").arg("hello").output().await?;
//!     assert!(out.status.success());
//!     assert_eq!(out.stdout, b"hello\n");
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```

mod child;
#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
mod kqueue;
mod orphan;
// Linux only: Android's seccomp filters may kill a process for `pidfd_open` (see the module doc).
#[cfg(target_os = "linux")]
mod pidfd;
mod pipe;
mod watch;

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;

pub use child::Child;
pub use pipe::{ChildStderr, ChildStdin, ChildStdout};
pub use std::process::{ExitStatus, Output, Stdio};

/// A builder for a child process: `std::process::Command` plus the reactor.
///
/// Every builder method mirrors its `std::process::Command` namesake and returns `&mut Command`, so
/// calls chain. [`spawn`](Self::spawn) starts the child; [`status`](Self::status) and
/// [`output`](Self::output) start it and wait for it.
///
/// # Examples
/// ```
/// use evloop::process::{Command, Stdio};
/// use futures::{AsyncReadExt, AsyncWriteExt};
///
/// evloop::block_on(async {
///     let mut child = Command::new("tr")
///         .arg("a-z")
///         .arg("A-Z")
///         .stdin(Stdio::piped())
///         .stdout(Stdio::piped())
///         .spawn()?;
///     let mut stdin = child.stdin.take().unwrap();
///     stdin.write_all(b"shout").await?;
///     drop(stdin); // end of input
///     let mut text = String::new();
///     child.stdout.take().unwrap().read_to_string(&mut text).await?;
///     assert_eq!(text, "SHOUT");
///     assert!(child.wait().await?.success());
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Command {
    std: std::process::Command,
    /// Kill the child with `SIGKILL` if its [`Child`] is dropped before it exited.
    kill_on_drop: bool,
    /// Which of stdin, stdout, stderr were set through this wrapper: `output` pipes only the others,
    /// as std's `output` does.
    stdio_set: [bool; 3],
}

impl Command {
    /// A command to run `program` (looked up in `PATH` unless it contains a `/`), with no arguments,
    /// the parent's environment and working directory, and inherited stdio.
    pub fn new<S: AsRef<OsStr>>(program: S) -> Command {
        Command::from(std::process::Command::new(program))
    }

    /// Adds one argument.
    pub fn arg<S: AsRef<OsStr>>(&mut self, arg: S) -> &mut Command {
        self.std.arg(arg);
        self
    }

    /// Adds several arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.std.args(args);
        self
    }

    /// Sets an environment variable for the child.
    pub fn env<K: AsRef<OsStr>, V: AsRef<OsStr>>(&mut self, key: K, val: V) -> &mut Command {
        self.std.env(key, val);
        self
    }

    /// Sets several environment variables for the child.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.std.envs(vars);
        self
    }

    /// Removes an environment variable from the child's environment.
    pub fn env_remove<K: AsRef<OsStr>>(&mut self, key: K) -> &mut Command {
        self.std.env_remove(key);
        self
    }

    /// Starts the child with an empty environment (plus what [`env`](Self::env) adds).
    pub fn env_clear(&mut self) -> &mut Command {
        self.std.env_clear();
        self
    }

    /// Sets the child's working directory.
    pub fn current_dir<P: AsRef<Path>>(&mut self, dir: P) -> &mut Command {
        self.std.current_dir(dir);
        self
    }

    /// The child's standard input: [`Stdio::piped`] makes [`Child::stdin`] a pipe on the reactor.
    pub fn stdin<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.std.stdin(cfg);
        self.stdio_set[0] = true;
        self
    }

    /// The child's standard output: [`Stdio::piped`] makes [`Child::stdout`] a pipe on the reactor.
    pub fn stdout<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.std.stdout(cfg);
        self.stdio_set[1] = true;
        self
    }

    /// The child's standard error: [`Stdio::piped`] makes [`Child::stderr`] a pipe on the reactor.
    pub fn stderr<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.std.stderr(cfg);
        self.stdio_set[2] = true;
        self
    }

    /// Whether dropping the [`Child`] before it exited kills it (`SIGKILL`). Off by default: the child
    /// runs on, and is reaped in the background once it exits.
    pub fn kill_on_drop(&mut self, kill_on_drop: bool) -> &mut Command {
        self.kill_on_drop = kill_on_drop;
        self
    }

    /// Puts the child in process group `pgroup` (`setpgid`); 0 makes a new group led by the child.
    pub fn process_group(&mut self, pgroup: i32) -> &mut Command {
        self.std.process_group(pgroup);
        self
    }

    /// The wrapped `std::process::Command`.
    pub fn as_std(&self) -> &std::process::Command {
        &self.std
    }

    /// The wrapped `std::process::Command`, for settings this wrapper does not mirror (`uid`, `gid`,
    /// `pre_exec`, ...).
    pub fn as_std_mut(&mut self) -> &mut std::process::Command {
        &mut self.std
    }

    /// Starts the child. Its piped stdio becomes non-blocking pipes registered with the current
    /// runtime's reactor.
    ///
    /// # Errors
    /// Fails outside a runtime, and when the child cannot be started; the message names the program
    /// and the likely fix (`NotFound`: not installed or not on `PATH`, or a missing working
    /// directory; `PermissionDenied`: not executable).
    pub fn spawn(&mut self) -> io::Result<Child> {
        // Checked first, so that a child is never started that nothing could wait for.
        crate::executor::reactor_or_err()?;
        orphan::reap();
        let child = self.std.spawn().map_err(|e| self.spawn_error(e))?;
        Child::new(child, self.program_name(), self.kill_on_drop)
    }

    /// Starts the child and waits for it to exit. Stdio is inherited unless set; pipes set up with
    /// [`Stdio::piped`] are closed at once, since nothing could read or write them.
    ///
    /// # Errors
    /// As [`spawn`](Self::spawn) and [`Child::wait`].
    pub async fn status(&mut self) -> io::Result<ExitStatus> {
        let mut child = self.spawn()?;
        child.stdout = None;
        child.stderr = None;
        child.wait().await
    }

    /// Starts the child, collects its standard output and error, and waits for it to exit.
    ///
    /// As with std, stdout and stderr are piped and stdin reads from `/dev/null`, unless set on this
    /// `Command` (set on a `std::process::Command` before the conversion, they count as not set).
    /// These defaults stay set on the `Command` for later spawns, as in tokio.
    ///
    /// # Errors
    /// As [`spawn`](Self::spawn) and [`Child::wait_with_output`].
    pub async fn output(&mut self) -> io::Result<Output> {
        if !self.stdio_set[0] {
            self.std.stdin(Stdio::null());
        }
        if !self.stdio_set[1] {
            self.std.stdout(Stdio::piped());
        }
        if !self.stdio_set[2] {
            self.std.stderr(Stdio::piped());
        }
        self.spawn()?.wait_with_output().await
    }

    /// The program, for error messages.
    fn program_name(&self) -> String {
        self.std.get_program().to_string_lossy().into_owned()
    }

    /// Names the program (and the working directory, if set) in a spawn failure.
    fn spawn_error(&self, e: io::Error) -> io::Error {
        let program = self.program_name();
        let dir = self.std.get_current_dir();
        let hint = match (e.kind(), dir) {
            (io::ErrorKind::NotFound, Some(dir)) => format!(
                ": is it installed and on PATH, and does the working directory {} exist?",
                dir.display()
            ),
            (io::ErrorKind::NotFound, None) => {
                ": is it installed, and on PATH (or given as a path)?".to_string()
            }
            (io::ErrorKind::PermissionDenied, _) => {
                ": is it an executable file (mode +x), and may this user run it?".to_string()
            }
            _ => String::new(),
        };
        io::Error::new(e.kind(), format!("cannot run `{program}` ({e}){hint}"))
    }
}

impl From<std::process::Command> for Command {
    fn from(std: std::process::Command) -> Command {
        Command {
            std,
            kill_on_drop: false,
            stdio_set: [false; 3],
        }
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("std", &self.std)
            .field("kill_on_drop", &self.kill_on_drop)
            .finish()
    }
}
