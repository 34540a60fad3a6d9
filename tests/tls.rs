//! TLS on evloop with futures-rustls, which speaks futures-io: evloop's `TcpStream` goes into
//! `TlsAcceptor::accept` / `TlsConnector::connect` as it is. The certificate is made at test time with
//! rcgen. An echo over TLS (many connections at once, every byte checked, close_notify at the end),
//! handshakes that must fail (unknown issuer, wrong name), and (feature `hyper`) HTTPS through
//! `evloop::hyper`: HTTP/1.1 and HTTP/2 chosen by ALPN, on both runtime flavors.
//!
//! Linux only, because of the crates and not of evloop: rustls's crypto provider (ring) compiles C and
//! assembly in its build script, which the macOS/BSD cross-checks (`cargo check -Zbuild-std`, no C cross
//! compiler) cannot build; the dev-dependencies are Linux-only in Cargo.toml for the same reason.
#![cfg(target_os = "linux")]

mod util;

use std::net::SocketAddr;
use std::sync::Arc;

use evloop::net::{TcpListener, TcpStream};
use futures::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use futures_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use futures_rustls::{TlsAcceptor, TlsConnector};

use util::{on_each_flavor, pattern_byte};

/// A self-signed certificate for "localhost", the acceptor that presents it and a connector that
/// trusts it (and nothing else).
struct Tls {
    /// Offers ALPN "h2" and "http/1.1" (a client that asks for neither gets no ALPN).
    acceptor: TlsAcceptor,
    /// Asks for no ALPN protocol.
    connector: TlsConnector,
    /// The certificate, for a connector of other settings.
    #[cfg_attr(not(feature = "hyper"), allow(dead_code))]
    cert: CertificateDer<'static>,
}

/// The provider named explicitly, so the test does not depend on which provider features other crates
/// in the build happen to enable.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config that trusts exactly `roots`.
fn client_config(roots: &[CertificateDer<'static>]) -> ClientConfig {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).expect("a valid root certificate");
    }
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the provider supports TLS 1.2 and 1.3")
        .with_root_certificates(store)
        .with_no_client_auth()
}

fn tls() -> Tls {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("generate a certificate");
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("the key matches the certificate");
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Tls {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        connector: TlsConnector::from(Arc::new(client_config(std::slice::from_ref(&cert)))),
        cert,
    }
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a valid DNS name")
}

/// Accepts `conns` connections; each is a TLS echo until the client's close_notify, then closed with
/// one of its own. Returns the bytes echoed per connection.
async fn echo_server(listener: TcpListener, acceptor: TlsAcceptor, conns: usize) -> Vec<u64> {
    let mut handlers = Vec::new();
    for _ in 0..conns {
        let (stream, _) = listener.accept().await.expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        let acceptor = acceptor.clone();
        handlers.push(evloop::spawn(async move {
            let tls = acceptor.accept(stream).await.expect("server handshake");
            let (mut reader, mut writer) = tls.split();
            let n = futures::io::copy(&mut reader, &mut writer)
                .await
                .expect("echo");
            // Sends close_notify, then shuts the TCP write side down.
            writer.close().await.expect("close");
            n
        }));
    }
    let mut echoed = Vec::new();
    for h in handlers {
        echoed.push(h.await.unwrap());
    }
    echoed
}

/// Sends `len` pattern bytes (seed `seed`) over TLS while reading the echo, checks every byte, and
/// checks that the server's close_notify ends the stream cleanly.
async fn echo_client(addr: SocketAddr, connector: TlsConnector, seed: usize, len: usize) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let tls = connector
        .connect(localhost(), stream)
        .await
        .expect("client handshake");
    let (mut reader, mut writer) = tls.split();
    let send = async move {
        let data: Vec<u8> = (0..len).map(|i| pattern_byte(seed, i)).collect();
        // Uneven writes, so records and reads do not line up with them.
        for chunk in data.chunks(7_919) {
            writer.write_all(chunk).await.expect("write");
        }
        writer.close().await.expect("close_notify");
    };
    let receive = async move {
        let mut got = Vec::with_capacity(len);
        // read_to_end returns Ok only on a clean close_notify from the server.
        reader.read_to_end(&mut got).await.expect("read the echo");
        assert_eq!(got.len(), len, "echoed length");
        if let Some(i) = (0..len).find(|&i| got[i] != pattern_byte(seed, i)) {
            panic!("byte {i} of connection {seed} differs");
        }
    };
    futures::join!(send, receive);
}

