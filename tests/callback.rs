//! The libevent-style callback API: events, the loop's exits, priorities, signals, buffer events,
//! listeners, and callbacks mixed with async tasks.

mod util;

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use evloop::event::{BevFlags, Buffer, BufferEvent, Event, EventBase, Flags, Listener};
use util::{cpu_time_thread, with_deadline, TEST_LIMIT};

/// A non-blocking socket pair.
fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

const MS: Duration = Duration::from_millis(1);

/// Moves everything in the buffer event's input to the end of `into`.
fn drain_input_into(bev: &BufferEvent, into: &RefCell<Vec<u8>>) {
    let mut input = bev.input();
    for c in input.chunks() {
        into.borrow_mut().extend_from_slice(c);
    }
    input.clear();
}

#[test]
fn one_shot_fires_once_persist_keeps_firing() {
    with_deadline(TEST_LIMIT, || {
        let base = EventBase::new().unwrap();
        let (a, mut b) = pair();
        b.write_all(b"x").unwrap();
        let hits = Rc::new(Cell::new(0));
        let h = hits.clone();
        let one = Event::new(&base, a.as_raw_fd(), Flags::READ, move |_, what| {
            assert_eq!(what, Flags::READ);
            h.set(h.get() + 1);
        })
        .unwrap();
        one.add(None).unwrap();
        base.dispatch(); // the one-shot event fires, then nothing is pending
        assert_eq!(hits.get(), 1);
        assert!(!one.is_pending());
        drop(one);

        let h = hits.clone();
        let persist = Event::new(
            &base,
            a.as_raw_fd(),
            Flags::READ | Flags::PERSIST,
            move |ctx, _| {
                h.set(h.get() + 1);
                if h.get() == 4 {
                    ctx.del();
                }
            },
        )
        .unwrap();
        persist.add(None).unwrap();
        base.dispatch(); // the byte is never read: level-triggered, it fires every round
        assert_eq!(hits.get(), 4);
        assert!(!persist.is_pending());
    });
}

#[test]
fn level_fires_while_ready_edge_fires_once_per_arrival() {
    with_deadline(TEST_LIMIT, || {
        let base = EventBase::new().unwrap();
        let (a, mut b) = pair();
        let (c, mut d) = pair();
        let level = Rc::new(Cell::new(0));
        let edge = Rc::new(Cell::new(0));
        let (l, e) = (level.clone(), edge.clone());
        let lev = Event::new(
            &base,
            a.as_raw_fd(),
            Flags::READ | Flags::PERSIST,
            move |_, _| l.set(l.get() + 1),
        )
        .unwrap();
        let et = Event::new(
            &base,
            c.as_raw_fd(),
            Flags::READ | Flags::PERSIST | Flags::ET,
            move |_, _| e.set(e.get() + 1),
        )
        .unwrap();
        lev.add(None).unwrap();
        et.add(None).unwrap();
        b.write_all(b"x").unwrap();
        d.write_all(b"x").unwrap();
        for _ in 0..5 {
            base.loop_once(true);
            std::thread::sleep(MS);
            base.loop_once(false);
        }
        assert!(
            level.get() >= 5,
            "level-triggered fired {} times",
            level.get()
        );
        assert_eq!(
            edge.get(),
            1,
            "edge-triggered must fire once for one arrival"
        );
        d.write_all(b"y").unwrap();
        let start = Instant::now();
        while edge.get() < 2 && start.elapsed() < Duration::from_secs(2) {
            base.loop_once(false);
        }
        assert_eq!(edge.get(), 2);
    });
}

#[test]
fn timeout_fires_with_timeout_flag_when_idle() {
    with_deadline(TEST_LIMIT, || {
        let base = EventBase::new().unwrap();
        let (a, _b) = pair();
        let got = Rc::new(Cell::new(Flags::empty()));
        let g = got.clone();
        let ev = Event::new(&base, a.as_raw_fd(), Flags::READ, move |_, what| {
            g.set(what)
        })
        .unwrap();
        let start = Instant::now();
        ev.add(Some(20 * MS)).unwrap();
        base.dispatch();
        assert_eq!(got.get(), Flags::TIMEOUT);
        assert!(start.elapsed() >= 20 * MS);

        // A pure timer, re-added from its own callback three times.
        let n = Rc::new(Cell::new(0));
        let m = n.clone();
        let t = Event::timer(&base, move |ctx, what| {
            assert_eq!(what, Flags::TIMEOUT);
            m.set(m.get() + 1);
            if m.get() < 3 {
                ctx.add(Some(MS)).unwrap();
            }
        });
        t.add(Some(MS)).unwrap();
        base.dispatch();
        assert_eq!(n.get(), 3);
    });
}

