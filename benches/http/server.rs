//! The peer: hyper's HTTP/1.1 server on hyper-util's tokio glue (`TokioIo`, `TokioTimer`), on a tokio
//! current_thread or multi_thread runtime. The service is `examples/http_server.rs`'s `GET /`.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::Opts;

/// The body of `GET /`, as `examples/http_server.rs` sends it.
const HELLO: &str = "Hello, world!\n";

/// How long a connection may take to send a request's headers: hyper's default once a timer is set,
/// as in `examples/http_server.rs`.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn run(opts: &Opts) -> io::Result<()> {
    let addr: SocketAddr = opts
        .str("addr", "127.0.0.1:7100")
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("--addr: {e}")))?;
    let runtime = match opts.str("flavor", "current_thread").as_str() {
        "current_thread" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        "multi_thread" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.num("threads", 2)? as usize)
            .enable_all()
            .build()?,
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--flavor {other}: use current_thread or multi_thread"),
            ))
        }
    };
    runtime.block_on(serve(addr))
}

async fn serve(addr: SocketAddr) -> io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning on the error.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(hello));
            // A client that goes away mid-request is not the server's failure.
            let _ = conn.await;
        });
    }
}

async fn hello(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = if req.uri().path() == "/" && req.method() == hyper::Method::GET {
        // No headers of its own: hyper adds content-length and date, as on evloop.
        Response::builder().body(Full::new(Bytes::from_static(HELLO.as_bytes())))
    } else {
        Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(b"not found\n")))
    };
    Ok(response.expect("a valid static response"))
}
