//! [`UdpSocket`].

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::task::{Context, Poll};

use super::addr::{each_addr, resolve, Addrs, ToSocketAddrs};
use super::socket::{self, SockAddr};
use crate::io::Async;
use crate::reactor::Direction;

/// A UDP socket, registered with the runtime's reactor.
///
/// Unconnected, it sends to and receives from anyone ([`send_to`](Self::send_to),
/// [`recv_from`](Self::recv_from)); after [`connect`](Self::connect) it talks to one peer
/// ([`send`](Self::send), [`recv`](Self::recv)). All methods take `&self`, so one socket can be shared
/// (in an `Arc`) by a receiving and a sending task.
///
/// # Examples
/// ```
/// use evloop::net::UdpSocket;
///
/// evloop::block_on(async {
///     let a = UdpSocket::bind("127.0.0.1:0").await?;
///     let b = UdpSocket::bind("127.0.0.1:0").await?;
///     a.send_to(b"hi", b.local_addr()?).await?;
///     let mut buf = [0; 16];
///     let (n, from) = b.recv_from(&mut buf).await?;
///     assert_eq!((&buf[..n], from), (&b"hi"[..], a.local_addr()?));
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct UdpSocket {
    /// The socket, registered for both directions; dropping it deregisters, then closes.
    inner: Async<std::net::UdpSocket>,
}

