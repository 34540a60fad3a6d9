//! The fd map: one registration per fd per base, shared by every pending event on that fd (libevent's
//! evmap). epoll refuses a second registration of one fd, and one registration means one wake for all
//! the events on it. Level-triggered events register without `Interest::edge` and only for the
//! directions their events want; interest changes cost one `epoll_ctl`, as in libevent.
//!
//! A level-triggered fd is reported by every poll until its callback reads it. So that a connection
//! waiting in the active queue is not reported, woken and looked at again by each collection of the
//! kernel's events meanwhile (at 1,000 active connections that doubled the work per round trip), its
//! entry is *disarmed* while its events wait behind many others (at least half the dispatcher's
//! callback budget, so that a collection may come first): the entry's waker is stored again only after
//! their callbacks ran (or they were deleted), and readiness seen before that is dropped as stale,
//! which is safe because the kernel reports a lasting level again at the next poll. Nearer the front
//! of the queue, re-arming at once is cheaper (no second lookup after the callback).

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::base::CALLBACK_BUDGET;
use super::core::{BaseInner, SlotId};
use super::inbox::{Token, TokenWaker};
use super::Flags;
use crate::reactor::{Direction, Source};
use crate::sys::Interest;

/// The fd entries, indexed by fd (libevent's evmap is such an array too): the kernel hands out the
/// lowest free fd, so the table is as long as the highest fd in use, and a lookup on every event is
/// an index instead of a hash probe.
#[derive(Default)]
pub(super) struct FdTable(Vec<Option<FdEntry>>);

impl FdTable {
    pub(super) fn get_mut(&mut self, fd: RawFd) -> Option<&mut FdEntry> {
        self.0.get_mut(usize::try_from(fd).ok()?)?.as_mut()
    }

    /// Stores the entry of `fd`, a registered (so non-negative) descriptor.
    fn insert(&mut self, fd: RawFd, entry: FdEntry) {
        let i = usize::try_from(fd).expect("a registered fd is not negative");
        if i >= self.0.len() {
            self.0.resize_with(i + 1, || None);
        }
        self.0[i] = Some(entry);
    }

    fn remove(&mut self, fd: RawFd) -> Option<FdEntry> {
        self.0.get_mut(usize::try_from(fd).ok()?)?.take()
    }

    pub(super) fn drain(&mut self) -> impl Iterator<Item = FdEntry> + '_ {
        self.0.drain(..).flatten()
    }
}

/// The registration of one fd, shared by every pending event on it (libevent's evmap): epoll refuses a
/// second registration of one fd, and one registration means one wake for all of them.
pub(super) struct FdEntry {
    /// Distinguishes this entry from an earlier one for the same fd number.
    gen: u64,
    pub(super) source: Arc<Source>,
    /// What the poller watches now: the union of the users' directions.
    interest: Interest,
    /// The pending events on this fd, with the directions each watches.
    users: Vec<(SlotId, Flags)>,
    /// Posts `Fd(fd, gen)`.
    waker: Waker,
    /// Level-triggered only: readiness was consumed and the waker not stored again, because events
    /// it activated have not run yet (see the module doc). Re-armed by [`BaseInner::fd_rearm`].
    disarmed: bool,
}

