//! [`BufferEvent`]: buffered I/O on a socket with read, write and event callbacks (libevent's
//! `bufferevent_socket`).
//!
//! The socket is registered once, for both directions, edge-triggered, so enabling, disabling and
//! writing never cost an `epoll_ctl`. A read that returns fewer bytes than asked proves the socket
//! drained, so readiness is cleared without the extra `read` that would return `EAGAIN`. When a read
//! callback leaves data in the output, it is written right after the callback, in one `writev`; only
//! a write the kernel cuts short (fewer bytes than offered: the socket's buffer is full) waits for
//! write readiness; output longer than one `writev` takes is written on at once. A steady echo thus
//! costs one `read` and one `writev` per message plus a share of `epoll_wait`.

use std::cell::{Cell, RefCell, RefMut};
use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

mod driver;

use super::core::{callback, SlotId};
use super::inbox::{Token, TokenWaker};
use super::timers::TimerId;
use super::{flag_ops, BaseHandle, Buffer, Flags};
use crate::reactor::Source;
use crate::sys;

/// The smallest and the largest single read.
const MIN_READ: usize = 4096;
const MAX_READ: usize = 64 * 1024;

/// What the event callback of a [`BufferEvent`] reports (libevent's `BEV_EVENT_*`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BevFlags(u16);

impl BevFlags {
    /// It happened while reading.
    pub const READING: BevFlags = BevFlags(0x01);
    /// It happened while writing.
    pub const WRITING: BevFlags = BevFlags(0x02);
    /// The peer closed its side: no more input.
    pub const EOF: BevFlags = BevFlags(0x10);
    /// An I/O error; [`BufferEvent::take_error`] has it.
    pub const ERROR: BevFlags = BevFlags(0x20);
    /// A timeout set by [`BufferEvent::set_timeouts`] expired; that direction is now disabled.
    pub const TIMEOUT: BevFlags = BevFlags(0x40);
}

flag_ops!(BevFlags, READING, WRITING, EOF, ERROR, TIMEOUT);

type DataCb = Box<dyn FnMut(&BufferEvent)>;
type EventCb = Box<dyn FnMut(&BufferEvent, BevFlags)>;

/// A socket with an input and an output [`Buffer`] and three callbacks: *read* (input reached the read
/// low watermark), *write* (output drained to the write low watermark) and *event* (EOF, error,
/// timeout).
///
/// Like a libevent bufferevent, it lives until [`free`](Self::free) is called (or its base is
/// dropped): the base keeps it, and `BufferEvent` values are cheap handles (`Rc` clones) to it. New
/// buffer events have `WRITE` enabled; call `enable(Flags::READ)` to start reading.
///
/// # Examples
/// An echo over a socket pair:
/// ```
/// use std::io::{Read, Write};
/// use std::os::unix::net::UnixStream;
/// use evloop::event::{BevFlags, BufferEvent, EventBase, Flags};
///
/// let base = EventBase::new()?;
/// let (a, mut peer) = UnixStream::pair()?;
/// let bev = BufferEvent::socket(&base, a, true)?;
/// bev.set_read_cb(|bev| {
///     let mut input = bev.input();
///     bev.output().append_buffer(&mut input);
/// });
/// bev.set_event_cb(|bev, what| {
///     assert!(what.contains(BevFlags::EOF));
///     bev.free();
/// });
/// bev.enable(Flags::READ);
/// peer.write_all(b"ping")?;
/// peer.shutdown(std::net::Shutdown::Write)?;
/// base.dispatch(); // ends once the buffer event is freed
/// let mut back = Vec::new();
/// peer.read_to_end(&mut back)?;
/// assert_eq!(back, b"ping");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct BufferEvent(Rc<Inner>);

