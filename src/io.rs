//! [`Async<T>`]: any file descriptor, driven by the reactor.

use std::fmt;
use std::future::poll_fn;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};

use crate::executor::reactor_or_err;
use crate::reactor::{Direction, Reactor, Source};
use crate::sys;

/// An I/O object (anything with a file descriptor) in non-blocking mode, registered with the current
/// runtime's reactor.
///
/// Operations are written as closures that make one non-blocking attempt ([`read_with`](Self::read_with),
/// [`write_with`](Self::write_with)); when the attempt fails with `WouldBlock` the task waits for the fd
/// to become ready and tries again. `Async<T>` implements [`AsyncRead`] and [`AsyncWrite`] when `T`
/// implements `Read` and `Write`.
///
/// Dropping it deregisters the fd and then drops `T` (which closes the fd); [`into_inner`](Self::into_inner)
/// deregisters and hands `T` back.
///
/// # Caveats
/// The fd must stay open while the `Async` owns it: if it is closed behind its back (through a raw
/// fd), the kernel forgets the registration, and a task waiting to read waits forever (no error, no
/// spin); `into_inner` then reports `EBADF`.
///
/// # Examples
/// ```
/// use std::io::Write;
/// use std::os::unix::net::UnixStream;
/// use futures::AsyncReadExt;
///
/// evloop::block_on(async {
///     let (a, mut b) = UnixStream::pair()?;
///     let mut a = evloop::Async::new(a)?;
///     b.write_all(b"hello")?;
///     drop(b);
///     let mut text = String::new();
///     a.read_to_string(&mut text).await?;
///     assert_eq!(text, "hello");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Async<T: AsFd> {
    /// The registration; deregistered in `Drop` before `io` closes the fd.
    source: Arc<Source>,
    /// The reactor the fd is registered with.
    reactor: Arc<Reactor>,
    /// The I/O object; `None` only after `into_inner` took it.
    io: Option<T>,
}

impl<T: AsFd> Async<T> {
    /// Puts `io`'s fd in non-blocking mode and registers it with the current runtime's reactor.
    ///
    /// # Errors
    /// Fails outside a runtime, for an invalid fd, for an fd already registered (wrap each fd once),
    /// and for fds that cannot be polled (regular files); the message names the case.
    pub fn new(io: T) -> io::Result<Async<T>> {
        let fd = io.as_fd().as_raw_fd();
        sys::set_nonblocking(fd).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot put fd {fd} in non-blocking mode ({e}): is it an open descriptor?"),
            )
        })?;
        Self::new_nonblocking(io)
    }

    /// Registers `io`, whose fd the caller has already made non-blocking (saves two `fcntl`s).
    pub(crate) fn new_nonblocking(io: T) -> io::Result<Async<T>> {
        let fd = io.as_fd().as_raw_fd();
        let reactor = reactor_or_err()?;
        let source = reactor.register(fd)?;
        Ok(Async {
            source,
            reactor,
            io: Some(io),
        })
    }

    /// The inner I/O object.
    pub fn get_ref(&self) -> &T {
        self.io.as_ref().expect("Async: I/O object taken")
    }

    /// The inner I/O object, mutably.
    ///
    /// # Caveats
    /// Do not replace it with an object on another fd, nor make it blocking: the registration is for the
    /// original fd.
    pub fn get_mut(&mut self) -> &mut T {
        self.io.as_mut().expect("Async: I/O object taken")
    }

    /// Deregisters the fd and returns the I/O object (still in non-blocking mode).
    ///
    /// # Errors
    /// Fails if the poller refuses to forget the fd, which only happens if it was closed behind evloop's
    /// back.
    pub fn into_inner(mut self) -> io::Result<T> {
        let io = self.io.take().expect("Async: I/O object taken");
        self.reactor.deregister(&self.source)?;
        Ok(io)
    }

    /// Waits until the fd is readable (or has hit end-of-file or an error).
    ///
    /// Readiness stays set until an operation proves it stale by failing with `WouldBlock`, so this can
    /// return at once after an earlier event.
    pub async fn readable(&self) -> io::Result<()> {
        poll_fn(|cx| self.poll_readable(cx)).await
    }

    /// Waits until the fd is writable (or has failed).
    pub async fn writable(&self) -> io::Result<()> {
        poll_fn(|cx| self.poll_writable(cx)).await
    }

    /// Polls for read readiness.
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.source.poll_ready(Direction::Read, cx).map(|_| Ok(()))
    }

    /// Polls for write readiness.
    pub fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.source.poll_ready(Direction::Write, cx).map(|_| Ok(()))
    }

    /// Runs the non-blocking read operation `op` until it does not fail with `WouldBlock`, waiting for
    /// readability between attempts. EINTR is retried.
    pub async fn read_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        let io = self.get_ref();
        poll_fn(|cx| self.source.poll_io(Direction::Read, cx, || op(io))).await
    }

    /// [`read_with`](Self::read_with) with mutable access.
    pub async fn read_with_mut<R>(
        &mut self,
        mut op: impl FnMut(&mut T) -> io::Result<R>,
    ) -> io::Result<R> {
        let source = self.source.clone();
        let io = self.get_mut();
        poll_fn(|cx| source.poll_io(Direction::Read, cx, || op(io))).await
    }

    /// Runs the non-blocking write operation `op` until it does not fail with `WouldBlock`, waiting for
    /// writability between attempts. EINTR is retried.
    pub async fn write_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        let io = self.get_ref();
        poll_fn(|cx| self.source.poll_io(Direction::Write, cx, || op(io))).await
    }

    /// [`write_with`](Self::write_with) with mutable access.
    pub async fn write_with_mut<R>(
        &mut self,
        mut op: impl FnMut(&mut T) -> io::Result<R>,
    ) -> io::Result<R> {
        let source = self.source.clone();
        let io = self.get_mut();
        poll_fn(|cx| source.poll_io(Direction::Write, cx, || op(io))).await
    }

    /// The registration, for the socket types built on `Async`.
    pub(crate) fn source(&self) -> &Source {
        &self.source
    }
}

