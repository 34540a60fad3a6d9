//! hyper on evloop (`evloop::hyper`, feature `hyper`): servers and clients both on evloop over loopback,
//! every case on a current-thread and on a 2-worker runtime; and `examples/http_server.rs` driven by
//! `curl`.
//!
//! ```text
//! cargo test --features hyper --test http
//! ```

mod util;

use std::future::poll_fn;
use std::io::{self, Read};
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use evloop::hyper::{HyperExecutor, HyperIo, HyperTimer};
use evloop::net::TcpStream;
use futures::channel::{mpsc, oneshot};
use futures::future::FutureExt;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper::rt::Timer;
use hyper::{Request, StatusCode};

use util::http::{
    check_pattern, client1, curl, empty, get, handle, hello, pattern_body, Config, Server, HELLO,
    HTTP1, PROTOCOL, SLOW_STARTED,
};
use util::{on_each_flavor_within, on_each_runtime, ExampleServer};

#[test]
fn a_thousand_keep_alive_requests_on_one_connection() {
    on_each_flavor_within(Duration::from_secs(30), || async {
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
    on_each_flavor_within(Duration::from_secs(60), || async {
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

#[test]
fn a_16_mib_body_streams_to_echo_and_back() {
    const LEN: usize = 16 << 20;
    on_each_flavor_within(Duration::from_secs(60), || async {
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
    on_each_flavor_within(Duration::from_secs(30), || async {
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
    on_each_flavor_within(Duration::from_secs(20), || async {
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
    on_each_runtime(Duration::from_secs(10), |rt| {
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

#[test]
fn an_upgrade_to_a_custom_protocol_carries_bytes_both_ways_over_hyper_io() {
    on_each_flavor_within(Duration::from_secs(30), || async {
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
    on_each_flavor_within(Duration::from_secs(20), || async {
        let mut server = Server::start(HTTP1).await;
        let addr = server.addr;
        // An idle keep-alive connection, and one with a slow request in flight.
        let mut idle = client1(addr).await;
        hello(&mut idle, addr).await;
        let mut busy = client1(addr).await;
        let started = SLOW_STARTED.load(Ordering::SeqCst);
        let in_flight = evloop::spawn(busy.send_request(get(addr, "/slow")));
        // Bounded by the test's deadline.
        while SLOW_STARTED.load(Ordering::SeqCst) == started {
            evloop::time::sleep(Duration::from_millis(1)).await;
        }

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
    on_each_flavor_within(Duration::from_secs(20), || async {
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

/// A reader that records what it is offered and answers `reply` bytes a read.
struct Recorder {
    /// Per read: the length offered and its first byte.
    offered: Vec<(usize, Option<u8>)>,
    reply: usize,
}

impl futures::AsyncRead for Recorder {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.offered.push((buf.len(), buf.first().copied()));
        let n = self.reply.min(buf.len());
        buf[..n].fill(b'x');
        Poll::Ready(Ok(n))
    }
}

#[test]
fn hyper_io_zeroes_only_what_a_read_is_offered_and_never_initialized_bytes() {
    use hyper::rt::ReadBuf;
    use std::mem::MaybeUninit;

    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut read = |io: &mut HyperIo<Recorder>, buf: &mut ReadBuf<'_>| {
        let polled = hyper::rt::Read::poll_read(std::pin::Pin::new(io), &mut cx, buf.unfilled());
        assert!(matches!(polled, Poll::Ready(Ok(()))));
    };

    // Bytes the buffer holds initialized reach the reader as they are: not zeroed again.
    let mut io = HyperIo::new(Recorder {
        offered: Vec::new(),
        reply: 10,
    });
    let mut initialized = vec![0xAA; 64 * 1024];
    let mut buf = ReadBuf::new(&mut initialized);
    read(&mut io, &mut buf);
    assert_eq!(
        io.get_ref().offered[0],
        (2048, Some(0xAA)),
        "2 KiB offered first, unzeroed"
    );
    assert_eq!(buf.filled(), b"xxxxxxxxxx");

    // Small reads from an uninitialized buffer: the part offered (and zeroed) shrinks to 512 bytes.
    let mut raw = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
    for _ in 0..6 {
        read(&mut io, &mut ReadBuf::uninit(&mut raw));
    }
    let sizes: Vec<usize> = io.get_ref().offered.iter().map(|o| o.0).collect();
    assert_eq!(sizes, [2048, 1024, 512, 512, 512, 512, 512]);

    // Reads that fill what they are offered: it doubles, up to what the buffer has room for.
    io.get_mut().reply = usize::MAX;
    for _ in 0..10 {
        read(&mut io, &mut ReadBuf::uninit(&mut raw));
    }
    let sizes: Vec<usize> = io.get_ref().offered[7..].iter().map(|o| o.0).collect();
    assert_eq!(
        sizes,
        [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 65536, 65536]
    );
    assert_eq!(io.into_inner().offered.len(), 17);
}

#[test]
fn the_example_server_answers_curl_and_stops_on_ctrl_c() {
    let body: Vec<u8> = (0..1 << 20).map(|i| util::pattern_byte(5, i)).collect();
    let dir = std::env::temp_dir();
    let upload = dir.join(format!("evloop-http-test-{}.in", std::process::id()));
    std::fs::write(&upload, &body).unwrap();
    // Current-thread, 2 workers, and h2c.
    for flags in [&[][..], &["--threads", "2"], &["--http2"]] {
        let mut server = ExampleServer::start_with("http_server", flags);
        let line = &server.first_line;
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
        let status = server.interrupt(Duration::from_secs(10));
        assert!(
            status.success(),
            "http_server {flags:?} exited with {status}"
        );
        let mut rest = String::new();
        server.stdout.read_to_string(&mut rest).unwrap();
        assert!(rest.contains("done"), "{rest:?}");
    }
    let _ = std::fs::remove_file(&upload);
}