struct Inner {
    base: BaseHandle,
    /// The driver's slot in the base; taken by `free`.
    id: Cell<Option<SlotId>>,
    fd: RawFd,
    /// The socket; closed by `free` only with `close_on_free`.
    owned: RefCell<Option<OwnedFd>>,
    close_on_free: bool,
    /// The socket's registration (both directions, edge-triggered).
    source: Arc<Source>,
    /// Posts `Slot(id, READ | WRITE)`: wakes the driver on readiness.
    io_waker: Waker,
    input: RefCell<Buffer>,
    output: RefCell<Buffer>,
    /// The callbacks, each taken out of its cell while it runs (so it may replace itself).
    read_cb: Cell<Option<DataCb>>,
    write_cb: Cell<Option<DataCb>>,
    event_cb: Cell<Option<EventCb>>,
    enabled: Cell<Flags>,
    /// Read low and high watermarks (0: none).
    read_wm: Cell<(usize, usize)>,
    /// Write low watermark.
    write_low: Cell<usize>,
    /// Read and write timeouts.
    timeouts: Cell<(Option<Duration>, Option<Duration>)>,
    /// The armed timers. Armed lazily: a timer that fires early is re-armed for the real deadline
    /// (`last_read`/`last_write` + timeout), so I/O never moves a timer.
    read_timer: Cell<Option<TimerId>>,
    write_timer: Cell<Option<TimerId>>,
    /// The last read progress (or the start of reading); kept only while a read timeout is set.
    last_read: Cell<Instant>,
    /// The last write progress, or when output started waiting.
    last_write: Cell<Instant>,
    /// Output is waiting to be written (since `last_write`).
    write_waiting: Cell<bool>,
    /// Reading stopped at the high watermark; resumes when input drains below it.
    paused: Cell<bool>,
    /// The peer closed its side (or reading failed): no more reads.
    eof: Cell<bool>,
    /// The last I/O error.
    error: RefCell<Option<io::Error>>,
    /// `free` has run.
    freed: Cell<bool>,
    /// What the driver's slot was last told by `update_pending` (pending: keeps `dispatch` running).
    pending: Cell<bool>,
    /// One of this buffer event's callbacks is running: buffer guards do not kick the driver, which
    /// looks at the buffers itself after the callback.
    in_cb: Cell<bool>,
    /// The size of the next read: doubles while reads fill it, back to `MIN_READ` otherwise.
    next_read: Cell<usize>,
}

/// Mutable access to a buffer event's input or output; on drop, outside the buffer event's own
/// callbacks, it lets the buffer event act on the change (write new output, resume paused reading).
/// (Taking and dropping one is a few instructions, so these calls are `#[inline]`: every read
/// callback makes several, from the user's crate.)
pub struct BufGuard<'a> {
    buf: RefMut<'a, Buffer>,
    bev: &'a BufferEvent,
}

impl Deref for BufGuard<'_> {
    type Target = Buffer;
    #[inline]
    fn deref(&self) -> &Buffer {
        &self.buf
    }
}

impl DerefMut for BufGuard<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut Buffer {
        &mut self.buf
    }
}

impl Drop for BufGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        let inner = &self.bev.0;
        if !inner.in_cb.get() && !inner.freed.get() {
            inner.kick();
        }
    }
}

impl fmt::Debug for BufGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.buf, f)
    }
}

impl BufferEvent {
    /// Wraps a connected socket (made non-blocking here). With `close_on_free`, `free` closes it;
    /// otherwise the fd is left open and becomes the caller's to close.
    ///
    /// # Errors
    /// Fails when the base has been dropped, or the fd cannot be registered (already registered with
    /// this base's reactor, not pollable).
    pub fn socket(
        base: impl AsRef<BaseHandle>,
        fd: impl Into<OwnedFd>,
        close_on_free: bool,
    ) -> io::Result<BufferEvent> {
        let base = base.as_ref().clone();
        let owned: OwnedFd = fd.into();
        let fd = owned.as_raw_fd();
        sys::set_nonblocking(fd)?;
        let id = base
            .0
            .alloc(fd, Flags::empty(), callback(|_, _| {}), true)?;
        let source = match base.0.reactor.register(fd) {
            Ok(s) => s,
            Err(e) => {
                base.0.free(id);
                return Err(e);
            }
        };
        let shared = base.0.shared.clone();
        let now = crate::time::now();
        let inner = Rc::new(Inner {
            base,
            id: Cell::new(Some(id)),
            fd,
            owned: RefCell::new(Some(owned)),
            close_on_free,
            source,
            io_waker: TokenWaker::waker(&shared, Token::Slot(id, Flags::READ | Flags::WRITE)),
            input: RefCell::new(Buffer::new()),
            output: RefCell::new(Buffer::new()),
            read_cb: Cell::new(None),
            write_cb: Cell::new(None),
            event_cb: Cell::new(None),
            enabled: Cell::new(Flags::WRITE),
            read_wm: Cell::new((0, 0)),
            write_low: Cell::new(0),
            timeouts: Cell::new((None, None)),
            read_timer: Cell::new(None),
            write_timer: Cell::new(None),
            last_read: Cell::new(now),
            last_write: Cell::new(now),
            write_waiting: Cell::new(false),
            paused: Cell::new(false),
            eof: Cell::new(false),
            error: RefCell::new(None),
            freed: Cell::new(false),
            pending: Cell::new(false),
            in_cb: Cell::new(false),
            next_read: Cell::new(MIN_READ),
        });
        let driver = BufferEvent(inner.clone());
        inner
            .base
            .0
            .replace_callback(id, callback(move |_, what| driver.0.drive(&driver, what)));
        Ok(BufferEvent(inner))
    }

    /// Sets the read callback: called when input holds at least the read low watermark.
    pub fn set_read_cb(&self, cb: impl FnMut(&BufferEvent) + 'static) {
        drop(self.0.read_cb.replace(Some(Box::new(cb))));
    }

