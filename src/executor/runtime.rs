//! [`Runtime`], over either flavor, and its [`Builder`].

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::time::Duration;

use super::context;
use super::current::Core;
use super::multi::{self, MultiThread, DROP_TIMEOUT};
use crate::task::JoinHandle;

/// A runtime: a reactor, timers and tasks, driven by [`Runtime::block_on`].
///
/// Two flavors:
/// - [`Runtime::new`] makes a **current-thread** runtime: `block_on` runs the future, every task, the
///   reactor and the timers on the calling thread. [`evloop::block_on`](crate::block_on) uses one such
///   runtime per thread, created on first use; make your own when you need to keep tasks alive between
///   `block_on` calls or to drop them at a chosen time.
/// - [`Runtime::builder`] makes a **multi-thread** runtime: worker threads with work stealing run the
///   tasks; `block_on` runs its future on the calling thread, and tasks spawned there go to the
///   workers. See `src/executor/multi.rs` for the design.
///
/// A `Runtime` is not `Send`: a current-thread one owns tasks made by [`spawn_local`](crate::spawn_local).
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<evloop::Runtime>();
/// ```
///
/// # Examples
/// ```
/// let rt = evloop::Runtime::new()?;
/// let answer = rt.block_on(async {
///     let task = evloop::spawn(async { 6 * 7 });
///     task.await.unwrap()
/// });
/// assert_eq!(answer, 42);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Runtime {
    flavor: Flavor,
    /// Not `Send`: `spawn_local` tasks of a current-thread runtime must stay on the thread that made them.
    _not_send: std::marker::PhantomData<*const ()>,
}

enum Flavor {
    /// Boxed so that its address, which the thread-local context points at, never moves.
    CurrentThread(Box<Core>),
    MultiThread(MultiThread),
}

impl Runtime {
    /// Creates a current-thread runtime: an epoll (kqueue) instance, its notifier, and empty queues.
    ///
    /// # Errors
    /// Fails when the OS refuses the poller, e.g. when the process is out of file descriptors (EMFILE).
    pub fn new() -> io::Result<Runtime> {
        Ok(Runtime {
            flavor: Flavor::CurrentThread(Core::new()?),
            _not_send: std::marker::PhantomData,
        })
    }

    /// A builder for a multi-thread runtime.
    ///
    /// # Examples
    /// ```
    /// let rt = evloop::Runtime::builder().worker_threads(2).build()?;
    /// let sum = rt.block_on(async {
    ///     let tasks: Vec<_> = (0..10u64).map(|i| evloop::spawn(async move { i * i })).collect();
    ///     let mut sum = 0;
    ///     for t in tasks {
    ///         sum += t.await.unwrap();
    ///     }
    ///     sum
    /// });
    /// assert_eq!(sum, 285);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn builder() -> Builder {
        Builder {
            worker_threads: None,
            current_thread: false,
            #[cfg(feature = "test-util")]
            start_paused: false,
        }
    }

    /// Runs `future` to completion on this thread.
    ///
    /// On a current-thread runtime the tasks it spawns, the reactor and the timers run here too; tasks
    /// still unfinished when it returns stay in the runtime and go on at the next `block_on`; they are
    /// dropped with the runtime. On a multi-thread runtime the future runs here and everything else on
    /// the workers, which keep running tasks after `block_on` returns.
    ///
    /// # Panics
    /// Panics when called inside another `block_on` or a task on the same thread (blocking a runtime's
    /// thread would stop that runtime): `.await` the future instead, or spawn it.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        if context::in_runtime() {
            panic!(
                "evloop: `block_on` called inside a runtime: this would block the runtime's thread; \
                 `.await` the future instead, or `evloop::spawn` it"
            );
        }
        let future = pin!(future);
        match &self.flavor {
            Flavor::CurrentThread(core) => core.block_on(future),
            Flavor::MultiThread(rt) => rt.block_on(future),
        }
    }

    /// Spawns a task onto this runtime. On a current-thread runtime it starts at the next `block_on`; on
    /// a multi-thread runtime, at once. See [`spawn`](crate::spawn).
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.flavor {
            Flavor::CurrentThread(core) => core.spawn(future),
            Flavor::MultiThread(rt) => multi::spawn(&rt.shared, future),
        }
    }

    /// Shuts the runtime down: stops the workers and drops every unfinished task, waiting at most about
    /// `timeout` for the workers to stop polling tasks.
    ///
    /// A worker that has stopped is waited for until it has dropped its tasks, however long that takes,
    /// so that they are all dropped when this returns. A worker busy in a task that does not return
    /// within `timeout` is left to finish it on its own thread (its tasks are dropped there, when it
    /// does); threads of the blocking pool are never waited for. On a current-thread runtime the tasks
    /// are dropped here, at once.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let rt = evloop::Runtime::builder().worker_threads(1).build()?;
    /// rt.spawn(std::future::pending::<()>());
    /// rt.shutdown_timeout(Duration::from_millis(100));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown_timeout(mut self, timeout: Duration) {
        self.shutdown(timeout);
    }

    fn shutdown(&mut self, timeout: Duration) {
        match &mut self.flavor {
            Flavor::CurrentThread(core) => core.cancel_all_entered(),
            Flavor::MultiThread(rt) => rt.shutdown(timeout),
        }
    }

    /// Puts a current-thread runtime's clock back on real time (after `evloop::block_on`).
    #[cfg(feature = "test-util")]
    pub(crate) fn reset_clock(&self) {
        if let Flavor::CurrentThread(core) = &self.flavor {
            core.clock.reset();
        }
    }

    /// Drops every unfinished task of a current-thread runtime (their destructors run here).
    pub(crate) fn cancel_all(&self) {
        if let Flavor::CurrentThread(core) = &self.flavor {
            core.cancel_all_entered();
        }
    }

    /// How many tasks are alive (scheduled or waiting). A statistic, for tests and monitoring.
    pub fn task_count(&self) -> usize {
        match &self.flavor {
            Flavor::CurrentThread(core) => core.task_count(),
            Flavor::MultiThread(rt) => rt.task_count(),
        }
    }

    /// How many timers are armed. A statistic, for tests and monitoring.
    pub fn timer_count(&self) -> usize {
        match &self.flavor {
            Flavor::CurrentThread(core) => core.timer_count(),
            Flavor::MultiThread(rt) => rt.shared.timers.len(),
        }
    }

    /// The longest time, since the runtime was made, that its reactor went unpolled while the runtime
    /// was busy: how late I/O events and timers could be seen. A task that blocks its thread (a
    /// `std::thread::sleep`, a long computation) shows up here. A statistic, for tests and monitoring.
    ///
    /// # Caveats
    /// On a current-thread runtime the time between two `block_on` calls counts too, as time the
    /// reactor went unpolled.
    ///
    /// It is measured in real time, also while the clock is paused (feature `test-util`).
    pub fn max_poll_gap(&self) -> std::time::Duration {
        match &self.flavor {
            Flavor::CurrentThread(core) => core.shared.reactor.max_poll_gap(),
            Flavor::MultiThread(rt) => rt.shared.reactor.max_poll_gap(),
        }
    }

    /// How many file descriptors are registered with the reactor. A statistic, for tests and monitoring.
    pub fn source_count(&self) -> usize {
        match &self.flavor {
            Flavor::CurrentThread(core) => core.shared.reactor.source_count(),
            Flavor::MultiThread(rt) => rt.shared.reactor.source_count(),
        }
    }
}

