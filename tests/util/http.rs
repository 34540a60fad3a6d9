//! The hyper server and client that `tests/http.rs` runs on evloop, and the body types and helpers
//! `tests/tls.rs` shares: `util::http`, there with feature `hyper`. Running the example server and
//! running a case on each runtime flavor are `util`'s own (`ExampleServer`, `on_each_flavor_within`).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use evloop::hyper::{HyperExecutor, HyperIo, HyperTimer};
use evloop::net::{TcpListener, TcpStream};
use futures::channel::{mpsc, oneshot};
use futures::future::{select, Either, FutureExt, Shared};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1;
use hyper::{Method, Request, Response, StatusCode};

pub type Body = BoxBody<Bytes, hyper::Error>;
pub type ReqBody = BoxBody<Bytes, Infallible>;

pub const HELLO: &[u8] = b"Hello, world!\n";
/// How long `GET /slow` takes to answer: long enough to be in flight when a shutdown starts.
pub const SLOW: Duration = Duration::from_millis(300);
/// How many `GET /slow` requests have reached the handler (only the graceful-shutdown test sends them).
pub static SLOW_STARTED: AtomicUsize = AtomicUsize::new(0);
/// The upgrade protocol the tests speak: "ping" is answered "pong", then every byte is echoed.
pub const PROTOCOL: &str = "evloop-ping";

/// How a test server treats its connections.
#[derive(Clone, Copy)]
pub struct Config {
    pub http2: bool,
    /// Hand hyper `HyperIo<TcpStream>` (the futures-io adapter) instead of the `TcpStream` itself.
    pub wrap: bool,
    pub header_read_timeout: Option<Duration>,
}

pub const HTTP1: Config = Config {
    http2: false,
    wrap: false,
    header_read_timeout: None,
};

/// A hyper server on the current runtime; it stops (gracefully) when `stop` is sent or dropped.
pub struct Server {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    /// Says when the listener has been closed, after `stop`.
    listener_closed: Option<oneshot::Receiver<()>>,
    /// Ends when the server and every connection have finished.
    pub finished: evloop::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(config: Config) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = oneshot::channel();
        let (closed_tx, listener_closed) = oneshot::channel();
        let finished = evloop::spawn(accept_loop(
            listener,
            config,
            accepted.clone(),
            stopped,
            closed_tx,
        ));
        Server {
            addr,
            accepted,
            stop: Some(stop),
            listener_closed: Some(listener_closed),
            finished,
        }
    }

    /// Starts the graceful shutdown and waits until the listener is closed.
    pub async fn begin_shutdown(&mut self) {
        drop(self.stop.take());
        self.listener_closed.take().unwrap().await.unwrap();
    }

    /// Shuts down and waits for every connection to finish.
    pub async fn shutdown(mut self) {
        drop(self.stop.take());
        self.finished.await.unwrap();
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: Config,
    accepted: Arc<AtomicUsize>,
    stopped: oneshot::Receiver<()>,
    closed: oneshot::Sender<()>,
) {
    // Connections hold a clone of `stop` (ready once the server stops) and of `alive`.
    let stop = stopped.map(|_| ()).shared();
    let (alive, mut all_done) = mpsc::channel::<()>(0);
    loop {
        match select(pin!(listener.accept()), stop.clone()).await {
            Either::Left((Ok((stream, _peer)), _)) => {
                accepted.fetch_add(1, Ordering::SeqCst);
                stream.set_nodelay(true).unwrap();
                let (stop, alive) = (stop.clone(), alive.clone());
                if config.wrap {
                    evloop::spawn(connection(HyperIo::new(stream), config, stop, alive));
                } else {
                    evloop::spawn(connection(stream, config, stop, alive));
                }
            }
            Either::Left((Err(e), _)) => panic!("accept: {e}"),
            Either::Right(_) => break,
        }
    }
    drop(listener);
    let _ = closed.send(());
    drop(alive);
    all_done.next().await;
}

