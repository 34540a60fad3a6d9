//! The socket syscalls evloop's networking makes, on libc, and the stream I/O shared by TCP and Unix
//! streams.
//!
//! Every socket is created non-blocking and close-on-exec in the same syscall (`SOCK_NONBLOCK |
//! SOCK_CLOEXEC`, `accept4`), so registering it never needs an `fcntl`. Writes use `send` with
//! `MSG_NOSIGNAL` (`SO_NOSIGPIPE` on Apple systems): a peer that went away gives `EPIPE`, never a
//! `SIGPIPE` that would kill the process.

use std::io::{self, IoSlice};
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
#[cfg(target_vendor = "apple")]
use std::os::fd::AsRawFd;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::task::{Context, Poll};

use crate::reactor::{Direction, Source};
use crate::sys::syscall;

/// Flags for every `send`: no `SIGPIPE` when the peer is gone (Apple sets `SO_NOSIGPIPE` instead).
#[cfg(not(target_vendor = "apple"))]
pub(crate) const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(target_vendor = "apple")]
pub(crate) const SEND_FLAGS: libc::c_int = 0;

/// How many pending connections a listener queues; the kernel caps it at `net.core.somaxconn`.
const BACKLOG: libc::c_int = 4096;

/// The most buffers one `sendmsg` gathers (`IOV_MAX`); more fail with `EMSGSIZE`. The BSDs and Apple
/// systems define it; the libc crate has no `IOV_MAX` for Linux and Android, where the kernel's limit
/// (`UIO_MAXIOV`) is 1024.
#[cfg(any(
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
const IOV_MAX: usize = libc::IOV_MAX as usize;
#[cfg(not(any(
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
)))]
const IOV_MAX: usize = 1024;

/// Creates a non-blocking, close-on-exec socket.
pub(crate) fn socket(domain: libc::c_int, ty: libc::c_int) -> io::Result<OwnedFd> {
    #[cfg(not(target_vendor = "apple"))]
    {
        // SAFETY: socket takes no pointers.
        let fd = syscall(unsafe {
            libc::socket(domain, ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0)
        })?;
        // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
    #[cfg(target_vendor = "apple")]
    {
        // SAFETY: socket takes no pointers.
        let fd = syscall(unsafe { libc::socket(domain, ty, 0) })?;
        // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        apple_setup(fd.as_raw_fd())?;
        Ok(fd)
    }
}

/// Creates a connected pair of non-blocking, close-on-exec Unix sockets of type `ty`.
pub(crate) fn socketpair(ty: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    #[cfg(not(target_vendor = "apple"))]
    let ty = ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: `fds` has room for the two descriptors the kernel writes.
    syscall(unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, fds.as_mut_ptr()) })?;
    // SAFETY: both were just returned by the kernel and are owned by nobody else.
    let pair = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    #[cfg(target_vendor = "apple")]
    {
        apple_setup(pair.0.as_raw_fd())?;
        apple_setup(pair.1.as_raw_fd())?;
    }
    Ok(pair)
}

/// Apple has neither `SOCK_NONBLOCK`, `SOCK_CLOEXEC` nor `MSG_NOSIGNAL`: set their equivalents.
#[cfg(target_vendor = "apple")]
fn apple_setup(fd: RawFd) -> io::Result<()> {
    crate::sys::set_nonblocking(fd)?;
    // SAFETY: fcntl with F_SETFD takes no pointers.
    syscall(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_NOSIGPIPE, 1)
}

