//! hyper on evloop (`evloop::hyper`, feature `hyper`): servers and clients both on evloop over loopback,
//! every case on a current-thread and on a 2-worker runtime; and `examples/http_server.rs` driven by
//! `curl`.
//!
//! ```text
//! cargo test --features hyper --test http
//! ```

mod util;

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use evloop::hyper::{HyperExecutor, HyperIo, HyperTimer};
use evloop::net::{TcpListener, TcpStream};
use evloop::Runtime;
use futures::channel::{mpsc, oneshot};
use futures::future::{select, Either, FutureExt, Shared};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::{http1, http2};
use hyper::rt::Timer;
use hyper::{Method, Request, Response, StatusCode};

type Body = BoxBody<Bytes, hyper::Error>;
type ReqBody = BoxBody<Bytes, Infallible>;

const HELLO: &[u8] = b"Hello, world!\n";
/// How long `GET /slow` takes to answer: long enough to be in flight when a shutdown starts.
const SLOW: Duration = Duration::from_millis(300);
/// The upgrade protocol the tests speak: "ping" is answered "pong", then every byte is echoed.
const PROTOCOL: &str = "evloop-ping";

/// Runs `body` on a current-thread runtime, then on a 2-worker one, each on a thread of its own
/// failed after `limit`.
fn on_both_flavors<F, Fut>(limit: Duration, body: F)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()>,
{
    let body = Arc::new(body);
    for workers in [0, 2] {
        let body = body.clone();
        util::with_deadline(limit, move || {
            let rt = match workers {
                0 => Runtime::new(),
                n => Runtime::builder().worker_threads(n).build(),
            }
            .expect("build the runtime");
            rt.block_on(body());
        });
    }
}

/// How a test server treats its connections.
#[derive(Clone, Copy)]
struct Config {
    http2: bool,
    /// Hand hyper `HyperIo<TcpStream>` (the futures-io adapter) instead of the `TcpStream` itself.
    wrap: bool,
    header_read_timeout: Option<Duration>,
}

const HTTP1: Config = Config {
    http2: false,
    wrap: false,
    header_read_timeout: None,
};

/// A hyper server on the current runtime; it stops (gracefully) when `stop` is sent or dropped.
struct Server {
    addr: SocketAddr,
    /// Connections accepted so far.
    accepted: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    /// Says when the listener has been closed, after `stop`.
    listener_closed: Option<oneshot::Receiver<()>>,
    /// Ends when the server and every connection have finished.
    finished: evloop::task::JoinHandle<()>,
}

impl Server {
    async fn start(config: Config) -> Server {
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
    async fn begin_shutdown(&mut self) {
        drop(self.stop.take());
        self.listener_closed.take().unwrap().await.unwrap();
    }

    /// Shuts down and waits for every connection to finish.
    async fn shutdown(mut self) {
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
async fn handle(mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let full = |b: &'static [u8]| {
        Full::new(Bytes::from_static(b))
            .map_err(|e| match e {})
            .boxed()
    };
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => Response::new(full(HELLO)),
        (&Method::POST, "/echo") => Response::new(req.into_body().boxed()),
        (&Method::GET, "/slow") => {
            evloop::time::sleep(SLOW).await;
            Response::new(full(b"slow"))
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
                .body(full(b""))
                .unwrap()
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(full(b""))
            .unwrap(),
    };
    Ok(response)
}

fn empty() -> ReqBody {
    Full::new(Bytes::new()).boxed()
}

/// An HTTP/1.1 client connection to `addr`, driven by a task of its own (upgrades allowed).
async fn client1(addr: SocketAddr) -> http1::SendRequest<ReqBody> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = http1::handshake(stream).await.expect("handshake");
    evloop::spawn(conn.with_upgrades());
    sender
}

fn get(addr: SocketAddr, path: &str) -> Request<ReqBody> {
    Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(empty())
        .unwrap()
}

/// Sends `GET /` and checks the answer.
async fn hello(sender: &mut http1::SendRequest<ReqBody>, addr: SocketAddr) {
    // The connection's task readies it for the next request once the last response is read.
    sender.ready().await.expect("the connection stays open");
    let response = sender.send_request(get(addr, "/")).await.expect("GET /");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, HELLO);
}

