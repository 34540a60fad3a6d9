//! [`ToSocketAddrs`]: what `bind`, `connect` and `send_to` accept as an address, and how it is resolved.
//!
//! Literal addresses (a `SocketAddr`, an `(IpAddr, u16)` pair, a string such as `"127.0.0.1:80"` or
//! `"[::1]:80"`) are converted in place. Only a real host name (`"localhost:80"`, `("example.com", 443)`)
//! is looked up, and that lookup (`getaddrinfo`, which blocks) runs on the blocking pool, never on the
//! runtime's thread.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Types that name one or more socket addresses, for [`TcpListener::bind`](super::TcpListener::bind),
/// [`TcpStream::connect`](super::TcpStream::connect) and the [`UdpSocket`](super::UdpSocket) methods.
///
/// Implemented for `SocketAddr` (and its V4/V6 forms), `(IpAddr, u16)`, `(Ipv4Addr, u16)`,
/// `(Ipv6Addr, u16)`, `&[SocketAddr]`, `str`, `String`, `(&str, u16)`, `(String, u16)` and references to
/// these. It is sealed: the resolution strategy is evloop's to choose.
///
/// # Examples
/// ```no_run
/// use std::net::{Ipv4Addr, SocketAddr};
/// use evloop::net::TcpStream;
///
/// evloop::block_on(async {
///     // No lookup: literal addresses are converted in place.
///     let _a = TcpStream::connect("127.0.0.1:7000").await?;
///     let _b = TcpStream::connect((Ipv4Addr::LOCALHOST, 7000)).await?;
///     // A host name is resolved on the blocking pool, then each address is tried in turn.
///     let _c = TcpStream::connect("localhost:7000").await?;
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait ToSocketAddrs: sealed::Sealed {}

pub(crate) mod sealed {
    /// The hidden half of [`ToSocketAddrs`](super::ToSocketAddrs).
    pub trait Sealed {
        /// Converts a literal address in place, or says which name must be looked up.
        #[doc(hidden)]
        fn to_addrs(&self) -> super::Resolve;
    }
}

/// The outcome of [`sealed::Sealed::to_addrs`].
#[doc(hidden)]
#[derive(Debug)]
pub enum Resolve {
    /// The addresses, known without a lookup (or an error found without one).
    Ready(io::Result<Addrs>),
    /// A host name and a port to look up on the blocking pool.
    Lookup(String, u16),
}

/// An iterator over resolved addresses; a single address needs no allocation.
#[doc(hidden)]
#[derive(Debug)]
pub enum Addrs {
    /// Zero or one address.
    One(Option<SocketAddr>),
    /// Several, from a slice or a lookup.
    Many(std::vec::IntoIter<SocketAddr>),
}

impl Iterator for Addrs {
    type Item = SocketAddr;

    fn next(&mut self) -> Option<SocketAddr> {
        match self {
            Addrs::One(a) => a.take(),
            Addrs::Many(it) => it.next(),
        }
    }
}

/// Resolves `addr`, looking up host names on the blocking pool.
///
/// # Errors
/// The lookup's error (with the name and a hint), or `InvalidInput` when it yields no address.
pub(crate) async fn resolve<A: ToSocketAddrs + ?Sized>(addr: &A) -> io::Result<Addrs> {
    let (host, port) = match addr.to_addrs() {
        Resolve::Ready(addrs) => return addrs,
        Resolve::Lookup(host, port) => (host, port),
    };
    let what = format!("{host}:{port}");
    let found = crate::blocking::spawn_blocking(move || {
        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port)).map(Vec::from_iter)
    })
    .await
    .map_err(|e| io::Error::other(format!("the lookup of `{what}` did not finish: {e}")))?;
    match found {
        Ok(v) if v.is_empty() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{what}` resolved to no address: check the host name, or pass an IP address"),
        )),
        Ok(v) => Ok(Addrs::Many(v.into_iter())),
        Err(e) => {
            let message = format!(
                "cannot resolve `{what}` ({e}): check the host name, or pass an IP address"
            );
            Err(super::explain(e, message))
        }
    }
}

/// Tries `f` on each address of `addrs` in turn: the first success, or the last error.
pub(crate) async fn each_addr<T, F, Fut>(addrs: Addrs, mut f: F) -> io::Result<T>
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = io::Result<T>>,
{
    let mut last = None;
    for addr in addrs {
        match f(addr).await {
            Ok(t) => return Ok(t),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "no address given: pass at least one",
        )
    }))
}

fn ready(addr: SocketAddr) -> Resolve {
    Resolve::Ready(Ok(Addrs::One(Some(addr))))
}

impl ToSocketAddrs for SocketAddr {}
impl sealed::Sealed for SocketAddr {
    fn to_addrs(&self) -> Resolve {
        ready(*self)
    }
}

impl ToSocketAddrs for SocketAddrV4 {}
impl sealed::Sealed for SocketAddrV4 {
    fn to_addrs(&self) -> Resolve {
        ready((*self).into())
    }
}

impl ToSocketAddrs for SocketAddrV6 {}
impl sealed::Sealed for SocketAddrV6 {
    fn to_addrs(&self) -> Resolve {
        ready((*self).into())
    }
}

impl ToSocketAddrs for (IpAddr, u16) {}
impl sealed::Sealed for (IpAddr, u16) {
    fn to_addrs(&self) -> Resolve {
        ready((*self).into())
    }
}

impl ToSocketAddrs for (Ipv4Addr, u16) {}
impl sealed::Sealed for (Ipv4Addr, u16) {
    fn to_addrs(&self) -> Resolve {
        ready((*self).into())
    }
}

impl ToSocketAddrs for (Ipv6Addr, u16) {}
impl sealed::Sealed for (Ipv6Addr, u16) {
    fn to_addrs(&self) -> Resolve {
        ready((*self).into())
    }
}

impl ToSocketAddrs for [SocketAddr] {}
impl sealed::Sealed for [SocketAddr] {
    fn to_addrs(&self) -> Resolve {
        match self {
            [one] => ready(*one),
            many => Resolve::Ready(Ok(Addrs::Many(Vec::from(many).into_iter()))),
        }
    }
}

impl ToSocketAddrs for str {}
impl sealed::Sealed for str {
    fn to_addrs(&self) -> Resolve {
        if let Ok(addr) = self.parse::<SocketAddr>() {
            return ready(addr);
        }
        match self
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()))
        {
            Some((host, Ok(port))) => Resolve::Lookup(host.to_owned(), port),
            _ => Resolve::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "`{self}` is not a socket address: write it as host:port, e.g. 127.0.0.1:7000"
                ),
            ))),
        }
    }
}

impl ToSocketAddrs for String {}
impl sealed::Sealed for String {
    fn to_addrs(&self) -> Resolve {
        self.as_str().to_addrs()
    }
}

impl ToSocketAddrs for (&str, u16) {}
impl sealed::Sealed for (&str, u16) {
    fn to_addrs(&self) -> Resolve {
        match self.0.parse::<IpAddr>() {
            Ok(ip) => ready((ip, self.1).into()),
            Err(_) => Resolve::Lookup(self.0.to_owned(), self.1),
        }
    }
}

impl ToSocketAddrs for (String, u16) {}
impl sealed::Sealed for (String, u16) {
    fn to_addrs(&self) -> Resolve {
        (self.0.as_str(), self.1).to_addrs()
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {}
impl<T: ToSocketAddrs + ?Sized> sealed::Sealed for &T {
    fn to_addrs(&self) -> Resolve {
        (**self).to_addrs()
    }
}