#[test]
fn echo_over_tls_on_many_connections() {
    on_each_flavor(|| async {
        const CONNS: usize = 16;
        let Tls {
            acceptor,
            connector,
            ..
        } = tls();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let server = evloop::spawn(echo_server(listener, acceptor, CONNS + 1));
        // One large stream (1 MiB, many full TLS records in flight both ways) and many small ones.
        let mut clients = vec![evloop::spawn(echo_client(
            addr,
            connector.clone(),
            0,
            1 << 20,
        ))];
        for c in 1..=CONNS {
            clients.push(evloop::spawn(echo_client(
                addr,
                connector.clone(),
                c,
                c * 10_007,
            )));
        }
        for c in clients {
            c.await.unwrap();
        }
        let mut echoed = server.await.unwrap();
        echoed.sort_unstable();
        let mut expected: Vec<u64> = (1..=CONNS as u64).map(|c| c * 10_007).collect();
        expected.push(1 << 20);
        expected.sort_unstable();
        assert_eq!(echoed, expected);
    });
}

#[test]
fn handshakes_with_an_unknown_issuer_or_a_wrong_name_fail() {
    on_each_flavor(|| async {
        let Tls {
            acceptor,
            connector,
            ..
        } = tls();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let server = evloop::spawn(async move {
            let mut failures = 0;
            for _ in 0..2 {
                let (stream, _) = listener.accept().await.expect("accept");
                // The client aborts with an alert: the server's handshake fails, it does not hang.
                if acceptor.accept(stream).await.is_err() {
                    failures += 1;
                }
            }
            failures
        });

        // A client that trusts a different certificate.
        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let stranger = TlsConnector::from(Arc::new(client_config(&[other.cert.der().clone()])));
        let stream = TcpStream::connect(addr).await.expect("connect");
        let err = stranger
            .connect(localhost(), stream)
            .await
            .expect_err("a certificate from an unknown issuer is refused");
        // (rustls says UnknownIssuer or, as rcgen gives both certificates the same issuer name,
        // BadSignature.)
        assert!(
            err.to_string().contains("invalid peer certificate"),
            "unexpected error: {err}"
        );

        // A client that trusts the server's certificate but asks for another name.
        let stream = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from("example.com").unwrap();
        let err = connector
            .connect(name, stream)
            .await
            .expect_err("a certificate for another name is refused");
        assert!(
            err.to_string().contains("not valid for name"),
            "unexpected error: {err}"
        );
        assert_eq!(server.await.unwrap(), 2);
    });
}

/// HTTPS: hyper over futures-rustls over evloop's `TcpStream`, joined by `evloop::hyper::HyperIo`.
#[cfg(feature = "hyper")]
mod https {
    use super::*;

    use std::convert::Infallible;

    use bytes::Bytes;
    use evloop::hyper::{HyperExecutor, HyperIo, HyperTimer};
    use http_body_util::BodyExt;
    use hyper::body::Incoming;
    use hyper::{Method, Request, Response, StatusCode};

    use crate::util::http::{full, Body};

