//! The reactor: readiness wakes tasks (pipes and socket pairs wrapped in `evloop::Async`), read and
//! write waiters on one fd are independent, wakes from other threads reach a parked runtime, an idle
//! runtime uses no CPU, stale readiness never reaches an fd that reused a closed one's number, and
//! `Async::new` misuse is an `io::Error` that names the fix.

mod util;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use evloop::task::yield_now;
use evloop::time::{sleep, timeout};
use evloop::{spawn, Async, Runtime};
use futures::{AsyncReadExt, AsyncWriteExt};

use util::{cpu_time_thread, with_deadline, CountingWaker, TEST_LIMIT};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Writes into `s` (non-blocking) until the kernel buffer is full; returns how many bytes went in.
fn fill(s: &UnixStream) -> usize {
    s.set_nonblocking(true).unwrap();
    let chunk = [0u8; 64 * 1024];
    let mut total = 0;
    // Bounded: socket buffers are at most a few MB.
    for _ in 0..10_000 {
        match (&*s).write(&chunk) {
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return total,
            Err(e) => panic!("fill: {e}"),
        }
    }
    panic!("fill: the socket buffer never filled up");
}

/// Polls `a` for read readiness once, with `waker`.
fn poll_readable_with<T: AsFd>(a: &Async<T>, waker: &Waker) -> Poll<io::Result<()>> {
    a.poll_readable(&mut Context::from_waker(waker))
}

#[test]
fn a_pipe_wakes_its_reader() {
    util::block_on(async {
        let (r, w) = util::pipe();
        let r = Async::new(r).unwrap();
        let start = Instant::now();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(ms(20));
            (&w).write_all(b"ping").unwrap();
            w
        });
        let mut buf = [0; 16];
        let n = r.read_with(|mut f| f.read(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], b"ping");
        assert!(start.elapsed() >= ms(20));
        // End of file once the writer is gone.
        drop(writer.join().unwrap());
        assert_eq!(r.read_with(|mut f| f.read(&mut buf)).await.unwrap(), 0);
    });
}

#[test]
fn a_socket_pair_carries_a_megabyte_both_ways() {
    const LEN: usize = 1 << 20;
    util::block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut a, mut b) = (Async::new(a).unwrap(), Async::new(b).unwrap());
        let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        // Far more than the socket buffer: the writer waits for writability many times.
        let writer = spawn(async move {
            a.write_all(&sent).await.unwrap();
            a.close().await.unwrap();
            drop(a);
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got.len(), LEN);
        assert!(got == data, "corrupted stream");
    });
}

#[test]
fn a_reader_and_a_writer_on_one_fd_are_woken_independently() {
    util::block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        let filled = fill(&a);
        let a = Arc::new(Async::new(a).unwrap());
        let reader = {
            let a = a.clone();
            spawn(async move {
                let mut buf = [0; 8];
                let n = a.read_with(|mut s| s.read(&mut buf)).await.unwrap();
                buf[..n].to_vec()
            })
        };
        let writer = {
            let a = a.clone();
            spawn(async move { a.write_with(|mut s| s.write(b"after")).await.unwrap() })
        };
        sleep(ms(10)).await;
        assert!(!reader.is_finished() && !writer.is_finished());

        // Data for `a`: only the reader may finish.
        (&b).write_all(b"hi").unwrap();
        let got = timeout(ms(2_000), reader)
            .await
            .expect("the reader was not woken")
            .unwrap();
        assert_eq!(got, b"hi");
        sleep(ms(10)).await;
        assert!(
            !writer.is_finished(),
            "the writer finished while the buffer was still full"
        );

        // Room for `a`: now the writer.
        let mut sink = vec![0; filled];
        (&b).read_exact(&mut sink).unwrap();
        let n = timeout(ms(2_000), writer)
            .await
            .expect("the writer was not woken")
            .unwrap();
        assert!(n > 0);
    });
}

#[test]
fn every_task_waiting_on_one_direction_is_woken() {
    util::block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        let a = Arc::new(Async::new(a).unwrap());
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let a = a.clone();
                spawn(async move {
                    let mut buf = [0; 1];
                    a.read_with(|mut s| s.read(&mut buf)).await.unwrap()
                })
            })
            .collect();
        yield_now().await;
        for _ in 0..3 {
            (&b).write_all(b"x").unwrap();
            sleep(ms(5)).await;
        }
        for r in readers {
            assert_eq!(
                timeout(ms(2_000), r)
                    .await
                    .expect("a reader was never woken")
                    .unwrap(),
                1
            );
        }
    });
}

#[test]
fn a_wake_from_another_thread_reaches_the_main_future() {
    util::block_on(async {
        let (tx, rx) = futures::channel::oneshot::channel();
        let start = Instant::now();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(ms(50));
            tx.send("from a thread").unwrap();
        });
        assert_eq!(rx.await.unwrap(), "from a thread");
        let waited = start.elapsed();
        sender.join().unwrap();
        assert!(waited >= ms(50) && waited < ms(5_000), "waited {waited:?}");
    });
}

