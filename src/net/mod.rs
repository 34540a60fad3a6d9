//! Networking: TCP, UDP and Unix sockets on the reactor.
//!
//! The types mirror `std::net` and `std::os::unix::net`, with `async` methods where std would block, and
//! `futures::io::AsyncRead`/`AsyncWrite` on the stream types (for the owned type and for a shared
//! reference, so one stream can be read and written from two places at once).
//!
//! Every socket is created non-blocking and close-on-exec in the same syscall and registered with the
//! reactor once, for both directions. A stream read or write costs exactly one syscall when the socket
//! is ready; a short read or write tells the reactor the socket is drained, so no extra syscall is ever
//! spent to learn `EAGAIN`.
//!
//! # Examples
//! An echo server, one task per connection:
//! ```no_run
//! use evloop::net::TcpListener;
//!
//! evloop::block_on(async {
//!     let listener = TcpListener::bind("127.0.0.1:7000").await?;
//!     # if false { return Ok::<(), std::io::Error>(()); }
//!     loop {
//!         let (stream, _peer) = listener.accept().await?;
//!         evloop::spawn(async move {
//!             // `&TcpStream` is both a reader and a writer.
//!             let _ = futures::io::copy(&stream, &mut &stream).await;
//!         });
//!     }
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Layout
//! | type | file |
//! |---|---|
//! | [`ToSocketAddrs`], name resolution on the blocking pool | `addr.rs` |
//! | [`TcpStream`]; [`TcpListener`]; the split halves | `tcp.rs`; `tcp/listener.rs`; `tcp/split.rs` |
//! | [`UdpSocket`] | `udp.rs` |
//! | [`UnixStream`], [`UnixListener`], [`UnixDatagram`] | `unix.rs`, `unix/listener.rs`, `unix/datagram.rs` |
//! | the accept backoff when descriptors run out | `accept.rs` |
//! | the libc socket calls, stream reads and writes | `socket.rs` |

/// The byte-stream trait impls shared by `TcpStream` and `UnixStream`: `AsyncRead`/`AsyncWrite` for the
/// type and for a shared reference to it (one `recv`/`send` per ready socket, through `socket.rs`),
/// `AsRawFd`, `AsFd` and `Debug` (and, with the `hyper` feature, a crate-internal `source()`). The type needs an `inner: Async<_>` field and a
/// `shutdown(&self, Shutdown) -> io::Result<()>` method.
macro_rules! stream_impls {
    ($t:ty) => {
        impl futures_io::AsyncRead for &$t {
            #[inline]
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                crate::net::socket::poll_read(self.inner.source(), cx, buf)
            }
        }

        impl futures_io::AsyncWrite for &$t {
            #[inline]
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                crate::net::socket::poll_write(self.inner.source(), cx, buf)
            }

            #[inline]
            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                crate::net::socket::poll_write_vectored(self.inner.source(), cx, bufs)
            }

            /// Writes go straight to the socket: nothing to flush.
            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }

            /// Shuts down the write side: the peer reads end-of-file.
            fn poll_close(
                self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(self.shutdown(std::net::Shutdown::Write))
            }
        }

        impl futures_io::AsyncRead for $t {
            #[inline]
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut &*self).poll_read(cx, buf)
            }
        }

        impl futures_io::AsyncWrite for $t {
            #[inline]
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut &*self).poll_write(cx, buf)
            }

            #[inline]
            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut &*self).poll_write_vectored(cx, bufs)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut &*self).poll_flush(cx)
            }

            fn poll_close(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut &*self).poll_close(cx)
            }
        }

        impl std::os::fd::AsRawFd for $t {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                self.inner.as_raw_fd()
            }
        }

        impl std::os::fd::AsFd for $t {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                self.inner.as_fd()
            }
        }

        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.inner.get_ref().fmt(f)
            }
        }

        // `src/hyper.rs` reads straight into hyper's (uninitialized) buffer through this.
        #[cfg(feature = "hyper")]
        impl $t {
            pub(crate) fn source(&self) -> &crate::reactor::Source {
                self.inner.source()
            }
        }
    };
}

mod accept;
mod addr;
pub(crate) mod socket;
pub mod tcp;
mod udp;
pub mod unix;

use std::error::Error;
use std::fmt;
use std::io;

pub use addr::ToSocketAddrs;
pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixDatagram, UnixListener, UnixStream};

/// An error message that names the fix, wrapping the OS error it explains.
///
/// The `io::Error` built from it keeps the original's `ErrorKind`, and its `source()` is the original
/// error, so `e.source()` can be downcast to `io::Error` for `raw_os_error()`.
#[derive(Debug)]
struct Explained {
    /// What failed and what to do about it.
    message: String,
    /// The OS error.
    cause: io::Error,
}

impl fmt::Display for Explained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for Explained {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.cause)
    }
}

/// Wraps `cause` in a message naming the fix, keeping its kind.
pub(crate) fn explain(cause: io::Error, message: String) -> io::Error {
    io::Error::new(cause.kind(), Explained { message, cause })
}

// Every socket type can move between threads and be shared by them.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TcpListener>();
    assert_send_sync::<TcpStream>();
    assert_send_sync::<tcp::OwnedReadHalf>();
    assert_send_sync::<tcp::OwnedWriteHalf>();
    assert_send_sync::<UdpSocket>();
    assert_send_sync::<UnixListener>();
    assert_send_sync::<UnixStream>();
    assert_send_sync::<UnixDatagram>();
};
