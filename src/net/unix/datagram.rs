//! [`UnixDatagram`].

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::SocketAddr;
use std::path::Path;

use super::listener::bind_error;
use crate::io::Async;
use crate::net::socket::{self, SockAddr};

/// A Unix datagram socket, registered with the runtime's reactor.
///
/// # Examples
/// ```
/// use evloop::net::UnixDatagram;
///
/// evloop::block_on(async {
///     let (a, b) = UnixDatagram::pair()?;
///     a.send(b"hello").await?;
///     let mut buf = [0; 16];
///     let n = b.recv(&mut buf).await?;
///     assert_eq!(&buf[..n], b"hello");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct UnixDatagram {
    /// The socket, registered for both directions; dropping it deregisters, then closes.
    inner: Async<std::os::unix::net::UnixDatagram>,
}

impl UnixDatagram {
    /// Creates a socket bound to `path`.
    ///
    /// # Errors
    /// As [`UnixListener::bind`](super::UnixListener::bind): `AddrInUse` when a file exists at `path`.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixDatagram> {
        let path = path.as_ref();
        let fd = socket::socket(libc::AF_UNIX, libc::SOCK_DGRAM)?;
        socket::bind(fd.as_raw_fd(), &SockAddr::from_path(path)?)
            .map_err(|e| bind_error(path, e))?;
        Self::from_fd(fd)
    }

    /// Creates a socket bound to no address: it can send, and receive replies only once connected.
    ///
    /// # Errors
    /// Fails outside a runtime or when the process is out of descriptors.
    pub fn unbound() -> io::Result<UnixDatagram> {
        Self::from_fd(socket::socket(libc::AF_UNIX, libc::SOCK_DGRAM)?)
    }

    /// A connected pair of sockets (`socketpair`), both registered.
    ///
    /// # Errors
    /// Fails outside a runtime or when the process is out of descriptors.
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = socket::socketpair(libc::SOCK_DGRAM)?;
        Ok((Self::from_fd(a)?, Self::from_fd(b)?))
    }

    fn from_fd(fd: OwnedFd) -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            inner: Async::new_nonblocking(std::os::unix::net::UnixDatagram::from(fd))?,
        })
    }

    /// Sets the one peer that [`send`](Self::send) sends to and [`recv`](Self::recv) receives from.
    ///
    /// # Errors
    /// `NotFound` when nothing is bound at `path`, `ConnectionRefused` for a stale socket file.
    pub fn connect<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        self.inner.get_ref().connect(path)
    }

    /// Sends `buf` to the connected peer.
    ///
    /// # Errors
    /// `NotConnected` before [`connect`](Self::connect) (sockets from [`pair`](Self::pair) are
    /// connected); `ConnectionRefused` when the peer is gone.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_with(|s| s.send(buf)).await
    }

    /// Receives one datagram from the connected peer; a datagram larger than `buf` is truncated.
    ///
    /// # Errors
    /// Only OS errors.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_with(|s| s.recv(buf)).await
    }

    /// Sends `buf` to the socket bound at `path`.
    ///
    /// # Errors
    /// `NotFound` when nothing is bound at `path`; `ConnectionRefused` for a stale socket file.
    pub async fn send_to<P: AsRef<Path>>(&self, buf: &[u8], path: P) -> io::Result<usize> {
        let path = path.as_ref();
        self.inner.write_with(|s| s.send_to(buf, path)).await
    }

    /// Receives one datagram and the address of its sender.
    ///
    /// # Errors
    /// Only OS errors.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inner.read_with(|s| s.recv_from(buf)).await
    }

    /// The address this socket is bound to.
    ///
    /// # Errors
    /// Only if the OS refuses `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    /// The connected peer's address.
    ///
    /// # Errors
    /// `NotConnected` before [`connect`](Self::connect).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().peer_addr()
    }

    /// Shuts down the read side, the write side, or both.
    ///
    /// # Errors
    /// Only OS errors.
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

    /// Wraps a std socket: puts it in non-blocking mode and registers it.
    ///
    /// # Errors
    /// Fails outside a runtime, or when the fd cannot be registered.
    pub fn from_std(socket: std::os::unix::net::UnixDatagram) -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            inner: Async::new(socket)?,
        })
    }

    /// Deregisters the socket and returns it as a std socket, still in non-blocking mode.
    ///
    /// # Errors
    /// Fails only if the poller refuses to forget the fd.
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixDatagram> {
        self.inner.into_inner()
    }
}

impl AsRawFd for UnixDatagram {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl AsFd for UnixDatagram {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.get_ref().fmt(f)
    }
}
