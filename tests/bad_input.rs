//! Bad input to the public API: invalid and closed fds, double registration, zero and maximal
//! durations, instants in the past, and use of a source after its fd was closed. Each gets an error or
//! a documented behaviour, never a panic inside evloop, undefined behaviour or a hang.
//!
//! Already covered elsewhere (not repeated here): `Async::new` on a bad fd, twice on one fd and outside
//! a runtime (tests/async_fd.rs, tests/reactor.rs); zero and maximal sleeps, `interval` periods and
//! instants in the past for `sleep_until` (tests/timers.rs). See RELIABILITY.md.

mod util;

use std::cell::Cell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use evloop::event::{BufferEvent, Event, EventBase, Flags};
use evloop::time::{sleep, timeout, timeout_at};
use evloop::Async;

use util::{block_on, pipe, with_deadline, TEST_LIMIT};

/// An fd number no process has open (far above any RLIMIT_NOFILE).
const NOT_AN_FD: RawFd = 1_000_000;

/// An `AsFd` over a raw number it does not own.
#[derive(Debug)]
struct Raw(RawFd);

impl AsFd for Raw {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: used for descriptors owned elsewhere, or for numbers the kernel rejects with EBADF;
        // evloop only passes the number to syscalls.
        unsafe { BorrowedFd::borrow_raw(self.0) }
    }
}

/// Runs the base until `done()` or `limit`; false on timeout.
fn run_base_until(base: &EventBase, limit: Duration, done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return false;
        }
        base.loop_once(false);
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

#[test]
fn callback_event_on_an_invalid_fd_fails_at_add_with_a_clear_error() {
    with_deadline(TEST_LIMIT, || {
        let base = EventBase::new().unwrap();
        let ev = Event::new(&base, NOT_AN_FD, Flags::READ, |_, _| {}).unwrap();
        let err = ev.add(None).expect_err("not an open descriptor");
        assert!(
            err.to_string().contains("1000000"),
            "the message names the fd: {err}"
        );
        assert!(!ev.is_pending());
        // A negative fd with READ is no timer either.
        let ev = Event::new(&base, -5, Flags::READ, |_, _| {}).unwrap();
        assert!(ev.add(None).is_err(), "fd -5 accepted");
    });
}

#[test]
fn callback_event_whose_fd_was_closed_behind_its_back() {
    with_deadline(TEST_LIMIT, || {
        let base = EventBase::new().unwrap();
        let (r, w) = pipe();
        let fired = Rc::new(Cell::new(0));
        let f = fired.clone();
        let fd = r.as_raw_fd();
        let ev = Event::new(&base, fd, Flags::READ | Flags::PERSIST, move |_, _| {
            f.set(f.get() + 1)
        })
        .unwrap();
        ev.add(None).unwrap();
        drop(r); // closed while the event is pending: epoll forgets it silently
        drop(w);
        for _ in 0..10 {
            base.loop_once(false);
        }
        // Re-adding now is refused (the fd is gone), deleting is a no-op, and the base carries on.
        ev.del();
        let err = ev.add(None).expect_err("re-adding an event on a closed fd");
        assert!(
            err.to_string().contains(&fd.to_string()),
            "the message names the fd: {err}"
        );
        drop(ev);
        let timer_fired = Rc::new(Cell::new(false));
        let t = timer_fired.clone();
        let timer = Event::timer(&base, move |_, _| t.set(true));
        timer.add(Some(Duration::from_millis(1))).unwrap();
        assert!(run_base_until(&base, Duration::from_secs(5), || {
            timer_fired.get()
        }));
        println!(
            "an event pending on an fd closed behind its back fired {} times",
            fired.get()
        );
    });
}

#[test]
fn two_callback_events_on_one_fd_both_fire_and_an_et_mismatch_is_refused() {
    with_deadline(TEST_LIMIT, || {
        let base = EventBase::new().unwrap();
        let (r, w) = pipe();
        let fd = r.as_raw_fd();
        let hits = Rc::new(Cell::new((0, 0)));
        let (h1, h2) = (hits.clone(), hits.clone());
        let a = Event::new(&base, fd, Flags::READ, move |_, _| {
            h1.set((h1.get().0 + 1, h1.get().1))
        })
        .unwrap();
        let b = Event::new(&base, fd, Flags::READ, move |_, _| {
            h2.set((h2.get().0, h2.get().1 + 1))
        })
        .unwrap();
        a.add(None).unwrap();
        b.add(None).unwrap();
        let et = Event::new(&base, fd, Flags::READ | Flags::ET, |_, _| {}).unwrap();
        let err = et
            .add(None)
            .expect_err("ET disagrees with the level-triggered events on the fd");
        println!("ET mismatch: {err}");
        std::io::Write::write_all(&mut &w, b"x").unwrap();
        assert!(run_base_until(&base, Duration::from_secs(5), || hits.get() == (1, 1)));
    });
}