#[test]
fn a_thousand_keep_alive_requests_on_one_connection() {
    on_both_flavors(Duration::from_secs(30), || async {
        for wrap in [false, true] {
            let server = Server::start(Config { wrap, ..HTTP1 }).await;
            let addr = server.addr;
            if wrap {
                // The client over the futures-io adapter too.
                let stream = TcpStream::connect(addr).await.unwrap();
                let (mut sender, conn) = http1::handshake(HyperIo::new(stream)).await.unwrap();
                evloop::spawn(conn);
                for _ in 0..1000 {
                    sender.ready().await.unwrap();
                    let response = sender.send_request(get(addr, "/")).await.unwrap();
                    let body = response.into_body().collect().await.unwrap().to_bytes();
                    assert_eq!(body, HELLO);
                }
            } else {
                let mut sender = client1(addr).await;
                for _ in 0..1000 {
                    hello(&mut sender, addr).await;
                }
            }
            assert_eq!(
                server.accepted.load(Ordering::SeqCst),
                1,
                "keep-alive reused the connection"
            );
            server.shutdown().await;
        }
    });
}

#[test]
fn a_hundred_connections_of_a_hundred_requests() {
    on_both_flavors(Duration::from_secs(60), || async {
        let server = Server::start(HTTP1).await;
        let addr = server.addr;
        let clients: Vec<_> = (0..100)
            .map(|_| {
                evloop::spawn(async move {
                    let mut sender = client1(addr).await;
                    for _ in 0..100 {
                        hello(&mut sender, addr).await;
                    }
                })
            })
            .collect();
        for client in clients {
            client.await.expect("client task");
        }
        assert_eq!(server.accepted.load(Ordering::SeqCst), 100);
        server.shutdown().await;
    });
}

/// A request body of `len` pattern bytes in `chunk`-byte frames, made as hyper asks for them.
fn pattern_body(len: usize, chunk: usize) -> ReqBody {
    let frames = futures::stream::iter((0..len).step_by(chunk)).map(move |start| {
        let end = (start + chunk).min(len);
        let bytes: Vec<u8> = (start..end).map(|i| util::pattern_byte(7, i)).collect();
        Ok::<_, Infallible>(Frame::data(Bytes::from(bytes)))
    });
    BodyExt::boxed(StreamBody::new(frames))
}

/// Reads `body` frame by frame, checking each byte against the pattern; returns how many came.
async fn check_pattern(mut body: Incoming) -> usize {
    let mut at = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("response body").into_data() {
            for (k, &b) in data.iter().enumerate() {
                assert_eq!(
                    b,
                    util::pattern_byte(7, at + k),
                    "byte {} of the echo",
                    at + k
                );
            }
            at += data.len();
        }
    }
    at
}

#[test]
fn a_16_mib_body_streams_to_echo_and_back() {
    const LEN: usize = 16 << 20;
    on_both_flavors(Duration::from_secs(60), || async {
        // The server reads through `HyperIo` (its adaptive read sizes), the client straight from the
        // socket.
        let server = Server::start(Config {
            wrap: true,
            ..HTTP1
        })
        .await;
        let addr = server.addr;
        let mut sender = client1(addr).await;
        let request = Request::post("/echo")
            .header(hyper::header::HOST, addr.to_string())
            .body(pattern_body(LEN, 64 * 1024))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(check_pattern(response.into_body()).await, LEN);
        server.shutdown().await;
    });
}

