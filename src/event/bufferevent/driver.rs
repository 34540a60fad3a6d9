//! The driver of a [`BufferEvent`](super::BufferEvent): what runs when its socket is ready or a timer
//! fires. One read per run (a short read clears readiness), the read callback, then one `writev` of
//! whatever output is waiting; a write the socket cut short waits for write readiness (one cut at
//! `MAX_IOV` chunks runs again at once).

use std::cell::Cell;
use std::io;
use std::task::{Context, Poll};

use std::os::fd::IntoRawFd;

use super::super::inbox::Token;
use super::super::timers::TimerId;
use super::super::Flags;
use super::{BevFlags, BufferEvent, DataCb, Inner, MAX_READ, MIN_READ};
use crate::reactor::Direction;

impl Inner {
    /// The driver: runs on readiness, timers and kicks.
    pub(super) fn drive(&self, bev: &BufferEvent, what: Flags) {
        if what.contains(Flags::TIMEOUT) {
            self.check_timers(bev);
        }
        let mut again = self.do_read(bev);
        if self.freed.get() {
            return;
        }
        again |= self.do_write(bev);
        if self.freed.get() {
            return;
        }
        if again {
            self.kick();
        } else {
            self.update_pending();
        }
    }

    /// Has the driver run again soon (after this round's other events).
    pub(super) fn kick(&self) {
        if let Some(id) = self.id.get() {
            self.update_pending();
            self.base.0.activate(id, Flags::READ | Flags::WRITE);
        }
    }

    /// Pending (keeps `dispatch` running) while it can read, or has output to write.
    pub(super) fn update_pending(&self) {
        if let Some(id) = self.id.get() {
            let en = self.enabled.get();
            let reading = en.contains(Flags::READ) && !self.eof.get();
            let writing = en.contains(Flags::WRITE)
                && self.output.try_borrow().map_or(true, |o| !o.is_empty());
            // The slot is told only of changes: a steady echo stays pending.
            let pending = reading || writing;
            if self.pending.replace(pending) != pending {
                self.base.0.set_internal_pending(id, pending);
            }
        }
    }

    /// One read if reading is enabled and the socket is ready; runs the read or event callback.
    /// Returns true when the socket may still be readable (so the driver should run again).
    fn do_read(&self, bev: &BufferEvent) -> bool {
        if !self.enabled.get().contains(Flags::READ) || self.eof.get() {
            return false;
        }
        let (low, high) = self.read_wm.get();
        let len = self.input.borrow().len();
        let mut want = self.next_read.get();
        if high > 0 {
            if len >= high {
                self.paused.set(true);
                return false;
            }
            want = want.min(high - len);
        }
        self.paused.set(false);
        let mut cx = Context::from_waker(&self.io_waker);
        let Poll::Ready(ev) = self.source.poll_ready(Direction::Read, &mut cx) else {
            return false;
        };
        let res = self.input.borrow_mut().read_from_fd(self.fd, want);
        match res {
            Ok(0) => {
                self.eof.set(true);
                self.enabled.set(self.enabled.get() & !Flags::READ);
                self.call_event_cb(bev, BevFlags::EOF | BevFlags::READING);
                false
            }
            Ok(n) => {
                if n < want && !ev.is_closed() {
                    self.source.clear_readiness(ev); // a short read proves the socket drained
                }
                if n == self.next_read.get() {
                    self.next_read.set((n * 2).min(MAX_READ));
                } else if n < MIN_READ {
                    self.next_read.set(MIN_READ);
                }
                if self.timeouts.get().0.is_some() {
                    self.last_read.set(crate::time::now());
                }
                // Re-registers the waker, or says there is more to read.
                let more = self.source.poll_ready(Direction::Read, &mut cx).is_ready();
                if self.input.borrow().len() >= low.max(1) {
                    self.call_data_cb(bev, &self.read_cb);
                }
                more
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.source.clear_readiness(ev);
                self.source.poll_ready(Direction::Read, &mut cx).is_ready()
            }
            Err(e) => {
                self.eof.set(true);
                self.enabled.set(self.enabled.get() & !Flags::READ);
                *self.error.borrow_mut() = Some(e);
                self.call_event_cb(bev, BevFlags::ERROR | BevFlags::READING);
                false
            }
        }
    }

    /// One `writev` if output is waiting and the socket is writable; runs the write or event callback.
    /// Returns true when the driver should run again (more to write on a still-writable socket).
    fn do_write(&self, bev: &BufferEvent) -> bool {
        if !self.enabled.get().contains(Flags::WRITE) || self.output.borrow().is_empty() {
            return false;
        }
        if !self.write_waiting.replace(true) && self.timeouts.get().1.is_some() {
            self.last_write.set(crate::time::now());
        }
        let mut cx = Context::from_waker(&self.io_waker);
        let Poll::Ready(ev) = self.source.poll_ready(Direction::Write, &mut cx) else {
            self.arm_write_timer();
            return false;
        };
        let res = self.output.borrow_mut().write_to_fd(self.fd);
        match res {
            Ok((n, offered)) => {
                if self.timeouts.get().1.is_some() {
                    self.last_write.set(crate::time::now());
                }
                let left = self.output.borrow().len();
                let mut more = false;
                if left > 0 {
                    if n < offered {
                        // A short write proves the socket's buffer full: wait for its next edge.
                        self.source.clear_readiness(ev);
                        more = self.source.poll_ready(Direction::Write, &mut cx).is_ready();
                    } else {
                        // All that was offered went (the offer stops at `MAX_IOV` chunks): the
                        // socket may take more, and no edge would come to say so.
                        more = true;
                    }
                    self.arm_write_timer();
                } else {
                    self.write_waiting.set(false);
                }
                if left <= self.write_low.get() {
                    self.call_data_cb(bev, &self.write_cb);
                    if !self.output.borrow().is_empty() {
                        more = true; // the callback wrote more
                    }
                }
                more
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.source.clear_readiness(ev);
                self.arm_write_timer();
                self.source.poll_ready(Direction::Write, &mut cx).is_ready()
            }
            Err(e) => {
                self.enabled.set(self.enabled.get() & !Flags::WRITE);
                *self.error.borrow_mut() = Some(e);
                self.call_event_cb(bev, BevFlags::ERROR | BevFlags::WRITING);
                false
            }
        }
    }