#[test]
fn loopexit_loopbreak_and_exit_handle() {
    with_deadline(TEST_LIMIT, || {
        let base = EventBase::new().unwrap();
        let idle = Event::timer(&base, |_, _| {});
        idle.add(None).unwrap(); // pending forever: only an exit ends the loop

        let start = Instant::now();
        base.loopexit(Some(30 * MS));
        base.dispatch();
        assert!(base.got_exit() && !base.got_break());
        assert!(start.elapsed() >= 30 * MS);

        // loopbreak stops right after the current callback: of two active events only one runs.
        let ran = Rc::new(Cell::new(0));
        let mk = |ran: Rc<Cell<i32>>| {
            Event::timer(&base, move |ctx, _| {
                ran.set(ran.get() + 1);
                ctx.base().loopbreak();
            })
        };
        let (e1, e2) = (mk(ran.clone()), mk(ran.clone()));
        e1.activate(Flags::TIMEOUT);
        e2.activate(Flags::TIMEOUT);
        base.dispatch();
        assert!(base.got_break());
        assert_eq!(ran.get(), 1);
        base.dispatch(); // the other one runs in the next loop
        assert_eq!(ran.get(), 2);

        let exit = base.exit_handle();
        let t = std::thread::spawn(move || {
            std::thread::sleep(20 * MS);
            exit.exit();
        });
        base.dispatch();
        assert!(base.got_exit());
        t.join().unwrap();
    });
}

#[test]
fn priorities_run_lowest_number_first() {
    with_deadline(TEST_LIMIT, || {
        let base = EventBase::with_priorities(3).unwrap();
        let order = Rc::new(RefCell::new(Vec::new()));
        let events: Vec<Event> = [2, 0, 1, 2, 0]
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let o = order.clone();
                let ev = Event::timer(&base, move |_, _| o.borrow_mut().push(p));
                ev.set_priority(p).unwrap();
                let _ = i;
                ev
            })
            .collect();
        assert!(events[0].set_priority(3).is_err());
        for ev in &events {
            ev.activate(Flags::TIMEOUT);
        }
        base.dispatch();
        assert_eq!(*order.borrow(), vec![0, 0, 1, 2, 2]);
    });
}

#[test]
fn delete_or_drop_from_callbacks_is_safe() {
    with_deadline(TEST_LIMIT, || {
        let base = EventBase::new().unwrap();
        // An event that drops itself (its only handle lives in its own state).
        let slot: Rc<RefCell<Option<Event>>> = Rc::new(RefCell::new(None));
        let s = slot.clone();
        let marker = Rc::new(());
        let m = marker.clone();
        let ev = Event::timer(&base, move |ctx, _| {
            let _keep = &m;
            s.borrow_mut().take(); // drops this very event while its callback runs
            assert!(!ctx.is_alive());
        });
        ev.activate(Flags::TIMEOUT);
        *slot.borrow_mut() = Some(ev);
        base.dispatch();
        assert!(slot.borrow().is_none());
        assert_eq!(
            Rc::strong_count(&marker),
            1,
            "the freed callback was dropped after it ran"
        );

        // An event that deletes and drops another active event: the other never runs.
        let other_ran = Rc::new(Cell::new(false));
        let o = other_ran.clone();
        let other = Rc::new(RefCell::new(Some(Event::timer(&base, move |_, _| {
            o.set(true)
        }))));
        let victim = other.clone();
        let killer = Event::timer(&base, move |_, _| {
            let ev = victim.borrow_mut().take().unwrap();
            ev.del();
            drop(ev);
        });
        killer.set_priority(0).unwrap();
        killer.activate(Flags::TIMEOUT);
        other.borrow().as_ref().unwrap().activate(Flags::TIMEOUT);
        base.dispatch();
        assert!(!other_ran.get());

        // A persistent fd event deleted from another event's callback stops firing.
        let (a, mut b) = pair();
        b.write_all(b"x").unwrap();
        let reads = Rc::new(Cell::new(0));
        let r = reads.clone();
        let reader = Rc::new(
            Event::new(
                &base,
                a.as_raw_fd(),
                Flags::READ | Flags::PERSIST,
                move |_, _| r.set(r.get() + 1),
            )
            .unwrap(),
        );
        reader.add(None).unwrap();
        let rd = reader.clone();
        let stopper = Event::timer(&base, move |_, _| rd.del());
        stopper.add(Some(5 * MS)).unwrap();
        base.dispatch();
        let n = reads.get();
        assert!(n > 0);
        assert!(!reader.is_pending());
    });
}