#[test]
fn h2c_with_a_hundred_concurrent_streams_on_one_connection() {
    on_both_flavors(Duration::from_secs(30), || async {
        let server = Server::start(Config {
            http2: true,
            ..HTTP1
        })
        .await;
        let addr = server.addr;
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = http2::handshake(HyperExecutor::new(), stream)
            .await
            .expect("h2 handshake");
        evloop::spawn(conn);
        // All requests are sent before any answer is read: 100 streams open at once.
        let (started_tx, started) = mpsc::unbounded::<()>();
        let (go_tx, go) = oneshot::channel::<()>();
        let go = go.shared();
        let streams: Vec<_> = (0..100)
            .map(|i| {
                let mut sender = sender.clone();
                let (started_tx, go) = (started_tx.clone(), go.clone());
                evloop::spawn(async move {
                    let body = format!("stream {i}");
                    let request = Request::post(format!("http://{addr}/echo"))
                        .body(Full::new(Bytes::from(body.clone())).boxed())
                        .unwrap();
                    let response = sender.send_request(request).await.expect("h2 request");
                    assert_eq!(response.version(), hyper::Version::HTTP_2);
                    started_tx.unbounded_send(()).unwrap();
                    let _ = go.await;
                    let echoed = response.into_body().collect().await.unwrap().to_bytes();
                    assert_eq!(echoed, body.as_bytes());
                })
            })
            .collect();
        drop(started_tx);
        // (`take`: the tasks keep their senders until `go`.)
        assert_eq!(
            started.take(100).count().await,
            100,
            "every stream has its response head"
        );
        drop(go_tx);
        for s in streams {
            s.await.expect("stream task");
        }
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
        server.shutdown().await;
    });
}

#[test]
fn the_header_read_timeout_closes_a_connection_that_sends_half_a_request() {
    const TIMEOUT: Duration = Duration::from_millis(200);
    on_both_flavors(Duration::from_secs(20), || async {
        let server = Server::start(Config {
            header_read_timeout: Some(TIMEOUT),
            ..HTTP1
        })
        .await;
        let start = Instant::now();
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        let read = evloop::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest));
        match read.await.expect("the server closes the connection") {
            Ok(_) => {}
            // Closing with our bytes unread may reset the connection instead: closed as well.
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
        }
        let took = start.elapsed();
        assert!(
            took >= TIMEOUT - Duration::from_millis(5),
            "closed after {took:?}"
        );
        // Nothing was answered to the half request (hyper may say 408).
        assert!(
            rest.is_empty() || rest.starts_with(b"HTTP/1.1 408"),
            "{rest:?}"
        );

        // A complete request within the timeout is served on a fresh connection.
        let mut sender = client1(server.addr).await;
        hello(&mut sender, server.addr).await;
        server.shutdown().await;
    });
}

#[test]
fn hyper_timer_reset_moves_the_same_timer() {
    for workers in [0, 2] {
        util::with_deadline(Duration::from_secs(10), move || {
            let rt = match workers {
                0 => Runtime::new(),
                n => Runtime::builder().worker_threads(n).build(),
            }
            .unwrap();
            rt.block_on(async {
                let timer = HyperTimer::new();
                let mut sleep = timer.sleep(Duration::from_secs(3600));
                // First poll arms it.
                assert!(poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx).is_pending())).await);
                assert_eq!(rt.timer_count(), 1);
                let start = Instant::now();
                timer.reset(&mut sleep, Instant::now() + Duration::from_millis(20));
                assert_eq!(rt.timer_count(), 1, "reset moved the timer, made none");
                assert!(
                    sleep.is::<evloop::time::Sleep>(),
                    "still evloop's Sleep, not a new box"
                );
                sleep.as_mut().await;
                let took = start.elapsed();
                assert!(took >= Duration::from_millis(19), "{took:?}");
                assert!(took < Duration::from_secs(5), "{took:?}");
                assert_eq!(rt.timer_count(), 0);
            });
        });
    }
}

