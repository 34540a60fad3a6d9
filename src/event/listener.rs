//! [`Listener`]: accepts TCP connections and hands each to a callback (libevent's `evconnlistener`).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::core::{callback, SlotId};
use super::inbox::{Token, TokenWaker};
use super::{BaseHandle, Flags};
use crate::net;

/// Accepts per round, so a flood of connections cannot starve the other events.
const ACCEPTS_PER_ROUND: usize = 64;

type AcceptCb = Box<dyn FnMut(TcpStream, SocketAddr)>;
type ErrorCb = Box<dyn FnMut(&io::Error)>;

/// A listening TCP socket whose accept callback gets each new connection (non-blocking, close-on-exec)
/// and its peer address.
///
/// Accepting shares the async listener's logic ([`net::TcpListener`]): when the process runs out of
/// descriptors (`EMFILE` and kin) the error callback gets the error once, and accepting pauses for
/// 10-100 ms between attempts instead of spinning, resuming as soon as there is room.
///
/// Dropping the `Listener` closes the socket.
///
/// # Examples
/// ```no_run
/// use evloop::event::{BufferEvent, EventBase, Flags, Listener};
///
/// let base = EventBase::new()?;
/// let handle = base.handle().clone();
/// let _listener = Listener::bind(&base, "127.0.0.1:7001".parse().unwrap(), move |stream, _peer| {
///     let bev = BufferEvent::socket(&handle, stream, true).unwrap();
///     bev.set_read_cb(|bev| {
///         let mut input = bev.input();
///         bev.output().append_buffer(&mut input);
///     });
///     bev.set_event_cb(|bev, _| bev.free());
///     bev.enable(Flags::READ);
/// })?;
/// base.dispatch();
/// # Ok::<(), std::io::Error>(())
/// ```
#[must_use = "dropping a Listener closes it"]
pub struct Listener(Rc<Inner>);

struct Inner {
    base: BaseHandle,
    id: SlotId,
    /// The socket until the first round, which runs inside the base's runtime where it can be
    /// registered; then `None`.
    std: RefCell<Option<std::net::TcpListener>>,
    /// The registered listener, from the first round on.
    net: RefCell<Option<net::TcpListener>>,
    /// Posts `Slot(id, READ)`: readiness and the end of an accept pause.
    waker: Waker,
    accept_cb: RefCell<Option<AcceptCb>>,
    error_cb: RefCell<Option<ErrorCb>>,
    enabled: Cell<bool>,
    /// Kept for `local_addr` once the socket is registered.
    addr: SocketAddr,
}

impl Listener {
    /// Binds a listening socket to `addr` (port 0 picks a free port; see [`local_addr`](Self::local_addr)).
    ///
    /// # Errors
    /// As `std::net::TcpListener::bind`, with the message naming the fix for an address in use, not
    /// local, or privileged (as [`net::TcpListener::bind`]); and when the base has been dropped.
    pub fn bind<F>(
        base: impl AsRef<BaseHandle>,
        addr: SocketAddr,
        accept: F,
    ) -> io::Result<Listener>
    where
        F: FnMut(TcpStream, SocketAddr) + 'static,
    {
        let listener =
            std::net::TcpListener::bind(addr).map_err(|e| crate::net::tcp::bind_error(addr, e))?;
        // std listens with a backlog of 128; a burst of connects needs the async listener's.
        crate::net::socket::listen(listener.as_raw_fd())?;
        Listener::new(base, listener, accept)
    }

    /// Listens on an already bound and listening std socket.
    ///
    /// # Errors
    /// Fails when the base has been dropped or the socket cannot be made non-blocking.
    pub fn new<F>(
        base: impl AsRef<BaseHandle>,
        listener: std::net::TcpListener,
        accept: F,
    ) -> io::Result<Listener>
    where
        F: FnMut(TcpStream, SocketAddr) + 'static,
    {
        let base = base.as_ref().clone();
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let id = base
            .0
            .alloc(-1, Flags::empty(), callback(|_, _| {}), true)?;
        let inner = Rc::new(Inner {
            waker: TokenWaker::waker(&base.0.shared, Token::Slot(id, Flags::READ)),
            base,
            id,
            std: RefCell::new(Some(listener)),
            net: RefCell::new(None),
            accept_cb: RefCell::new(Some(Box::new(accept))),
            error_cb: RefCell::new(None),
            enabled: Cell::new(false),
            addr,
        });
        let driver = inner.clone();
        inner
            .base
            .0
            .replace_callback(id, callback(move |_, _| driver.drive()));
        let l = Listener(inner);
        l.enable();
        Ok(l)
    }

    /// Sets the callback for accept errors (by default they are ignored; accepting goes on).
    pub fn set_error_cb(&self, cb: impl FnMut(&io::Error) + 'static) {
        *self.0.error_cb.borrow_mut() = Some(Box::new(cb));
    }

    /// Starts (or resumes) accepting.
    pub fn enable(&self) {
        self.0.enabled.set(true);
        self.0.base.0.set_internal_pending(self.0.id, true);
        self.0.base.0.activate(self.0.id, Flags::READ);
    }

    /// Stops accepting; connections wait in the kernel's backlog.
    pub fn disable(&self) {
        self.0.enabled.set(false);
        self.0.base.0.set_internal_pending(self.0.id, false);
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.0.addr
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.base.0.free(self.0.id);
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("addr", &self.0.addr)
            .field("enabled", &self.0.enabled.get())
            .finish()
    }
}

impl Inner {
    fn drive(&self) {
        if !self.enabled.get() {
            return;
        }
        if let Some(std) = self.std.borrow_mut().take() {
            // Inside the base's runtime now: register with its reactor.
            match net::TcpListener::from_std(std) {
                Ok(l) => *self.net.borrow_mut() = Some(l),
                Err(e) => return self.report(&e),
            }
        }
        let mut cx = Context::from_waker(&self.waker);
        for _ in 0..ACCEPTS_PER_ROUND {
            let polled = match self.net.borrow().as_ref() {
                Some(l) => l.poll_accept_fd(&mut cx),
                None => return,
            };
            match polled {
                Poll::Pending => return,
                // Hand over a plain socket, never registered: the callback registers it where it
                // wants (a BufferEvent, an Event, an async stream).
                Poll::Ready(Ok((fd, peer))) => self.call(TcpStream::from(fd), peer),
                Poll::Ready(Err(e)) => self.report(&e),
            }
            if !self.enabled.get() {
                return;
            }
        }
        // More may be waiting: come back after the other active events.
        self.base.0.activate(self.id, Flags::READ);
    }

    fn call(&self, stream: TcpStream, peer: SocketAddr) {
        let Some(mut cb) = self.accept_cb.borrow_mut().take() else {
            return;
        };
        cb(stream, peer);
        let mut slot = self.accept_cb.borrow_mut();
        if slot.is_none() {
            *slot = Some(cb);
        }
    }

    fn report(&self, e: &io::Error) {
        let Some(mut cb) = self.error_cb.borrow_mut().take() else {
            return;
        };
        cb(e);
        let mut slot = self.error_cb.borrow_mut();
        if slot.is_none() {
            *slot = Some(cb);
        }
    }
}
