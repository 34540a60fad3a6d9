//! An HTTP client on hyper and evloop: GETs (or POSTs `--data`) an `http://` URL and prints the
//! status, the headers and the body's size. With `--conns`/`--requests` it is a small load generator.
//!
//! ```text
//! cargo run --release --features hyper --example http_client -- [--data TEXT] [--http2] [--conns C] [--requests N] http://127.0.0.1:8080/
//! ```
//!
//! `--conns C --requests N` opens C connections and sends N requests on each, one at a time
//! (keep-alive), then prints the requests per second and the latency percentiles. `--http2` speaks
//! HTTP/2 with prior knowledge (h2c). Start `examples/http_server.rs` first.

use std::time::{Duration, Instant};

use bytes::Bytes;
use evloop::hyper::HyperExecutor;
use evloop::net::TcpStream;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper::{Method, Request, Uri};

type Error = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str =
    "usage: http_client [--data TEXT] [--http2] [--conns C] [--requests N] http://HOST[:PORT]/PATH";

struct Args {
    uri: Uri,
    data: Option<Bytes>,
    http2: bool,
    conns: usize,
    requests: usize,
}

fn main() {
    let args = parse_args();
    if let Err(e) = evloop::block_on(run(args)) {
        eprintln!("http_client: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Error> {
    let args = std::sync::Arc::new(args);
    // The first response is printed in full.
    let mut conn = Conn::open(&args).await?;
    let response = conn.send(&args).await?;
    println!("{:?} {}", response.version(), response.status());
    for (name, value) in response.headers() {
        println!("{name}: {}", value.to_str().unwrap_or("<not UTF-8>"));
    }
    let size = response.into_body().collect().await?.to_bytes().len();
    println!("body: {size} bytes");
    if args.conns * args.requests <= 1 {
        return Ok(());
    }

    let start = Instant::now();
    let tasks: Vec<_> = (0..args.conns)
        .map(|_| {
            let args = args.clone();
            evloop::spawn(async move { load(&args).await })
        })
        .collect();
    let mut latencies = Vec::with_capacity(args.conns * args.requests);
    for task in tasks {
        latencies.extend(task.await.map_err(|e| format!("load task: {e}"))??);
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "{} requests over {} connections in {:.2?}: {:.0} requests/s, p50 {:?}, p99 {:?}",
        latencies.len(),
        args.conns,
        elapsed,
        latencies.len() as f64 / elapsed.as_secs_f64(),
        at(0.50),
        at(0.99),
    );
    Ok(())
}

/// One connection's share of the load: `requests` requests, one at a time; their latencies.
async fn load(args: &Args) -> Result<Vec<Duration>, Error> {
    let mut conn = Conn::open(args).await?;
    let mut latencies = Vec::with_capacity(args.requests);
    for _ in 0..args.requests {
        let start = Instant::now();
        let response = conn.send(args).await?;
        if !response.status().is_success() {
            return Err(format!("{} answered {}", args.uri, response.status()).into());
        }
        response.into_body().collect().await?;
        latencies.push(start.elapsed());
    }
    Ok(latencies)
}

/// A connection's request half; its I/O is driven by a task of its own.
enum Conn {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

impl Conn {
    async fn open(args: &Args) -> Result<Conn, Error> {
        let host = args.uri.host().ok_or("the URL has no host")?;
        let port = args.uri.port_u16().unwrap_or(80);
        let stream = TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        Ok(if args.http2 {
            let (sender, conn) = http2::handshake(HyperExecutor::new(), stream).await?;
            evloop::spawn(conn);
            Conn::Http2(sender)
        } else {
            let (sender, conn) = http1::handshake(stream).await?;
            evloop::spawn(conn);
            Conn::Http1(sender)
        })
    }

    async fn send(&mut self, args: &Args) -> Result<hyper::Response<hyper::body::Incoming>, Error> {
        let method = if args.data.is_some() {
            Method::POST
        } else {
            Method::GET
        };
        let mut request = Request::builder().method(method);
        // HTTP/2 carries the authority in the URI; HTTP/1.1 wants the path and a Host header.
        request = match self {
            Conn::Http2(_) => request.uri(args.uri.clone()),
            Conn::Http1(_) => {
                let path = args.uri.path_and_query().map_or("/", |p| p.as_str());
                let authority = args.uri.authority().map_or("", |a| a.as_str());
                request.uri(path).header(hyper::header::HOST, authority)
            }
        };
        let request = request.body(Full::new(args.data.clone().unwrap_or_default()))?;
        Ok(match self {
            // Ready once the connection's task has finished the previous exchange.
            Conn::Http1(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
            Conn::Http2(sender) => sender.send_request(request).await?,
        })
    }
}

/// The URL, `--data`, `--http2`, `--conns`, `--requests`, `--help`; a bad flag exits with status 2.
fn parse_args() -> Args {
    let mut uri = None;
    let mut data = None;
    let mut http2 = false;
    let (mut conns, mut requests) = (1, 1);
    let mut args = std::env::args().skip(1);
    let number = |v: Option<String>, flag: &str| -> usize {
        match v.and_then(|v| v.parse().ok()) {
            Some(n) if n > 0 => n,
            _ => bad(&format!("{flag} takes a number above 0")),
        }
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--http2" => http2 = true,
            "--data" => {
                let text = args.next().unwrap_or_else(|| bad("--data needs a value"));
                data = Some(Bytes::from(text));
            }
            "--conns" => conns = number(args.next(), "--conns"),
            "--requests" => requests = number(args.next(), "--requests"),
            flag if flag.starts_with('-') => bad(&format!("unknown flag {flag}")),
            url => match url.parse::<Uri>() {
                Ok(u) if u.scheme_str() == Some("http") && u.host().is_some() => uri = Some(u),
                _ => bad(&format!(
                    "{url} is not an http:// URL (https needs TLS, which this example lacks)"
                )),
            },
        }
    }
    let uri = uri.unwrap_or_else(|| bad("no URL given"));
    Args {
        uri,
        data,
        http2,
        conns,
        requests,
    }
}

fn bad(problem: &str) -> ! {
    eprintln!("http_client: {problem}\n{USAGE}");
    std::process::exit(2);
}