    /// `GET /` says which protocol served it; `POST /echo` streams the body back.
    async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        let response = match (req.method(), req.uri().path()) {
            (&Method::GET, "/") => Response::new(full(format!("hello over {:?}", req.version()))),
            (&Method::POST, "/echo") => Response::new(req.into_body().boxed()),
            _ => {
                let mut r = Response::new(full("not found"));
                *r.status_mut() = StatusCode::NOT_FOUND;
                r
            }
        };
        Ok(response)
    }

    /// Accepts TLS connections and serves each with HTTP/2 or HTTP/1.1, as ALPN chose.
    async fn https_server(listener: TcpListener, acceptor: TlsAcceptor) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            evloop::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let service = hyper::service::service_fn(handle);
                let io = HyperIo::new(tls);
                // A client that goes away is not the server's failure; the client checks the answers.
                let _ = if h2 {
                    hyper::server::conn::http2::Builder::new(HyperExecutor::new())
                        .timer(HyperTimer::new())
                        .serve_connection(io, service)
                        .await
                } else {
                    hyper::server::conn::http1::Builder::new()
                        .timer(HyperTimer::new())
                        .serve_connection(io, service)
                        .await
                };
            });
        }
    }

    /// A TLS connection to the server that asks ALPN for `protocol`.
    async fn connect(
        addr: SocketAddr,
        cert: &CertificateDer<'static>,
        protocol: &[u8],
    ) -> HyperIo<futures_rustls::client::TlsStream<TcpStream>> {
        let mut config = client_config(std::slice::from_ref(cert));
        config.alpn_protocols = vec![protocol.to_vec()];
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let tls = TlsConnector::from(Arc::new(config))
            .connect(localhost(), stream)
            .await
            .expect("client handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(protocol));
        HyperIo::new(tls)
    }

    fn pattern(seed: usize, len: usize) -> Vec<u8> {
        (0..len).map(|i| pattern_byte(seed, i)).collect()
    }

    async fn text(response: Response<Incoming>) -> Vec<u8> {
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.expect("the body");
        body.to_bytes().to_vec()
    }

    #[test]
    fn https_1_1_keep_alive_and_a_streamed_echo() {
        on_each_flavor(|| async {
            let Tls { acceptor, cert, .. } = tls();
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().unwrap();
            evloop::spawn(https_server(listener, acceptor));

            let io = connect(addr, &cert, b"http/1.1").await;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("HTTP/1.1 handshake");
            evloop::spawn(conn);
            // 200 requests on one TLS connection.
            for _ in 0..200 {
                sender.ready().await.expect("the connection stays open");
                let req = Request::get("/")
                    .header(hyper::header::HOST, "localhost")
                    .body(full(Bytes::new()))
                    .unwrap();
                let response = sender.send_request(req).await.expect("GET /");
                assert_eq!(text(response).await, b"hello over HTTP/1.1");
            }
            // 1 MiB up and back on the same connection.
            let data = pattern(7, 1 << 20);
            sender.ready().await.unwrap();
            let req = Request::post("/echo")
                .header(hyper::header::HOST, "localhost")
                .body(full(data.clone()))
                .unwrap();
            let response = sender.send_request(req).await.expect("POST /echo");
            assert!(text(response).await == data, "the echoed body differs");
        });
    }

    #[test]
    fn https_2_concurrent_streams_on_one_connection() {
        on_each_flavor(|| async {
            const STREAMS: usize = 50;
            let Tls { acceptor, cert, .. } = tls();
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().unwrap();
            evloop::spawn(https_server(listener, acceptor));

            let io = connect(addr, &cert, b"h2").await;
            let (sender, conn) = hyper::client::conn::http2::Builder::new(HyperExecutor::new())
                .timer(HyperTimer::new())
                .handshake(io)
                .await
                .expect("HTTP/2 handshake");
            evloop::spawn(conn);
            let streams: Vec<_> = (0..STREAMS)
                .map(|s| {
                    let mut sender = sender.clone();
                    evloop::spawn(async move {
                        sender.ready().await.expect("the connection is open");
                        let hello = Request::get("https://localhost/")
                            .body(full(Bytes::new()))
                            .unwrap();
                        let response = sender.send_request(hello).await.expect("GET /");
                        assert_eq!(text(response).await, b"hello over HTTP/2.0");
                        let data = pattern(s, 20_000 + s * 1_000);
                        let echo = Request::post("https://localhost/echo")
                            .body(full(data.clone()))
                            .unwrap();
                        let response = sender.send_request(echo).await.expect("POST /echo");
                        assert!(text(response).await == data, "stream {s}: the echo differs");
                    })
                })
                .collect();
            for s in streams {
                s.await.unwrap();
            }
        });
    }
}