impl BaseInner {
    /// Adds `id` to the users of `fd`'s entry, registering the fd or widening its interest.
    pub(super) fn fd_attach(&self, fd: RawFd, id: SlotId, flags: Flags) -> io::Result<()> {
        let dirs = flags & (Flags::READ | Flags::WRITE);
        let edge = flags.contains(Flags::ET);
        let mut fds = self.fds.borrow_mut();
        let token = if let Some(entry) = fds.get_mut(fd) {
            if entry.interest.edge != edge {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("fd {fd} already has events with{} ET: every event on one fd must agree on ET",
                        if entry.interest.edge { "" } else { "out" }),
                ));
            }
            let wanted = interest_of(&entry.users, dirs, edge);
            if wanted != entry.interest {
                self.reactor.reregister(&entry.source, wanted)?;
                entry.interest = wanted;
            }
            entry.users.push((id, dirs));
            Token::Fd(fd, entry.gen)
        } else {
            let interest = interest_of(&[], dirs, edge);
            let source = self.reactor.register_with(fd, interest)?;
            let gen = self.gen();
            let waker = TokenWaker::waker(&self.shared, Token::Fd(fd, gen));
            fds.insert(
                fd,
                FdEntry {
                    gen,
                    source,
                    interest,
                    users: vec![(id, dirs)],
                    waker,
                    disarmed: false,
                },
            );
            Token::Fd(fd, gen)
        };
        drop(fds);
        // The first look at the fd registers the entry's waker for the new directions.
        self.shared.post(token);
        Ok(())
    }

    /// Removes `id` from the users of `fd`, narrowing the interest or deregistering the fd.
    pub(super) fn fd_detach(&self, fd: RawFd, id: SlotId) {
        let mut fds = self.fds.borrow_mut();
        let Some(entry) = fds.get_mut(fd) else {
            return;
        };
        entry.users.retain(|(u, _)| *u != id);
        if entry.users.is_empty() {
            let entry = fds.remove(fd).expect("present");
            if entry.disarmed {
                self.n_disarmed.set(self.n_disarmed.get() - 1);
            }
            // Fails only if the fd was closed before its events were deleted; nothing to undo then.
            let _ = self.reactor.deregister(&entry.source);
            return;
        }
        let wanted = interest_of(&entry.users, Flags::empty(), entry.interest.edge);
        if wanted != entry.interest && self.reactor.reregister(&entry.source, wanted).is_ok() {
            entry.interest = wanted;
        }
        drop(fds);
        // The event leaving may have been the one whose callback was to re-arm the entry.
        self.fd_rearm(fd);
    }

    /// Stores the waker of a disarmed entry again (after the callbacks of the events its readiness
    /// activated ran, or when one of them is deleted), dropping the readiness seen meanwhile: it was
    /// reported before those callbacks read, and a level that lasts is reported again by the next poll.
    /// A no-op for an armed entry.
    pub(crate) fn fd_rearm(&self, fd: RawFd) {
        let again = {
            let mut fds = self.fds.borrow_mut();
            let Some(entry) = fds.get_mut(fd).filter(|e| e.disarmed) else {
                return;
            };
            entry.disarmed = false;
            self.n_disarmed.set(self.n_disarmed.get() - 1);
            let mut cx = Context::from_waker(&entry.waker);
            let Interest { read, write, .. } = entry.interest;
            let source = &entry.source;
            // Still ready once cleared: end-of-file or an error, which keeps firing.
            let closed = (read && rearm(source, Direction::Read, &mut cx))
                | (write && rearm(source, Direction::Write, &mut cx));
            closed.then_some(Token::Fd(fd, entry.gen))
        };
        if let Some(token) = again {
            self.shared.post(token);
        }
    }

    pub(super) fn process_fd(&self, fd: RawFd, gen: u64) {
        // The users are copied out (activating a one-shot event detaches it from this entry); up to
        // `INLINE_USERS` of them without allocating, which covers a READ and a WRITE event on one fd.
        const INLINE_USERS: usize = 2;
        let mut inline = [(SlotId { index: 0, gen: 0 }, Flags::empty()); INLINE_USERS];
        let mut n_inline = 0;
        let mut again = false;
        let mut spilled = Vec::new();
        let fired = {
            // The source is polled under the map's borrow, without cloning its `Arc` or the waker:
            // polling runs no user code (the waker it may wake or store only posts to the inbox).
            let mut fds = self.fds.borrow_mut();
            let entry = match fds.get_mut(fd) {
                Some(e) if e.gen == gen => e,
                _ => return,
            };
            let users = &entry.users;
            if users.len() <= INLINE_USERS {
                inline[..users.len()].copy_from_slice(users);
                n_inline = users.len();
            } else {
                spilled = users.clone();
            }
            let Interest { read, write, edge } = entry.interest;
            // Only worth it behind many active events: the dispatcher collects the kernel's events
            // again after `CALLBACK_BUDGET` callbacks, and those nearer the front run before that.
            let defer = !edge && self.n_active() >= CALLBACK_BUDGET / 2;
            let mut cx = Context::from_waker(&entry.waker);
            let mut fired = Flags::empty();
            for (wanted, dir, flag) in [
                (read, Direction::Read, Flags::READ),
                (write, Direction::Write, Flags::WRITE),
            ] {
                if wanted {
                    let (taken, still) = consume(&entry.source, dir, defer, &mut cx);
                    if taken {
                        fired |= flag;
                    }
                    // End-of-file or an error, which cannot be cleared: a level keeps firing, so
                    // look again next round.
                    again |= still && !edge;
                }
            }
            // Set before the users are activated: a one-shot one detaches at once, which re-arms.
            let disarm = defer && !fired.is_empty();
            if entry.disarmed != disarm {
                entry.disarmed = disarm;
                let n = self.n_disarmed.get();
                self.n_disarmed.set(if disarm { n + 1 } else { n - 1 });
            }
            fired
        };
        if fired.is_empty() {
            return;
        }
        for &(id, dirs) in inline[..n_inline].iter().chain(&spilled) {
            let what = fired & dirs;
            if !what.is_empty() {
                self.activate(id, what);
            }
        }
        if again {
            self.shared.post(Token::Fd(fd, gen));
        }
    }
}

/// Takes the readiness of `dir` if there is some, or stores the waker. After taking it, stores the
/// waker again at once unless `defer` (a disarmed level, see the module doc; an edge never defers:
/// the next edge must not be missed). Returns whether readiness was taken, and whether the source
/// is still ready once it was cleared and re-polled (closed or failed).
#[inline]
fn consume(source: &Source, dir: Direction, defer: bool, cx: &mut Context<'_>) -> (bool, bool) {
    let Poll::Ready(ev) = source.poll_ready(dir, cx) else {
        return (false, false);
    };
    // An edge fires once; a level is reported again by the next poll if it lasts.
    source.clear_readiness(ev);
    if defer {
        return (true, false);
    }
    (true, source.poll_ready(dir, cx).is_ready())
}

/// Drops the stale readiness of `dir` and stores the waker; true if the source is still ready (closed
/// or failed: that cannot be cleared).
#[inline]
fn rearm(source: &Source, dir: Direction, cx: &mut Context<'_>) -> bool {
    let Poll::Ready(ev) = source.poll_ready(dir, cx) else {
        return false;
    };
    source.clear_readiness(ev);
    source.poll_ready(dir, cx).is_ready()
}

/// The interest for `users` plus `extra` directions.
fn interest_of(users: &[(SlotId, Flags)], extra: Flags, edge: bool) -> Interest {
    let all = users.iter().fold(extra, |acc, (_, d)| acc | *d);
    Interest {
        read: all.contains(Flags::READ),
        write: all.contains(Flags::WRITE),
        edge,
    }
}