#[test]
fn read_and_write_events_share_one_fd() {
    with_deadline(TEST_LIMIT, || {
        let base = EventBase::new().unwrap();
        let (a, mut b) = pair();
        let fd = a.as_raw_fd();
        let seen = Rc::new(Cell::new(Flags::empty()));
        let (s1, s2) = (seen.clone(), seen.clone());
        let w = Event::new(&base, fd, Flags::WRITE, move |_, what| {
            s1.set(s1.get() | what)
        })
        .unwrap();
        let r = Event::new(&base, fd, Flags::READ, move |_, what| {
            s2.set(s2.get() | what)
        })
        .unwrap();
        w.add(None).unwrap();
        r.add(None).unwrap();
        b.write_all(b"x").unwrap();
        base.dispatch();
        assert_eq!(seen.get(), Flags::READ | Flags::WRITE);
        // Mixing ET and level on one fd is refused, as in libevent.
        let lv = Event::new(&base, fd, Flags::READ, |_, _| {}).unwrap();
        lv.add(None).unwrap();
        let et = Event::new(&base, fd, Flags::WRITE | Flags::ET, |_, _| {}).unwrap();
        assert!(et.add(None).is_err());
    });
}

#[test]
fn signal_event_runs_from_the_loop() {
    with_deadline(TEST_LIMIT, || {
        let base = EventBase::new().unwrap();
        let hits = Rc::new(Cell::new(0));
        let h = hits.clone();
        let ev = Event::signal(&base, libc::SIGUSR2, move |ctx, what| {
            assert!(what.contains(Flags::SIGNAL));
            assert_eq!(ctx.fd(), libc::SIGUSR2);
            h.set(h.get() + 1);
            if h.get() == 2 {
                ctx.del();
            }
        })
        .unwrap();
        ev.add(None).unwrap();
        let raiser = Event::timer(&base, |_, _| {
            // SAFETY: raise has no preconditions; a handler for SIGUSR2 is installed.
            unsafe { libc::raise(libc::SIGUSR2) };
        });
        raiser.add(Some(MS)).unwrap();
        let r2 = Event::timer(&base, |_, _| {
            // SAFETY: as above.
            unsafe { libc::kill(libc::getpid(), libc::SIGUSR2) };
        });
        r2.add(Some(20 * MS)).unwrap();
        base.dispatch();
        assert_eq!(hits.get(), 2);
    });
}

