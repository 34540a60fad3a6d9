//! [`UnixListener`] and its [`Incoming`] stream.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_core::Stream;

use super::UnixStream;
use crate::io::Async;
use crate::net::accept::{explain_accept_error, AcceptBackoff};
use crate::net::socket::{self, SockAddr};

/// A Unix stream socket listening for connections, registered with the runtime's reactor.
///
/// The socket file stays after the listener is dropped (as with std): remove it before binding again.
///
/// # Examples
/// ```no_run
/// use evloop::net::UnixListener;
///
/// evloop::block_on(async {
///     let _ = std::fs::remove_file("/tmp/evloop.sock");
///     let listener = UnixListener::bind("/tmp/evloop.sock")?;
///     let (stream, _addr) = listener.accept().await?;
///     # drop(stream);
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct UnixListener {
    /// The listening socket; readable when a connection waits in the kernel's queue.
    inner: Async<std::os::unix::net::UnixListener>,
    /// Pauses accepting while the process is out of descriptors, instead of spinning.
    backoff: AcceptBackoff,
}

impl UnixListener {
    /// Creates a listener bound to `path`. No lookup is involved, so this is not `async`.
    ///
    /// # Errors
    /// `AddrInUse` when a file exists at `path` (often a stale socket from an earlier run: remove it
    /// first), `NotFound` when the directory does not exist, `InvalidInput` for a path that is too long;
    /// the message names the fix.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        let path = path.as_ref();
        let fd = socket::socket(libc::AF_UNIX, libc::SOCK_STREAM)?;
        socket::bind(fd.as_raw_fd(), &SockAddr::from_path(path)?)
            .map_err(|e| bind_error(path, e))?;
        socket::listen(fd.as_raw_fd())?;
        Ok(UnixListener {
            inner: Async::new_nonblocking(std::os::unix::net::UnixListener::from(fd))?,
            backoff: AcceptBackoff::default(),
        })
    }

    /// Waits for a connection and returns it (non-blocking, registered) with the peer's address
    /// (usually unnamed).
    ///
    /// # Errors
    /// As [`TcpListener::accept`](crate::net::TcpListener::accept): running out of descriptors is
    /// reported once, then accepts wait and retry every 10-100 ms instead of spinning.
    pub async fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for a connection, with the backoff described in [`accept`](Self::accept).
    pub(crate) fn poll_accept(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(UnixStream, SocketAddr)>> {
        let fd = self.inner.as_raw_fd();
        let accepted = self.backoff.poll_accept(
            self.inner.source(),
            cx,
            || socket::accept(fd),
            |e| {
                let what = match self
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(Path::to_owned))
                {
                    Some(p) => p.display().to_string(),
                    None => "a Unix listener".to_owned(),
                };
                explain_accept_error(&what, e)
            },
        );
        let (fd, addr) = ready!(accepted)?;
        let stream = UnixStream::from_fd(fd)?;
        Poll::Ready(Ok((stream, addr.to_unix()?)))
    }

    /// A stream of incoming connections; it never ends.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The address this listener is bound to.
    ///
    /// # Errors
    /// Only if the OS refuses `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    /// Wraps a std listener: puts it in non-blocking mode and registers it.
    ///
    /// # Errors
    /// Fails outside a runtime, or when the fd cannot be registered.
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        Ok(UnixListener {
            inner: Async::new(listener)?,
            backoff: AcceptBackoff::default(),
        })
    }

    /// Deregisters the socket and returns it as a std listener, still in non-blocking mode.
    ///
    /// # Errors
    /// Fails only if the poller refuses to forget the fd.
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixListener> {
        self.inner.into_inner()
    }
}

/// The message for a failed bind, naming the fix.
pub(super) fn bind_error(path: &Path, e: io::Error) -> io::Error {
    let fix = match e.kind() {
        io::ErrorKind::AddrInUse => {
            "a file already exists there (often a stale socket of an earlier run): remove it, or pick \
             another path"
        }
        io::ErrorKind::NotFound => "its directory does not exist: create it first",
        io::ErrorKind::PermissionDenied => "no permission to create a file there: pick another directory",
        _ => return e,
    };
    let message = format!("cannot bind Unix socket {} ({e}): {fix}", path.display());
    crate::net::explain(e, message)
}

impl AsRawFd for UnixListener {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl AsFd for UnixListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.get_ref().fmt(f)
    }
}

/// The stream of connections returned by [`UnixListener::incoming`].
#[must_use = "streams do nothing unless polled"]
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a UnixListener,
}

impl Stream for Incoming<'_> {
    type Item = io::Result<UnixStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let (stream, _) = ready!(self.listener.poll_accept(cx))?;
        Poll::Ready(Some(Ok(stream)))
    }
}
