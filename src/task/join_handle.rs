//! [`JoinHandle`]: an owned permission to await (or abort) one spawned task.

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::abort::AbortHandle;
use super::JoinError;
use crate::executor::TaskMeta;

/// An owned permission to await a spawned task's output, returned by [`spawn`](crate::spawn) and
/// [`spawn_local`](crate::spawn_local).
///
/// Awaiting it gives `Ok(output)`, or a [`JoinError`] when the task panicked or was aborted. Dropping it
/// detaches the task, which runs on.
pub struct JoinHandle<T> {
    /// The mutex lets `abort(&self)` change the state; `poll` has `&mut self` and goes through
    /// `get_mut`, so awaiting never locks (until an [`AbortHandle`] shares the state).
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
    /// `abort_handle` was called: the state moved behind an `Arc` that the abort handles share. The
    /// shared state is never itself `Shared`.
    Shared(Arc<SharedState<T>>),
}

/// A task's state shared by its [`JoinHandle`] and its [`AbortHandle`]s; made on the first
/// [`JoinHandle::abort_handle`], so that handles that never give one out never lock.
pub(crate) struct SharedState<T>(Mutex<State<T>>);

impl<T> Drop for SharedState<T> {
    /// The last of the join and abort handles is gone: the task runs on, detached.
    fn drop(&mut self) {
        let state = self.0.get_mut().unwrap_or_else(|e| e.into_inner());
        if let State::Running(task) = std::mem::replace(state, State::Done(None)) {
            task.detach();
        }
    }
}

impl<T: Send + 'static> SharedState<T> {
    pub(crate) fn abort(&self) {
        abort(&mut lock(&self.0));
    }

    pub(crate) fn is_finished(&self) -> bool {
        is_finished(&mut lock(&self.0))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lets the cancellation future of a possibly non-`Send` task sit in `State::Cancelling`.
///
/// A `JoinHandle<T>` is `Send` only when `T: Send`, because `State::Running` holds a
/// `FallibleTask<T, _>`; so a wrapped future of a non-`Send` task never leaves its thread.
struct AssertSend<F>(F);

// SAFETY: see the type's doc: the wrapper is only ever stored in a `JoinHandle<T>` (or the state it
// shares, which only `T: Send` handles do), which is itself `Send` exactly when the wrapped future's
// task output is.
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

    /// Runs `f` on the task's state, wherever it lives.
    fn with_state<R>(&self, f: impl FnOnce(&mut State<T>) -> R) -> R {
        let mut state = lock(&self.state);
        match &*state {
            State::Shared(shared) => {
                let shared = shared.clone();
                drop(state);
                let r = f(&mut lock(&shared.0));
                r
            }
            _ => f(&mut state),
        }
    }

    /// Cancels the task: its future is dropped the next time the runtime gets to it (at once if it is
    /// idle), and awaiting this handle then gives a [`JoinError`] for which `is_cancelled()` is true,
    /// once the future and everything it owned are gone. A task that had already finished keeps its
    /// output.
    pub fn abort(&self) {
        self.with_state(abort);
    }

    /// True once the task has completed, panicked or been cancelled (its future dropped).
    pub fn is_finished(&self) -> bool {
        self.with_state(is_finished)
    }
}

impl<T: Send + 'static> JoinHandle<T> {
    /// A handle that can abort the task from anywhere (it is `Clone`, `Send` and `Sync`) without
    /// owning its output; it keeps working after this handle is dropped.
    ///
    /// Only for tasks with a `Send` output: the abort handle may be the last owner of the task's
    /// state, on any thread. Abort a task with a non-`Send` output through its `JoinHandle`, or spawn
    /// it in a [`JoinSet`](super::JoinSet), whose abort handles never own the output.
    ///
    /// # Examples
    /// ```
    /// evloop::block_on(async {
    ///     let task = evloop::spawn(std::future::pending::<()>());
    ///     let abort = task.abort_handle();
    ///     std::thread::spawn(move || abort.abort()).join().unwrap();
    ///     assert!(task.await.unwrap_err().is_cancelled());
    /// });
    /// ```
    pub fn abort_handle(&self) -> AbortHandle {
        let mut state = lock(&self.state);
        let shared = match &*state {
            State::Shared(shared) => shared.clone(),
            _ => {
                let moved = std::mem::replace(&mut *state, State::Done(None));
                let shared = Arc::new(SharedState(Mutex::new(moved)));
                *state = State::Shared(shared.clone());
                shared
            }
        };
        AbortHandle::from_join_handle(shared)
    }
}

fn abort<T: 'static>(state: &mut State<T>) {
    if !matches!(&*state, State::Running(t) if !t.is_finished()) {
        return;
    }
    let State::Running(task) = std::mem::replace(state, State::Done(None)) else {
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

fn is_finished<T>(state: &mut State<T>) -> bool {
    match state {
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
        State::Shared(shared) => is_finished(&mut lock(&shared.0)),
    }
}

fn poll<T>(state: &mut State<T>, cx: &mut Context<'_>) -> Poll<Result<T, JoinError>> {
    let res = match state {
        // The task was built with `propagate_panic`: a panic in it resumes here, where it is caught
        // and handed to the awaiter as an error instead.
        State::Running(task) => match catch_unwind(AssertUnwindSafe(|| Pin::new(task).poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(Some(out))) => Ok(out),
            Ok(Poll::Ready(None)) => Err(JoinError::cancelled()),
            Err(payload) => Err(JoinError::panic(payload)),
        },
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
        State::Shared(shared) => return poll(&mut lock(&shared.0), cx),
    };
    *state = State::Done(None);
    Poll::Ready(res)
}

impl<T: 'static> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        poll(
            self.get_mut()
                .state
                .get_mut()
                .unwrap_or_else(|e| e.into_inner()),
            cx,
        )
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
        fn name<T>(state: &State<T>) -> &'static str {
            match state {
                State::Running(_) => "running",
                State::Cancelling(..) => "cancelling",
                State::Done(_) => "done",
                State::Shared(shared) => name(&lock(&shared.0)),
            }
        }
        let state = name(&lock(&self.state));
        f.debug_struct("JoinHandle").field("state", &state).finish()
    }
}