impl UdpSocket {
    /// Creates a socket bound to `addr`, trying each address it resolves to in turn. Port 0 picks a
    /// free port.
    ///
    /// # Errors
    /// The error of the last address tried; `AddrInUse` names the fix.
    pub async fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        let addrs = resolve(&addr).await?;
        each_addr(addrs, |a| std::future::ready(Self::bind_addr(a))).await
    }

    fn bind_addr(addr: SocketAddr) -> io::Result<UdpSocket> {
        let fd = socket::socket(socket::inet_domain(&addr), libc::SOCK_DGRAM)?;
        socket::bind(fd.as_raw_fd(), &SockAddr::from_inet(&addr)).map_err(|e| {
            if e.kind() != io::ErrorKind::AddrInUse {
                return e;
            }
            let message = format!(
                "UDP address {addr} is already in use ({e}): pick another port (or port 0 for any free one) \
                 or stop the process using it"
            );
            super::explain(e, message)
        })?;
        Ok(UdpSocket {
            inner: Async::new_nonblocking(std::net::UdpSocket::from(fd))?,
        })
    }

    /// Sets the one peer that [`send`](Self::send) sends to and [`recv`](Self::recv) receives from
    /// (the first address `addr` resolves to that the OS accepts).
    ///
    /// # Errors
    /// The error of the last address tried.
    pub async fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        let addrs = resolve(&addr).await?;
        let socket = self.inner.get_ref();
        each_addr(addrs, |a| std::future::ready(socket.connect(a))).await
    }

    /// Sends `buf` to the connected peer; returns how many bytes were sent.
    ///
    /// # Errors
    /// `NotConnected` before [`connect`](Self::connect); `ConnectionRefused` when an earlier datagram
    /// found no one listening at the peer's port.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_with(|s| s.send(buf)).await
    }

    /// Receives one datagram from the connected peer; a datagram larger than `buf` is truncated.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_with(|s| s.recv(buf)).await
    }

    /// Sends `buf` to `target`: the first address it resolves to of this socket's family (IPv4 or
    /// IPv6), or else the first.
    ///
    /// # Errors
    /// The lookup's error, or the OS's (e.g. `PermissionDenied` for a broadcast address without
    /// [`set_broadcast`](Self::set_broadcast)).
    pub async fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], target: A) -> io::Result<usize> {
        let target = match resolve(&target).await? {
            Addrs::One(Some(addr)) => addr,
            // A looked-up name may give IPv6 and IPv4 addresses: prefer this socket's family.
            addrs => {
                let v4 = self.local_addr()?.is_ipv4();
                let all: Vec<SocketAddr> = addrs.collect();
                let found = all.iter().find(|a| a.is_ipv4() == v4).or(all.first());
                *found.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "no address to send to")
                })?
            }
        };
        self.inner.write_with(|s| s.send_to(buf, target)).await
    }

    /// Receives one datagram and the address it came from.
    ///
    /// # Errors
    /// Only OS errors (e.g. a pending ICMP error on Linux).
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inner.read_with(|s| s.recv_from(buf)).await
    }

    /// Polls to receive one datagram and its sender's address.
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        let socket = self.inner.get_ref();
        self.inner
            .source()
            .poll_io(Direction::Read, cx, || socket.recv_from(buf))
    }

    /// Polls to send `buf` to `target`.
    pub fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        let socket = self.inner.get_ref();
        self.inner
            .source()
            .poll_io(Direction::Write, cx, || socket.send_to(buf, target))
    }

    /// Like [`recv_from`](Self::recv_from), but leaves the datagram queued.
    ///
    /// # Errors
    /// As [`recv_from`](Self::recv_from).
    pub async fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inner.read_with(|s| s.peek_from(buf)).await
    }

    /// The local address (with the actual port when bound to port 0).
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

    /// Allows sending to broadcast addresses (`SO_BROADCAST`).
    ///
    /// # Errors
    /// Only if the OS refuses the option.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.inner.get_ref().set_broadcast(on)
    }

    /// Whether `SO_BROADCAST` is set.
    ///
    /// # Errors
    /// Only if the OS refuses to read the option.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.inner.get_ref().broadcast()
    }

    /// Sets the IP time-to-live of outgoing datagrams.
    ///
    /// # Errors
    /// `InvalidInput` for a value the OS rejects.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.get_ref().set_ttl(ttl)
    }

    /// The IP time-to-live of outgoing datagrams.
    ///
    /// # Errors
    /// Only if the OS refuses to read the option.
    pub fn ttl(&self) -> io::Result<u32> {
        self.inner.get_ref().ttl()
    }

    /// Joins the IPv4 multicast group `group` on the interface with address `interface`
    /// (`Ipv4Addr::UNSPECIFIED`: let the OS choose).
    ///
    /// # Errors
    /// `InvalidInput` when `group` is not a multicast address; `AddrNotAvailable`/`NotFound`-style OS
    /// errors when no interface can join it.
    pub fn join_multicast_v4(&self, group: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        self.inner.get_ref().join_multicast_v4(&group, &interface)
    }

    /// Leaves an IPv4 multicast group joined with [`join_multicast_v4`](Self::join_multicast_v4).
    ///
    /// # Errors
    /// When the group was not joined on that interface.
    pub fn leave_multicast_v4(&self, group: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        self.inner.get_ref().leave_multicast_v4(&group, &interface)
    }

    /// Joins the IPv6 multicast group `group` on the interface with index `interface` (0: let the OS
    /// choose).
    ///
    /// # Errors
    /// As [`join_multicast_v4`](Self::join_multicast_v4).
    pub fn join_multicast_v6(&self, group: Ipv6Addr, interface: u32) -> io::Result<()> {
        self.inner.get_ref().join_multicast_v6(&group, interface)
    }

    /// Leaves an IPv6 multicast group joined with [`join_multicast_v6`](Self::join_multicast_v6).
    ///
    /// # Errors
    /// When the group was not joined on that interface.
    pub fn leave_multicast_v6(&self, group: Ipv6Addr, interface: u32) -> io::Result<()> {
        self.inner.get_ref().leave_multicast_v6(&group, interface)
    }

    /// Whether multicast datagrams sent from this socket loop back to local listeners (IPv4).
    ///
    /// # Errors
    /// Only if the OS refuses the option.
    pub fn set_multicast_loop_v4(&self, on: bool) -> io::Result<()> {
        self.inner.get_ref().set_multicast_loop_v4(on)
    }

    /// The time-to-live of outgoing IPv4 multicast datagrams (1 keeps them on the local network).
    ///
    /// # Errors
    /// Only if the OS refuses the option.
    pub fn set_multicast_ttl_v4(&self, ttl: u32) -> io::Result<()> {
        self.inner.get_ref().set_multicast_ttl_v4(ttl)
    }

    /// Whether multicast datagrams sent from this socket loop back to local listeners (IPv6).
    ///
    /// # Errors
    /// Only if the OS refuses the option.
    pub fn set_multicast_loop_v6(&self, on: bool) -> io::Result<()> {
        self.inner.get_ref().set_multicast_loop_v6(on)
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
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            inner: Async::new(socket)?,
        })
    }

    /// Deregisters the socket and returns it as a std socket, still in non-blocking mode.
    ///
    /// # Errors
    /// Fails only if the poller refuses to forget the fd.
    pub fn into_std(self) -> io::Result<std::net::UdpSocket> {
        self.inner.into_inner()
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.get_ref().fmt(f)
    }
}
