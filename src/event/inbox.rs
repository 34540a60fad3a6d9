//! The inbox: how wakers on any thread hand readiness to the dispatcher. A [`TokenWaker`] posts its
//! [`Token`] and wakes the dispatcher's waker; the dispatcher drains the tokens and looks at what each
//! names.

use std::os::fd::RawFd;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Wake, Waker};

use super::core::SlotId;
use super::Flags;

/// What a waker posts to the inbox.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Token {
    /// The fd entry for this fd (of this generation) may be ready.
    Fd(RawFd, u64),
    /// Something of this slot fired: `TIMEOUT` (its timer), `SIGNAL` (its listener), or, for internal
    /// slots (buffer events, listeners), whatever flags their driver chose.
    Slot(SlotId, Flags),
    /// The `loopexit(Some(d))` delay has passed (posted by the base's timers only).
    Exit,
}

/// The part of a base that wakers on any thread reach.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Posted tokens and the dispatcher's waker, under one lock so a post is one lock.
    inbox: Mutex<Inbox>,
    /// Set by an [`ExitHandle`](super::ExitHandle): the dispatcher exits at its next step.
    pub(crate) exit_requested: AtomicBool,
}

#[derive(Debug, Default)]
pub(super) struct Inbox {
    pub(super) tokens: Vec<Token>,
    /// The waker of the future that runs the dispatcher, if it has been polled.
    dispatcher: Option<Waker>,
}

impl Shared {
    pub(super) fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `token` and wakes the dispatcher (outside the lock) if the inbox was empty. Tokens that
    /// find it non-empty need no wake: the one that made it non-empty woke the dispatcher, whose next
    /// poll drains them all (every poll that starts a round drains the whole inbox, and the dispatcher's
    /// first poll drains whatever was posted before it ran). A busy poll of the reactor posts dozens of
    /// tokens; only the first pays for cloning and waking the dispatcher's waker.
    pub(crate) fn post(&self, token: Token) {
        let waker = {
            let mut inbox = self.inbox();
            let was_empty = inbox.tokens.is_empty();
            inbox.tokens.push(token);
            if was_empty {
                inbox.dispatcher.clone()
            } else {
                None
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Wakes the dispatcher so it re-examines the base (exit requested, nothing pending any more...).
    pub(crate) fn wake_dispatcher(&self) {
        let waker = self.inbox().dispatcher.clone();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Records the waker of the future now running the dispatcher.
    pub(crate) fn set_dispatcher(&self, waker: &Waker) {
        let mut inbox = self.inbox();
        if !inbox
            .dispatcher
            .as_ref()
            .is_some_and(|w| w.will_wake(waker))
        {
            inbox.dispatcher = Some(waker.clone());
        }
    }
}

/// A waker that posts one token: the bridge from the reactor (and other threads) to the dispatcher.
#[derive(Debug)]
pub(crate) struct TokenWaker {
    shared: Arc<Shared>,
    token: Token,
}

impl TokenWaker {
    pub(crate) fn waker(shared: &Arc<Shared>, token: Token) -> Waker {
        Waker::from(Arc::new(TokenWaker {
            shared: shared.clone(),
            token,
        }))
    }
}

impl Wake for TokenWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.post(self.token);
    }
}