#[test]
fn mixed_callbacks_and_async_tasks() {
    with_deadline(TEST_LIMIT, || {
        let base = EventBase::new().unwrap();
        let handle = base.handle().clone();
        let log = Rc::new(RefCell::new(Vec::new()));
        let l = log.clone();
        // A callback spawns a task; the task sleeps, then adds a callback event that ends the loop.
        let start = Event::timer(&base, move |_, _| {
            l.borrow_mut().push("callback");
            let (handle, l) = (handle.clone(), l.clone());
            evloop::spawn_local(async move {
                evloop::time::sleep(2 * MS).await;
                l.borrow_mut().push("task");
                let l2 = l.clone();
                let ev = Event::timer(&handle, move |ctx, _| {
                    l2.borrow_mut().push("event from task");
                    ctx.base().loopexit(None);
                });
                ev.activate(Flags::TIMEOUT);
                std::mem::forget(ev);
            });
        });
        start.add(Some(MS)).unwrap();
        let keepalive = Event::timer(&base, |_, _| {});
        keepalive.add(None).unwrap();
        base.dispatch();
        assert_eq!(*log.borrow(), ["callback", "task", "event from task"]);

        // block_on runs async code with the base's events live.
        let fired = Rc::new(Cell::new(false));
        let f = fired.clone();
        let t = Event::timer(&base, move |_, _| f.set(true));
        t.add(Some(MS)).unwrap();
        let fired2 = fired.clone();
        let v = base.block_on(async move {
            while !fired2.get() {
                evloop::time::sleep(MS).await;
            }
            7
        });
        assert_eq!(v, 7);
    });
}

/// Serves an echo with buffer events on `listener`'s connections until `dispatch` ends.
fn echo_listener(base: &EventBase) -> Listener {
    let handle = base.handle().clone();
    Listener::bind(base, "127.0.0.1:0".parse().unwrap(), move |stream, _| {
        stream.set_nodelay(true).unwrap();
        let bev = BufferEvent::socket(&handle, stream, true).unwrap();
        bev.set_read_cb(|bev| {
            let mut input = bev.input();
            bev.output().append_buffer(&mut input);
        });
        bev.set_event_cb(|bev, _| bev.free());
        bev.enable(Flags::READ);
    })
    .unwrap()
}

