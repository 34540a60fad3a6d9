//! [hyper] 1.x on evloop: the I/O adapter, the executor and the timer that hyper asks of a runtime.
//!
//! Enabled by the `hyper` Cargo feature (off by default). What each piece is for:
//!
//! - evloop's [`TcpStream`] and [`UnixStream`] implement [`hyper::rt::Read`] and [`hyper::rt::Write`]
//!   themselves: hand them to hyper as they are. A read goes from the socket straight into hyper's
//!   buffer, which is left uninitialized: nothing is zeroed and nothing is copied.
//! - [`HyperIo`] adapts any other `futures-io` stream (a TLS stream, a pipe wrapped in
//!   [`Async`](crate::Async), ...) to hyper, and, the other way round, a hyper stream such as
//!   [`hyper::upgrade::Upgraded`] to `futures-io`, so an upgraded connection is used like any evloop
//!   stream.
//! - [`HyperExecutor`] spawns the tasks hyper starts by itself (HTTP/2 streams, a client connection's
//!   background work) on the current runtime, of either flavor.
//! - [`HyperTimer`] gives hyper evloop's timers, for the HTTP/1 header-read timeout and HTTP/2
//!   keep-alive pings.
//!
//! This is what `hyper-util`'s `TokioIo`, `TokioExecutor` and `TokioTimer` are to tokio.
//!
//! # Examples
//! A server answering "hello" and a client asking it, on one runtime:
//! ```
//! use std::convert::Infallible;
//!
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Empty, Full};
//! use hyper::body::Incoming;
//! use hyper::{Request, Response};
//! use evloop::hyper::HyperTimer;
//! use evloop::net::{TcpListener, TcpStream};
//!
//! type Error = Box<dyn std::error::Error + Send + Sync>;
//!
//! async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
//!     Ok(Response::new(Full::new(Bytes::from_static(b"hello"))))
//! }
//!
//! evloop::block_on(async {
//!     // The server: a task per connection, hyper reading from evloop's `TcpStream` itself.
//!     let listener = TcpListener::bind("127.0.0.1:0").await?;
//!     let addr = listener.local_addr()?;
//!     evloop::spawn(async move {
//!         while let Ok((stream, _peer)) = listener.accept().await {
//!             let _ = stream.set_nodelay(true);
//!             evloop::spawn(async move {
//!                 let conn = hyper::server::conn::http1::Builder::new()
//!                     .timer(HyperTimer::new()) // for the header-read timeout
//!                     .serve_connection(stream, hyper::service::service_fn(hello));
//!                 if let Err(e) = conn.await {
//!                     eprintln!("connection: {e}");
//!                 }
//!             });
//!         }
//!     });
//!
//!     // The client: one connection, driven by a task of its own.
//!     let stream = TcpStream::connect(addr).await?;
//!     let (mut sender, conn) = hyper::client::conn::http1::handshake(stream).await?;
//!     evloop::spawn(conn);
//!     let request = Request::get("/")
//!         .header(hyper::header::HOST, addr.to_string())
//!         .body(Empty::<Bytes>::new())?;
//!     let response = sender.send_request(request).await?;
//!     assert_eq!(response.status(), 200);
//!     let body = response.into_body().collect().await?.to_bytes();
//!     assert_eq!(body, "hello");
//!     Ok::<(), Error>(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! ```
//!
//! HTTP/2 needs the executor (hyper runs each stream as a task): the server side is
//! `hyper::server::conn::http2::Builder::new(HyperExecutor::new())`, the client side
//! `hyper::client::conn::http2::handshake(HyperExecutor::new(), stream)`. `examples/http_server.rs`
//! and `examples/http_client.rs` are complete programs, with graceful shutdown.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use ::hyper::rt::{Executor, ReadBuf, ReadBufCursor, Timer};

use crate::net::{socket, TcpStream, UnixStream};
use crate::time::Sleep;

