//! The pipes to a child: [`ChildStdin`], [`ChildStdout`], [`ChildStderr`].
//!
//! Each is std's pipe end, made non-blocking and registered with the reactor. A pipe can be handed
//! on to the next child of a pipeline (`Stdio::try_from(child_stdout)`): it is deregistered and made
//! blocking again first, because `O_NONBLOCK` lives on the open file description, which the next
//! child shares, and most programs do not expect a non-blocking stdin or stdout.

use std::fmt;
use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};

use crate::io::Async;
use crate::reactor::Direction;
use crate::sys::syscall;

/// One end of a pipe on the reactor. Held as a `File` only because `&File` reads and writes with
/// plain `read(2)`/`write(2)`, which is all a pipe needs.
struct Pipe {
    io: Async<File>,
}

impl Pipe {
    fn new(fd: OwnedFd) -> io::Result<Pipe> {
        Ok(Pipe {
            io: Async::new(File::from(fd))?,
        })
    }

    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut file = self.io.get_ref();
        // A pipe read shorter than asked proves the pipe drained: no extra read to see EAGAIN.
        self.io
            .source()
            .poll_stream_io(Direction::Read, cx, buf.len(), || file.read(buf))
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut file = self.io.get_ref();
        self.io
            .source()
            .poll_stream_io(Direction::Write, cx, buf.len(), || file.write(buf))
    }

    fn poll_write_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut file = self.io.get_ref();
        self.io
            .source()
            .poll_io(Direction::Write, cx, || file.write_vectored(bufs))
    }

    /// Deregisters the pipe and makes it blocking again, ready to be another process's stdio.
    fn into_owned_fd(self) -> io::Result<OwnedFd> {
        let file = self.io.into_inner()?;
        set_blocking(file.as_raw_fd())?;
        Ok(OwnedFd::from(file))
    }
}

/// Clears `O_NONBLOCK` on `fd`.
fn set_blocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl with F_GETFL/F_SETFL takes no pointers; an invalid fd yields EBADF.
    let flags = syscall(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    if flags & libc::O_NONBLOCK != 0 {
        // SAFETY: as above.
        syscall(unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) })?;
    }
    Ok(())
}

macro_rules! pipe_type {
    ($(#[$doc:meta])* $name:ident, $std:ty) => {
        $(#[$doc])*
        pub struct $name {
            inner: Pipe,
        }

        impl $name {
            /// Wraps std's pipe end: makes it non-blocking and registers it with the current runtime's
            /// reactor.
            ///
            /// # Errors
            /// Fails outside a runtime, or when the fd cannot be registered.
            pub fn from_std(pipe: $std) -> io::Result<$name> {
                Ok($name {
                    inner: Pipe::new(OwnedFd::from(pipe))?,
                })
            }

            /// Deregisters the pipe and returns its fd, in blocking mode again (as std's pipes are),
            /// for example to become another child's stdio.
            ///
            /// # Errors
            /// Fails only if the poller refuses to forget the fd or `fcntl` fails.
            pub fn into_owned_fd(self) -> io::Result<OwnedFd> {
                self.inner.into_owned_fd()
            }
        }

        impl TryFrom<$name> for Stdio {
            type Error = io::Error;

            /// Hands the pipe to another child (deregistered and blocking again), as in
            /// `Command::new("sort").stdin(Stdio::try_from(first.stdout.take().unwrap())?)`.
            fn try_from(pipe: $name) -> io::Result<Stdio> {
                pipe.into_owned_fd().map(Stdio::from)
            }
        }

        impl AsFd for $name {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.inner.io.as_fd()
            }
        }

        impl AsRawFd for $name {
            fn as_raw_fd(&self) -> RawFd {
                self.inner.io.as_raw_fd()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("fd", &self.as_raw_fd())
                    .finish()
            }
        }
    };
}

pipe_type!(
    /// The write end of the pipe to a child's standard input. Dropping it closes the pipe, which the
    /// child reads as end of input.
    ///
    /// Writes to a child that has closed its stdin (or exited) fail with `BrokenPipe` (Rust programs
    /// ignore `SIGPIPE`).
    ChildStdin,
    std::process::ChildStdin
);
pipe_type!(
    /// The read end of the pipe from a child's standard output. A read of 0 bytes means the child
    /// (and every process it shared the pipe with) closed it.
    ChildStdout,
    std::process::ChildStdout
);
pipe_type!(
    /// The read end of the pipe from a child's standard error.
    ChildStderr,
    std::process::ChildStderr
);

impl AsyncWrite for ChildStdin {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_write_vectored(cx, bufs)
    }

    /// Nothing to do: every write went straight to the pipe.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Nothing to do: the pipe closes when the `ChildStdin` is dropped (as in tokio), which is what
    /// tells the child its input has ended.
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for ChildStdout {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_read(cx, buf)
    }
}

impl AsyncRead for ChildStderr {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_read(cx, buf)
    }
}
