//! TCP: echo at scale with every byte checked, half-close, peer reset, refused connects, ports in use,
//! split halves, name resolution, descriptors returning to baseline, and the accept backoff on EMFILE.

mod util;

use std::io::{self, IoSlice, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use evloop::net::{TcpListener, TcpStream};
use evloop::time::timeout;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};

use util::{block_on, child_role, cpu_time_process, open_fds, os_code, pattern_byte, run_in_child};

const LOCALHOST: (Ipv4Addr, u16) = (Ipv4Addr::LOCALHOST, 0);

/// Starts an echo server on a free loopback port: one task per connection, each an
/// `io::copy(&stream, &mut &stream)`. Returns its address.
async fn echo_server() -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(LOCALHOST).await?;
    let addr = listener.local_addr()?;
    evloop::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            evloop::spawn(async move {
                let _ = futures::io::copy(&stream, &mut &stream).await;
            });
        }
    });
    Ok(addr)
}

/// Connection `c`'s 1 MiB payload: the shared pattern rotated by a per-connection offset, so that every
/// connection carries different bytes (built with memmove, cheap even in debug builds).
fn payload(table: &[u8], c: usize) -> Vec<u8> {
    let mut data = table.to_vec();
    data.rotate_left(c * 4099 % table.len());
    data
}