/// A stream adapted between `futures-io` and hyper, in whichever direction `T` needs.
///
/// - For `T: futures_io::AsyncRead + AsyncWrite + Unpin` (a TLS stream, say), `HyperIo<T>` implements
///   [`hyper::rt::Read`] and [`hyper::rt::Write`], so hyper can serve or request over it.
/// - For `T: hyper::rt::Read + hyper::rt::Write + Unpin` ([`hyper::upgrade::Upgraded`]), it implements
///   `futures_io::AsyncRead` and `AsyncWrite`, so `futures::io::copy`, `AsyncReadExt` and the rest work
///   on it.
///
/// evloop's own [`TcpStream`] and [`UnixStream`] need no adapter: they implement hyper's traits
/// themselves, reading into hyper's buffer without zeroing it, which `HyperIo` cannot do (below).
///
/// # Reads into hyper's buffer
/// hyper hands each read a buffer it has not initialized (a fresh `ReadBuf` over the spare capacity
/// of its `BytesMut`, 8 KiB and more), and `futures_io::AsyncRead::poll_read` takes `&mut [u8]`, which
/// must be initialized. Zeroing the whole buffer on every read is what costs; `HyperIo` zeroes only
/// the part it offers to the read, and sizes that part from what recent reads returned (between 512
/// bytes and 1 MiB, doubling after a read that filled it, halving after one that used under an eighth),
/// so zeroing costs about as much as the read itself. Bytes hyper already marks initialized are never
/// zeroed again ([`ReadBufCursor::initialize_unfilled_to`]).
///
/// What cannot be done soundly is to remember, from one read to the next, which bytes were zeroed
/// before: the next cursor may be over another allocation (hyper's buffer is reallocated, or split off
/// and frozen into a `Bytes`, then replaced), even one at the same address, whose bytes are
/// uninitialized again. Only the cursor's own record of what it holds initialized can be trusted, and
/// hyper starts each read with none.
///
/// # Writes
/// `futures-io` cannot tell whether a stream gathers vectored writes, so `HyperIo` tells hyper that it
/// does and passes `poll_write_vectored` through: a stream that really gathers (evloop's sockets,
/// through `sendmsg`) sends a response's head and body in one call, and one that does not writes the
/// first buffer of each call, which is still correct. For a stream that gathers badly (most TLS
/// implementations), turn vectored writes off on hyper's side with
/// `hyper::server::conn::http1::Builder::writev(false)`.
///
/// # Examples
/// An upgraded connection (here a client's, after `101 Switching Protocols`) used as a byte stream:
/// ```no_run
/// use futures::{AsyncReadExt, AsyncWriteExt};
/// use evloop::hyper::HyperIo;
///
/// async fn talk(response: hyper::Response<hyper::body::Incoming>) -> Result<(), Box<dyn std::error::Error>> {
///     let upgraded = hyper::upgrade::on(response).await?;
///     let mut io = HyperIo::new(upgraded);
///     io.write_all(b"ping").await?;
///     let mut reply = [0; 4];
///     io.read_exact(&mut reply).await?;
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct HyperIo<T> {
    inner: T,
    /// How many bytes the next hyper read offers `inner` (so zeroes first, unless hyper knows them
    /// initialized); adapted to what the reads return. Unused in the other direction.
    read_size: usize,
}

/// The smallest part of hyper's buffer offered to a read: a request head usually fits.
const MIN_READ: usize = 512;
/// The part offered to the first read.
const FIRST_READ: usize = 2048;
/// The largest part offered to a read (hyper's own buffer stops growing at about 400 KiB).
const MAX_READ: usize = 1 << 20;

impl<T> HyperIo<T> {
    /// Wraps `io`.
    pub fn new(io: T) -> HyperIo<T> {
        HyperIo {
            inner: io,
            read_size: FIRST_READ,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The wrapped stream, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Unwraps the stream.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

/// The size to offer the read after one that was offered `size` bytes and returned `got`.
fn next_read_size(size: usize, got: usize) -> usize {
    if got >= size {
        (size * 2).min(MAX_READ)
    } else if got < size / 8 {
        (size / 2).max(MIN_READ)
    } else {
        size
    }
}

impl<T: futures_io::AsyncRead + Unpin> ::hyper::rt::Read for HyperIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let offered = buf.remaining().min(this.read_size);
        let n =
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf.initialize_unfilled_to(offered)))?;
        if n > offered {
            return Poll::Ready(Err(io::Error::other(format!(
                "evloop::hyper::HyperIo: the stream's poll_read returned {n} bytes for a {offered}-byte \
                 buffer; fix its futures_io::AsyncRead impl"
            ))));
        }
        if offered == this.read_size {
            this.read_size = next_read_size(this.read_size, n);
        }
        // SAFETY: `initialize_unfilled_to` initialized the first `offered` bytes of the cursor (zeroing
        // only those hyper did not already know initialized), the read wrote into them, and `n <=
        // offered` was checked above, so the `n` bytes `advance` marks filled are initialized. Nothing
        // here relies on what earlier reads initialized: that was another cursor, perhaps over another
        // allocation (see "Reads into hyper's buffer" above).
        unsafe { buf.advance(n) };
        Poll::Ready(Ok(()))
    }
}

