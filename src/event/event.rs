//! [`Event`]: a callback on an fd, a timeout or a signal; [`EventCtx`]: what its callback is given.

use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use super::core::{self, SlotId};
use super::{BaseHandle, Flags};

/// A callback on readiness of an fd, a timeout, or a signal (libevent's `struct event`).
///
/// An event is made non-pending; [`add`](Self::add) makes it pending. When what it watches happens, its
/// callback runs from the loop with the [`Flags`] that fired. Without [`Flags::PERSIST`] it then stops
/// being pending (add it again to re-arm); with it, it stays pending and its timeout, if any, restarts
/// each time it fires.
///
/// Dropping the `Event` deletes and frees it, even from inside its own callback or another event's:
/// the running callback finishes, then is dropped.
///
/// # Examples
/// A persistent read event on a pipe:
/// ```
/// use std::io::{Read, Write};
/// use std::os::fd::AsRawFd;
/// use std::os::unix::net::UnixStream;
/// use evloop::event::{Event, EventBase, Flags};
///
/// let base = EventBase::new()?;
/// let (a, mut b) = UnixStream::pair()?;
/// a.set_nonblocking(true)?;
/// b.write_all(b"hi")?;
/// let ev = Event::new(&base, a.as_raw_fd(), Flags::READ | Flags::PERSIST, move |ctx, what| {
///     assert!(what.contains(Flags::READ));
///     let mut buf = [0; 8];
///     assert_eq!((&a).read(&mut buf).unwrap(), 2);
///     ctx.del(); // nothing else is pending: dispatch returns
/// })?;
/// ev.add(None)?;
/// base.dispatch();
/// # Ok::<(), std::io::Error>(())
/// ```
#[must_use = "dropping an Event deletes it"]
pub struct Event {
    base: BaseHandle,
    id: SlotId,
}

/// What a callback is given besides the fired flags: its fd, its base, and control of its own event.
pub struct EventCtx<'a> {
    base: &'a BaseHandle,
    id: SlotId,
    fd: RawFd,
}

impl Event {
    /// Makes an event on `fd` (for `SIGNAL` events, the signal number) watching `flags`; `callback` gets
    /// a context and the flags that fired.
    ///
    /// # Errors
    /// Fails when the base has been dropped.
    pub fn new<F>(
        base: impl AsRef<BaseHandle>,
        fd: RawFd,
        flags: Flags,
        callback: F,
    ) -> io::Result<Event>
    where
        F: FnMut(&EventCtx<'_>, Flags) + 'static,
    {
        let base = base.as_ref().clone();
        let id = base.0.alloc(fd, flags, core::callback(callback), false)?;
        Ok(Event { base, id })
    }

    /// A pure timer (libevent's `evtimer_new`): `add(Some(d))` fires it with `TIMEOUT` after `d`.
    ///
    /// # Panics
    /// Panics when the base has been dropped.
    pub fn timer<F>(base: impl AsRef<BaseHandle>, callback: F) -> Event
    where
        F: FnMut(&EventCtx<'_>, Flags) + 'static,
    {
        Event::new(base, -1, Flags::empty(), callback)
            .expect("Event::timer: the EventBase has been dropped")
    }

    /// A persistent event on signal `signum` (libevent's `evsignal_new`): its callback runs from the
    /// loop, never from the signal handler, once per round in which the signal arrived.
    ///
    /// # Errors
    /// Fails when the base has been dropped. Invalid signal numbers are reported by `add`.
    pub fn signal<F>(base: impl AsRef<BaseHandle>, signum: i32, callback: F) -> io::Result<Event>
    where
        F: FnMut(&EventCtx<'_>, Flags) + 'static,
    {
        Event::new(base, signum, Flags::SIGNAL | Flags::PERSIST, callback)
    }

    /// Makes the event pending, with an optional timeout (`TIMEOUT` fires if nothing else did within
    /// it). On a pending event, replaces the timeout (`None` removes it).
    ///
    /// # Errors
    /// Fails when the base has been dropped; when the fd cannot be polled (the message says why); when
    /// `ET` disagrees with the other events on the same fd; for a `SIGNAL` event on a signal that
    /// cannot be caught.
    pub fn add(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.base.0.add(self.id, timeout)
    }

    /// Makes the event non-pending, and cancels a pending run of its callback. A no-op if not pending.
    pub fn del(&self) {
        self.base.0.del(self.id);
    }

    /// True while added and not yet fired (one-shot) or deleted.
    pub fn is_pending(&self) -> bool {
        self.base.0.is_pending(self.id)
    }

    /// Sets the priority level (0 runs first); see [`EventBase::priority_init`](super::EventBase::priority_init).
    ///
    /// # Errors
    /// `InvalidInput` when `priority` is not below the base's number of levels.
    pub fn set_priority(&self, priority: usize) -> io::Result<()> {
        self.base.0.set_priority(self.id, priority)
    }

    /// Makes the callback run with `what` as if it had fired (libevent's `event_active`).
    pub fn activate(&self, what: Flags) {
        self.base.0.activate(self.id, what);
    }

    /// The base this event belongs to.
    pub fn base(&self) -> &BaseHandle {
        &self.base
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        self.base.0.free(self.id);
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("slot", &self.id.index)
            .field("pending", &self.is_pending())
            .finish()
    }
}

impl<'a> EventCtx<'a> {
    pub(crate) fn new(base: &'a BaseHandle, id: SlotId, fd: RawFd) -> Self {
        EventCtx { base, id, fd }
    }

    /// The event's fd (the signal number for signal events, -1 for timers).
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// The base, to make or control other events or to exit the loop.
    pub fn base(&self) -> &BaseHandle {
        self.base
    }

    /// Re-adds this event (typically a one-shot one), as [`Event::add`].
    ///
    /// # Errors
    /// As [`Event::add`]; also when the event was freed during this callback.
    pub fn add(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.base.0.add(self.id, timeout)
    }

    /// Deletes this event, as [`Event::del`].
    pub fn del(&self) {
        self.base.0.del(self.id);
    }

    /// Whether this event is pending (a one-shot event is not, in its callback).
    pub fn is_pending(&self) -> bool {
        self.base.0.is_pending(self.id)
    }

    /// False once the event has been freed (its `Event` dropped) during this callback.
    pub fn is_alive(&self) -> bool {
        self.base.0.exists(self.id)
    }
}

impl fmt::Debug for EventCtx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventCtx").field("fd", &self.fd).finish()
    }
}
