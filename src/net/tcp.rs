//! TCP: [`TcpStream`], [`TcpListener`] and the halves of a split stream.

mod listener;
mod split;

use std::future::poll_fn;
use std::io::{self};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

pub(crate) use listener::bind_error;
pub use listener::{Incoming, TcpListener};
pub use split::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, WriteHalf};

use super::addr::{each_addr, resolve, ToSocketAddrs};
use super::socket::{self, SockAddr};
use crate::io::Async;
use crate::reactor::Direction;

/// A TCP connection, registered with the runtime's reactor.
///
/// Reading and writing go through [`futures_io::AsyncRead`] and [`futures_io::AsyncWrite`], implemented both for
/// `TcpStream` and for `&TcpStream`: one task can read while another writes through a shared reference,
/// and `futures::io::copy(&stream, &mut &stream)` is an echo. [`into_split`](Self::into_split) gives
/// owned halves for two tasks. Closing (`poll_close`) shuts down the write side; dropping closes the
/// socket.
///
/// A peer that resets the connection makes reads and writes fail with `ConnectionReset` or
/// `BrokenPipe`; evloop never lets a write raise `SIGPIPE`.
///
/// # Examples
/// ```no_run
/// use futures::{AsyncReadExt, AsyncWriteExt};
/// use evloop::net::TcpStream;
///
/// evloop::block_on(async {
///     let mut stream = TcpStream::connect("127.0.0.1:7000").await?;
///     stream.set_nodelay(true)?;
///     stream.write_all(b"ping").await?;
///     let mut buf = [0; 4];
///     stream.read_exact(&mut buf).await?;
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct TcpStream {
    /// The socket, registered for both directions; dropping it deregisters, then closes.
    inner: Async<std::net::TcpStream>,
}

impl TcpStream {
    /// Opens a connection to `addr`, trying each address it resolves to in turn.
    ///
    /// Host names are resolved on the blocking pool; literal addresses need no lookup.
    ///
    /// # Errors
    /// The error of the last address tried: `ConnectionRefused` when nothing listens there, the lookup's
    /// error for an unknown host; the message names the address and what to check.
    pub async fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        let addrs = resolve(&addr).await?;
        each_addr(addrs, Self::connect_addr).await
    }

    /// One non-blocking connect: start it, wait until the socket is writable, read `SO_ERROR`.
    async fn connect_addr(addr: SocketAddr) -> io::Result<TcpStream> {
        let fd = socket::socket(socket::inet_domain(&addr), libc::SOCK_STREAM)?;
        socket::connect(fd.as_raw_fd(), &SockAddr::from_inet(&addr))
            .map_err(|e| connect_error(addr, e))?;
        // Registered only now: an unconnected socket polls as writable and hung up, which would read
        // as a finished connect. epoll and kqueue report the state current at registration, so the
        // completion cannot be missed.
        let stream = TcpStream::from_fd(fd)?;
        poll_fn(|cx| stream.inner.source().poll_ready(Direction::Write, cx)).await;
        match socket::take_error(stream.as_raw_fd())? {
            Some(e) => Err(connect_error(addr, e)),
            None => Ok(stream),
        }
    }

    /// Registers a connected, non-blocking socket.
    fn from_fd(fd: OwnedFd) -> io::Result<TcpStream> {
        Ok(TcpStream {
            inner: Async::new_nonblocking(std::net::TcpStream::from(fd))?,
        })
    }

    /// Wraps a std stream: puts it in non-blocking mode and registers it.
    ///
    /// # Errors
    /// Fails outside a runtime, or when the fd cannot be registered.
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        Ok(TcpStream {
            inner: Async::new(stream)?,
        })
    }

    /// Deregisters the socket and returns it as a std stream, still in non-blocking mode (call
    /// `set_nonblocking(false)` on it for blocking use).
    ///
    /// # Errors
    /// Fails only if the poller refuses to forget the fd.
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        self.inner.into_inner()
    }

    /// The address of the peer.
    ///
    /// # Errors
    /// `NotConnected` once the connection is gone.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().peer_addr()
    }

    /// The local address of this end.
    ///
    /// # Errors
    /// Only if the OS refuses `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    /// Sets `TCP_NODELAY`: send small writes at once instead of coalescing them (Nagle's algorithm).
    ///
    /// # Errors
    /// Only if the OS refuses the option.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.get_ref().set_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    ///
    /// # Errors
    /// Only if the OS refuses to read the option.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.inner.get_ref().nodelay()
    }

    /// Sets the IP time-to-live of outgoing packets.
    ///
    /// # Errors
    /// `InvalidInput` for a value the OS rejects (above 255).
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.get_ref().set_ttl(ttl)
    }

    /// The IP time-to-live of outgoing packets.
    ///
    /// # Errors
    /// Only if the OS refuses to read the option.
    pub fn ttl(&self) -> io::Result<u32> {
        self.inner.get_ref().ttl()
    }

    /// Shuts down the read side, the write side, or both. After `Shutdown::Write` the peer reads
    /// end-of-file, and can still send.
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
    /// Never at present; the `Result` leaves room for runtime shutdown.
    pub async fn readable(&self) -> io::Result<()> {
        self.inner.readable().await
    }

    /// Waits until the socket is writable (or has failed).
    ///
    /// # Errors
    /// As [`readable`](Self::readable).
    pub async fn writable(&self) -> io::Result<()> {
        self.inner.writable().await
    }

    /// Splits into a reader and a writer borrowing this stream: free (two references), for use within
    /// one task or `join`ed futures.
    pub fn split(&self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        split::split(self)
    }

    /// Splits into owned halves (sharing the stream through an `Arc`) that two tasks can use at once:
    /// the reactor keeps separate wakers for reading and writing. Dropping the write half shuts the
    /// write side down; [`OwnedReadHalf::reunite`] puts the halves back together.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        split::into_split(self)
    }
}

/// The message for a failed connect, naming what to check.
fn connect_error(addr: SocketAddr, e: io::Error) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "is a server listening on that address and port?",
        Some(libc::ETIMEDOUT) => "is the host up, and does a firewall drop the packets?",
        Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => {
            "check the address and the routes to it"
        }
        Some(libc::EADDRNOTAVAIL) => {
            "the machine ran out of local ports: reuse connections or wait"
        }
        _ => return e,
    };
    let message = format!("cannot connect to {addr} ({e}): {hint}");
    super::explain(e, message)
}

stream_impls!(TcpStream);
