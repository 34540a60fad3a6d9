//! Children dropped before their exit was collected ("orphans"), reaped in the background so that
//! none stays a zombie.
//!
//! One process-wide list. A dropped [`Child`](super::Child) that is still running is pushed here;
//! if the current runtime has no reaper, one is spawned on it: a task that listens for `SIGCHLD`,
//! tries `waitpid(pid, WNOHANG)` on every orphan at each delivery, and ends once the list is empty.
//! The listener exists before the reaper's first sweep, so an exit can never fall between a sweep and
//! the wait for the next signal.
//!
//! A reaper per runtime rather than one per process: a reaper on a current-thread runtime runs only
//! while that runtime is driven, so the runtime that drops a child must have its own. A reaper whose
//! runtime is dropped leaves the list of reapers; the next `Command::spawn` (which also sweeps) or the
//! next orphan on some runtime starts another.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use crate::executor::current_reactor;
use crate::reactor::Reactor;
use crate::signal::Listener;

static ORPHANS: Mutex<Orphans> = Mutex::new(Orphans {
    children: Vec::new(),
    reapers: Vec::new(),
});

/// How many orphans the list holds, so that a sweep with none costs one atomic load.
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// How many sweeps one poll of the reaper may do before it yields (signals arriving non-stop).
const SWEEPS_PER_POLL: usize = 8;

struct Orphans {
    children: Vec<std::process::Child>,
    /// The reactors (by address) of the runtimes that have a reaper task alive. Read and written under
    /// the lock, together with `children`, so that an orphan pushed while a reaper finds the list
    /// empty is never left without one.
    reapers: Vec<usize>,
}

fn orphans() -> MutexGuard<'static, Orphans> {
    ORPHANS.lock().unwrap_or_else(|e| e.into_inner())
}

impl Orphans {
    /// Reaps every orphan that has exited (or that someone else reaped: `ECHILD`).
    fn sweep(&mut self) {
        self.children
            .retain_mut(|child| matches!(child.try_wait(), Ok(None)));
        COUNT.store(self.children.len(), Ordering::Relaxed);
    }

    /// Claims the right to start a reaper on the runtime of `reactor`, if one is needed there and none
    /// runs there.
    fn claim_reaper(&mut self, reactor: usize) -> bool {
        let start = !self.children.is_empty() && !self.reapers.contains(&reactor);
        if start {
            self.reapers.push(reactor);
        }
        start
    }

    fn release_reaper(&mut self, reactor: usize) {
        self.reapers.retain(|&r| r != reactor);
    }
}

/// Takes a running child whose `Child` was dropped.
pub(super) fn adopt(child: std::process::Child) {
    let reactor = current_reactor();
    let mut list = orphans();
    list.children.push(child);
    COUNT.store(list.children.len(), Ordering::Relaxed);
    start_reaper_if_needed(list, reactor);
}

/// Reaps the orphans that have exited, and starts a reaper on this runtime if some remain.
pub(super) fn reap() {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return;
    }
    let reactor = current_reactor();
    let mut list = orphans();
    list.sweep();
    start_reaper_if_needed(list, reactor);
}

/// Spawns a reaper on the runtime of `reactor` if orphans are left and it has none. Without a runtime
/// (or a `SIGCHLD` listener) the orphans wait for the next `reap` or the reapers of other runtimes.
fn start_reaper_if_needed(mut list: MutexGuard<'static, Orphans>, reactor: Option<Arc<Reactor>>) {
    let Some(reactor) = reactor else {
        return;
    };
    let id = Arc::as_ptr(&reactor) as usize;
    if !list.claim_reaper(id) {
        return;
    }
    drop(list);
    match Listener::new(libc::SIGCHLD, reactor) {
        Ok(listener) => drop(crate::spawn(Reaper {
            listener,
            reactor: id,
            done: false,
        })),
        Err(_) => orphans().release_reaper(id),
    }
}

/// The reaper task of one runtime.
struct Reaper {
    listener: Listener,
    /// The address of its runtime's reactor, its entry in `Orphans::reapers`.
    reactor: usize,
    /// The list was found empty and the entry removed; `Drop` must not remove it again (a new reaper
    /// on the same runtime may own it by then).
    done: bool,
}

impl Future for Reaper {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..SWEEPS_PER_POLL {
            {
                let mut list = orphans();
                list.sweep();
                if list.children.is_empty() {
                    list.release_reaper(self.reactor);
                    self.done = true;
                    return Poll::Ready(());
                }
            }
            if self.listener.poll_recv(cx).is_pending() {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if !self.done {
            // Cancelled with its runtime: the next `reap` or orphan starts another reaper.
            orphans().release_reaper(self.reactor);
        }
    }
}