#[test]
fn a_wake_from_another_thread_reaches_a_task() {
    util::block_on(async {
        let (tx, rx) = futures::channel::oneshot::channel();
        let task = spawn(async move { rx.await.unwrap() });
        let start = Instant::now();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(ms(50));
            tx.send(7u8).unwrap();
        });
        assert_eq!(task.await.unwrap(), 7);
        sender.join().unwrap();
        assert!(start.elapsed() >= ms(50));
    });
}

#[test]
fn an_idle_runtime_uses_no_cpu() {
    with_deadline(TEST_LIMIT, || {
        let rt = Runtime::new().unwrap();
        let (sock, _peer) = UnixStream::pair().unwrap();
        // Things to wait for that never come: a socket, a far timer, a pending task.
        rt.block_on(async {
            let sock = Async::new(sock).unwrap();
            drop(spawn(async move {
                let mut buf = [0; 1];
                let _ = sock.read_with(|mut s| s.read(&mut buf)).await;
            }));
            drop(spawn(sleep(Duration::from_secs(3600))));
            drop(spawn(std::future::pending::<()>()));
        });
        let (cpu_before, start) = (cpu_time_thread(), Instant::now());
        rt.block_on(sleep(ms(200)));
        let (cpu, wall) = (cpu_time_thread() - cpu_before, start.elapsed());
        println!("idle runtime: {cpu:?} of CPU in {wall:?}");
        assert!(wall >= ms(200));
        assert!(
            cpu < ms(20),
            "an idle runtime used {cpu:?} of CPU in {wall:?}"
        );
    });
}

/// One attempt at the stale-fd scenario. Returns false if another thread took the closed fd's number
/// first, so the scenario could not be set up.
async fn stale_readiness_attempt(seen_before_drop: bool) -> bool {
    let (r1, w1) = util::pipe();
    let old_fd = r1.as_raw_fd();
    let r1 = Async::new(r1).unwrap();
    (&w1).write_all(b"stale").unwrap();
    if seen_before_drop {
        // The reactor has recorded the readiness in the old source.
        timeout(ms(2_000), r1.readable()).await.unwrap().unwrap();
    }
    // Otherwise the event is still queued in the kernel when the fd goes.
    drop(r1);
    let (r2, w2) = util::pipe();
    if r2.as_raw_fd() != old_fd {
        return false;
    }
    let r2 = Async::new(r2).unwrap();
    let (counter, waker) = CountingWaker::new();
    assert!(
        poll_readable_with(&r2, &waker).is_pending(),
        "a new, empty pipe is marked readable"
    );
    // Let the reactor poll several times.
    sleep(ms(20)).await;
    assert_eq!(
        counter.wakes(),
        0,
        "the closed fd's readiness woke the new one"
    );
    assert!(poll_readable_with(&r2, &waker).is_pending());

    // The new registration itself works.
    (&w2).write_all(b"fresh").unwrap();
    let mut buf = [0; 16];
    let n = timeout(ms(2_000), r2.read_with(|mut f| f.read(&mut buf)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"fresh");
    assert_eq!(counter.wakes(), 1);
    drop(w1);
    true
}

#[test]
fn stale_readiness_never_reaches_a_reused_fd() {
    for seen_before_drop in [false, true] {
        let reused = util::block_on(async move {
            for _ in 0..20 {
                if stale_readiness_attempt(seen_before_drop).await {
                    return true;
                }
            }
            false
        });
        assert!(
            reused,
            "could not get a closed fd's number reused in 20 tries"
        );
    }
}

#[test]
fn async_new_on_a_bad_fd_is_an_error() {
    /// An fd number no process has open (far above any RLIMIT_NOFILE).
    #[derive(Debug)]
    struct Closed;
    impl AsFd for Closed {
        fn as_fd(&self) -> BorrowedFd<'_> {
            // SAFETY: the number is not -1. It names no open file, which is what this test checks is
            // reported; nothing reads or writes through it.
            unsafe { BorrowedFd::borrow_raw(i32::MAX - 1) }
        }
    }
    util::block_on(async {
        let err = Async::new(Closed).unwrap_err();
        assert!(
            err.to_string().contains(&(i32::MAX - 1).to_string()),
            "{err}"
        );

        let file = File::open(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
        let err = Async::new(file).unwrap_err();
        assert!(err.to_string().contains("cannot be polled"), "{err}");
    });
}

#[test]
fn async_new_on_an_fd_already_registered_is_an_error() {
    util::block_on(async {
        let (s, peer) = UnixStream::pair().unwrap();
        let first = Async::new(&s).unwrap();
        let err = Async::new(&s).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("already registered") && msg.contains("dup"),
            "{msg}"
        );

        // A dup is a different fd: fine.
        let dup = Async::new(s.try_clone().unwrap()).unwrap();
        // The failed attempt did not disturb the first registration.
        (&peer).write_all(b"ok").unwrap();
        let mut buf = [0; 2];
        timeout(
            ms(2_000),
            first.read_with(|s| {
                let mut s: &UnixStream = s;
                s.read(&mut buf)
            }),
        )
        .await
        .expect("the first registration stopped working")
        .unwrap();
        assert_eq!(&buf, b"ok");
        drop(dup);

        // Deregistered by into_inner: the fd can be registered again.
        drop(first);
        let again = Async::new(&s).unwrap();
        let fd = again.into_inner().unwrap().as_raw_fd();
        assert_eq!(fd, s.as_raw_fd());
        let _again = Async::new(s).unwrap();
    });
}