    /// Runs a read or write callback, taken out of its cell while it runs.
    fn call_data_cb(&self, bev: &BufferEvent, cell: &Cell<Option<DataCb>>) {
        let Some(mut cb) = cell.take() else {
            return;
        };
        self.in_cb.set(true);
        cb(bev);
        self.in_cb.set(false);
        self.restore(cell, cb);
    }

    fn call_event_cb(&self, bev: &BufferEvent, what: BevFlags) {
        let Some(mut cb) = self.event_cb.take() else {
            return;
        };
        self.in_cb.set(true);
        cb(bev, what);
        self.in_cb.set(false);
        self.restore(&self.event_cb, cb);
    }

    /// Puts a callback back unless it was replaced or the buffer event freed meanwhile.
    fn restore<T>(&self, cell: &Cell<Option<T>>, cb: T) {
        if self.freed.get() {
            drop(cb);
            return;
        }
        match cell.take() {
            None => cell.set(Some(cb)),
            newer => {
                cell.set(newer);
                drop(cb);
            }
        }
    }

    /// The token the base's timers fire for this buffer event (it then checks which timer it was).
    fn timer_token(&self) -> Option<Token> {
        self.id.get().map(|id| Token::Slot(id, Flags::TIMEOUT))
    }

    pub(super) fn arm_read_timer(&self) {
        if let (Some(d), None, Some(token)) = (
            self.timeouts.get().0,
            self.read_timer.get(),
            self.timer_token(),
        ) {
            if self.enabled.get().contains(Flags::READ) {
                let at = crate::time::deadline_after(self.last_read.get(), d);
                self.read_timer
                    .set(Some(self.base.0.timer_insert(at, token)));
            }
        }
    }

    pub(super) fn arm_write_timer(&self) {
        if let (Some(d), None, Some(token)) = (
            self.timeouts.get().1,
            self.write_timer.get(),
            self.timer_token(),
        ) {
            let at = crate::time::deadline_after(self.last_write.get(), d);
            self.write_timer
                .set(Some(self.base.0.timer_insert(at, token)));
        }
    }

    /// After a timer wake: fires the timeouts that are really due, re-arms the others.
    fn check_timers(&self, bev: &BufferEvent) {
        let base = &self.base.0;
        let fired = |cell: &Cell<Option<TimerId>>| match cell.get() {
            Some(key) if !base.timer_pending(key) => {
                cell.set(None);
                true
            }
            _ => false,
        };
        let now = crate::time::now();
        if fired(&self.read_timer) {
            if let Some(d) = self.timeouts.get().0 {
                if self.paused.get() {
                    self.last_read.set(now); // not reading by choice: not idle
                }
                if self.enabled.get().contains(Flags::READ) && now >= self.last_read.get() + d {
                    self.enabled.set(self.enabled.get() & !Flags::READ);
                    self.call_event_cb(bev, BevFlags::TIMEOUT | BevFlags::READING);
                } else {
                    self.arm_read_timer();
                }
            }
        }
        if self.freed.get() {
            return;
        }
        if fired(&self.write_timer) {
            if let Some(d) = self.timeouts.get().1 {
                let waiting =
                    self.enabled.get().contains(Flags::WRITE) && !self.output.borrow().is_empty();
                if waiting && now >= self.last_write.get() + d {
                    self.enabled.set(self.enabled.get() & !Flags::WRITE);
                    self.call_event_cb(bev, BevFlags::TIMEOUT | BevFlags::WRITING);
                } else if waiting {
                    self.arm_write_timer();
                }
            }
        }
    }

    /// `free`: stops everything and drops the callbacks (which may hold handles to this buffer event).
    pub(super) fn release(&self) {
        if self.freed.replace(true) {
            return;
        }
        if let Some(id) = self.id.take() {
            self.pending.set(false);
            self.base.0.set_internal_pending(id, false);
            self.base.0.free(id);
        }
        self.close();
        let cbs = (
            self.read_cb.take(),
            self.write_cb.take(),
            self.event_cb.take(),
        );
        drop(cbs);
    }

    /// Cancels the timers, deregisters the socket and closes it (with `close_on_free`).
    fn close(&self) {
        let reactor = &self.base.0.reactor;
        if !self.base.0.closed.get() {
            for t in [self.read_timer.take(), self.write_timer.take()]
                .into_iter()
                .flatten()
            {
                self.base.0.timer_remove(t);
            }
        }
        if let Some(fd) = self.owned.borrow_mut().take() {
            // Fails only if the fd was closed behind our back; nothing to undo.
            let _ = reactor.deregister(&self.source);
            if self.close_on_free {
                drop(fd);
            } else {
                let _ = fd.into_raw_fd();
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Reached without `free` only when the base was dropped: its slots are gone already.
        self.close();
    }
}