#[test]
fn an_upgrade_to_a_custom_protocol_carries_bytes_both_ways_over_hyper_io() {
    on_both_flavors(Duration::from_secs(30), || async {
        let server = Server::start(HTTP1).await;
        let addr = server.addr;
        // The client's transport is `HyperIo<TcpStream>` (futures-io to hyper); the upgraded
        // connection, on both sides, `HyperIo<Upgraded>` (hyper to futures-io).
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = http1::handshake(HyperIo::new(stream)).await.unwrap();
        evloop::spawn(conn.with_upgrades());
        let request = Request::get("/upgrade")
            .header(hyper::header::HOST, addr.to_string())
            .header(hyper::header::CONNECTION, "upgrade")
            .header(hyper::header::UPGRADE, PROTOCOL)
            .body(empty())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        let upgraded = hyper::upgrade::on(response).await.expect("client upgrade");
        let mut io = HyperIo::new(upgraded);
        io.write_all(b"ping").await.unwrap();
        let mut pong = [0; 4];
        io.read_exact(&mut pong).await.unwrap();
        assert_eq!(&pong, b"pong");

        // 1 MiB echoed, writes and reads at once so neither side's buffers fill up.
        const LEN: usize = 1 << 20;
        let data: Vec<u8> = (0..LEN).map(|i| util::pattern_byte(3, i)).collect();
        let (mut reader, mut writer) = io.split();
        let write = async {
            writer.write_all(&data).await.unwrap();
            writer.close().await.unwrap();
        };
        let read = async {
            let mut back = Vec::with_capacity(LEN);
            reader.read_to_end(&mut back).await.unwrap();
            back
        };
        let ((), back) = futures::join!(write, read);
        assert!(
            back == data,
            "the echo differs ({} bytes of {LEN})",
            back.len()
        );
        server.shutdown().await;
    });
}

#[test]
fn graceful_shutdown_finishes_requests_in_flight_and_refuses_new_connections() {
    on_both_flavors(Duration::from_secs(20), || async {
        let mut server = Server::start(HTTP1).await;
        let addr = server.addr;
        // An idle keep-alive connection, and one with a slow request in flight.
        let mut idle = client1(addr).await;
        hello(&mut idle, addr).await;
        let mut busy = client1(addr).await;
        let in_flight = evloop::spawn(busy.send_request(get(addr, "/slow")));
        while server.accepted.load(Ordering::SeqCst) < 2 {
            evloop::time::sleep(Duration::from_millis(1)).await;
        }
        evloop::time::sleep(SLOW / 3).await; // the request has reached the handler

        let start = Instant::now();
        server.begin_shutdown().await;
        match TcpStream::connect(addr).await {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}"),
            Ok(_) => panic!("a connection was accepted after the shutdown began"),
        }
        let response = in_flight
            .await
            .unwrap()
            .expect("the request in flight is answered");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.into_body().collect().await.unwrap().to_bytes(),
            "slow"
        );
        // The idle connection was closed: it cannot carry another request.
        poll_fn(|cx| idle.poll_ready(cx))
            .await
            .expect_err("the idle connection is closed");
        let finished = evloop::time::timeout(Duration::from_secs(5), &mut server.finished);
        finished.await.expect("every connection finishes").unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
    });
}

#[test]
fn http_over_a_unix_socket() {
    on_both_flavors(Duration::from_secs(20), || async {
        let path = std::env::temp_dir().join(format!(
            "evloop-http-{}-{:?}.sock",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_file(&path);
        let listener = evloop::net::UnixListener::bind(&path).unwrap();
        let server = evloop::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            hyper::server::conn::http1::Builder::new()
                .serve_connection(stream, hyper::service::service_fn(handle))
                .await
                .unwrap();
        });
        let stream = evloop::net::UnixStream::connect(&path).await.unwrap();
        let (mut sender, conn) = http1::handshake(stream).await.unwrap();
        evloop::spawn(conn);
        for _ in 0..10 {
            sender.ready().await.unwrap();
            let request = Request::post("/echo")
                .header(hyper::header::HOST, "localhost")
                .body(pattern_body(100_000, 8192))
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(check_pattern(response.into_body()).await, 100_000);
        }
        drop(sender); // the client closes; the server's connection ends cleanly
        server.await.unwrap();
        let _ = std::fs::remove_file(&path);
    });
}