#[test]
fn async_new_outside_a_runtime_is_an_error_naming_the_fix() {
    let (r, _w) = util::pipe();
    let err = Async::new(r).unwrap_err();
    assert!(err.to_string().contains("evloop::block_on"), "{err}");
}

#[test]
fn dropping_an_async_wakes_nobody_and_later_io_still_works() {
    util::block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        let a = Async::new(a).unwrap();
        let (counter, waker) = CountingWaker::new();
        assert!(poll_readable_with(&a, &waker).is_pending());
        drop(a);
        (&b).write_all(b"x").ok();
        sleep(ms(10)).await;
        assert_eq!(counter.wakes(), 0);
        // The source's waker list went with it.
        assert_eq!(Arc::strong_count(&counter), 2);

        let (c, d) = UnixStream::pair().unwrap();
        let mut c = Async::new(c).unwrap();
        (&d).write_all(b"y").unwrap();
        let mut buf = [0; 1];
        Pin::new(&mut c).read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"y");
    });
}

/// A task whose socket always has data must still let the others run: the cooperative budget makes it
/// yield now and then, so a timer armed beside it fires long before it has read everything.
#[test]
fn a_socket_that_is_always_ready_does_not_starve_other_tasks() {
    util::block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        let queued = fill(&b); // the whole socket buffer, queued for `a`
        let a = Async::new(a).unwrap();
        let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f = fired.clone();
        let timer = spawn(async move {
            sleep(ms(1)).await;
            f.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        yield_now().await; // let the timer arm before the reader starts
                           // One-byte reads: each succeeds in full, so readiness is never cleared and, without a budget,
                           // the loop would read the whole buffer in a single poll.
        let mut read = 0;
        let mut byte = [0u8; 1];
        while read < queued && !fired.load(std::sync::atomic::Ordering::SeqCst) {
            read += (&a).read(&mut byte).await.unwrap();
        }
        assert!(
            read < queued,
            "the reader consumed all {queued} bytes before a 1 ms timer beside it could fire"
        );
        timer.await.unwrap();
    });
}

/// The budget is per task poll (as tokio's): a task that does one ready read per poll is never made to
/// yield by the reads of the other tasks on its thread. With a budget that ran down across tasks, one
/// read in every 128 on a busy thread returned `Pending` with its data waiting, and that task lost a
/// whole round of the run queue (at 1,000 echo connections, twice the p99 latency).
#[test]
fn a_task_doing_little_per_poll_is_never_made_to_yield_by_the_others() {
    const TASKS: usize = 300;
    const ROUNDS: usize = 10;
    for workers in [0, 2] {
        let rt = util::runtime(workers);
        let forced = rt.block_on(async {
            let mut tasks = Vec::new();
            let mut peers = Vec::new();
            for _ in 0..TASKS {
                let (a, mut b) = UnixStream::pair().unwrap();
                b.write_all(&[1; ROUNDS]).unwrap();
                peers.push(b); // kept open: the reads must find data, not end-of-file
                let a = Async::new(a).unwrap();
                tasks.push(spawn(async move {
                    let mut forced = 0;
                    let mut read = 0;
                    while read < ROUNDS {
                        // One read per poll, on a socket that holds data: once the first read has seen
                        // the socket ready (the reactor learns it at its next poll), `Pending` can only
                        // be the budget's.
                        let mut byte = [0u8; 1];
                        let n = std::future::poll_fn(|cx| {
                            match futures::AsyncRead::poll_read(Pin::new(&mut &a), cx, &mut byte) {
                                Poll::Pending => {
                                    if read > 0 {
                                        forced += 1;
                                    }
                                    Poll::Pending
                                }
                                ready => ready,
                            }
                        })
                        .await
                        .unwrap();
                        read += n;
                        yield_now().await;
                    }
                    forced
                }));
            }
            let mut forced = 0;
            for t in tasks {
                forced += t.await.unwrap();
            }
            drop(peers);
            forced
        });
        assert_eq!(
            forced,
            0,
            "workers {workers}: {forced} of {} one-byte reads with data waiting were made to yield",
            TASKS * ROUNDS
        );
    }
}
