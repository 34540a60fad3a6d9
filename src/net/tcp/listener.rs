//! [`TcpListener`] and its [`Incoming`] stream.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_core::Stream;

use super::TcpStream;
use crate::io::Async;
use crate::net::accept::{explain_accept_error, AcceptBackoff};
use crate::net::addr::{each_addr, resolve, ToSocketAddrs};
use crate::net::socket::{self, SockAddr};

/// A TCP socket listening for connections, registered with the runtime's reactor.
///
/// # Examples
/// ```no_run
/// use evloop::net::TcpListener;
///
/// evloop::block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0").await?;
///     println!("listening on {}", listener.local_addr()?);
///     let (stream, peer) = listener.accept().await?;
///     println!("{peer} connected");
///     # drop(stream);
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct TcpListener {
    /// The listening socket; readable when a connection waits in the kernel's queue.
    inner: Async<std::net::TcpListener>,
    /// Pauses accepting while the process is out of descriptors, instead of spinning.
    backoff: AcceptBackoff,
}

impl TcpListener {
    /// Creates a listener bound to `addr` (with `SO_REUSEADDR`, as std does), trying each address it
    /// resolves to in turn. Port 0 picks a free port: read it back with [`local_addr`](Self::local_addr).
    ///
    /// # Errors
    /// The error of the last address tried, with a message naming the fix: `AddrInUse` when another
    /// socket holds the port, `AddrNotAvailable` for an address this machine does not have,
    /// `PermissionDenied` for a privileged port.
    pub async fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        let addrs = resolve(&addr).await?;
        each_addr(addrs, |a| std::future::ready(Self::bind_addr(a))).await
    }

    fn bind_addr(addr: SocketAddr) -> io::Result<TcpListener> {
        let fd = socket::socket(socket::inet_domain(&addr), libc::SOCK_STREAM)?;
        // Lets a restarted server bind while connections of its previous run sit in TIME_WAIT.
        socket::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        socket::bind(fd.as_raw_fd(), &SockAddr::from_inet(&addr))
            .map_err(|e| bind_error(addr, e))?;
        socket::listen(fd.as_raw_fd())?;
        Self::from_fd(fd)
    }

    fn from_fd(fd: OwnedFd) -> io::Result<TcpListener> {
        Ok(TcpListener {
            inner: Async::new_nonblocking(std::net::TcpListener::from(fd))?,
            backoff: AcceptBackoff::default(),
        })
    }

    /// Waits for a connection and returns it (non-blocking, registered) with the peer's address.
    ///
    /// # Errors
    /// When the process or the system runs out of descriptors or socket memory (`EMFILE`, `ENFILE`,
    /// `ENOBUFS`, `ENOMEM`), the error is returned once; the accepts after it wait, retrying every
    /// 10-100 ms, and return the next connection as soon as there is room, so a loop that logs the
    /// error and accepts again never spins. Other errors (e.g. `ConnectionAborted`) are returned as
    /// they come.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for a connection, with the backoff described in [`accept`](Self::accept).
    pub(crate) fn poll_accept(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        let (fd, peer) = ready!(self.poll_accept_fd(cx))?;
        Poll::Ready(Ok((TcpStream::from_fd(fd)?, peer)))
    }

    /// Like `poll_accept`, but hands back the accepted socket (non-blocking, close-on-exec) without
    /// registering it, for callers that register it elsewhere (the callback API's `Listener`).
    pub(crate) fn poll_accept_fd(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(OwnedFd, SocketAddr)>> {
        let fd = self.inner.as_raw_fd();
        let accepted = self.backoff.poll_accept(
            self.inner.source(),
            cx,
            || socket::accept(fd),
            |e| match self.local_addr() {
                Ok(addr) => explain_accept_error(&addr, e),
                Err(_) => explain_accept_error(&"a TCP listener", e),
            },
        );
        let (fd, addr) = ready!(accepted)?;
        let peer = addr.to_inet().ok_or_else(|| {
            io::Error::other("accept returned a non-IP address on a TCP listener")
        })?;
        Poll::Ready(Ok((fd, peer)))
    }

    /// A stream of incoming connections, for use with `StreamExt`; it never ends.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The address this listener is bound to (with the actual port when bound to port 0).
    ///
    /// # Errors
    /// Only if the OS refuses `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    /// Sets the IP time-to-live of packets sent from accepted sockets.
    ///
    /// # Errors
    /// `InvalidInput` for a value the OS rejects.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.get_ref().set_ttl(ttl)
    }

    /// The IP time-to-live of packets sent from accepted sockets.
    ///
    /// # Errors
    /// Only if the OS refuses to read the option.
    pub fn ttl(&self) -> io::Result<u32> {
        self.inner.get_ref().ttl()
    }

    /// Wraps a std listener: puts it in non-blocking mode and registers it.
    ///
    /// # Errors
    /// Fails outside a runtime, or when the fd cannot be registered.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        Ok(TcpListener {
            inner: Async::new(listener)?,
            backoff: AcceptBackoff::default(),
        })
    }

    /// Deregisters the socket and returns it as a std listener, still in non-blocking mode.
    ///
    /// # Errors
    /// Fails only if the poller refuses to forget the fd.
    pub fn into_std(self) -> io::Result<std::net::TcpListener> {
        self.inner.into_inner()
    }
}

/// The message for a failed bind, naming the fix.
pub(crate) fn bind_error(addr: SocketAddr, e: io::Error) -> io::Error {
    let fix = match e.kind() {
        io::ErrorKind::AddrInUse => {
            "is already in use: pick another port (or port 0 for any free one) or stop the process using it"
        }
        io::ErrorKind::AddrNotAvailable => {
            "is not an address of this machine: bind to 0.0.0.0, 127.0.0.1 or one of its interface addresses"
        }
        io::ErrorKind::PermissionDenied => {
            "needs privileges (ports below 1024 need root or CAP_NET_BIND_SERVICE): pick a port from 1024 up"
        }
        _ => return e,
    };
    let message = format!("address {addr} {fix} ({e})");
    crate::net::explain(e, message)
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl AsFd for TcpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.get_ref().fmt(f)
    }
}

/// The stream of connections returned by [`TcpListener::incoming`].
#[must_use = "streams do nothing unless polled"]
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Stream for Incoming<'_> {
    type Item = io::Result<TcpStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let (stream, _) = ready!(self.listener.poll_accept(cx))?;
        Poll::Ready(Some(Ok(stream)))
    }
}
