//! `Async<T>` on arbitrary descriptors: a pipe driven by the reactor, `read_with`/`write_with`,
//! `into_inner`, and clear errors (not panics) for invalid or doubly registered descriptors.

mod util;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use evloop::Async;
use futures::{AsyncReadExt, AsyncWriteExt};

use util::{block_on, pattern_byte, pipe};

#[test]
fn a_pipe_through_async_carries_a_large_transfer() {
    const LEN: usize = 1 << 20; // far more than the pipe buffer: both sides must wait
    block_on(async {
        let (r, w) = pipe();
        let mut r = Async::new(r)?;
        let mut w = Async::new(w)?;
        let writer = evloop::spawn(async move {
            let data: Vec<u8> = (0..LEN).map(|i| pattern_byte(3, i)).collect();
            w.write_all(&data).await?;
            drop(w); // EOF for the reader
            Ok::<(), io::Error>(())
        });
        let mut got = vec![0; LEN];
        r.read_exact(&mut got).await?;
        assert_eq!(r.read(&mut [0; 1]).await?, 0, "EOF after the writer closed");
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, &b)| b == pattern_byte(3, i)));
        writer.await.expect("writer task")
    })
    .unwrap();
}

#[test]
fn readable_writable_and_closures() {
    block_on(async {
        let (r, w) = pipe();
        let (r, w) = (Async::new(r)?, Async::new(w)?);
        w.writable().await?;
        let n = w.write_with(|mut f| f.write(b"abc")).await?;
        assert_eq!(n, 3);
        r.readable().await?;
        let mut buf = [0; 8];
        let n = r.read_with(|mut f| f.read(&mut buf)).await?;
        assert_eq!(&buf[..n], b"abc");
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn into_inner_deregisters_so_the_fd_can_be_wrapped_again() {
    block_on(async {
        let (r, w) = pipe();
        let r = Async::new(r)?;
        let r: File = r.into_inner()?;
        let mut r = Async::new(r)?; // would fail with "already registered" if still registered
        (&w).write_all(b"again")?;
        let mut buf = [0; 5];
        r.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"again");
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

/// An `AsFd` over a raw number, to hand `Async` descriptors it does not own.
#[derive(Debug)]
struct Raw(RawFd);

impl AsFd for Raw {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: only used for descriptors that outlive the `Raw` (or for a deliberately invalid
        // number, which the kernel rejects with EBADF before anything dereferences it).
        unsafe { BorrowedFd::borrow_raw(self.0) }
    }
}

#[test]
fn an_invalid_fd_is_a_clear_error() {
    block_on(async {
        let err = Async::new(Raw(1_000_000)).expect_err("not an open descriptor");
        assert!(
            err.to_string().contains("1000000"),
            "the message names the fd: {err}"
        );
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn registering_an_fd_twice_is_a_clear_error() {
    block_on(async {
        let (r, _w) = pipe();
        let first = Async::new(r)?;
        let err = Async::new(Raw(first.as_raw_fd())).expect_err("already registered");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert!(err.to_string().contains("already registered"), "{err}");
        drop(first);
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn outside_a_runtime_is_a_clear_error() {
    let (r, _w) = pipe();
    let err = Async::new(r).expect_err("no runtime here");
    assert!(
        err.to_string().contains("block_on"),
        "the message names the fix: {err}"
    );
}
