//! Children dropped before their exit was collected ("orphans"), reaped in the background so that
//! none stays a zombie.
//!
//! One process-wide list. A dropped [`Child`](super::Child) that is still running is pushed here;
//! if no reaper runs, one is spawned on the current runtime: a task that listens for `SIGCHLD`,
//! tries `waitpid(pid, WNOHANG)` on every orphan at each delivery, and ends once the list is empty.
//! The listener exists before the reaper's first sweep, so an exit can never fall between a sweep and
//! the wait for the next signal. A reaper whose runtime is dropped clears its flag; the next
//! `Command::spawn` (which also sweeps) or the next orphan starts another one.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use crate::executor::current_reactor;
use crate::signal::Listener;

static ORPHANS: Mutex<Orphans> = Mutex::new(Orphans {
    children: Vec::new(),
    reaper: false,
});

/// How many orphans the list holds, so that a sweep with none costs one atomic load.
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// How many sweeps one poll of the reaper may do before it yields (signals arriving non-stop).
const SWEEPS_PER_POLL: usize = 8;

struct Orphans {
    children: Vec<std::process::Child>,
    /// A reaper task is alive. Read and written under the lock, together with `children`, so that an
    /// orphan pushed while the reaper finds the list empty is never left without one.
    reaper: bool,
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

    /// Claims the right to start a reaper, if one is needed and none runs.
    fn claim_reaper(&mut self) -> bool {
        let start = !self.children.is_empty() && !self.reaper;
        if start {
            self.reaper = true;
        }
        start
    }
}

/// Takes a running child whose `Child` was dropped.
pub(super) fn adopt(child: std::process::Child) {
    let mut list = orphans();
    list.children.push(child);
    COUNT.store(list.children.len(), Ordering::Relaxed);
    let start = list.claim_reaper();
    drop(list);
    if start {
        start_reaper();
    }
}

/// Reaps the orphans that have exited, and starts a reaper if some remain and none runs.
pub(super) fn reap() {
    if COUNT.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut list = orphans();
    list.sweep();
    let start = list.claim_reaper();
    drop(list);
    if start {
        start_reaper();
    }
}

/// Spawns the reaper on the current runtime; the caller has claimed the flag. Without a runtime (or
/// a `SIGCHLD` listener) it gives the flag back, and the orphans wait for the next `reap`.
fn start_reaper() {
    let listener = current_reactor().and_then(|reactor| Listener::new(libc::SIGCHLD, reactor).ok());
    match listener {
        Some(listener) => drop(crate::spawn(Reaper {
            listener,
            done: false,
        })),
        None => orphans().reaper = false,
    }
}

/// The reaper task.
struct Reaper {
    listener: Listener,
    /// The list was found empty and the flag cleared; `Drop` must not clear it again (a new reaper
    /// may own it by then).
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
                    list.reaper = false;
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
            orphans().reaper = false;
        }
    }
}
