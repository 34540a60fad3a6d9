//! The accept backoff: what a listener does when the process runs out of file descriptors.
//!
//! `accept` failing with `EMFILE`, `ENFILE`, `ENOBUFS` or `ENOMEM` leaves the connection in the kernel's
//! queue, so the listening socket stays readable: retrying at once would spin at 100% CPU until a
//! descriptor frees up. Instead the error is returned once, so the application can log it, and the
//! following accepts wait: they retry after 10 ms, then 20, 40, up to 100 ms between attempts, and serve
//! again at the first attempt that succeeds.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use crate::reactor::{Direction, Source};
use crate::time::{sleep, Sleep};

/// The first pause after running out of descriptors.
const MIN_DELAY: Duration = Duration::from_millis(10);
/// The longest pause: bounds how late a listener notices that descriptors are free again.
const MAX_DELAY: Duration = Duration::from_millis(100);

/// A listener's pause state while the process is out of descriptors.
#[derive(Debug, Default)]
pub(crate) struct AcceptBackoff {
    /// Locked once per accept, uncontended unless several tasks accept on one listener.
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The pause in progress; the next attempt waits for it.
    pause: Option<Sleep>,
    /// The length of the last pause; doubles at each failed retry.
    delay: Duration,
    /// The error has been returned to the caller in this episode: retries fail silently.
    reported: bool,
}

impl AcceptBackoff {
    /// Polls `accept` (one non-blocking attempt) on the listening `source`, with the backoff described in
    /// the module doc. `explain` turns the first exhaustion error into one that names the fix.
    ///
    /// # Caveats
    /// While paused, only the task that polled last is woken when the pause ends: accept on one
    /// listener from one task at a time (the usual shape), or expect the others to wait for the next
    /// connection.
    pub(crate) fn poll_accept<T>(
        &self,
        source: &Source,
        cx: &mut Context<'_>,
        mut accept: impl FnMut() -> io::Result<T>,
        explain: impl FnOnce(io::Error) -> io::Error,
    ) -> Poll<io::Result<T>> {
        let mut state = lock(&self.state);
        loop {
            if let Some(pause) = state.pause.as_mut() {
                ready!(Pin::new(pause).poll(cx));
                state.pause = None;
            }
            match ready!(source.poll_io(Direction::Read, cx, &mut accept)) {
                Ok(t) => {
                    state.reported = false;
                    return Poll::Ready(Ok(t));
                }
                Err(e) if is_out_of_resources(&e) => {
                    state.delay = if state.reported {
                        (state.delay * 2).min(MAX_DELAY)
                    } else {
                        MIN_DELAY
                    };
                    state.pause = Some(sleep(state.delay));
                    if !state.reported {
                        state.reported = true;
                        return Poll::Ready(Err(explain(e)));
                    }
                    // Loop: polling the new pause registers the waker.
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// The accept errors that mean "no resources for a new socket right now".
fn is_out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

/// The message for an exhaustion error of a listener on `what` (an address or path).
pub(crate) fn explain_accept_error(what: &dyn std::fmt::Display, e: io::Error) -> io::Error {
    let fix = match e.raw_os_error() {
        Some(libc::EMFILE) => {
            "the process is out of file descriptors: raise the limit (`ulimit -n`, RLIMIT_NOFILE) or close \
             idle connections"
        }
        Some(libc::ENFILE) => {
            "the system is out of file descriptors: raise `fs.file-max` or close descriptors elsewhere"
        }
        _ => "the system is out of memory for sockets: free memory or lower the number of connections",
    };
    let message = format!(
        "cannot accept a connection on {what} ({e}): {fix}; further accepts wait and retry every 10-100 ms"
    );
    super::explain(e, message)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
