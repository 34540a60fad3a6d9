//! Unix domain sockets: [`UnixStream`], [`UnixListener`] and [`UnixDatagram`].

mod datagram;
mod listener;

use std::future::poll_fn;
use std::io::{self};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::SocketAddr;
use std::path::Path;

pub use datagram::UnixDatagram;
pub use listener::{Incoming, UnixListener};

use super::socket::{self, SockAddr};
use crate::io::Async;
use crate::reactor::Direction;

/// A Unix stream socket, registered with the runtime's reactor.
///
/// Like [`TcpStream`](super::TcpStream), it implements `AsyncRead` and `AsyncWrite` for both the owned
/// type and `&UnixStream`; closing shuts the write side down, and writes to a peer that has gone fail
/// with `BrokenPipe` instead of raising `SIGPIPE`.
///
/// # Examples
/// ```
/// use futures::{AsyncReadExt, AsyncWriteExt};
/// use evloop::net::UnixStream;
///
/// evloop::block_on(async {
///     let (mut a, mut b) = UnixStream::pair()?;
///     a.write_all(b"ping").await?;
///     let mut buf = [0; 4];
///     b.read_exact(&mut buf).await?;
///     assert_eq!(&buf, b"ping");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct UnixStream {
    /// The socket, registered for both directions; dropping it deregisters, then closes.
    inner: Async<std::os::unix::net::UnixStream>,
}

impl UnixStream {
    /// Connects to the socket bound at `path`.
    ///
    /// # Errors
    /// `NotFound` when nothing is bound at `path`, `ConnectionRefused` when the socket file is stale
    /// (its server is gone), `WouldBlock` when the listener's queue is full; the message names the fix.
    pub async fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        let path = path.as_ref();
        let fd = socket::socket(libc::AF_UNIX, libc::SOCK_STREAM)?;
        socket::connect(fd.as_raw_fd(), &SockAddr::from_path(path)?)
            .map_err(|e| connect_error(path, e))?;
        // Registered after `connect`, as for TCP: an unconnected socket polls as writable.
        let stream = UnixStream::from_fd(fd)?;
        poll_fn(|cx| stream.inner.source().poll_ready(Direction::Write, cx)).await;
        match socket::take_error(stream.as_raw_fd())? {
            Some(e) => Err(connect_error(path, e)),
            None => Ok(stream),
        }
    }

    /// A connected pair of sockets (`socketpair`), both registered.
    ///
    /// # Errors
    /// Fails outside a runtime or when the process is out of descriptors.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = socket::socketpair(libc::SOCK_STREAM)?;
        Ok((UnixStream::from_fd(a)?, UnixStream::from_fd(b)?))
    }

    /// Registers a connected, non-blocking socket.
    fn from_fd(fd: OwnedFd) -> io::Result<UnixStream> {
        Ok(UnixStream {
            inner: Async::new_nonblocking(std::os::unix::net::UnixStream::from(fd))?,
        })
    }

    /// Wraps a std stream: puts it in non-blocking mode and registers it.
    ///
    /// # Errors
    /// Fails outside a runtime, or when the fd cannot be registered.
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        Ok(UnixStream {
            inner: Async::new(stream)?,
        })
    }

    /// Deregisters the socket and returns it as a std stream, still in non-blocking mode.
    ///
    /// # Errors
    /// Fails only if the poller refuses to forget the fd.
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixStream> {
        self.inner.into_inner()
    }

    /// The address of this end.
    ///
    /// # Errors
    /// Only if the OS refuses `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    /// The address of the peer.
    ///
    /// # Errors
    /// Only if the OS refuses `getpeername`.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().peer_addr()
    }

    /// Shuts down the read side, the write side, or both.
    ///
    /// # Errors
    /// `NotConnected` when the connection is already gone.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.get_ref().shutdown(how)
    }

    /// Reads and clears the socket's pending error (`SO_ERROR`).
    ///
    /// # Errors
    /// Only if the OS refuses to read the option.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.get_ref().take_error()
    }

    /// Waits until the socket is readable (data, end-of-file or an error).
    ///
    /// # Errors
    /// Never at present.
    pub async fn readable(&self) -> io::Result<()> {
        self.inner.readable().await
    }

    /// Waits until the socket is writable (or has failed).
    ///
    /// # Errors
    /// Never at present.
    pub async fn writable(&self) -> io::Result<()> {
        self.inner.writable().await
    }
}

/// The message for a failed connect, naming the fix.
fn connect_error(path: &Path, e: io::Error) -> io::Error {
    let fix = match e.raw_os_error() {
        Some(libc::ENOENT) => "nothing is bound there: start the server, or check the path",
        Some(libc::ECONNREFUSED) => {
            "the socket file is stale (its server is gone): restart the server"
        }
        Some(libc::EAGAIN) => "the server's accept queue is full: retry later",
        Some(libc::EACCES) => "no permission to connect: check the socket file's permissions",
        _ => return e,
    };
    let message = format!(
        "cannot connect to Unix socket {} ({e}): {fix}",
        path.display()
    );
    super::explain(e, message)
}

stream_impls!(UnixStream);
