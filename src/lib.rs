//! evloop: an async/await runtime on a hand-written reactor (epoll on Linux, kqueue on macOS and the
//! BSDs), with a libevent-style callback API on the same loop.
//!
//! # A short tour
//!
//! [`block_on`] runs a future, the tasks it [`spawn`]s, the reactor and the timers on the current thread:
//!
//! ```
//! use std::time::Duration;
//!
//! evloop::block_on(async {
//!     // Tasks run concurrently with the main future; their handles are futures of their output.
//!     let slow = evloop::spawn(async {
//!         evloop::time::sleep(Duration::from_millis(20)).await;
//!         "slow"
//!     });
//!     let fast = evloop::spawn(async { "fast" });
//!     assert_eq!(fast.await.unwrap(), "fast");
//!     assert_eq!(slow.await.unwrap(), "slow");
//!
//!     // A future can be given a deadline.
//!     let never = std::future::pending::<()>();
//!     assert!(evloop::time::timeout(Duration::from_millis(5), never).await.is_err());
//! });
//! ```
//!
//! A task that panics does not take the runtime down: its [`JoinHandle`](task::JoinHandle) reports the
//! panic, and every other task carries on.
//!
//! ```
//! evloop::block_on(async {
//!     let bad = evloop::spawn(async { panic!("boom") });
//!     assert!(bad.await.unwrap_err().is_panic());
//! });
//! ```
//!
//! Any file descriptor can be driven by the reactor through [`Async`]: here a pipe, whose read
//! end wakes the task once the other end is written.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::os::unix::net::UnixStream;
//!
//! evloop::block_on(async {
//!     let (a, mut b) = UnixStream::pair()?;
//!     let a = evloop::io::Async::new(a)?;
//!     b.write_all(b"ping")?;
//!     let mut buf = [0; 4];
//!     let n = a.read_with(|mut s| s.read(&mut buf)).await?;
//!     assert_eq!(&buf[..n], b"ping");
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Layout
//!
//! | concept | file |
//! |---|---|
//! | OS backends and their contract | `src/sys/mod.rs`, `src/sys/epoll.rs`, `src/sys/kqueue.rs` |
//! | registrations, readiness, wakers, the poll step | `src/reactor.rs` |
//! | the cooperative I/O budget (one busy socket cannot starve the thread) | `src/coop.rs` |
//! | `block_on`, `spawn`, `Runtime` and its `Builder`, the thread-local context | `src/executor/{mod,runtime,context}.rs` |
//! | the current-thread run loop | `src/executor/current.rs` |
//! | the multi-thread runtime: design, workers and work stealing, sleeping workers, shutdown | `src/executor/{multi,worker,idle,sync}.rs` |
//! | `JoinHandle`, `JoinError`, `AbortHandle`, `JoinSet`, `yield_now` | `src/task/{join_handle,error,abort,join_set,yield_now}.rs` |
//! | timing wheel; `sleep`, `interval`, `timeout`; either flavor's timer store | `src/time/wheel.rs`, `src/time/{sleep,interval,timeout}.rs`, `src/time/driver.rs` |
//! | the runtime clock [`time::now`]; paused time (feature `test-util`) | `src/time/clock.rs` |
//! | `Async<T>` for any file descriptor | `src/io.rs` |
//! | `spawn_blocking` | `src/blocking.rs` |
//! | files and directories on the blocking pool: `fs::File`, `OpenOptions`, `read_dir`, `read`, `write`, ... | `src/fs/{mod,file,write_queue,open_options,read_dir}.rs` |
//! | TCP, UDP, Unix sockets; `ToSocketAddrs`; accept backoff | `src/net/{tcp,udp,unix}.rs`, `src/net/{addr,accept,socket}.rs` |
//! | the libevent-style callback API | `src/event/` |
//! | signals | `src/signal.rs` |
//! | child processes: `Command`, `Child`, pipes; waiting by pidfd, kqueue or `SIGCHLD`; orphan reaping | `src/process/{mod,child,pipe}.rs`, `src/process/{watch,pidfd,kqueue}.rs`, `src/process/orphan.rs` |
//! | hyper 1.x on evloop (feature `hyper`): `HyperIo`, `HyperExecutor`, `HyperTimer` | `src/hyper.rs` |

#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![warn(clippy::undocumented_unsafe_blocks)]

// The porting guide's Rust snippets are compiled and run by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../docs/from-libevent.md")]
mod from_libevent_guide {}

pub mod blocking;
mod coop;
pub mod event;
mod executor;
pub mod fs;
#[cfg(feature = "hyper")]
pub mod hyper;
#[cfg(loom)]
#[doc(hidden)]
pub use executor::loom_api;
pub mod io;
pub mod net;
pub mod process;
mod reactor;
pub mod signal;
mod sys;
pub mod task;
pub mod time;

pub use blocking::spawn_blocking;
pub use executor::{block_on, spawn, spawn_local, Builder, Runtime, EVENT_INTERVAL};
pub use io::Async;
