//! An HTTP/1.1 server on hyper and evloop: `GET /` answers "Hello, world!", `POST /echo` streams the
//! request body back as it arrives. Ctrl-C stops accepting and lets requests in flight finish.
//!
//! ```text
//! cargo run --release --features hyper --example http_server -- [--addr 127.0.0.1:8080] [--threads N] [--http2]
//! ```
//!
//! `--threads N` runs on a multi-thread runtime with N workers (0, the default: current-thread
//! `evloop::block_on`). `--http2` speaks HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1. Try it
//! with `curl http://127.0.0.1:8080/`, `curl --data-binary @file http://127.0.0.1:8080/echo`, or
//! `cargo run --release --features hyper --example http_client -- http://127.0.0.1:8080/`.

use std::convert::Infallible;
use std::pin::pin;

use bytes::Bytes;
use evloop::hyper::{HyperExecutor, HyperTimer};
use evloop::net::{TcpListener, TcpStream};
use evloop::signal::{signal, SignalKind};
use futures::channel::{mpsc, oneshot};
use futures::future::{select, Either, FutureExt, Shared};
use futures::StreamExt;
use http_body_util::{Either as Body, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

const USAGE: &str = "usage: http_server [--addr 127.0.0.1:8080] [--threads N] [--http2]";

fn main() {
    let (addr, threads, http2) = parse_args();
    let server = serve(addr, http2);
    let result = match threads {
        0 => evloop::block_on(server),
        n => evloop::Runtime::builder()
            .worker_threads(n)
            .build()
            .and_then(|rt| rt.block_on(server)),
    };
    if let Err(e) = result {
        eprintln!("http_server: {e}");
        std::process::exit(1);
    }
}

/// `GET /` and `POST /echo`; the hello body is a static slice, so the hot path allocates nothing of
/// its own.
async fn handle(
    req: Request<Incoming>,
) -> Result<Response<Body<Full<Bytes>, Incoming>>, Infallible> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => (
            StatusCode::OK,
            Body::Left(Full::new(Bytes::from_static(b"Hello, world!\n"))),
        ),
        (&Method::POST, "/echo") => (StatusCode::OK, Body::Right(req.into_body())),
        _ => (
            StatusCode::NOT_FOUND,
            Body::Left(Full::new(Bytes::from_static(b"not found\n"))),
        ),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    Ok(response)
}

async fn serve(addr: String, http2: bool) -> std::io::Result<()> {
    // Listening for SIGINT before announcing the address: from then on Ctrl-C cannot kill the process
    // mid-request.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let listener = TcpListener::bind(addr.as_str()).await?;
    println!("http_server listening on http://{}", listener.local_addr()?);

    // Every connection holds a clone of `stop` (completes when Ctrl-C drops `stop_tx`) and of `alive`
    // (the receiver ends once the last clone is dropped).
    let (stop_tx, stop) = oneshot::channel::<()>();
    let stop = stop.shared();
    let (alive, mut all_done) = mpsc::channel::<()>(0);
    loop {
        let accepted = match select(pin!(listener.accept()), pin!(interrupt.recv())).await {
            Either::Left((accepted, _)) => accepted,
            Either::Right(_) => break,
        };
        match accepted {
            Ok((stream, _peer)) => {
                evloop::spawn(connection(stream, http2, stop.clone(), alive.clone()));
            }
            // E.g. out of descriptors: reported; the next accept waits until one is free.
            Err(e) => eprintln!("accept: {e}"),
        }
    }

    drop(listener); // new connections are refused from here on
    drop(stop_tx);
    drop(alive);
    println!("http_server: shutting down, letting requests in flight finish");
    all_done.next().await;
    println!("http_server: done");
    Ok(())
}

/// Serves one connection until the client closes it or, after `stop`, until its requests in flight
/// are answered.
async fn connection(
    stream: TcpStream,
    http2: bool,
    stop: Shared<oneshot::Receiver<()>>,
    _alive: mpsc::Sender<()>,
) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let service = hyper::service::service_fn(handle);
    let result = if http2 {
        let mut builder = hyper::server::conn::http2::Builder::new(HyperExecutor::new());
        builder.timer(HyperTimer::new());
        let mut conn = pin!(builder.serve_connection(stream, service));
        match select(conn.as_mut(), stop).await {
            Either::Left((done, _)) => done,
            Either::Right(_) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    } else {
        let mut builder = hyper::server::conn::http1::Builder::new();
        // The timer enforces hyper's header-read timeout (30 s): a client cannot hold a connection
        // open by sending half a request.
        builder.timer(HyperTimer::new());
        let mut conn = pin!(builder.serve_connection(stream, service));
        match select(conn.as_mut(), stop).await {
            Either::Left((done, _)) => done,
            Either::Right(_) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    };
    if let Err(e) = result {
        // A client that goes away mid-request is routine; anything else is worth a line.
        if !e.is_incomplete_message() {
            eprintln!("connection: {e}");
        }
    }
}

/// `--addr HOST:PORT`, `--threads N`, `--http2`, `--help`; a bad flag exits with status 2.
fn parse_args() -> (String, usize, bool) {
    let mut addr = "127.0.0.1:8080".to_string();
    let mut threads = 0;
    let mut http2 = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--http2" => http2 = true,
            "--addr" => addr = args.next().unwrap_or_else(|| bad("--addr needs HOST:PORT")),
            "--threads" => {
                threads = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| bad("--threads takes a number"))
            }
            _ => bad(&format!("unknown flag {flag}")),
        }
    }
    (addr, threads, http2)
}

fn bad(problem: &str) -> ! {
    eprintln!("http_server: {problem}\n{USAGE}");
    std::process::exit(2);
}