impl<T: AsFd> Drop for Async<T> {
    fn drop(&mut self) {
        if self.io.is_some() {
            // Deregister before `io` is dropped and closes the fd, so the fd number can never be
            // reused while still registered. A failure means the fd is already gone; nothing to undo.
            let _ = self.reactor.deregister(&self.source);
        }
    }
}

impl<T: AsFd> AsFd for Async<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.get_ref().as_fd()
    }
}

impl<T: AsFd> AsRawFd for Async<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.source.fd
    }
}

impl<T: AsFd + fmt::Debug> fmt::Debug for Async<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Async").field("io", &self.io).finish()
    }
}

impl<T: AsFd + Read + Unpin> AsyncRead for Async<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let source = &this.source;
        let io = this.io.as_mut().expect("Async: I/O object taken");
        source.poll_io(Direction::Read, cx, || io.read(buf))
    }
}

impl<T: AsFd + Unpin> AsyncRead for &Async<T>
where
    for<'a> &'a T: Read,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut io = self.get_ref();
        self.source.poll_io(Direction::Read, cx, || io.read(buf))
    }
}

impl<T: AsFd + Write + Unpin> AsyncWrite for Async<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let source = &this.source;
        let io = this.io.as_mut().expect("Async: I/O object taken");
        source.poll_io(Direction::Write, cx, || io.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let source = &this.source;
        let io = this.io.as_mut().expect("Async: I/O object taken");
        source.poll_io(Direction::Write, cx, || io.write_vectored(bufs))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let source = &this.source;
        let io = this.io.as_mut().expect("Async: I/O object taken");
        source.poll_io(Direction::Write, cx, || io.flush())
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

impl<T: AsFd + Unpin> AsyncWrite for &Async<T>
where
    for<'a> &'a T: Write,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut io = self.get_ref();
        self.source.poll_io(Direction::Write, cx, || io.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut io = self.get_ref();
        self.source
            .poll_io(Direction::Write, cx, || io.write_vectored(bufs))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut io = self.get_ref();
        self.source.poll_io(Direction::Write, cx, || io.flush())
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}