/// Sets an integer socket option.
pub(crate) fn setsockopt(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a live c_int whose size is passed along.
    syscall(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Binds `fd` to `addr` and, for a listener, starts listening.
pub(crate) fn bind(fd: RawFd, addr: &SockAddr) -> io::Result<()> {
    // SAFETY: `addr` holds a valid socket address of `addr.len` bytes.
    syscall(unsafe { libc::bind(fd, addr.as_ptr(), addr.len) })?;
    Ok(())
}

/// Marks a bound socket as accepting connections.
pub(crate) fn listen(fd: RawFd) -> io::Result<()> {
    // SAFETY: listen takes no pointers.
    syscall(unsafe { libc::listen(fd, BACKLOG) })?;
    Ok(())
}

/// Starts connecting `fd` to `addr`. On a non-blocking socket, `Ok(false)` means the connection is in
/// progress: wait until the socket is writable, then read [`take_error`].
pub(crate) fn connect(fd: RawFd, addr: &SockAddr) -> io::Result<bool> {
    // SAFETY: `addr` holds a valid socket address of `addr.len` bytes.
    match syscall(unsafe { libc::connect(fd, addr.as_ptr(), addr.len) }) {
        Ok(_) => Ok(true),
        // EINTR does not abort a connect: it goes on in the background like EINPROGRESS (retrying would
        // give EALREADY).
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINPROGRESS) | Some(libc::EINTR)
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Accepts one connection as a non-blocking, close-on-exec socket, with the peer's address.
pub(crate) fn accept(fd: RawFd) -> io::Result<(OwnedFd, SockAddr)> {
    let mut addr = SockAddr::empty();
    #[cfg(not(target_vendor = "apple"))]
    {
        // SAFETY: `addr` has room for `addr.len` bytes, which the kernel updates to the address length.
        let new = syscall(unsafe {
            libc::accept4(
                fd,
                addr.as_mut_ptr(),
                &mut addr.len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        })?;
        // SAFETY: `new` was just returned by the kernel and is owned by nobody else.
        Ok((unsafe { OwnedFd::from_raw_fd(new) }, addr))
    }
    #[cfg(target_vendor = "apple")]
    {
        // SAFETY: as above.
        let new = syscall(unsafe { libc::accept(fd, addr.as_mut_ptr(), &mut addr.len) })?;
        // SAFETY: as above.
        let new = unsafe { OwnedFd::from_raw_fd(new) };
        apple_setup(new.as_raw_fd())?;
        Ok((new, addr))
    }
}

/// Reads and clears the socket's pending error (`SO_ERROR`), e.g. the outcome of a connect.
pub(crate) fn take_error(fd: RawFd) -> io::Result<Option<io::Error>> {
    let mut err: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` is a live c_int and `len` its size.
    syscall(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok((err != 0).then(|| io::Error::from_raw_os_error(err)))
}

/// One `recv` into `buf`.
fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    let n = syscall(unsafe { crate::sys::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) })?;
    Ok(n as usize)
}

/// One `send` of `buf`, without `SIGPIPE`.
fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
    let n = syscall(unsafe { crate::sys::send(fd, buf.as_ptr().cast(), buf.len(), SEND_FLAGS) })?;
    Ok(n as usize)
}

/// One `sendmsg` gathering `bufs` (at most `IOV_MAX` of them: see `sendable`), without `SIGPIPE`.
fn send_vectored(fd: RawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    // `IoSlice` is ABI-compatible with `iovec`; sendmsg only reads through the pointer.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    // At most IOV_MAX, which fits every platform's field.
    msg.msg_iovlen = bufs.len() as _;
    // SAFETY: `msg` points at `bufs`, which outlive the call.
    let n = syscall(unsafe { libc::sendmsg(fd, &msg, SEND_FLAGS) })?;
    Ok(n as usize)
}

/// Reads from a registered stream socket: one `recv` when the socket is ready; a short read clears the
/// readiness (the socket is drained), so a round trip costs no extra `EAGAIN` read.
///
/// Inlined into the caller: a drained socket (the second read of every round trip, after the one
/// that got the data) goes straight to storing the waker, without the frame of `poll_read_ready`,
/// which it would not use.
#[inline]
pub(crate) fn poll_read(
    source: &Source,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<usize>> {
    std::task::ready!(source.poll_not_drained(Direction::Read, cx));
    poll_read_ready(source, cx, buf)
}

/// `poll_read` once the socket may be ready: the transfer itself (and the wait again if it finds the
/// socket drained after all). Out of line: inlined into every caller's future it costs more than
/// the call (measured).
#[inline(never)]
fn poll_read_ready(
    source: &Source,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<usize>> {
    let fd = source.fd;
    source.poll_stream_io(Direction::Read, cx, buf.len(), || recv(fd, buf))
}

/// `poll_read` into memory that need not be initialized (hyper's read buffer): the kernel only writes
/// it, so nothing has to be zeroed first. A drained socket goes straight to storing the waker, as in
/// `poll_read`.
#[cfg(feature = "hyper")]
pub(crate) fn poll_read_uninit(
    source: &Source,
    cx: &mut Context<'_>,
    buf: &mut [mem::MaybeUninit<u8>],
) -> Poll<io::Result<usize>> {
    std::task::ready!(source.poll_not_drained(Direction::Read, cx));
    let fd = source.fd;
    source.poll_stream_io(Direction::Read, cx, buf.len(), || {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes; `recv` writes it and never reads it,
        // so whether it was initialized does not matter, and it never de-initializes a byte.
        let n = syscall(unsafe { crate::sys::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) })?;
        Ok(n as usize)
    })
}

/// Writes to a registered stream socket: one `send` when the socket is ready.
pub(crate) fn poll_write(
    source: &Source,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<io::Result<usize>> {
    let fd = source.fd;
    source.poll_stream_io(Direction::Write, cx, buf.len(), || send(fd, buf))
}

/// The buffers of `bufs` that one `sendmsg` takes: the first `IOV_MAX` from the first non-empty one.
/// Leading empty buffers are skipped, so that a write of many empty slices before the data does not
/// send nothing and look like `Ok(0)` (as std's `write_vectored` does); writing fewer buffers than
/// offered is a short write, which callers of `write_vectored` expect.
fn sendable<'a, 'b>(bufs: &'a [IoSlice<'b>]) -> &'a [IoSlice<'b>] {
    let start = bufs
        .iter()
        .position(|b| !b.is_empty())
        .unwrap_or(bufs.len());
    let bufs = &bufs[start..];
    &bufs[..bufs.len().min(IOV_MAX)]
}

/// Writes several buffers to a registered stream socket with one `sendmsg` (the first `IOV_MAX` that
/// hold data, if there are more).
pub(crate) fn poll_write_vectored(
    source: &Source,
    cx: &mut Context<'_>,
    bufs: &[IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    let fd = source.fd;
    let bufs = sendable(bufs);
    // Over the buffers sent, not those offered: a write cut at IOV_MAX buffers is short without the
    // socket's buffer being full, and must not clear the write readiness.
    let len = bufs.iter().map(|b| b.len()).sum();
    source.poll_stream_io(Direction::Write, cx, len, || send_vectored(fd, bufs))
}

/// A socket address in its C form, as passed to and returned by the kernel.
pub(crate) struct SockAddr {
    /// Big enough for any address family.
    storage: libc::sockaddr_storage,
    /// How many bytes of `storage` are meaningful.
    len: libc::socklen_t,
}

impl SockAddr {
    /// Room for any address, for the kernel to fill.
    fn empty() -> SockAddr {
        SockAddr {
            // SAFETY: all-zero is a valid sockaddr_storage.
            storage: unsafe { mem::zeroed() },
            len: mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }

    fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const libc::sockaddr_storage).cast()
    }

    fn as_mut_ptr(&mut self) -> *mut libc::sockaddr {
        (&mut self.storage as *mut libc::sockaddr_storage).cast()
    }

    /// The address family (`AF_INET`, `AF_INET6`, `AF_UNIX`).
    pub(crate) fn family(&self) -> libc::c_int {
        self.storage.ss_family as libc::c_int
    }

    /// The C form of an IP socket address.
    pub(crate) fn from_inet(addr: &SocketAddr) -> SockAddr {
        let mut out = SockAddr::empty();
        match addr {
            SocketAddr::V4(a) => {
                // SAFETY: all-zero is a valid sockaddr_in.
                let mut sin: libc::sockaddr_in = unsafe { mem::zeroed() };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                out.len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
                unsafe { out.as_mut_ptr().cast::<libc::sockaddr_in>().write(sin) };
            }
            SocketAddr::V6(a) => {
                // SAFETY: all-zero is a valid sockaddr_in6.
                let mut sin6: libc::sockaddr_in6 = unsafe { mem::zeroed() };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_scope_id = a.scope_id();
                out.len = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
                // SAFETY: sockaddr_storage is larger than sockaddr_in6 and suitably aligned.
                unsafe { out.as_mut_ptr().cast::<libc::sockaddr_in6>().write(sin6) };
            }
        }
        out
    }

    /// The IP socket address this holds, if it is one.
    pub(crate) fn to_inet(&self) -> Option<SocketAddr> {
        match self.family() {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let sin = unsafe { &*self.as_ptr().cast::<libc::sockaddr_in>() };
                let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddrV4::new(ip, u16::from_be(sin.sin_port)).into())
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let sin6 = unsafe { &*self.as_ptr().cast::<libc::sockaddr_in6>() };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                let port = u16::from_be(sin6.sin6_port);
                Some(SocketAddrV6::new(ip, port, sin6.sin6_flowinfo, sin6.sin6_scope_id).into())
            }
            _ => None,
        }
    }

    /// The C form of a Unix socket path.
    ///
    /// # Errors
    /// `InvalidInput` when the path does not fit in `sun_path` or contains a NUL byte.
    pub(crate) fn from_path(path: &Path) -> io::Result<SockAddr> {
        let bytes = path.as_os_str().as_bytes();
        let mut out = SockAddr::empty();
        // SAFETY: all-zero is a valid sockaddr_un.
        let mut sun: libc::sockaddr_un = unsafe { mem::zeroed() };
        // Keep one byte for the terminating NUL that some systems expect.
        if bytes.len() >= sun.sun_path.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "Unix socket path {} is {} bytes long, more than the {} the OS allows: use a shorter \
                     path (e.g. a relative one, or one under /tmp)",
                    path.display(),
                    bytes.len(),
                    sun.sun_path.len() - 1
                ),
            ));
        }
        if bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("Unix socket path {} contains a NUL byte", path.display()),
            ));
        }
        sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (dst, src) in sun.sun_path.iter_mut().zip(bytes) {
            *dst = *src as libc::c_char;
        }
        let base = mem::offset_of!(libc::sockaddr_un, sun_path);
        out.len = (base + bytes.len() + 1) as libc::socklen_t;
        // SAFETY: sockaddr_storage is larger than sockaddr_un and suitably aligned.
        unsafe { out.as_mut_ptr().cast::<libc::sockaddr_un>().write(sun) };
        Ok(out)
    }

    /// The Unix socket address this holds, as std's type.
    pub(crate) fn to_unix(&self) -> io::Result<std::os::unix::net::SocketAddr> {
        let base = mem::offset_of!(libc::sockaddr_un, sun_path);
        // SAFETY: the storage is larger than sockaddr_un; callers only use this for AF_UNIX sockets.
        let sun = unsafe { &*self.as_ptr().cast::<libc::sockaddr_un>() };
        let len = (self.len as usize)
            .saturating_sub(base)
            .min(sun.sun_path.len());
        let path: Vec<u8> = sun.sun_path[..len].iter().map(|&c| c as u8).collect();
        if path.is_empty() {
            return unnamed_unix_addr();
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if path[0] == 0 {
            #[cfg(target_os = "android")]
            use std::os::android::net::SocketAddrExt;
            #[cfg(target_os = "linux")]
            use std::os::linux::net::SocketAddrExt;
            return std::os::unix::net::SocketAddr::from_abstract_name(&path[1..]);
        }
        let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
        std::os::unix::net::SocketAddr::from_pathname(Path::new(std::ffi::OsStr::from_bytes(
            &path[..end],
        )))
    }
}

/// std offers no constructor for the address of an unbound Unix socket (what an accepted client
/// usually has): make one once from an unbound socket, and clone it.
fn unnamed_unix_addr() -> io::Result<std::os::unix::net::SocketAddr> {
    static UNNAMED: std::sync::OnceLock<std::os::unix::net::SocketAddr> =
        std::sync::OnceLock::new();
    if let Some(addr) = UNNAMED.get() {
        return Ok(addr.clone());
    }
    let addr = std::os::unix::net::UnixDatagram::unbound()?.local_addr()?;
    Ok(UNNAMED.get_or_init(|| addr).clone())
}

/// The address family of an IP socket address.
pub(crate) fn inet_domain(addr: &SocketAddr) -> libc::c_int {
    match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    }
}