#[test]
fn echo_100_connections_of_1_mib_each_every_byte_checked() {
    const CONNS: usize = 100;
    const LEN: usize = 1 << 20;
    block_on(async {
        let addr = echo_server().await?;
        let table: std::sync::Arc<Vec<u8>> =
            std::sync::Arc::new((0..LEN).map(|i| pattern_byte(0, i)).collect());
        let clients: Vec<_> = (0..CONNS)
            .map(|c| {
                let table = table.clone();
                evloop::spawn(async move {
                    let data = payload(&table, c);
                    let stream = TcpStream::connect(addr).await?;
                    let (mut reader, mut writer) = stream.split();
                    let write = async {
                        for chunk in data.chunks(64 * 1024) {
                            writer.write_all(chunk).await?;
                        }
                        writer.close().await
                    };
                    let read = async {
                        // `read_to_end` zero-fills through iterators: far too slow for 100 MiB in debug.
                        let mut got = vec![0; LEN];
                        reader.read_exact(&mut got).await?;
                        let extra = reader.read(&mut [0; 1]).await?;
                        assert_eq!(extra, 0, "connection {c}: more bytes than sent, or no EOF");
                        Ok::<_, io::Error>(got)
                    };
                    let (w, got) = futures::join!(write, read);
                    w?;
                    let got = got?;
                    if got != data {
                        let i = (0..LEN).find(|&i| got[i] != data[i]).unwrap_or(0);
                        panic!(
                            "connection {c}: byte {i} is {} instead of {}",
                            got[i], data[i]
                        );
                    }
                    Ok::<(), io::Error>(())
                })
            })
            .collect();
        for client in clients {
            client.await.expect("client task")?;
        }
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn half_close_gives_eof_and_the_reader_can_still_write_back() {
    block_on(async {
        let listener = TcpListener::bind(LOCALHOST).await?;
        let addr = listener.local_addr()?;
        let server = evloop::spawn(async move {
            let (mut stream, _) = listener.accept().await?;
            let mut got = Vec::new();
            stream.read_to_end(&mut got).await?; // ends at the client's shutdown(Write)
            stream.write_all(b"got ").await?;
            stream.write_all(&got).await?;
            Ok::<(), io::Error>(())
        });
        let mut client = TcpStream::connect(addr).await?;
        client.write_all(b"hello").await?;
        client.shutdown(Shutdown::Write)?;
        let mut reply = String::new();
        client.read_to_string(&mut reply).await?;
        assert_eq!(reply, "got hello");
        server.await.expect("server task")
    })
    .unwrap();
}

/// Connects to a server that resets the connection at once; returns the client end.
async fn reset_connection() -> io::Result<TcpStream> {
    let listener = TcpListener::bind(LOCALHOST).await?;
    let client = TcpStream::connect(listener.local_addr()?).await?;
    let (server, _) = listener.accept().await?;
    util::set_linger_zero(server.as_raw_fd());
    drop(server);
    Ok(client)
}

#[test]
fn peer_reset_is_an_io_error_not_a_panic() {
    block_on(async {
        let mut client = reset_connection().await?;
        let mut buf = [0; 16];
        let err = client.read(&mut buf).await.expect_err("read after a reset");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
        // The reset has been consumed; writing now fails with EPIPE (or a second reset).
        let err = client
            .write_all(&[7; 1024])
            .await
            .expect_err("write after a reset");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{err}"
        );
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn write_to_a_reset_peer_never_raises_sigpipe() {
    if child_role().as_deref() != Some("sigpipe") {
        return run_in_child("write_to_a_reset_peer_never_raises_sigpipe", "sigpipe");
    }
    // The Rust runtime ignores SIGPIPE; a C host would not. Restore the default (terminate), so a write
    // that raised it would kill this child and fail the test.
    // SAFETY: setting a signal disposition to SIG_DFL installs no handler.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    evloop::block_on(async {
        let client = reset_connection().await?;
        let mut errors = 0;
        for _ in 0..10 {
            if (&client).write_all(&[1; 4096]).await.is_err() {
                errors += 1;
            }
        }
        assert!(errors > 0, "writes to a reset peer kept succeeding");
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn connecting_to_a_closed_port_is_refused() {
    block_on(async {
        let addr = TcpListener::bind(LOCALHOST).await?.local_addr()?; // bound, then closed at once
        let err = TcpStream::connect(addr)
            .await
            .expect_err("nothing listens there");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        assert_eq!(os_code(&err), Some(libc::ECONNREFUSED));
        assert!(
            err.to_string().contains(&addr.to_string()),
            "message names the address: {err}"
        );
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn binding_a_port_in_use_is_addr_in_use_and_names_the_fix() {
    block_on(async {
        let first = TcpListener::bind(LOCALHOST).await?;
        let addr = first.local_addr()?;
        let err = TcpListener::bind(addr)
            .await
            .expect_err("the port is taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&addr.to_string()) && msg.contains("pick another port"),
            "{msg}"
        );
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn owned_halves_work_from_two_tasks_at_once() {
    const LEN: usize = 256 * 1024;
    block_on(async {
        let addr = echo_server().await?;
        let (mut reader, mut writer) = TcpStream::connect(addr).await?.into_split();
        let write = evloop::spawn(async move {
            let data: Vec<u8> = (0..LEN).map(|i| pattern_byte(9, i)).collect();
            writer.write_all(&data).await
            // dropping `writer` shuts the write side down: the server's copy ends, and so does our read
        });
        let read = evloop::spawn(async move {
            let mut got = Vec::new();
            reader.read_to_end(&mut got).await.map(|_| got)
        });
        write.await.expect("writer task")?;
        let got = read.await.expect("reader task")?;
        assert_eq!(got.len(), LEN);
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, &b)| b == pattern_byte(9, i)));
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn reunite_gives_the_stream_back_only_for_its_own_halves() {
    block_on(async {
        let addr = echo_server().await?;
        let (r1, w1) = TcpStream::connect(addr).await?.into_split();
        let (r2, w2) = TcpStream::connect(addr).await?.into_split();
        let err = r1.reunite(w2).expect_err("halves of two streams");
        let (r1, w2) = (err.0, err.1);
        let mut stream = r1.reunite(w1).expect("halves of one stream");
        stream.write_all(b"still open").await?; // reunite must not have shut the write side down
        let mut buf = [0; 10];
        stream.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"still open");
        drop((r2, w2));
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn vectored_writes_send_every_slice_in_order() {
    block_on(async {
        let addr = echo_server().await?;
        let mut stream = TcpStream::connect(addr).await?;
        let parts = [
            IoSlice::new(b"one "),
            IoSlice::new(b"two "),
            IoSlice::new(b"three"),
        ];
        let n = stream.write_vectored(&parts).await?;
        assert_eq!(n, 13, "a small vectored write goes out whole");
        let mut buf = [0; 13];
        stream.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"one two three");
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

/// More slices than one `sendmsg` takes (IOV_MAX, 1024 on Linux and the BSDs), after more empty ones
/// than that: each `write_vectored` sends part of them, and a loop over the short writes sends every
/// byte in order (it used to fail with EMSGSIZE; a call of empty slices only would have sent nothing).
#[test]
fn vectored_writes_of_4000_slices_send_every_byte() {
    block_on(async {
        let addr = echo_server().await?;
        let mut stream = TcpStream::connect(addr).await?;
        let pieces: Vec<[u8; 3]> = (0..4000u32)
            .map(|i| [i as u8, (i >> 8) as u8, b'|'])
            .collect();
        let expected: Vec<u8> = pieces.concat();
        let mut slices = vec![IoSlice::new(&[]); 1500];
        for (i, p) in pieces.iter().enumerate() {
            slices.push(IoSlice::new(p));
            if i % 7 == 0 {
                slices.push(IoSlice::new(&[]));
            }
        }
        let mut bufs = &mut slices[..];
        let mut calls = 0;
        while !bufs.is_empty() {
            let n = stream.write_vectored(bufs).await?;
            assert!(n > 0, "a vectored write with data left sent nothing");
            calls += 1;
            IoSlice::advance_slices(&mut bufs, n);
        }
        assert!(
            calls >= 4,
            "4,000 slices in {calls} writes: more than 1024 per call?"
        );
        let mut echoed = vec![0; expected.len()];
        stream.read_exact(&mut echoed).await?;
        assert!(
            echoed == expected,
            "the bytes came back altered or out of order"
        );
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn incoming_yields_each_connection() {
    block_on(async {
        let listener = TcpListener::bind(LOCALHOST).await?;
        let addr = listener.local_addr()?;
        let clients = evloop::spawn(async move {
            let mut held = Vec::new();
            for _ in 0..3 {
                held.push(TcpStream::connect(addr).await?);
            }
            Ok::<_, io::Error>(held)
        });
        let accepted: Vec<_> = listener.incoming().take(3).collect().await;
        assert_eq!(accepted.len(), 3);
        for s in accepted {
            assert_eq!(s?.local_addr()?, addr);
        }
        clients.await.expect("client task")?;
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn host_names_resolve_off_thread_and_each_address_is_tried() {
    block_on(async {
        let addr = echo_server().await?;
        // "localhost" may resolve to ::1 first, where nothing listens: connect must go on to 127.0.0.1.
        let mut stream = TcpStream::connect(("localhost", addr.port())).await?;
        stream.write_all(b"hi").await?;
        let mut buf = [0; 2];
        stream.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"hi");
        let err = TcpStream::connect("no-such-host.invalid:80")
            .await
            .expect_err("unknown host");
        assert!(err.to_string().contains("no-such-host.invalid"), "{err}");
        let err = TcpStream::connect("no port here")
            .await
            .expect_err("not host:port");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn socket_options_and_std_conversions() {
    block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let client = TcpStream::connect(addr).await?;
        client.set_nodelay(true)?;
        assert!(client.nodelay()?);
        client.set_ttl(42)?;
        assert_eq!(client.ttl()?, 42);
        assert_eq!(client.peer_addr()?, addr);
        let (server, peer) = listener.accept().await?;
        assert_eq!(peer, client.local_addr()?);

        // Out to std and back: the connection survives both moves.
        let mut std_server = server.into_std()?;
        std_server.set_nonblocking(false)?;
        std_server.write_all(b"via std")?;
        let mut client = TcpStream::from_std(client.into_std()?)?;
        let mut buf = [0; 7];
        client.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"via std");
        let listener = TcpListener::from_std(listener.into_std()?)?;
        assert_eq!(listener.local_addr()?, addr);
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn dropping_streams_and_listeners_returns_fds_to_baseline() {
    if child_role().as_deref() != Some("fds") {
        return run_in_child(
            "dropping_streams_and_listeners_returns_fds_to_baseline",
            "fds",
        );
    }
    // Alone in its own process: no other test opens descriptors meanwhile.
    let rt = evloop::Runtime::new().unwrap();
    rt.block_on(async {
        let before = open_fds();
        let listener = TcpListener::bind(LOCALHOST).await?;
        let addr = listener.local_addr()?;
        let mut kept = Vec::new();
        for _ in 0..10 {
            let client = TcpStream::connect(addr).await?;
            let (server, _) = listener.accept().await?;
            kept.push((client.into_split(), server));
        }
        assert!(open_fds() >= before + 21);
        drop(kept);
        drop(listener);
        assert_eq!(open_fds(), before, "every socket was closed");
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn accept_on_emfile_errs_once_then_waits_cheaply_and_recovers() {
    if child_role().as_deref() != Some("emfile") {
        return run_in_child(
            "accept_on_emfile_errs_once_then_waits_cheaply_and_recovers",
            "emfile",
        );
    }
    let rt = evloop::Runtime::new().unwrap();
    rt.block_on(async {
        let listener = TcpListener::bind(LOCALHOST).await?;
        let addr = listener.local_addr()?;
        // Connected by the kernel before any accept; made while descriptors are still available.
        let mut first = std::net::TcpStream::connect(addr)?;
        let second = std::net::TcpStream::connect(addr)?;

        // Lower the limit just above the highest open descriptor, then fill every free slot.
        let highest = util::highest_fd();
        let limit = libc::rlimit {
            #[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, i64 on FreeBSD
            rlim_cur: (highest + 8) as libc::rlim_t,
            rlim_max: libc::RLIM_INFINITY,
        };
        let mut old = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `old` and `limit` are live rlimit values.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
        let limit = libc::rlimit {
            rlim_max: old.rlim_max,
            ..limit
        };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
        let mut hog = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            hog.push(f);
            assert!(hog.len() < 1000, "the lowered limit did not take effect");
        }

        let err = listener.accept().await.expect_err("no descriptor is free");
        assert_eq!(os_code(&err), Some(libc::EMFILE), "{err}");
        assert!(
            err.to_string().contains("ulimit"),
            "the message names the fix: {err}"
        );

        // Stuck: the next accept waits instead of spinning (nor does it return the error again).
        let cpu = cpu_time_process();
        let wall = Instant::now();
        let stuck = timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(
            stuck.is_err(),
            "accept returned while descriptors were exhausted: {stuck:?}"
        );
        let (cpu, wall) = (cpu_time_process() - cpu, wall.elapsed());
        assert!(
            cpu < Duration::from_millis(100),
            "{cpu:?} of CPU in {wall:?} while stuck"
        );

        // Free descriptors: both queued connections are served.
        drop(hog);
        let (mut a, _) = timeout(Duration::from_secs(2), listener.accept())
            .await
            .expect("served again")?;
        let (_b, _) = timeout(Duration::from_secs(2), listener.accept())
            .await
            .expect("served again")?;
        a.write_all(b"back").await?;
        let mut buf = [0; 4];
        first.set_read_timeout(Some(Duration::from_secs(2)))?;
        first.read_exact(&mut buf)?;
        assert_eq!(&buf, b"back");
        drop(second);
        Ok::<(), io::Error>(())
    })
    .unwrap();
}
