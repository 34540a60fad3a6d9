//! [`Child`]: a running child process, its pipes, and waiting for its exit.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::process::{ExitStatus, Output};
use std::task::{ready, Context, Poll};

use futures_io::AsyncRead;

use super::orphan;
use super::pipe::{ChildStderr, ChildStdin, ChildStdout};
use super::watch::Watch;
use crate::executor::reactor_or_err;

/// A child process started by [`Command::spawn`](super::Command::spawn).
///
/// The pipes are public fields, to be `take`n and used from other tasks while this one waits.
/// Dropping a `Child` neither kills nor waits for the process: it runs on and is reaped in the
/// background once it exits (see the [module doc](super#no-zombies)), unless the command was set to
/// [`kill_on_drop`](super::Command::kill_on_drop).
///
/// # Caveats
/// Like every I/O object, a `Child`'s pipes, and its watch once it has been waited for, are registered
/// with the runtime they were made on: wait for it and use its pipes on that runtime (any of its
/// threads), not on another one.
pub struct Child {
    /// The pipe to the child's standard input, if it was set to [`Stdio::piped`](super::Stdio::piped).
    pub stdin: Option<ChildStdin>,
    /// The pipe from the child's standard output, if it was set to `Stdio::piped`.
    pub stdout: Option<ChildStdout>,
    /// The pipe from the child's standard error, if it was set to `Stdio::piped`.
    pub stderr: Option<ChildStderr>,
    /// std's child: the pid, and the exit status once collected. `None` only inside `Drop`.
    std: Option<std::process::Child>,
    /// The exit status, once collected: from then on the pid may name another process.
    status: Option<ExitStatus>,
    /// How a waiting task learns of the exit; made at the first wait, dropped at the exit.
    watch: Option<Watch>,
    /// The program, for error messages.
    program: String,
    /// Kill the child if this handle is dropped before it exited.
    kill_on_drop: bool,
}

impl Child {
    /// Wraps std's freshly spawned child, moving its pipes onto the reactor.
    pub(super) fn new(
        mut std: std::process::Child,
        program: String,
        kill_on_drop: bool,
    ) -> io::Result<Child> {
        let (stdin, stdout, stderr) = (std.stdin.take(), std.stdout.take(), std.stderr.take());
        let mut child = Child {
            stdin: None,
            stdout: None,
            stderr: None,
            std: Some(std),
            status: None,
            watch: None,
            program,
            kill_on_drop: true, // until the pipes are set up: nobody else could stop it
        };
        child.stdin = stdin.map(ChildStdin::from_std).transpose()?;
        child.stdout = stdout.map(ChildStdout::from_std).transpose()?;
        child.stderr = stderr.map(ChildStderr::from_std).transpose()?;
        child.kill_on_drop = kill_on_drop;
        Ok(child)
    }

    fn std(&mut self) -> &mut std::process::Child {
        self.std.as_mut().expect("Child: used during drop")
    }

    fn pid(&self) -> u32 {
        self.std.as_ref().expect("Child: used during drop").id()
    }

    /// The child's process id, or `None` once its exit has been collected (the id may then belong
    /// to another process).
    pub fn id(&self) -> Option<u32> {
        self.status.is_none().then(|| self.pid())
    }