    /// Sets the write callback: called when a write leaves at most the write low watermark in output.
    pub fn set_write_cb(&self, cb: impl FnMut(&BufferEvent) + 'static) {
        drop(self.0.write_cb.replace(Some(Box::new(cb))));
    }

    /// Sets the event callback: EOF, errors and timeouts, with `READING` or `WRITING`.
    pub fn set_event_cb(&self, cb: impl FnMut(&BufferEvent, BevFlags) + 'static) {
        drop(self.0.event_cb.replace(Some(Box::new(cb))));
    }

    /// The input buffer (what was read).
    ///
    /// # Panics
    /// Panics if it is already borrowed (hold one guard per buffer at a time).
    #[inline]
    pub fn input(&self) -> BufGuard<'_> {
        BufGuard {
            buf: self.0.input.borrow_mut(),
            bev: self,
        }
    }

    /// The output buffer (what will be written).
    ///
    /// # Panics
    /// As [`input`](Self::input).
    #[inline]
    pub fn output(&self) -> BufGuard<'_> {
        BufGuard {
            buf: self.0.output.borrow_mut(),
            bev: self,
        }
    }

    /// Appends `data` to the output.
    pub fn write(&self, data: &[u8]) {
        self.output().append(data);
    }

    /// Moves up to `out.len()` bytes of input into `out`.
    pub fn read(&self, out: &mut [u8]) -> usize {
        self.input().remove(out)
    }

    /// Enables reading and/or writing (`Flags::READ`, `Flags::WRITE`).
    pub fn enable(&self, what: Flags) {
        let inner = &self.0;
        let before = inner.enabled.get();
        inner
            .enabled
            .set(before | (what & (Flags::READ | Flags::WRITE)));
        if what.contains(Flags::READ) && !before.contains(Flags::READ) {
            inner.last_read.set(crate::time::now());
            inner.arm_read_timer();
        }
        inner.kick();
    }

    /// Disables reading and/or writing. Data keeps arriving in the kernel's buffer (backpressure).
    pub fn disable(&self, what: Flags) {
        let inner = &self.0;
        inner.enabled.set(inner.enabled.get() & !what);
        inner.update_pending();
    }

    /// What is enabled.
    #[inline]
    pub fn enabled(&self) -> Flags {
        self.0.enabled.get()
    }

    /// Sets watermarks: for `Flags::READ`, `low` delays the read callback until that much input is
    /// buffered and `high` (0: none) stops reading while that much is; for `Flags::WRITE`, `low` is the
    /// output level at or below which the write callback runs (`high` is ignored).
    pub fn set_watermark(&self, what: Flags, low: usize, high: usize) {
        if what.contains(Flags::READ) {
            self.0.read_wm.set((low, high));
            self.0.kick();
        }
        if what.contains(Flags::WRITE) {
            self.0.write_low.set(low);
        }
    }

    /// Sets the read and write timeouts (`None`: none). The read timeout fires when reading is enabled
    /// and nothing arrived for that long; the write timeout when output waited that long without
    /// progress. Either calls the event callback with `TIMEOUT | READING` (or `WRITING`) and disables
    /// that direction.
    pub fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>) {
        let inner = &self.0;
        inner.timeouts.set((read, write));
        let now = crate::time::now();
        inner.last_read.set(now);
        inner.last_write.set(now);
        inner.arm_read_timer();
        inner.arm_write_timer();
    }

    /// The socket.
    pub fn fd(&self) -> RawFd {
        self.0.fd
    }

    /// The base.
    pub fn base(&self) -> &BaseHandle {
        &self.0.base
    }

    /// Takes the error reported with `BevFlags::ERROR`.
    pub fn take_error(&self) -> Option<io::Error> {
        self.0.error.borrow_mut().take()
    }

    /// Sets the priority level of the buffer event's callbacks.
    ///
    /// # Errors
    /// As [`Event::set_priority`](super::Event::set_priority).
    pub fn set_priority(&self, priority: usize) -> io::Result<()> {
        match self.0.id.get() {
            Some(id) => self.0.base.0.set_priority(id, priority),
            None => Err(io::Error::other("the buffer event has been freed")),
        }
    }

    /// Frees the buffer event: stops its I/O and timers, drops its callbacks and buffers, and closes
    /// the socket if made with `close_on_free`. Safe inside its own callbacks; a no-op the second time.
    pub fn free(&self) {
        self.0.release();
    }

    /// True once freed.
    pub fn is_freed(&self) -> bool {
        self.0.freed.get()
    }
}

impl fmt::Debug for BufferEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferEvent")
            .field("fd", &self.0.fd)
            .field("enabled", &self.0.enabled.get())
            .field("input", &self.0.input.try_borrow().map(|b| b.len()).ok())
            .field("output", &self.0.output.try_borrow().map(|b| b.len()).ok())
            .field("freed", &self.0.freed.get())
            .finish()
    }
}
