//! Task handles: [`JoinHandle`], [`JoinError`], and [`yield_now`].

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use crate::executor::TaskMeta;

/// An owned permission to await a spawned task's output, returned by [`spawn`](crate::spawn) and
/// [`spawn_local`](crate::spawn_local).
///
/// Awaiting it gives `Ok(output)`, or a [`JoinError`] when the task panicked or was aborted. Dropping it
/// detaches the task, which runs on.
pub struct JoinHandle<T> {
    /// The mutex lets `abort(&self)` change the state; `poll` has `&mut self` and goes through
    /// `get_mut`, so awaiting never locks.
    state: Mutex<State<T>>,
}

// The output is only ever moved out whole, never pinned: the handle is `Unpin` whatever `T` is.
impl<T> Unpin for JoinHandle<T> {}

enum State<T> {
    /// The task runs (or has finished and holds its output).
    Running(async_task::FallibleTask<T, TaskMeta>),
    /// `abort` was called: the future resolves once the task's future has been dropped (`None`), or
    /// with the output if the task finished first. The waker is the awaiter's, from the last `poll`:
    /// async-task keeps one awaiter, so `is_finished` must poll with it rather than steal the wake.
    Cancelling(
        Pin<Box<dyn Future<Output = Option<T>> + Send>>,
        Option<Waker>,
    ),
    /// The outcome was taken, or found by `is_finished`.
    Done(Option<Result<T, JoinError>>),
}

/// Lets the cancellation future of a possibly non-`Send` task sit in `State::Cancelling`.
///
/// A `JoinHandle<T>` is `Send` only when `T: Send`, because `State::Running` holds a
/// `FallibleTask<T, _>`; so a wrapped future of a non-`Send` task never leaves its thread.
struct AssertSend<F>(F);

// SAFETY: see the type's doc: the wrapper is only ever stored in a `JoinHandle<T>`, which is itself
// `Send` exactly when the wrapped future's task output is.
unsafe impl<F> Send for AssertSend<F> {}

impl<F: Future> Future for AssertSend<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: a plain structural projection; the field is never moved out of the pin.
        unsafe { self.map_unchecked_mut(|s| &mut s.0) }.poll(cx)
    }
}

impl<T: 'static> JoinHandle<T> {
    pub(crate) fn new(task: async_task::FallibleTask<T, TaskMeta>) -> JoinHandle<T> {
        JoinHandle {
            state: Mutex::new(State::Running(task)),
        }
    }

    /// Cancels the task: its future is dropped the next time the runtime gets to it (at once if it is
    /// idle), and awaiting this handle then gives a [`JoinError`] for which `is_cancelled()` is true,
    /// once the future and everything it owned are gone. A task that had already finished keeps its
    /// output.
    pub fn abort(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(&*state, State::Running(t) if !t.is_finished()) {
            return;
        }
        let State::Running(task) = std::mem::replace(&mut *state, State::Done(None)) else {
            unreachable!()
        };
        let mut cancel: Pin<Box<dyn Future<Output = Option<T>> + Send>> =
            Box::pin(AssertSend(task.cancel()));
        // The first poll is what cancels. An awaiter registered earlier is woken by the cancellation
        // itself, and registers again when it polls the handle.
        *state = match cancel
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(out) => State::Done(Some(out.ok_or_else(JoinError::cancelled))),
            Poll::Pending => State::Cancelling(cancel, None),
        };
    }

    /// True once the task has completed, panicked or been cancelled (its future dropped).
    pub fn is_finished(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *state {
            State::Running(t) => t.is_finished(),
            State::Cancelling(cancel, awaiter) => {
                let waker = awaiter.as_ref().unwrap_or(Waker::noop());
                match cancel.as_mut().poll(&mut Context::from_waker(waker)) {
                    Poll::Ready(out) => {
                        *state = State::Done(Some(out.ok_or_else(JoinError::cancelled)));
                        true
                    }
                    Poll::Pending => false,
                }
            }
            State::Done(_) => true,
        }
    }
}