impl<T: futures_io::AsyncWrite + Unpin> ::hyper::rt::Write for HyperIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    /// True: see "Writes" on [`HyperIo`].
    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

impl<T: ::hyper::rt::Read + Unpin> futures_io::AsyncRead for HyperIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        ready!(Pin::new(&mut self.get_mut().inner).poll_read(cx, buf.unfilled()))?;
        Poll::Ready(Ok(buf.filled().len()))
    }
}

impl<T: ::hyper::rt::Write + Unpin> futures_io::AsyncWrite for HyperIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// hyper's traits on evloop's stream sockets: reads `recv` into hyper's uninitialized buffer, writes
/// are the `futures-io` ones (vectored through `sendmsg`), shutdown closes the write side (and is not
/// an error on a connection already reset).
macro_rules! hyper_stream_impls {
    ($t:ty) => {
        impl ::hyper::rt::Read for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                mut buf: ReadBufCursor<'_>,
            ) -> Poll<io::Result<()>> {
                // SAFETY: `recv` only writes the bytes it returns and never de-initializes any.
                let unfilled = unsafe { buf.as_mut() };
                let n = ready!(socket::poll_read_uninit(self.source(), cx, unfilled))?;
                // SAFETY: the kernel wrote `n` bytes at the cursor (`recv` returns at most the length
                // it was given).
                unsafe { buf.advance(n) };
                Poll::Ready(Ok(()))
            }
        }

        impl ::hyper::rt::Write for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                futures_io::AsyncWrite::poll_write(self, cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                futures_io::AsyncWrite::poll_write_vectored(self, cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            /// Shuts the write side down. A connection the peer has reset has nothing left to shut
            /// down: `NotConnected` is success here, so hyper does not report every client that
            /// left abruptly as a failed connection.
            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match ready!(futures_io::AsyncWrite::poll_close(self, cx)) {
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(())),
                    done => Poll::Ready(done),
                }
            }
        }
    };
}

hyper_stream_impls!(TcpStream);
hyper_stream_impls!(UnixStream);

/// Runs the tasks hyper spawns (HTTP/2 streams and connection work) on the current evloop runtime, of
/// either flavor, as [`crate::spawn`] does.
///
/// # Panics
/// hyper calls it while a connection is polled, which is inside a runtime; called from outside one,
/// it panics as `spawn` does.
///
/// # Examples
/// ```no_run
/// use evloop::hyper::{HyperExecutor, HyperTimer};
///
/// // hyper's HTTP/2 server runs every stream as a task, and pings idle clients on a timer.
/// let mut builder = hyper::server::conn::http2::Builder::new(HyperExecutor::new());
/// builder
///     .timer(HyperTimer::new())
///     .keep_alive_interval(std::time::Duration::from_secs(20));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct HyperExecutor {
    _private: (),
}

impl HyperExecutor {
    /// The executor of whichever runtime the task calling it runs on.
    pub fn new() -> HyperExecutor {
        HyperExecutor { _private: () }
    }
}

impl<F> Executor<F> for HyperExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        // Detached: hyper watches its tasks' ends through its own channels.
        drop(crate::spawn(future));
    }
}

/// hyper's clock and timers on evloop's timing wheel: the HTTP/1 header-read timeout, HTTP/2 keep-alive
/// pings and the rest of hyper's deadlines.
///
/// A timer is an evloop [`Sleep`], armed when hyper first polls it; [`Timer::reset`] moves that same
/// timer in the wheel rather than making a new one.
#[derive(Clone, Copy, Debug, Default)]
pub struct HyperTimer {
    _private: (),
}

impl HyperTimer {
    /// The timer of whichever runtime polls the sleeps it makes.
    pub fn new() -> HyperTimer {
        HyperTimer { _private: () }
    }
}

impl Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn ::hyper::rt::Sleep>> {
        Box::pin(crate::time::sleep(duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn ::hyper::rt::Sleep>> {
        Box::pin(crate::time::sleep_until(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn ::hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<Sleep>() {
            Some(ours) => ours.get_mut().reset(new_deadline),
            // A sleep made by another timer: replace it.
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// evloop's `Sleep` is `Send + Sync` (its timer names its runtime by id or by `Arc`), as hyper requires.
impl ::hyper::rt::Sleep for Sleep {}