/// `examples/<name>`'s binary for the profile this test runs in: the one `cargo test` built alongside
/// (it builds the examples unless one test target is picked), or, if that is missing or older than
/// the sources, one built now with `cargo build --features hyper --example <name>`.
fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let binary = profile_dir.join("examples").join(name);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = [
        root.join("Cargo.toml"),
        root.join("src"),
        root.join(format!("examples/{name}.rs")),
    ];
    let built = std::fs::metadata(&binary).and_then(|m| m.modified()).ok();
    if built.is_some_and(|built| sources.iter().all(|s| newest_mtime(s) <= built)) {
        return binary;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(&cargo);
    build.current_dir(root);
    build.args(["build", "--quiet", "--features", "hyper", "--example", name]);
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
    assert!(
        status.success(),
        "`cargo build --features hyper --example {name}` failed"
    );
    binary
}

/// The latest modification time of `path` or, for a directory, of any file under it.
fn newest_mtime(path: &Path) -> SystemTime {
    let own = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    match std::fs::read_dir(path) {
        Ok(entries) => entries
            .flatten()
            .map(|e| newest_mtime(&e.path()))
            .fold(own, SystemTime::max),
        Err(_) => own,
    }
}

/// Runs `curl` with `args`; its standard output.
fn curl(args: &[&str]) -> String {
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

#[test]
fn the_example_server_answers_curl_and_stops_on_ctrl_c() {
    let server = example_binary("http_server");
    let body: Vec<u8> = (0..1 << 20).map(|i| util::pattern_byte(5, i)).collect();
    let dir = std::env::temp_dir();
    let upload = dir.join(format!("evloop-http-test-{}.in", std::process::id()));
    std::fs::write(&upload, &body).unwrap();
    // Current-thread, 2 workers, and h2c.
    for flags in [&[][..], &["--threads", "2"], &["--http2"]] {
        let mut child = Command::new(&server)
            .args(["--addr", "127.0.0.1:0"])
            .args(flags)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start examples/http_server");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let url = line.trim().rsplit(' ').next().unwrap().to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{line:?}");
        let version = if flags == ["--http2"] {
            "--http2-prior-knowledge"
        } else {
            "--http1.1"
        };

        let hello = curl(&[
            version,
            "-w",
            "%{http_code} %{http_version}",
            &format!("{url}/"),
        ]);
        let expected_version = if flags == ["--http2"] { "2" } else { "1.1" };
        assert_eq!(
            hello,
            format!("Hello, world!\n200 {expected_version}"),
            "{flags:?}"
        );

        let echoed = dir.join(format!("evloop-http-test-{}.out", std::process::id()));
        let data = format!("@{}", upload.display());
        let out = echoed.to_str().unwrap();
        let status = curl(&[
            version,
            "--data-binary",
            &data,
            "-o",
            out,
            "-w",
            "%{http_code}",
            &format!("{url}/echo"),
        ]);
        assert_eq!(status, "200");
        assert!(
            std::fs::read(&echoed).unwrap() == body,
            "the 1 MiB echo differs ({flags:?})"
        );
        let _ = std::fs::remove_file(&echoed);
        assert_eq!(
            curl(&[
                version,
                "-w",
                "%{http_code}",
                "-o",
                "/dev/null",
                &format!("{url}/nope")
            ]),
            "404"
        );

        // Ctrl-C: the server stops accepting, finishes, and exits 0.
        // SAFETY: `kill` has no memory preconditions; the pid is our live child's.
        assert_eq!(
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
            0
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("http_server {flags:?} did not exit within 10 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(
            status.success(),
            "http_server {flags:?} exited with {status}"
        );
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        assert!(rest.contains("done"), "{rest:?}");
    }
    let _ = std::fs::remove_file(&upload);
}