impl Drop for Runtime {
    /// Drops every unfinished task before it returns. A multi-thread runtime waits at most 1 s
    /// (`DROP_TIMEOUT`) for a worker stuck in a task's poll, as `shutdown_timeout(Duration::from_secs(1))`
    /// would; such a worker's tasks are dropped on its thread when the poll returns.
    fn drop(&mut self) {
        self.shutdown(DROP_TIMEOUT);
        if let Flavor::CurrentThread(core) = &self.flavor {
            core.forget();
        }
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.flavor {
            Flavor::CurrentThread(core) => fmt::Debug::fmt(core, f),
            Flavor::MultiThread(rt) => fmt::Debug::fmt(&*rt.shared, f),
        }
    }
}

/// Configures a [`Runtime`]: a multi-thread one from [`Runtime::builder`], a current-thread one from
/// [`Builder::new_current_thread`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder {
    /// `None`: one worker per CPU.
    worker_threads: Option<usize>,
    /// Build a current-thread runtime (`worker_threads` is then ignored).
    current_thread: bool,
    /// Pause the clock of the new runtime (current-thread only).
    #[cfg(feature = "test-util")]
    start_paused: bool,
}

impl Builder {
    /// A builder for a current-thread runtime, as [`Runtime::new`] makes (the name is tokio's).
    pub fn new_current_thread() -> Builder {
        Builder {
            current_thread: true,
            ..Runtime::builder()
        }
    }

    /// Starts the runtime with its clock paused, as if [`time::pause`](crate::time::pause) were the
    /// first thing its first `block_on` did. Current-thread runtimes only (as in tokio).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let rt = evloop::Builder::new_current_thread().start_paused(true).build()?;
    /// rt.block_on(async {
    ///     let start = evloop::time::now();
    ///     evloop::time::sleep(Duration::from_secs(86_400)).await;
    ///     assert_eq!(evloop::time::now() - start, Duration::from_secs(86_400));
    /// });
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[cfg(feature = "test-util")]
    pub fn start_paused(mut self, paused: bool) -> Builder {
        self.start_paused = paused;
        self
    }

    /// How many worker threads run tasks. Defaults to the number of CPUs
    /// (`std::thread::available_parallelism`).
    ///
    /// # Panics
    /// Panics if `n` is 0.
    pub fn worker_threads(mut self, n: usize) -> Builder {
        assert!(n > 0, "worker_threads must be at least 1");
        self.worker_threads = Some(n);
        self
    }

    /// Makes the runtime; a multi-thread one starts its worker threads.
    ///
    /// # Errors
    /// Fails when the OS refuses the poller or a thread, and when `start_paused(true)` was asked of a
    /// multi-thread builder.
    pub fn build(&self) -> io::Result<Runtime> {
        if self.current_thread {
            let core = Core::new()?;
            #[cfg(feature = "test-util")]
            if self.start_paused {
                let now = core.clock.pause(core.timers.borrow().origin());
                core.now.set(now);
            }
            return Ok(Runtime {
                flavor: Flavor::CurrentThread(core),
                _not_send: std::marker::PhantomData,
            });
        }
        #[cfg(feature = "test-util")]
        if self.start_paused {
            return Err(io::Error::other(
                "evloop: start_paused(true) needs a current-thread runtime (paused time exists only \
                 there, as in tokio): use `Builder::new_current_thread().start_paused(true)`",
            ));
        }
        let n = self
            .worker_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        Ok(Runtime {
            flavor: Flavor::MultiThread(MultiThread::new(n)?),
            _not_send: std::marker::PhantomData,
        })
    }
}