impl<T: 'static> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let state = self
            .get_mut()
            .state
            .get_mut()
            .unwrap_or_else(|e| e.into_inner());
        let res = match state {
            // The task was built with `propagate_panic`: a panic in it resumes here, where it is caught
            // and handed to the awaiter as an error instead.
            State::Running(task) => {
                match catch_unwind(AssertUnwindSafe(|| Pin::new(task).poll(cx))) {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(Some(out))) => Ok(out),
                    Ok(Poll::Ready(None)) => Err(JoinError::cancelled()),
                    Err(payload) => Err(JoinError::panic(payload)),
                }
            }
            State::Cancelling(cancel, awaiter) => {
                match catch_unwind(AssertUnwindSafe(|| cancel.as_mut().poll(cx))) {
                    Ok(Poll::Pending) => {
                        if !awaiter.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                            *awaiter = Some(cx.waker().clone());
                        }
                        return Poll::Pending;
                    }
                    Ok(Poll::Ready(out)) => out.ok_or_else(JoinError::cancelled),
                    Err(payload) => Err(JoinError::panic(payload)),
                }
            }
            State::Done(out) => out
                .take()
                .unwrap_or_else(|| panic!("JoinHandle polled after completion")),
        };
        *state = State::Done(None);
        Poll::Ready(res)
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let State::Running(task) = std::mem::replace(state, State::Done(None)) {
            task.detach();
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = match &*state {
            State::Running(_) => "running",
            State::Cancelling(..) => "cancelling",
            State::Done(_) => "done",
        };
        f.debug_struct("JoinHandle").field("state", &state).finish()
    }
}

/// Why a task produced no output: it was cancelled, or it panicked.
pub struct JoinError {
    repr: Repr,
}

enum Repr {
    Cancelled,
    /// The payload sits in a mutex only to make `JoinError` `Sync`, so it converts into `io::Error`.
    Panic(Mutex<Box<dyn Any + Send + 'static>>),
}

impl JoinError {
    fn cancelled() -> JoinError {
        JoinError {
            repr: Repr::Cancelled,
        }
    }

    fn panic(payload: Box<dyn Any + Send + 'static>) -> JoinError {
        JoinError {
            repr: Repr::Panic(Mutex::new(payload)),
        }
    }

    /// The task was aborted, or dropped with its runtime.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.repr, Repr::Cancelled)
    }

    /// The task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.repr, Repr::Panic(_))
    }

    /// The panic payload, to pass to `std::panic::resume_unwind`.
    ///
    /// # Panics
    /// Panics if the task was cancelled rather than panicking; see [`try_into_panic`](Self::try_into_panic).
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        self.try_into_panic()
            .unwrap_or_else(|_| panic!("JoinError::into_panic called on a cancelled task's error"))
    }

    /// The panic payload, or the error itself when the task was cancelled.
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send + 'static>, JoinError> {
        match self.repr {
            Repr::Panic(p) => Ok(p.into_inner().unwrap_or_else(|e| e.into_inner())),
            Repr::Cancelled => Err(self),
        }
    }

    fn panic_message(&self) -> Option<String> {
        let Repr::Panic(p) = &self.repr else {
            return None;
        };
        let p = p.lock().unwrap_or_else(|e| e.into_inner());
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.repr, self.panic_message()) {
            (Repr::Cancelled, _) => f.write_str("task was cancelled"),
            (Repr::Panic(_), Some(msg)) => write!(f, "task panicked: {msg}"),
            (Repr::Panic(_), None) => f.write_str("task panicked"),
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled => f.write_str("JoinError::Cancelled"),
            Repr::Panic(_) => write!(f, "JoinError::Panic({:?})", self.panic_message()),
        }
    }
}

impl std::error::Error for JoinError {}

impl From<JoinError> for std::io::Error {
    fn from(e: JoinError) -> std::io::Error {
        std::io::Error::other(e)
    }
}

/// Yields to the runtime once: the current task goes to the back of the run queue.
///
/// # Examples
/// ```
/// evloop::block_on(async {
///     evloop::task::yield_now().await;
/// });
/// ```
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future returned by [`yield_now`].
#[derive(Debug)]
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
