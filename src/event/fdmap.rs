//! The fd map: one registration per fd per base, shared by every pending event on that fd (libevent's
//! evmap). epoll refuses a second registration of one fd, and one registration means one wake for all
//! the events on it. Level-triggered events register without `Interest::edge` and only for the
//! directions their events want; interest changes cost one `epoll_ctl`, as in libevent.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::core::{BaseInner, SlotId};
use super::inbox::{Token, TokenWaker};
use super::Flags;
use crate::reactor::{Direction, Source};
use crate::sys::Interest;

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
}

impl BaseInner {
    /// Adds `id` to the users of `fd`'s entry, registering the fd or widening its interest.
    pub(super) fn fd_attach(&self, fd: RawFd, id: SlotId, flags: Flags) -> io::Result<()> {
        let dirs = flags & (Flags::READ | Flags::WRITE);
        let edge = flags.contains(Flags::ET);
        let mut fds = self.fds.borrow_mut();
        let token = if let Some(entry) = fds.get_mut(&fd) {
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
        let Some(entry) = fds.get_mut(&fd) else {
            return;
        };
        entry.users.retain(|(u, _)| *u != id);
        if entry.users.is_empty() {
            let entry = fds.remove(&fd).expect("present");
            // Fails only if the fd was closed before its events were deleted; nothing to undo then.
            let _ = self.reactor.deregister(&entry.source);
            return;
        }
        let wanted = interest_of(&entry.users, Flags::empty(), entry.interest.edge);
        if wanted != entry.interest && self.reactor.reregister(&entry.source, wanted).is_ok() {
            entry.interest = wanted;
        }
    }

    pub(super) fn process_fd(&self, fd: RawFd, gen: u64) {
        // The users are copied out (activating a one-shot event detaches it from this entry); up to
        // `INLINE_USERS` of them without allocating, which covers a READ and a WRITE event on one fd.
        const INLINE_USERS: usize = 2;
        let mut inline = [None; INLINE_USERS];
        let mut spilled = Vec::new();
        let mut fired = Flags::empty();
        let mut again = false;
        {
            // The source is polled under the map's borrow, without cloning its `Arc` or the waker:
            // polling runs no user code (the waker it may wake or store only posts to the inbox).
            let fds = self.fds.borrow();
            let entry = match fds.get(&fd) {
                Some(e) if e.gen == gen => e,
                _ => return,
            };
            if entry.users.len() <= INLINE_USERS {
                for (slot, user) in inline.iter_mut().zip(&entry.users) {
                    *slot = Some(*user);
                }
            } else {
                spilled = entry.users.clone();
            }
            let (source, interest) = (&entry.source, entry.interest);
            let mut cx = Context::from_waker(&entry.waker);
            for (dir, flag, wanted) in [
                (Direction::Read, Flags::READ, interest.read),
                (Direction::Write, Flags::WRITE, interest.write),
            ] {
                if !wanted {
                    continue;
                }
                if let Poll::Ready(ev) = source.poll_ready(dir, &mut cx) {
                    fired |= flag;
                    // Consumed: an edge fires once; a level is reported again by the next poll if it
                    // lasts.
                    source.clear_readiness(ev);
                    // Re-registers the waker. Still ready means end-of-file or an error, which cannot
                    // be cleared: a level-triggered event must then keep firing, so look again next
                    // round.
                    if source.poll_ready(dir, &mut cx).is_ready() && !interest.edge {
                        again = true;
                    }
                }
            }
        }
        for (id, dirs) in inline.into_iter().flatten().chain(spilled) {
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

/// The interest for `users` plus `extra` directions.
fn interest_of(users: &[(SlotId, Flags)], extra: Flags, edge: bool) -> Interest {
    let all = users.iter().fold(extra, |acc, (_, d)| acc | *d);
    Interest {
        read: all.contains(Flags::READ),
        write: all.contains(Flags::WRITE),
        edge,
    }
}