#[test]
fn hundred_clients_echo_every_byte() {
    with_deadline(TEST_LIMIT, || {
        let base = EventBase::new().unwrap();
        let listener = echo_listener(&base);
        let addr = listener.local_addr();
        let exit = base.exit_handle();
        let clients = std::thread::spawn(move || {
            let r = evloop::block_on(async move {
                let tasks: Vec<_> = (0..100u32)
                    .map(|i| {
                        evloop::spawn(async move {
                            use futures::{AsyncReadExt, AsyncWriteExt};
                            let s = evloop::net::TcpStream::connect(addr).await?;
                            let data: Vec<u8> =
                                (0..20_000u32).map(|j| (i * 7 + j * 13) as u8).collect();
                            let (mut rd, mut wr) = s.split();
                            let send = async { wr.write_all(&data).await };
                            let mut back = vec![0; data.len()];
                            let recv = async { rd.read_exact(&mut back).await };
                            let (a, b) = futures::join!(send, recv);
                            a?;
                            b?;
                            assert!(back == data, "client {i} got different bytes back");
                            Ok::<(), std::io::Error>(())
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap()?;
                }
                Ok::<(), std::io::Error>(())
            });
            exit.exit();
            r
        });
        base.dispatch();
        clients.join().unwrap().unwrap();
        drop(listener);
    });
}

#[test]
fn bufferevent_eof_error_and_read_timeout() {
    with_deadline(TEST_LIMIT, || {
        let base = EventBase::new().unwrap();
        let got = Rc::new(RefCell::new(Vec::new()));
        let watch = |s: UnixStream, timeout: Option<Duration>| {
            let bev = BufferEvent::socket(&base, s, true).unwrap();
            let g = got.clone();
            bev.set_event_cb(move |bev, what| {
                g.borrow_mut().push(what);
                bev.free();
            });
            bev.set_timeouts(timeout, None);
            bev.enable(Flags::READ);
            bev
        };
        // EOF: the peer shuts down its write side.
        let (a, b) = pair();
        watch(a, None);
        b.shutdown(Shutdown::Write).unwrap();
        base.dispatch();
        assert_eq!(
            got.borrow_mut().pop(),
            Some(BevFlags::EOF | BevFlags::READING)
        );

        // Read timeout: the peer stays silent.
        let (a, _b) = pair();
        let start = Instant::now();
        watch(a, Some(30 * MS));
        base.dispatch();
        assert_eq!(
            got.borrow_mut().pop(),
            Some(BevFlags::TIMEOUT | BevFlags::READING)
        );
        assert!(start.elapsed() >= 30 * MS);

        // Error: the TCP peer resets the connection (SO_LINGER 0) after we wrote to it.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        let bev = BufferEvent::socket(&base, server, true).unwrap();
        let g = got.clone();
        bev.set_event_cb(move |bev, what| {
            g.borrow_mut().push(what);
            assert!(what.contains(BevFlags::ERROR) == bev.take_error().is_some());
            bev.free();
        });
        bev.enable(Flags::READ);
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: `linger` is a live value of the size passed.
        unsafe {
            libc::setsockopt(
                client.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as u32,
            )
        };
        drop(client);
        base.dispatch();
        let what = got.borrow_mut().pop().unwrap();
        assert!(
            what.contains(BevFlags::READING) && what.intersects(BevFlags::ERROR | BevFlags::EOF),
            "{what:?}"
        );
    });
}

#[test]
fn high_watermark_bounds_buffers_without_spinning() {
    with_deadline(TEST_LIMIT, || {
        const HIGH: usize = 64 * 1024;
        const OUT_MAX: usize = 256 * 1024;
        let base = EventBase::new().unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        let bev = BufferEvent::socket(&base, server, true).unwrap();
        let peak = Rc::new(Cell::new((0, 0)));
        let p = peak.clone();
        // Echo, but hold input back while the output (which the peer never reads) is full.
        let move_some = move |bev: &BufferEvent| {
            let mut input = bev.input();
            let mut output = bev.output();
            if output.len() < OUT_MAX {
                output.append_buffer(&mut input);
            }
            let (i, o) = p.get();
            p.set((i.max(input.len()), o.max(output.len())));
        };
        let m2 = move_some.clone();
        bev.set_read_cb(move_some);
        bev.set_write_cb(m2);
        bev.set_watermark(Flags::READ, 0, HIGH);
        bev.set_watermark(Flags::WRITE, OUT_MAX / 2, 0);
        bev.enable(Flags::READ);

        let exit = base.exit_handle();
        let writer = std::thread::spawn(move || {
            peer.set_nonblocking(true).unwrap();
            let chunk = vec![7u8; 64 * 1024];
            let (mut sent, mut stuck_since) = (0usize, None::<Instant>);
            while sent < 10 << 20 {
                match peer.write(&chunk[..chunk.len().min((10 << 20) - sent)]) {
                    Ok(n) => (sent, stuck_since) = (sent + n, None),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if stuck_since.get_or_insert_with(Instant::now).elapsed()
                            > Duration::from_millis(300)
                        {
                            break;
                        }
                        std::thread::sleep(MS);
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            exit.exit();
            (peer, sent)
        });
        base.dispatch();
        let (_peer, sent) = writer.join().unwrap();
        // Now the server is paused at its watermark with data waiting in the kernel: it must idle.
        let cpu = cpu_time_thread();
        base.loopexit(Some(Duration::from_millis(300)));
        base.dispatch();
        let spent = cpu_time_thread() - cpu;
        let (max_in, max_out) = peak.get();
        assert!(max_in <= HIGH, "input grew to {max_in}");
        assert!(max_out <= OUT_MAX + HIGH, "output grew to {max_out}");
        assert!(sent > OUT_MAX, "the peer could write only {sent} bytes");
        assert!(
            spent < Duration::from_millis(100),
            "the paused loop used {spent:?} of CPU in 300 ms"
        );
        bev.free();
    });
}

/// Output held in more chunks than one `sendmsg` takes (64) is written in full to a socket with
/// room for all of it. One write takes the first 64 chunks whole; that is no proof the socket is
/// full, so the rest must go without waiting for a write edge (none comes while the peer does not
/// read). This used to stall `examples/rot13_callback.rs` for good after a client paused it.
#[test]
fn output_in_more_chunks_than_one_write_takes_is_written_without_a_new_edge() {
    with_deadline(TEST_LIMIT, || {
        const PIECES: usize = 100;
        const PIECE: usize = 2100; // above the size `append_buffer` copies: each stays its own chunk
        let base = EventBase::new().unwrap();
        let (a, mut b) = pair();
        let room: libc::c_int = 1 << 20;
        // SAFETY: `a` is a live socket; the option value is a c_int of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                a.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&room as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(
            rc,
            0,
            "setsockopt(SO_SNDBUF): {}",
            std::io::Error::last_os_error()
        );
        let bev = BufferEvent::socket(&base, a, true).unwrap();
        let mut want = Vec::new();
        for i in 0..PIECES {
            let piece = vec![i as u8; PIECE];
            want.extend_from_slice(&piece);
            let mut one = Buffer::new();
            one.append(&piece);
            bev.output().append_buffer(&mut one);
        }
        assert!(
            bev.output().chunks().count() > 64,
            "the output is not split as meant"
        );
        bev.set_write_cb(|bev| bev.base().loopexit(None)); // the output is empty
        base.loopexit(Some(Duration::from_secs(5)));
        base.dispatch();
        assert_eq!(
            bev.output().len(),
            0,
            "the buffer event stopped writing with output waiting and room in the socket"
        );
        // Everything arrived, in order.
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match std::io::Read::read(&mut b, &mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("read: {e}"),
            }
        }
        assert!(
            got == want,
            "the peer got {} of {} bytes",
            got.len(),
            want.len()
        );
        bev.free();
    });
}

/// A buffer event works on descriptors that are not sockets, as libevent's does: over a pipe, its
/// writes fall back to `write` and its reads to `read` (`recv`/`send` fail with `ENOTSOCK`), with
/// every byte through in order, a write bigger than the pipe holds included, and EOF at the end.
#[test]
fn bufferevents_over_a_pipe_move_every_byte_and_see_eof() {
    with_deadline(TEST_LIMIT, || {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe writes.
        assert_eq!(
            unsafe { libc::pipe(fds.as_mut_ptr()) },
            0,
            "pipe: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: both were just made by pipe and are owned by nobody else.
        let (r, w) = unsafe {
            use std::os::fd::{FromRawFd, OwnedFd};
            (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
        };
        let base = EventBase::new().unwrap();
        let reader = BufferEvent::socket(&base, r, true).unwrap();
        let writer = BufferEvent::socket(&base, w, true).unwrap();
        // 1 MiB: more than a pipe holds (64 KiB on Linux, less elsewhere), so the writer meets a full
        // pipe and waits for the reader.
        let want: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        writer.output().append(&want);
        writer.set_write_cb(|bev| bev.free()); // all written: closing the write end gives EOF
        let got = Rc::new(RefCell::new(Vec::new()));
        let eof = Rc::new(Cell::new(false));
        let g = got.clone();
        reader.set_read_cb(move |bev| drain_input_into(bev, &g));
        let e = eof.clone();
        reader.set_event_cb(move |bev, what| {
            assert!(
                what.contains(BevFlags::EOF),
                "unexpected event {what:?}: {:?}",
                bev.take_error()
            );
            e.set(true);
            bev.base().loopexit(None);
        });
        reader.enable(Flags::READ);
        base.loopexit(Some(Duration::from_secs(10)));
        base.dispatch();
        assert!(eof.get(), "no EOF after the writer was freed");
        let got = got.borrow();
        assert!(
            *got == want,
            "the reader got {} of {} bytes",
            got.len(),
            want.len()
        );
        reader.free();
    });
}

/// libevent's `bufferevent_enable(EV_READ)` after a disable resumes with what is already in the
/// socket: data and the peer's EOF that arrived (their edges spent) while reading was disabled are
/// delivered once reading is enabled again, from outside the loop and from a callback.
#[test]
fn enabling_read_delivers_data_and_eof_that_arrived_while_disabled() {
    with_deadline(TEST_LIMIT, || {
        let base = EventBase::new().unwrap();
        for from_callback in [false, true] {
            let (a, mut b) = pair();
            let bev = BufferEvent::socket(&base, a, true).unwrap();
            let got = Rc::new(RefCell::new(Vec::new()));
            let eof = Rc::new(Cell::new(false));
            let g = got.clone();
            bev.set_read_cb(move |bev| {
                let mut input = bev.input();
                g.borrow_mut().extend_from_slice(&input.to_vec());
                input.clear();
            });
            let e = eof.clone();
            bev.set_event_cb(move |bev, what| {
                e.set(what == BevFlags::EOF | BevFlags::READING);
                bev.base().loopexit(None);
            });
            // First bytes read, then reading disabled; the rest and the EOF arrive meanwhile.
            bev.enable(Flags::READ);
            b.write_all(b"first ").unwrap();
            base.loopexit(Some(Duration::from_millis(50)));
            base.dispatch();
            assert_eq!(
                &got.borrow()[..],
                b"first ",
                "from_callback={from_callback}"
            );
            bev.disable(Flags::READ);
            b.write_all(b"second").unwrap();
            b.shutdown(Shutdown::Write).unwrap();
            base.loopexit(Some(Duration::from_millis(50)));
            base.dispatch(); // the edges arrive and are spent while reading is off
            assert_eq!(&got.borrow()[..], b"first ", "read while disabled");
            assert!(!eof.get(), "EOF reported while reading was disabled");
            let timer = if from_callback {
                let bev = bev.clone();
                let t = Event::timer(&base, move |_, _| bev.enable(Flags::READ));
                t.add(Some(Duration::from_millis(10))).unwrap();
                Some(t)
            } else {
                bev.enable(Flags::READ);
                None
            };
            base.loopexit(Some(Duration::from_secs(5)));
            base.dispatch();
            assert_eq!(
                &got.borrow()[..],
                b"first second",
                "from_callback={from_callback}"
            );
            assert!(
                eof.get(),
                "no EOF after enabling (from_callback={from_callback})"
            );
            drop(timer);
            bev.free();
        }
    });
}

/// A buffer event writing to a peer that reset gets `ERROR` through its event callback; the write never
/// raises `SIGPIPE` (checked in a child process with SIGPIPE's default, fatal, disposition restored).
#[test]
fn bufferevent_write_to_a_reset_peer_is_an_error_not_sigpipe() {
    if util::child_role().as_deref() != Some("bev-sigpipe") {
        return util::run_in_child(
            "bufferevent_write_to_a_reset_peer_is_an_error_not_sigpipe",
            "bev-sigpipe",
        );
    }
    // SAFETY: setting a signal disposition to SIG_DFL installs no handler.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    // Close with a zero linger: the peer's next write is answered with a reset.
    util::set_linger_zero(client.as_raw_fd());
    drop(client);

    let base = EventBase::new().unwrap();
    let got = Rc::new(Cell::new(BevFlags::empty()));
    let bev = BufferEvent::socket(&base, server, true).unwrap();
    let g = got.clone();
    bev.set_event_cb(move |bev, what| {
        g.set(what);
        bev.base().loopbreak();
    });
    bev.enable(Flags::READ | Flags::WRITE);
    // Keep writing until the reset is seen; bounded by the guard timer below.
    bev.set_write_cb(|bev| bev.write(&[7; 64 * 1024]));
    bev.write(&[7; 64 * 1024]);
    let guard = Event::timer(&base, |ctx, _| ctx.base().loopbreak());
    guard.add(Some(Duration::from_secs(5))).unwrap();
    base.dispatch();
    let what = got.get();
    assert!(
        what.contains(BevFlags::ERROR) || what.contains(BevFlags::EOF),
        "the event callback never reported the reset (flags {what:?})"
    );
}

/// Level-triggered events queued behind many others are disarmed until their callbacks ran (see
/// `src/event/fdmap.rs`): with 200 connections active at once, every byte is still delivered, one per
/// callback, including bytes that arrive while an event waits in the queue, and end-of-file keeps
/// firing until the event is deleted.
#[test]
fn many_waiting_level_events_lose_no_byte_and_keep_firing_at_eof() {
    const N: usize = 200;
    const INITIAL: usize = 5;
    with_deadline(TEST_LIMIT, || {
        let base = EventBase::new().unwrap();
        let pairs: Vec<(UnixStream, UnixStream)> = (0..N).map(|_| pair()).collect();
        let (ours, peers): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
        let peers: Rc<RefCell<Vec<Option<UnixStream>>>> =
            Rc::new(RefCell::new(peers.into_iter().map(Some).collect()));
        for peer in peers.borrow_mut().iter_mut().flatten() {
            peer.write_all(&[7; INITIAL]).unwrap();
        }
        let got = Rc::new(RefCell::new(vec![0usize; N]));
        let eofs = Rc::new(RefCell::new(vec![0usize; N]));
        let spurious = Rc::new(Cell::new(0usize));
        let mut events = Vec::new();
        for (i, sock) in ours.iter().enumerate() {
            let (got, eofs, spurious, peers) =
                (got.clone(), eofs.clone(), spurious.clone(), peers.clone());
            let mut sock = sock.try_clone().unwrap();
            let ev = Event::new(
                &base,
                sock.as_raw_fd(),
                Flags::READ | Flags::PERSIST,
                move |ctx, _| {
                    let mut byte = [0u8; 1];
                    match std::io::Read::read(&mut sock, &mut byte) {
                        Ok(1) => {
                            let n = {
                                let mut got = got.borrow_mut();
                                got[i] += 1;
                                got[i]
                            };
                            if n == 1 {
                                // One more byte for the next connection, which may be waiting in
                                // the queue (disarmed) as it arrives.
                                let mut peers = peers.borrow_mut();
                                let next = peers[(i + 1) % N].as_mut().expect("closed too early");
                                next.write_all(&[9]).unwrap();
                            }
                            if n == INITIAL + 1 {
                                peers.borrow_mut()[i] = None; // end-of-file for this connection
                            }
                        }
                        Ok(_) => {
                            let mut eofs = eofs.borrow_mut();
                            eofs[i] += 1;
                            if eofs[i] == 3 {
                                ctx.del();
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            spurious.set(spurious.get() + 1)
                        }
                        Err(e) => panic!("read: {e}"),
                    }
                },
            )
            .unwrap();
            ev.add(None).unwrap();
            events.push(ev);
        }
        base.dispatch(); // returns once every event deleted itself
        assert!(
            got.borrow().iter().all(|&n| n == INITIAL + 1),
            "{:?}",
            got.borrow()
        );
        assert!(eofs.borrow().iter().all(|&n| n == 3), "{:?}", eofs.borrow());
        // A stale report can cost a callback that finds nothing; it must stay rare, not a busy loop.
        assert!(
            spurious.get() <= N,
            "{} callbacks found nothing to read",
            spurious.get()
        );
    });
}

#[test]
fn a_read_callback_that_replaces_itself_hands_over_to_the_new_one() {
    with_deadline(TEST_LIMIT, || {
        let base = EventBase::new().unwrap();
        let (a, mut b) = pair();
        let bev = BufferEvent::socket(&base, std::os::fd::OwnedFd::from(a), true).unwrap();
        // The first callback owns `first_state`; once replaced (from inside itself) it must be dropped
        // when it returns, not put back, and the second one must see everything sent afterwards.
        let first_state = Rc::new(());
        let watch = Rc::downgrade(&first_state);
        let second_got = Rc::new(RefCell::new(Vec::new()));
        let calls = Rc::new(Cell::new(0));
        let (got, n) = (second_got.clone(), calls.clone());
        bev.set_read_cb(move |bev| {
            let _keep = &first_state;
            n.set(n.get() + 1);
            bev.input().clear();
            let got = got.clone();
            bev.set_read_cb(move |bev| {
                drain_input_into(bev, &got);
                if got.borrow().len() >= 5 {
                    bev.base().loopexit(None);
                }
            });
        });
        bev.enable(Flags::READ);
        b.write_all(b"first").unwrap();
        // A round may run only the buffer event's enabling kick; the read comes within a few.
        for _ in 0..100 {
            if calls.get() > 0 {
                break;
            }
            base.loop_once(true);
        }
        assert_eq!(calls.get(), 1, "the first callback ran once");
        assert!(
            watch.upgrade().is_none(),
            "the replaced callback (and what it owned) was kept"
        );
        b.write_all(b"later").unwrap();
        base.loopexit(Some(Duration::from_secs(10)));
        base.dispatch();
        assert_eq!(calls.get(), 1, "the replaced callback ran again");
        assert_eq!(&*second_got.borrow(), b"later");
        bev.free();
    });
}