/// Serves one connection; once `stop` is ready, finishes the requests in flight and closes.
async fn connection<I>(
    io: I,
    config: Config,
    stop: Shared<impl Future<Output = ()>>,
    _alive: mpsc::Sender<()>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(handle);
    let result = if config.http2 {
        let mut builder = hyper::server::conn::http2::Builder::new(HyperExecutor::new());
        builder.timer(HyperTimer::new());
        let mut conn = pin!(builder.serve_connection(io, service));
        match select(conn.as_mut(), stop).await {
            Either::Left((done, _)) => done,
            Either::Right(_) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    } else {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(HyperTimer::new())
            .header_read_timeout(config.header_read_timeout);
        let mut conn = pin!(builder.serve_connection(io, service).with_upgrades());
        match select(conn.as_mut(), stop).await {
            Either::Left((done, _)) => done,
            Either::Right(_) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    };
    // Clients that hang up, and the header-read timeout, end connections with an error; the tests
    // check what the client saw.
    let _ = result;
}

/// `GET /` hello, `POST /echo` streams the body back, `GET /slow` answers after [`SLOW`], `GET
/// /upgrade` switches to [`PROTOCOL`].
pub async fn handle(mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => Response::new(full(HELLO)),
        (&Method::POST, "/echo") => Response::new(req.into_body().boxed()),
        (&Method::GET, "/slow") => {
            SLOW_STARTED.fetch_add(1, Ordering::SeqCst);
            evloop::time::sleep(SLOW).await;
            Response::new(full("slow"))
        }
        (&Method::GET, "/upgrade") => {
            let upgrade = hyper::upgrade::on(&mut req);
            evloop::spawn(async move {
                let mut io = HyperIo::new(upgrade.await.expect("server upgrade"));
                let mut ping = [0; 4];
                io.read_exact(&mut ping).await.unwrap();
                assert_eq!(&ping, b"ping");
                io.write_all(b"pong").await.unwrap();
                // Then an echo until the client closes its side.
                let mut buf = vec![0; 64 * 1024];
                loop {
                    let n = io.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    io.write_all(&buf[..n]).await.unwrap();
                }
                io.close().await.unwrap();
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header(hyper::header::CONNECTION, "upgrade")
                .header(hyper::header::UPGRADE, PROTOCOL)
                .body(full(Bytes::new()))
                .unwrap()
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(full(Bytes::new()))
            .unwrap(),
    };
    Ok(response)
}

/// A response body of `data`, all in one frame.
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

pub fn empty() -> ReqBody {
    Full::new(Bytes::new()).boxed()
}

/// An HTTP/1.1 client connection to `addr`, driven by a task of its own (upgrades allowed).
pub async fn client1(addr: SocketAddr) -> http1::SendRequest<ReqBody> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = http1::handshake(stream).await.expect("handshake");
    evloop::spawn(conn.with_upgrades());
    sender
}

pub fn get(addr: SocketAddr, path: &str) -> Request<ReqBody> {
    Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(empty())
        .unwrap()
}

/// Sends `GET /` and checks the answer.
pub async fn hello(sender: &mut http1::SendRequest<ReqBody>, addr: SocketAddr) {
    // The connection's task readies it for the next request once the last response is read.
    sender.ready().await.expect("the connection stays open");
    let response = sender.send_request(get(addr, "/")).await.expect("GET /");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, HELLO);
}

/// A request body of `len` pattern bytes in `chunk`-byte frames, made as hyper asks for them.
pub fn pattern_body(len: usize, chunk: usize) -> ReqBody {
    let frames = futures::stream::iter((0..len).step_by(chunk)).map(move |start| {
        let end = (start + chunk).min(len);
        let bytes: Vec<u8> = (start..end).map(|i| super::pattern_byte(7, i)).collect();
        Ok::<_, Infallible>(Frame::data(Bytes::from(bytes)))
    });
    BodyExt::boxed(StreamBody::new(frames))
}

/// Reads `body` frame by frame, checking each byte against the pattern; returns how many came.
pub async fn check_pattern(mut body: Incoming) -> usize {
    let mut at = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("response body").into_data() {
            for (k, &b) in data.iter().enumerate() {
                assert_eq!(
                    b,
                    super::pattern_byte(7, at + k),
                    "byte {} of the echo",
                    at + k
                );
            }
            at += data.len();
        }
    }
    at
}

/// Runs `curl` with `args`; its standard output.
pub fn curl(args: &[&str]) -> String {
    let output = match Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            panic!("curl is not installed: `apt-get install -y curl` (.ci/run does)")
        }
        Err(e) => panic!("cannot run curl: {e}"),
    };
    assert!(
        output.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("curl's output is text")
}
