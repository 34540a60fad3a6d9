//! The peer servers: tokio current_thread and multi_thread, smol's `LocalExecutor`, and the
//! hand-written readiness loop on mio that is the floor for readiness-based servers.

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::Opts;

/// Per-connection buffer of every peer server: one 16 KiB chunk of the streaming scenario in one read.
const SERVER_BUF: usize = 16 * 1024;

pub(crate) fn server(args: &[String]) -> io::Result<()> {
    let kind = args.first().map(String::as_str).unwrap_or("");
    let addr = Opts::parse(args).addr()?;
    match kind {
        "tokio-ct" => tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?
            .block_on(tokio_server(addr)),
        "tokio-mt" => tokio::runtime::Builder::new_multi_thread()
            .enable_io()
            .build()?
            .block_on(tokio_server(addr)),
        "smol" => smol_server(addr),
        "mio" => mio_server(addr),
        other => Err(io::Error::new(
            ErrorKind::InvalidInput,
            format!("unknown server {other:?}: use tokio-ct, tokio-mt, smol or mio"),
        )),
    }
}

async fn tokio_server(addr: SocketAddr) -> io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => drop(tokio::spawn(tokio_conn(stream))),
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::task::yield_now().await;
            }
        }
    }
}

async fn tokio_conn(mut stream: tokio::net::TcpStream) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.set_nodelay(true)?;
    // The buffer is allocated on the first byte, so an idle connection costs only the task. (A fresh
    // stream's `readable()` resolves at once in tokio, hence the one-byte peek: one extra syscall per
    // connection, none per message.)
    stream.peek(&mut [0u8; 1]).await?;
    let mut buf = vec![0u8; SERVER_BUF];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

fn smol_server(addr: SocketAddr) -> io::Result<()> {
    use std::rc::Rc;
    let ex = Rc::new(smol::LocalExecutor::new());
    let spawner = ex.clone();
    smol::block_on(ex.run(async move {
        let listener = smol::Async::<std::net::TcpListener>::bind(addr)?;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => spawner.spawn(smol_conn(stream)).detach(),
                Err(e) => {
                    eprintln!("accept: {e}");
                    smol::future::yield_now().await;
                }
            }
        }
    }))
}

async fn smol_conn(mut stream: smol::Async<std::net::TcpStream>) -> io::Result<()> {
    use smol::io::{AsyncReadExt, AsyncWriteExt};
    stream.get_ref().set_nodelay(true)?;
    stream.readable().await?;
    let mut buf = vec![0u8; SERVER_BUF];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

/// One connection of the hand-written server.
struct MioConn {
    stream: TcpStream,
    /// Empty until the first readable event, so idle connections hold no buffer.
    buf: Vec<u8>,
    /// `buf[start..end]` was read but not yet written back.
    start: usize,
    end: usize,
}

/// The floor for readiness-based servers: edge-triggered, registered once for both directions (no
/// `epoll_ctl` per message), reads until a short read or WouldBlock, keeps unsent bytes.
fn mio_server(addr: SocketAddr) -> io::Result<()> {
    const LISTENER: Token = Token(usize::MAX);
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut listener = TcpListener::bind(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns = slab::Slab::<MioConn>::new();
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            stream.set_nodelay(true)?;
                            let entry = conns.vacant_entry();
                            let token = Token(entry.key());
                            poll.registry().register(
                                &mut stream,
                                token,
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            entry.insert(MioConn {
                                stream,
                                buf: Vec::new(),
                                start: 0,
                                end: 0,
                            });
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => {
                            // EMFILE and friends: give up on this edge; the next connection retries.
                            eprintln!("accept: {e}");
                            break;
                        }
                    }
                }
                continue;
            }
            let key = ev.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            if conn.buf.is_empty() && !ev.is_readable() {
                continue; // the first "writable" edge of a fresh, idle connection
            }
            if !mio_echo(conn) {
                let mut conn = conns.remove(key);
                let _ = poll.registry().deregister(&mut conn.stream);
            }
        }
    }
}

/// Moves bytes until the socket has nothing more to give or cannot take more; false closes it.
fn mio_echo(c: &mut MioConn) -> bool {
    if c.buf.is_empty() {
        c.buf = vec![0u8; SERVER_BUF];
    }
    loop {
        while c.start < c.end {
            match c.stream.write(&c.buf[c.start..c.end]) {
                Ok(n) => c.start += n,
                // Wait for the writable edge; reading more now would only grow what we owe.
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        match c.stream.read(&mut c.buf) {
            Ok(0) => return false,
            Ok(n) => {
                (c.start, c.end) = (0, n);
                let drained = n < c.buf.len();
                while c.start < c.end {
                    match c.stream.write(&c.buf[c.start..c.end]) {
                        Ok(n) => c.start += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => return false,
                    }
                }
                // A short read means the socket was drained: the next byte brings a new edge, so
                // the read that would only return EAGAIN is skipped.
                if drained {
                    return true;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}
