//! The base's own timers: event timeouts, buffer-event timeouts and the `loopexit` delay.
//!
//! They live in the base (an ordered map), not in the runtime's wheel, so that events can be added and
//! deleted outside the runtime (before `dispatch`, from another runtime's task); the dispatcher keeps
//! one runtime timer (a [`Sleep`](crate::time::Sleep)) armed for the earliest deadline.

use std::collections::BTreeMap;
use std::time::Instant;

use super::inbox::Token;

/// Names one armed timer: its deadline and a sequence number that makes it unique.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerId(Instant, u64);

/// Armed timers, in deadline order, each with the token it fires.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    map: BTreeMap<TimerId, Token>,
    /// Source of sequence numbers.
    seq: u64,
}

impl Timers {
    pub(crate) fn insert(&mut self, deadline: Instant, token: Token) -> TimerId {
        self.seq += 1;
        let id = TimerId(deadline, self.seq);
        self.map.insert(id, token);
        id
    }

    /// Cancels a timer; false if it had fired (or was cancelled) already.
    pub(crate) fn remove(&mut self, id: TimerId) -> bool {
        self.map.remove(&id).is_some()
    }

    /// True while the timer has neither fired nor been cancelled.
    pub(crate) fn contains(&self, id: TimerId) -> bool {
        self.map.contains_key(&id)
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.map.keys().next().map(|id| id.0)
    }

    /// Removes the timers due at `now`, pushing their tokens onto `out`.
    pub(crate) fn pop_due(&mut self, now: Instant, out: &mut Vec<Token>) {
        while let Some(entry) = self.map.first_entry() {
            if entry.key().0 > now {
                break;
            }
            out.push(entry.remove());
        }
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
    }
}