#[test]
fn callback_timeouts_zero_and_maximal() {
    with_deadline(TEST_LIMIT, || {
        let base = EventBase::new().unwrap();
        let fired = Rc::new(Cell::new(0));
        let f = fired.clone();
        let zero = Event::timer(&base, move |_, what| {
            assert!(what.contains(Flags::TIMEOUT));
            f.set(f.get() + 1);
        });
        zero.add(Some(Duration::ZERO)).unwrap();
        let never = Event::timer(&base, |_, _| panic!("a Duration::MAX timer fired"));
        never.add(Some(Duration::MAX)).unwrap();
        assert!(never.is_pending());
        assert!(run_base_until(&base, Duration::from_secs(5), || fired
            .get()
            == 1));
        for _ in 0..10 {
            base.loop_once(false);
        }
        assert!(never.is_pending());
        // Also on a fd event, a buffer event and the loop exit.
        let (r, _w) = pipe();
        let ev = Event::new(&base, r.as_raw_fd(), Flags::READ, |_, _| {}).unwrap();
        ev.add(Some(Duration::MAX)).unwrap();
        let (s, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let bev = BufferEvent::socket(&base, s, true).unwrap();
        bev.set_timeouts(Some(Duration::MAX), Some(Duration::MAX));
        bev.enable(Flags::READ | Flags::WRITE);
        base.loopexit(Some(Duration::MAX));
        for _ in 0..10 {
            base.loop_once(false);
        }
        assert!(!base.got_exit());
        bev.free();
    });
}

#[test]
fn invalid_signal_numbers_and_priorities_are_errors() {
    with_deadline(TEST_LIMIT, || {
        let base = EventBase::new().unwrap();
        for signum in [0, -1, 1000, libc::SIGKILL, libc::SIGSTOP] {
            let ev = Event::signal(&base, signum, |_, _| {}).unwrap();
            assert!(ev.add(None).is_err(), "signal {signum} accepted");
        }
        let ev = Event::timer(&base, |_, _| {});
        let err = ev.set_priority(1).expect_err("one level only");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(base.priority_init(0).is_err(), "zero priority levels");
    });
}

#[test]
fn an_async_whose_fd_was_closed_behind_its_back_never_reports_data_and_into_inner_errs() {
    block_on(async {
        let (r, w) = pipe();
        let fd = r.into_raw_fd();
        let a = Async::new(Raw(fd))?;
        // SAFETY: `fd` is owned by this test (taken with into_raw_fd); closing it behind the Async is
        // the point.
        unsafe { libc::close(fd) };
        drop(w);
        // Documented here, not in `Async`'s docs: the kernel dropped the closed fd from epoll, so no
        // readiness ever comes and a read that waits for it waits until cancelled. It must not panic,
        // spin, or report data.
        let res = timeout(
            Duration::from_millis(200),
            a.read_with(|raw| {
                let mut b = [0u8; 1];
                // SAFETY: reads at most 1 byte into `b`.
                let n = unsafe { libc::read(raw.0, b.as_mut_ptr().cast(), 1) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n)
                }
            }),
        )
        .await;
        println!("read on an Async whose fd was closed: {res:?}");
        assert!(
            !matches!(res, Ok(Ok(_))),
            "a read on a closed fd returned data: {res:?}"
        );
        // into_inner reports the closed fd (documented in `Async::into_inner`).
        let err = a
            .into_inner()
            .expect_err("the fd was closed behind its back");
        println!("into_inner after the close: {err}");
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

#[test]
fn timeouts_with_maximal_zero_and_past_deadlines() {
    block_on(async {
        // A ready future wins even against a zero or past deadline? Documented either way; here we
        // pin down what evloop does: the inner future is polled first.
        assert_eq!(timeout(Duration::ZERO, async { 1 }).await, Ok(1));
        let past = Instant::now() - Duration::from_secs(1);
        assert_eq!(timeout_at(past, async { 2 }).await, Ok(2));
        assert!(timeout_at(past, std::future::pending::<()>())
            .await
            .is_err());
        assert_eq!(timeout(Duration::MAX, async { 3 }).await, Ok(3));
        let r = timeout(Duration::MAX, sleep(Duration::from_millis(5))).await;
        assert!(r.is_ok());
        assert!(timeout(
            Duration::from_millis(5),
            timeout(Duration::MAX, std::future::pending::<()>())
        )
        .await
        .is_err());
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

/// `shutdown_timeout` with `d`, with one task pending; must return within 5 s.
fn shutdown_promptly(workers: usize, d: Duration) {
    let rt = util::runtime(workers);
    rt.spawn(std::future::pending::<()>());
    let start = Instant::now();
    rt.shutdown_timeout(d);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "workers {workers}, {d:?}: {:?}",
        start.elapsed()
    );
}

#[test]
fn shutdown_timeout_with_zero_and_maximal_durations_returns_promptly_when_idle() {
    with_deadline(TEST_LIMIT, || {
        shutdown_promptly(0, Duration::ZERO);
        shutdown_promptly(0, Duration::MAX);
        shutdown_promptly(2, Duration::ZERO);
        shutdown_promptly(2, Duration::from_secs(3600 * 24 * 365 * 100));
    });
}

/// Regression (RELIABILITY.md, finding 3): `Instant::now() + timeout` in src/executor/multi.rs overflowed.
#[test]
fn shutdown_timeout_with_duration_max_on_a_multi_thread_runtime() {
    with_deadline(TEST_LIMIT, || shutdown_promptly(2, Duration::MAX));
}

#[test]
fn a_multi_thread_builder_with_zero_workers_panics_as_documented() {
    let msg = util::expect_panic(|| evloop::Runtime::builder().worker_threads(0));
    assert!(msg.contains("at least 1"), "{msg}");
}
