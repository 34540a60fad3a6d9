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
