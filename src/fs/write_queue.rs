//! A [`File`](super::File)'s write-behind queue: bytes that `poll_write` accepted while the pool was
//! still writing earlier ones.
//!
//! Without it, every write waits for the one before to finish: a writer of 64 KiB pieces pays a hop to
//! the pool and back per piece, and the runtime thread idles while the pool writes. With it, a write that
//! finds a write job running appends its bytes here and returns at once; the job, once its own chunk is
//! written, takes everything queued meanwhile and writes that too, and ends only when the queue is empty.
//! One hop thus carries as many pieces as the writer produced while the pool was busy, and copying the
//! next bytes overlaps writing the last ones.
//!
//! The queue holds at most [`QUEUE_LIMIT`] bytes; a write that finds it full waits for the job to take
//! it. The job and the queue swap buffers, so a long write reuses the same two allocations.

use std::fs::File as StdFile;
use std::io::{self, Write};
use std::mem;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use super::file::{Buf, CHUNK_SIZE};

/// The most bytes waiting in the queue: one more chunk beside the one being written.
pub(super) const QUEUE_LIMIT: usize = CHUNK_SIZE;

/// Shared by a `File` and its write job.
#[derive(Default)]
pub(super) struct WriteQueue {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Bytes accepted by `poll_write` and not yet taken by the job, in file order.
    bytes: Vec<u8>,
    /// Whether a write job is running that will take `bytes` before it ends. Set by the `File` when it
    /// starts one; cleared by the job, under the lock, when it finds the queue empty (or fails). Bytes
    /// are queued only while it is set, so none are queued that no job will write.
    draining: bool,
    /// The task waiting for room (the queue was full); woken when the job takes the queue or ends.
    waker: Option<Waker>,
}

/// What [`WriteQueue::push`] did.
pub(super) enum Push {
    /// This many bytes (at least one) were queued behind the running job.
    Queued(usize),
    /// The queue is full; the task is woken when the job has taken it.
    Full,
    /// No write job is running: the caller must wait for whatever job is (a read, a seek) and start
    /// a write job of its own.
    NotDraining,
}

impl WriteQueue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues the first bytes of `src` (not empty) behind the running write job, if there is one and the
    /// queue has room.
    pub(super) fn push(&self, src: &[u8], waker: &Waker) -> Push {
        let mut state = self.lock();
        if !state.draining {
            return Push::NotDraining;
        }
        let room = QUEUE_LIMIT.saturating_sub(state.bytes.len());
        if room == 0 {
            match &mut state.waker {
                Some(w) if w.will_wake(waker) => {}
                slot => *slot = Some(waker.clone()),
            }
            return Push::Full;
        }
        let n = room.min(src.len());
        state.bytes.extend_from_slice(&src[..n]);
        Push::Queued(n)
    }

    /// Marks a write job as running; called by the `File` just before it starts one.
    pub(super) fn start_draining(&self) {
        self.lock().draining = true;
    }

    /// The job's part, on the pool, after it wrote its own chunk with outcome `result`: writes whatever
    /// was queued meanwhile, until the queue is empty. On the first failure the queued bytes are
    /// dropped (writing later bytes after a hole would corrupt the file) and the error is returned: the
    /// `File`'s next operation reports it.
    pub(super) fn drain(
        &self,
        file: &StdFile,
        buf: &mut Buf,
        mut result: io::Result<()>,
    ) -> io::Result<()> {
        loop {
            let mut state = self.lock();
            if result.is_err() {
                state.bytes.clear();
            }
            if state.bytes.is_empty() {
                state.draining = false;
                let waker = state.waker.take();
                drop(state);
                if let Some(w) = waker {
                    w.wake();
                }
                return result;
            }
            buf.bytes.clear();
            mem::swap(&mut buf.bytes, &mut state.bytes);
            let waker = state.waker.take();
            drop(state);
            if let Some(w) = waker {
                w.wake();
            }
            result = (&*file).write_all(&buf.bytes);
        }
    }
}