    /// The exit status if the child has exited (collecting it), `None` if it still runs. Never blocks.
    ///
    /// # Errors
    /// Fails if `waitpid` does, typically `ECHILD` because the child was reaped behind evloop's back
    /// (`SIGCHLD` set to `SIG_IGN`, or a `waitpid(-1)` elsewhere); the message names the program.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        match self.std().try_wait() {
            Ok(Some(status)) => {
                self.status = Some(status);
                self.watch = None;
                Ok(Some(status))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(self.error("waiting for", e)),
        }
    }

    /// Waits for the child to exit and returns its status. The child's stdin, if piped, is closed
    /// first, so that a child reading it to the end cannot wait forever for more.
    ///
    /// Cancel-safe: dropping the future and calling `wait` again loses nothing.
    ///
    /// # Errors
    /// As [`try_wait`](Self::try_wait), and outside a runtime.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.stdin = None;
        poll_fn(|cx| self.poll_wait(cx)).await
    }

    /// Polls for the child's exit (what [`wait`](Self::wait) does, without closing stdin).
    pub fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<ExitStatus>> {
        if let Some(status) = self.status {
            return Poll::Ready(Ok(status));
        }
        // Ends: a watch that reported an exit which waitpid does not show yet is replaced by the
        // `SIGCHLD` watch, whose readiness is consumed by each poll, so every round needs a new signal.
        loop {
            let fresh = self.watch.is_none();
            if fresh {
                let pid = self.pid();
                self.watch = Some(Watch::new(pid).map_err(|e| self.error("waiting for", e))?);
            }
            // Asked after the watch exists, so that an exit from here on is reported by the watch. A
            // new pidfd or kqueue reports an exit from before it existed too: no need to ask then.
            if !(fresh && self.watch.as_ref().is_some_and(Watch::reports_earlier_exit)) {
                if let Some(status) = self.try_wait()? {
                    return Poll::Ready(Ok(status));
                }
            }
            let watch = self.watch.as_mut().expect("made above");
            ready!(watch.poll(cx));
            if let Some(status) = self.try_wait()? {
                return Poll::Ready(Ok(status));
            }
            if !self.watch.as_ref().is_some_and(Watch::is_sigchld) {
                // The descriptor reported the exit, but the child is not waitable yet (a kernel may post
                // NOTE_EXIT a moment before the zombie is visible): the parent's SIGCHLD comes after it.
                let reactor = reactor_or_err()?;
                self.watch =
                    Some(Watch::sigchld(reactor).map_err(|e| self.error("waiting for", e))?);
            }
        }
    }

    /// Sends `SIGKILL` to the child, without waiting for it to die. Does nothing if its exit has been
    /// collected already.
    ///
    /// # Errors
    /// Fails if the signal cannot be sent; the message names the program.
    pub fn start_kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        self.std().kill().map_err(|e| self.error("killing", e))
    }

    /// Sends `SIGKILL` to the child and waits for it to exit.
    ///
    /// # Errors
    /// As [`start_kill`](Self::start_kill) and [`wait`](Self::wait).
    pub async fn kill(&mut self) -> io::Result<()> {
        self.start_kill()?;
        self.wait().await.map(drop)
    }

    /// Closes stdin, reads stdout and stderr to their ends (both at once, so that a child filling one
    /// pipe while evloop reads the other cannot deadlock), and waits for the exit.
    ///
    /// # Errors
    /// Fails if reading a pipe fails, or as [`wait`](Self::wait).
    pub async fn wait_with_output(mut self) -> io::Result<Output> {
        self.stdin = None;
        let mut stdout = self.stdout.take();
        let mut stderr = self.stderr.take();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        poll_fn(|cx| {
            let a = poll_read_to_end(&mut stdout, &mut out, cx)?;
            let b = poll_read_to_end(&mut stderr, &mut err, cx)?;
            if a.is_ready() && b.is_ready() {
                Poll::Ready(Ok::<(), io::Error>(()))
            } else {
                Poll::Pending
            }
        })
        .await
        .map_err(|e| self.error("reading the output of", e))?;
        let status = self.wait().await?;
        Ok(Output {
            status,
            stdout: out,
            stderr: err,
        })
    }

    /// An error about this child that names the program and the pid.
    fn error(&self, doing: &str, e: io::Error) -> io::Error {
        let hint = if e.raw_os_error() == Some(libc::ECHILD) {
            ": it was reaped elsewhere (is SIGCHLD set to SIG_IGN, or does other code call waitpid(-1)?)"
        } else {
            ""
        };
        let pid = self.std.as_ref().map_or(0, |c| c.id());
        io::Error::new(
            e.kind(),
            format!("{doing} `{}` (pid {pid}) failed: {e}{hint}", self.program),
        )
    }
}

/// Reads `pipe` into `buf` until end of file (then drops the pipe) or until it would block.
fn poll_read_to_end<R: AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut Vec<u8>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    let Some(reader) = pipe else {
        return Poll::Ready(Ok(()));
    };
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match ready!(Pin::new(&mut *reader).poll_read(cx, &mut chunk)) {
            Ok(0) => {
                *pipe = None;
                return Poll::Ready(Ok(()));
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        let Some(mut std) = self.std.take() else {
            return;
        };
        if self.kill_on_drop {
            // Fails only if the child is gone already, which the try_wait below settles.
            let _ = std.kill();
        }
        // Running (or killed but not dead yet): reaped in the background. Exited: reaped now.
        // An error (ECHILD) means someone else reaped it: nothing left to do.
        if let Ok(None) = std.try_wait() {
            orphan::adopt(std);
        }
    }
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("program", &self.program)
            .field("pid", &self.std.as_ref().map(|c| c.id()))
            .field("status", &self.status)
            .field("stdin", &self.stdin)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .finish_non_exhaustive()
    }
}

/// `Child` can be moved to and shared with other tasks and threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Child>();
    send_sync::<super::Command>();
};
