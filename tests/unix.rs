//! Unix sockets: stream pairs, a listener on a path, half-close, a closed peer giving EPIPE (never
//! SIGPIPE), stale socket files, and datagrams (pairs and bound sockets).

mod util;

use std::io;
use std::net::Shutdown;
use std::path::PathBuf;

use evloop::net::{UnixDatagram, UnixListener, UnixStream};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};

use util::{block_on, child_role, os_code, pattern_byte, run_in_child};

/// A fresh socket path in the temp directory, removed when dropped.
struct TempPath(PathBuf);

impl TempPath {
    fn new(name: &str) -> TempPath {
        let path = std::env::temp_dir().join(format!("evloop-{}-{name}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        TempPath(path)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_pair_carries_bytes_both_ways() {
    block_on(async {
        let (mut a, mut b) = UnixStream::pair()?;
        a.write_all(b"ping").await?;
        let mut buf = [0; 4];
        b.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        b.write_all(b"pong").await?;
        a.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"pong");
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn listener_echoes_many_clients_every_byte_checked() {
    const CLIENTS: usize = 20;
    const LEN: usize = 128 * 1024;
    let path = TempPath::new("echo");
    let p = path.0.clone();
    block_on(async move {
        let listener = UnixListener::bind(&p)?;
        assert_eq!(listener.local_addr()?.as_pathname(), Some(p.as_path()));
        evloop::spawn(async move {
            let mut incoming = listener.incoming();
            while let Some(Ok(stream)) = incoming.next().await {
                evloop::spawn(async move {
                    let _ = futures::io::copy(&stream, &mut &stream).await;
                });
            }
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let p = p.clone();
                evloop::spawn(async move {
                    let stream = UnixStream::connect(&p).await?;
                    let data: Vec<u8> = (0..LEN).map(|i| pattern_byte(c, i)).collect();
                    let mut got = vec![0; LEN];
                    let (mut r, mut w) = (&stream, &stream);
                    let (sent, read) = futures::join!(w.write_all(&data), r.read_exact(&mut got));
                    sent?;
                    read?;
                    assert!(got == data, "client {c} got different bytes back");
                    Ok::<(), io::Error>(())
                })
            })
            .collect();
        for c in clients {
            c.await.expect("client task")?;
        }
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn accept_reports_an_unnamed_client_and_half_close_works() {
    let path = TempPath::new("half");
    let p = path.0.clone();
    block_on(async move {
        let listener = UnixListener::bind(&p)?;
        let client = evloop::spawn({
            let p = p.clone();
            async move {
                let mut s = UnixStream::connect(&p).await?;
                s.write_all(b"question").await?;
                s.close().await?; // shuts the write side down
                let mut reply = String::new();
                s.read_to_string(&mut reply).await?;
                Ok::<_, io::Error>(reply)
            }
        });
        let (mut server, addr) = listener.accept().await?;
        assert!(addr.is_unnamed(), "{addr:?}");
        let mut got = String::new();
        server.read_to_string(&mut got).await?;
        assert_eq!(got, "question");
        server.write_all(b"answer").await?;
        server.shutdown(Shutdown::Write)?;
        assert_eq!(client.await.expect("client task")?, "answer");
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn writing_to_a_closed_peer_is_epipe_not_sigpipe() {
    if child_role().as_deref() != Some("sigpipe") {
        return run_in_child("writing_to_a_closed_peer_is_epipe_not_sigpipe", "sigpipe");
    }
    // Restore the default action (terminate) that the Rust runtime replaced with "ignore".
    // SAFETY: setting a signal disposition to SIG_DFL installs no handler.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    evloop::block_on(async {
        let (mut a, b) = UnixStream::pair()?;
        drop(b);
        let err = a.write_all(b"anyone?").await.expect_err("the peer is gone");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
        let err = a
            .write_vectored(&[io::IoSlice::new(b"x")])
            .await
            .expect_err("still gone");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn binding_over_an_existing_file_names_the_fix_and_stale_sockets_refuse() {
    let path = TempPath::new("stale");
    let p = path.0.clone();
    block_on(async move {
        drop(UnixListener::bind(&p)?); // leaves its socket file behind
        let err = UnixListener::bind(&p).expect_err("the file exists");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(err.to_string().contains("remove it"), "{err}");
        let err = UnixStream::connect(&p)
            .await
            .expect_err("no server behind the file");
        assert_eq!(os_code(&err), Some(libc::ECONNREFUSED), "{err}");
        assert!(err.to_string().contains("stale"), "{err}");
        let err = UnixStream::connect(p.with_extension("missing"))
            .await
            .expect_err("no file");
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        let long = std::env::temp_dir().join("x".repeat(200));
        let err = UnixListener::bind(long).expect_err("path too long");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn datagram_pair_and_bound_sockets() {
    let path_a = TempPath::new("dgram-a");
    let path_b = TempPath::new("dgram-b");
    let (pa, pb) = (path_a.0.clone(), path_b.0.clone());
    block_on(async move {
        let (x, y) = UnixDatagram::pair()?;
        x.send(b"one").await?;
        x.send(b"two").await?;
        let mut buf = [0; 8];
        let n = y.recv(&mut buf).await?;
        assert_eq!(&buf[..n], b"one", "datagram boundaries are kept");
        let n = y.recv(&mut buf).await?;
        assert_eq!(&buf[..n], b"two");

        let a = UnixDatagram::bind(&pa)?;
        let b = UnixDatagram::bind(&pb)?;
        a.send_to(b"to b", &pb).await?;
        let (n, from) = b.recv_from(&mut buf).await?;
        assert_eq!(
            (&buf[..n], from.as_pathname()),
            (&b"to b"[..], Some(pa.as_path()))
        );
        b.connect(&pa)?;
        b.send(b"back").await?;
        let n = a.recv(&mut buf).await?;
        assert_eq!(&buf[..n], b"back");

        let lone = UnixDatagram::unbound()?;
        lone.send_to(b"hi", &pa).await?;
        let (n, from) = a.recv_from(&mut buf).await?;
        assert_eq!(&buf[..n], b"hi");
        assert!(from.is_unnamed());
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn std_conversions_keep_the_connection() {
    block_on(async {
        let (a, b) = UnixStream::pair()?;
        let mut a = UnixStream::from_std(a.into_std()?)?;
        let mut b = b.into_std()?;
        b.set_nonblocking(false)?;
        std::io::Write::write_all(&mut b, b"std")?;
        let mut buf = [0; 3];
        a.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"std");
        Ok::<(), io::Error>(())
    })
    .unwrap();
}
