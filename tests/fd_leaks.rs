//! File descriptors: runtimes and `Async` objects give back every fd they took, whichever way they end.
//!
//! The process-wide fd count is only meaningful when nothing else opens fds meanwhile, so this binary
//! holds a single test and does every step in order.

mod util;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use evloop::time::sleep;
use evloop::{spawn, Async, Runtime};

use util::{open_fds, with_deadline, TEST_LIMIT};

/// Runs `step` and asserts that the fd count is back to where it was.
#[track_caller]
fn leaves_no_fd(what: &str, step: impl FnOnce()) {
    let before = open_fds();
    step();
    let after = open_fds();
    assert_eq!(
        after,
        before,
        "{what}: {} fd(s) leaked",
        after as isize - before as isize
    );
}

#[test]
fn runtimes_and_async_objects_give_back_their_fds() {
    with_deadline(TEST_LIMIT, || {
        leaves_no_fd("a runtime created and dropped", || {
            drop(Runtime::new().unwrap());
        });

        leaves_no_fd("Async objects dropped inside the runtime", || {
            let rt = Runtime::new().unwrap();
            rt.block_on(async {
                for _ in 0..100 {
                    let (r, w) = util::pipe();
                    let (r, w) = (Async::new(r).unwrap(), Async::new(w).unwrap());
                    w.write_with(|mut f| f.write(b"x")).await.unwrap();
                    let mut buf = [0; 1];
                    r.read_with(|mut f| f.read(&mut buf)).await.unwrap();
                }
            });
        });

        leaves_no_fd("tasks owning sockets, dropped with their runtime", || {
            let rt = Runtime::new().unwrap();
            // The peers stay open, so the tasks keep waiting until the runtime goes.
            let _peers = rt.block_on(async {
                let mut peers = Vec::new();
                for _ in 0..50 {
                    let (a, b) = UnixStream::pair().unwrap();
                    peers.push(b);
                    let a = Async::new(a).unwrap();
                    drop(spawn(async move {
                        let mut buf = [0; 1];
                        let _ = a.read_with(|mut s| s.read(&mut buf)).await;
                    }));
                }
                sleep(Duration::from_millis(1)).await;
                peers
            });
            assert_eq!(rt.task_count(), 50);
            drop(rt);
        });

        leaves_no_fd("an Async outliving its runtime", || {
            let rt = Runtime::new().unwrap();
            let (a, _b) = UnixStream::pair().unwrap();
            let a = rt.block_on(async { Async::new(a).unwrap() });
            drop(rt);
            // The Async keeps the reactor (and its epoll fd) alive until it goes.
            drop(a);
        });

        leaves_no_fd("failed registrations", || {
            let rt = Runtime::new().unwrap();
            rt.block_on(async {
                let (s, _peer) = UnixStream::pair().unwrap();
                let _first = Async::new(&s).unwrap();
                assert!(Async::new(&s).is_err());
                let file = std::fs::File::open(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
                    .unwrap();
                assert!(Async::new(file).is_err());
            });
        });

        leaves_no_fd("into_inner, then dropping the object", || {
            let rt = Runtime::new().unwrap();
            let s = rt.block_on(async {
                let (a, _b) = UnixStream::pair().unwrap();
                Async::new(a).unwrap().into_inner().unwrap()
            });
            drop(s);
        });

        leaves_no_fd(
            "a thread that used evloop::block_on, after it exits",
            || {
                std::thread::spawn(|| {
                    evloop::block_on(async {
                        let (a, _b) = UnixStream::pair().unwrap();
                        let _a = Async::new(a).unwrap();
                        sleep(Duration::from_millis(1)).await;
                    })
                })
                .join()
                .unwrap();
            },
        );
    });
}
