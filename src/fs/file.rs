//! [`File`]: an open file whose reads, writes and seeks run on the blocking pool, one chunk at a time.
//!
//! # How it works
//!
//! A `File` is either *idle*, holding its buffer, or *busy*: one job on the pool owns the buffer (and a
//! handle to the `std::fs::File`) and does one read, write or seek. Every operation first waits for the
//! job in flight:
//!
//! - `poll_write` copies up to [`CHUNK_SIZE`] bytes into the buffer, starts the blocking `write_all` and
//!   returns at once: the bytes are now the job's. A write that finds that job still running appends to
//!   its [write queue](super::write_queue) instead (up to another [`CHUNK_SIZE`]), which the job writes
//!   before it ends, so a writer of small pieces pays one hop per batch, not per piece. The next other
//!   operation (or `flush`/`close`, or `sync_all`) waits for the job and reports its error. A `File`
//!   dropped with a write in flight does not cancel it: the job owns everything it needs, queue
//!   included, and finishes on its own.
//! - `poll_read` returns buffered bytes if there are any, else starts one blocking `read` of up to
//!   [`CHUNK_SIZE`] bytes. On a regular file it reads ahead: at least 64 KiB, doubling with every read
//!   that comes back full up to [`CHUNK_SIZE`], so a reader with small buffers still pays one hop per
//!   large chunk. A seek starts it at 64 KiB again.
//! - On Linux, before going to the pool, a read on a regular file (with no read-ahead left over) tries
//!   `preadv2(RWF_NOWAIT)` into the caller's buffer, up to 256 KiB: what the page cache already holds
//!   is read on the spot, without a hop and without a second copy; anything else (`EAGAIN`: the data is
//!   on disk) goes to the pool as above.
//! - Read-ahead moves the OS file offset past the caller's position. A seek relative to the current
//!   position subtracts the unread bytes; a write, `set_len` or [`into_std`](File::into_std) first seeks
//!   back over them.
//!
//! Memory per `File` is one buffer of at most [`CHUNK_SIZE`], and a second (the queue) while writing,
//! whatever the size of the file.

use std::fs::File as StdFile;
use std::future::{poll_fn, Future};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::{fmt, mem};

use super::write_queue::{Push, WriteQueue};
use super::{asyncify, path_error, Metadata, OpenOptions, Permissions};
use crate::blocking::spawn_blocking;
use crate::task::JoinHandle;

/// The most bytes one read or write moves in one hop to the blocking pool: 2 MiB (as tokio's `File`).
///
/// Large enough that the hop (a few microseconds of waking a pool thread and the task) is a few percent
/// of moving the chunk through the page cache; small enough that a `File` never holds more than this in
/// memory, whatever the size of the file or of the caller's buffer.
pub const CHUNK_SIZE: usize = 2 * 1024 * 1024;

/// Where read-ahead on a regular file starts, and starts again after a seek.
const MIN_READ_AHEAD: usize = 64 * 1024;

/// Linux: the most bytes a read copies from the page cache on the caller's thread (see
/// [`read_cached`]); bounds the time the runtime thread spends in one copy to tens of microseconds.
#[cfg(target_os = "linux")]
const MAX_CACHED_READ: usize = 256 * 1024;

/// What [`read_cached`] found.
#[cfg(target_os = "linux")]
enum Cached {
    /// This many bytes, now in the caller's buffer.
    Read(usize),
    /// Not in the page cache (or at the end of the file, or an error): the pool's read will tell.
    Missing,
    /// The kernel or the file system has no `RWF_NOWAIT` reads: do not try again on this file.
    Unsupported,
}

/// Linux: reads what the page cache already holds straight into the caller's buffer, without a hop to
/// the pool and without a second copy. `preadv2(RWF_NOWAIT)` fails with `EAGAIN` instead of waiting
/// for the disk (or for a lock), so it never blocks the runtime thread on I/O.
#[cfg(target_os = "linux")]
fn read_cached(file: &StdFile, dst: &mut [u8]) -> Cached {
    let iov = libc::iovec {
        iov_base: dst.as_mut_ptr().cast(),
        iov_len: dst.len().min(MAX_CACHED_READ),
    };
    // SAFETY: `iov` describes writable bytes of `dst`, which outlives the call; offset -1 reads at
    // the file position and advances it, as read(2) does.
    let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, -1, libc::RWF_NOWAIT) };
    if n > 0 {
        return Cached::Read(n as usize);
    }
    if n == 0 {
        return Cached::Missing;
    }
    match io::Error::last_os_error().raw_os_error() {
        // Before Linux 4.14 (RWF_NOWAIT), 4.6 (preadv2), or a file system that does not do it.
        Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS) => Cached::Unsupported,
        // EAGAIN: not cached. Anything else (EINTR, EIO) the pool's read retries or reports.
        _ => Cached::Missing,
    }
}

/// An open file, with [`futures_io`]'s `AsyncRead`, `AsyncWrite` and `AsyncSeek`.
///
/// Opened with [`File::open`], [`File::create`] or [`File::options`]. Reads and writes go through one
/// buffer of at most [`CHUNK_SIZE`] bytes, which one blocking job at a time owns: each operation waits
/// for the job in flight, then starts its own, except that writes made while a write job runs queue
/// behind it (up to another [`CHUNK_SIZE`]) and that job writes them too, so one hop carries whatever
/// the writer produced while the pool was busy. A read on a regular file reads ahead, at least 64 KiB,
/// doubling with each full read up to [`CHUNK_SIZE`] (and back to 64 KiB after a seek), so small
/// reads still cost one hop per large chunk.
/// On Linux, data already in the page cache is read on the spot (`preadv2` with `RWF_NOWAIT`, up to
/// 256 KiB per call), without a hop; only reads that would wait for the disk go to the pool.
///
/// **Nothing written is lost.** A write returns once its bytes are copied into the buffer; the blocking
/// write then runs, and its error is reported by the next operation on the file, by
/// `flush` (`AsyncWriteExt::flush`), by `close` and by
/// [`sync_all`](File::sync_all). Call `flush` (or `close`) before dropping a file whose write errors
/// matter: a `File` dropped with a write in flight still completes that write, but nobody is left to
/// hear of its failure. After a failed write, the bytes queued behind it are dropped, not written
/// past the hole; the one error reported stands for them too.
///
/// # Caveats
/// - Reading ahead moves the OS file offset up to [`CHUNK_SIZE`] past the position this `File` reports.
///   That is invisible through this `File`, but visible to another handle sharing the open file
///   description (a `dup` of the descriptor, a child process that inherited it). Read-ahead happens only
///   on regular files.
/// - On a pipe or device opened as a file, bytes read by a read whose future was dropped before it
///   finished are discarded by the next write or seek.
///
/// # Examples
/// ```
/// use futures::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
/// use std::io::SeekFrom;
///
/// evloop::block_on(async {
///     let path = std::env::temp_dir().join(format!("evloop-file-doc-{}", std::process::id()));
///     let mut file = evloop::fs::File::options()
///         .read(true)
///         .write(true)
///         .create(true)
///         .truncate(true)
///         .open(&path)
///         .await?;
///     file.write_all(b"0123456789").await?;
///     file.seek(SeekFrom::Start(4)).await?;
///     let mut four = [0; 4];
///     file.read_exact(&mut four).await?;
///     assert_eq!(&four, b"4567");
///     file.sync_all().await?;
///     evloop::fs::remove_file(&path).await
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct File {
    /// Shared with the job in flight (and with `sync_all`, `metadata`, ... jobs), which need the file
    /// for as long as their system call runs, even if this `File` is dropped meanwhile.
    std: Arc<StdFile>,
    /// The state machine. Locked only by the `&self` methods; `poll_*` reach it through `get_mut`.
    inner: Mutex<Inner>,
    /// For error messages; `None` for a file from [`File::from_std`].
    path: Option<Arc<Path>>,
}

struct Inner {
    state: State,
    /// The size of the next read on a regular file, however small the caller's buffer.
    read_ahead: usize,
    /// Whether the file is a regular file, where reading ahead is safe and can be undone by a seek;
    /// learned by the first read (an `fstat` in the same job).
    regular: Option<bool>,
    /// Linux: whether to try [`read_cached`] first; cleared if the kernel or file system lacks it.
    #[cfg(target_os = "linux")]
    try_cached: bool,
    /// Bytes written while a write job runs wait here for that job (shared with it).
    queue: Arc<WriteQueue>,
}

enum State {
    /// No job in flight; the buffer may hold read-ahead bytes.
    Idle(Buf),
    /// A job on the pool owns the buffer and returns it with what it did.
    Busy(JoinHandle<(Op, Buf)>),
}

/// What a finished job did.
enum Op {
    /// A read: its result, how many bytes it asked for, and whether the file is a regular one.
    Read {
        result: io::Result<usize>,
        asked: usize,
        regular: bool,
    },
    Write(io::Result<()>),
    /// A seek, with the position the caller asked for, so that `poll_seek` knows the result is its own.
    Seek {
        result: io::Result<u64>,
        target: SeekFrom,
    },
    /// The job panicked (it cannot in practice: it only calls `std::fs`); its buffer is gone.
    Failed(io::Error),
}

/// The bytes of one operation.
#[derive(Default)]
pub(super) struct Buf {
    /// Storage; reads grow it (zero-filling as they do, up to [`CHUNK_SIZE`]) and reuse it without
    /// clearing it. A write job may swap it with the [write queue](WriteQueue)'s buffer.
    pub(super) bytes: Vec<u8>,
    /// Read data not yet handed to the caller is `bytes[pos..end]`; data to write is `bytes[..end]`.
    pos: usize,
    end: usize,
    /// Read-ahead bytes discarded without being read: the OS offset is this far past the caller's
    /// position. The next job seeks back first.
    rewind: u64,
}

impl Buf {
    fn unread(&self) -> &[u8] {
        &self.bytes[self.pos..self.end]
    }

    /// Copies buffered read data into `dst`; returns how much.
    fn take_into(&mut self, dst: &mut [u8]) -> usize {
        let n = self.unread().len().min(dst.len());
        dst[..n].copy_from_slice(&self.bytes[self.pos..self.pos + n]);
        self.pos += n;
        n
    }

    /// Drops buffered read data; on a regular file, remembers to seek back over it.
    fn discard(&mut self, regular: bool) {
        if regular {
            self.rewind += (self.end - self.pos) as u64;
        }
        self.pos = 0;
        self.end = 0;
    }

    /// The first `len` bytes of storage, growing it if needed.
    fn storage(&mut self, len: usize) -> &mut [u8] {
        if self.bytes.len() < len {
            self.bytes.resize(len, 0);
        }
        &mut self.bytes[..len]
    }

    /// Seeks the OS offset back over discarded read-ahead. Runs on the pool.
    fn apply_rewind(&mut self, file: &StdFile) -> io::Result<()> {
        if self.rewind > 0 {
            let back = i64::try_from(self.rewind).map_err(|_| io::ErrorKind::InvalidInput)?;
            (&*file).seek(SeekFrom::Current(-back))?;
            self.rewind = 0;
        }
        Ok(())
    }
}

/// The blocking part of a read: one `read(2)` (retried on `EINTR`) of `exact` bytes, or of `ahead`
/// bytes on a regular file.
fn read_job(
    file: &StdFile,
    mut buf: Buf,
    exact: usize,
    ahead: usize,
    regular: Option<bool>,
) -> (Op, Buf) {
    let regular = regular.unwrap_or_else(|| file.metadata().is_ok_and(|m| m.is_file()));
    let asked = if regular { ahead } else { exact };
    buf.pos = 0;
    buf.end = 0;
    let result = buf.apply_rewind(file).and_then(|()| {
        let storage = buf.storage(asked);
        loop {
            match (&*file).read(storage) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                res => break res,
            }
        }
    });
    if let Ok(n) = result {
        buf.end = n;
    }
    (
        Op::Read {
            result,
            asked,
            regular,
        },
        buf,
    )
}

/// The blocking part of a write: all of `bytes[..end]`, after seeking back over discarded read-ahead,
/// then whatever `poll_write` queued meanwhile (see [`WriteQueue::drain`]).
fn write_job(file: &StdFile, mut buf: Buf, queue: &WriteQueue) -> (Op, Buf) {
    let first = buf
        .apply_rewind(file)
        .and_then(|()| (&*file).write_all(&buf.bytes[..buf.end]));
    let result = queue.drain(file, &mut buf, first);
    buf.end = 0;
    (Op::Write(result), buf)
}

/// The blocking part of a seek. A relative seek also covers the discarded read-ahead.
fn seek_job(file: &StdFile, mut buf: Buf, target: SeekFrom) -> (Op, Buf) {
    let os_target = match target {
        SeekFrom::Current(n) => i64::try_from(buf.rewind)
            .ok()
            .and_then(|back| n.checked_sub(back))
            .map(SeekFrom::Current),
        absolute => Some(absolute),
    };
    let result = match os_target {
        Some(to) => (&*file).seek(to),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "seek offset out of range",
        )),
    };
    if result.is_ok() {
        buf.rewind = 0;
    }
    (Op::Seek { result, target }, buf)
}

impl Inner {
    fn new() -> Inner {
        Inner {
            state: State::Idle(Buf::default()),
            read_ahead: MIN_READ_AHEAD,
            regular: None,
            #[cfg(target_os = "linux")]
            try_cached: true,
            queue: Arc::default(),
        }
    }

    /// Waits for the job in flight, if any, and returns what it did; the state is then `Idle`.
    fn poll_inflight(&mut self, cx: &mut Context<'_>) -> Poll<Option<Op>> {
        let State::Busy(job) = &mut self.state else {
            return Poll::Ready(None);
        };
        let (op, buf) = match ready!(Pin::new(job).poll(cx)) {
            Ok(done) => done,
            Err(e) => (Op::Failed(e.into()), Buf::default()),
        };
        self.state = State::Idle(buf);
        if let Op::Read {
            result,
            asked,
            regular,
        } = &op
        {
            self.regular = Some(*regular);
            if *regular && result.as_ref().is_ok_and(|n| n == asked) {
                self.read_ahead = (self.read_ahead * 2).min(CHUNK_SIZE);
            }
        }
        Poll::Ready(Some(op))
    }

    /// Waits until no job is in flight; fails with the error of a write (or failed job) that was.
    fn poll_settle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match ready!(self.poll_inflight(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Op::Write(Err(e)) | Op::Failed(e)) => return Poll::Ready(Err(e)),
                Some(_) => {}
            }
        }
    }

    /// The idle state's buffer, taken out to hand to a job. Only called when idle.
    fn take_buf(&mut self) -> Buf {
        match &mut self.state {
            State::Idle(buf) => mem::take(buf),
            State::Busy(_) => Buf::default(),
        }
    }

    fn buf_mut(&mut self) -> Option<&mut Buf> {
        match &mut self.state {
            State::Idle(buf) => Some(buf),
            State::Busy(_) => None,
        }
    }

    fn start(
        &mut self,
        file: &Arc<StdFile>,
        job: impl FnOnce(&StdFile, Buf) -> (Op, Buf) + Send + 'static,
    ) {
        let buf = self.take_buf();
        let file = file.clone();
        self.state = State::Busy(spawn_blocking(move || job(&file, buf)));
    }

    /// Starts a write job for the bytes in the idle buffer; later writes queue behind it.
    fn start_write(&mut self, file: &Arc<StdFile>) {
        let queue = self.queue.clone();
        queue.start_draining();
        self.start(file, move |f, buf| write_job(f, buf, &queue));
    }
}

/// The error of an operation on `file`, naming its path (or descriptor).
fn file_error(path: &Option<Arc<Path>>, file: &StdFile, cause: io::Error, what: &str) -> io::Error {
    match path {
        Some(p) => path_error(cause, what, &p.display()),
        None => path_error(cause, what, &format_args!("<fd {}>", file.as_raw_fd())),
    }
}

/// The error of a write, whichever operation reports it.
fn write_error(path: &Option<Arc<Path>>, file: &StdFile, cause: io::Error) -> io::Error {
    file_error(path, file, cause, "write to")
}

impl File {
    /// Opens a file for reading, like [`std::fs::File::open`].
    ///
    /// # Errors
    /// Whatever `std::fs::File::open` reports, naming the path.
    pub async fn open(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().read(true).open(path).await
    }

    /// Opens a file for writing, creating it or truncating it, like [`std::fs::File::create`].
    ///
    /// # Errors
    /// Whatever `std::fs::File::create` reports, naming the path.
    pub async fn create(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .await
    }

    /// Creates a new file for reading and writing, failing with `AlreadyExists` if it exists.
    ///
    /// # Errors
    /// Whatever `std::fs::File::create_new` reports, naming the path.
    pub async fn create_new(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .await
    }

    /// An [`OpenOptions`] with nothing set, to open a file with other flags.
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }

    /// Wraps an open `std::fs::File`. Errors then name its descriptor, since its path is unknown.
    pub fn from_std(file: StdFile) -> File {
        File {
            std: Arc::new(file),
            inner: Mutex::new(Inner::new()),
            path: None,
        }
    }

    pub(crate) fn with_path(file: StdFile, path: &Path) -> File {
        File {
            path: Some(path.into()),
            ..File::from_std(file)
        }
    }

    /// Waits for the operation in flight; fails with the error of the write it was.
    async fn settle(&self) -> io::Result<()> {
        poll_fn(|cx| self.lock().poll_settle(cx))
            .await
            .map_err(|e| write_error(&self.path, &self.std, e))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the file on the pool, once the operation in flight is done.
    async fn side_job<T, F>(&self, what: &'static str, f: F) -> io::Result<T>
    where
        F: FnOnce(&StdFile) -> io::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.settle().await?;
        let file = self.std.clone();
        asyncify(move || f(&file))
            .await
            .map_err(|e| file_error(&self.path, &self.std, e, what))
    }

    /// Flushes data and metadata to the device, like [`std::fs::File::sync_all`], after waiting for the
    /// write in flight.
    ///
    /// # Errors
    /// The error of the write in flight, or whatever `fsync` reports, naming the path.
    pub async fn sync_all(&self) -> io::Result<()> {
        self.side_job("sync", |f| f.sync_all()).await
    }

    /// Flushes data (and only the metadata needed to read it back) to the device, like
    /// [`std::fs::File::sync_data`], after waiting for the write in flight.
    ///
    /// # Errors
    /// The error of the write in flight, or whatever `fdatasync` reports, naming the path.
    pub async fn sync_data(&self) -> io::Result<()> {
        self.side_job("sync", |f| f.sync_data()).await
    }

    /// Truncates or extends the file to `size` bytes, like [`std::fs::File::set_len`]. The position is
    /// unchanged; read-ahead bytes are dropped.
    ///
    /// # Errors
    /// The error of the write in flight, or whatever `ftruncate` reports, naming the path.
    pub async fn set_len(&self, size: u64) -> io::Result<()> {
        self.settle().await?;
        {
            let mut inner = self.lock();
            let regular = inner.regular == Some(true);
            if let Some(buf) = inner.buf_mut() {
                buf.discard(regular);
            }
        }
        self.side_job("set the length of", move |f| f.set_len(size))
            .await
    }

    /// The file's metadata, like [`std::fs::File::metadata`], after waiting for the write in flight
    /// (so the length includes it).
    ///
    /// # Errors
    /// The error of the write in flight, or whatever `fstat` reports, naming the path.
    pub async fn metadata(&self) -> io::Result<Metadata> {
        self.side_job("stat", |f| f.metadata()).await
    }

    /// Changes the file's permissions, like [`std::fs::File::set_permissions`].
    ///
    /// # Errors
    /// The error of the write in flight, or whatever `fchmod` reports, naming the path.
    pub async fn set_permissions(&self, perm: Permissions) -> io::Result<()> {
        self.side_job("set permissions of", move |f| f.set_permissions(perm))
            .await
    }

    /// The `std::fs::File`, once the operation in flight is done, at the position this `File` had
    /// (read-ahead is undone).
    ///
    /// Call `flush` (`AsyncWriteExt::flush`) first if a write error matters: this waits for the
    /// write in flight but, like `tokio::fs::File::into_std`, has no way to return its error.
    pub async fn into_std(self) -> StdFile {
        let _ = self.settle().await;
        let File { std, inner, .. } = self;
        let mut inner = inner.into_inner().unwrap_or_else(PoisonError::into_inner);
        let regular = inner.regular == Some(true);
        let rewind = inner.buf_mut().map_or(0, |buf| {
            buf.discard(regular);
            buf.rewind
        });
        let std = match (rewind, Arc::try_unwrap(std)) {
            (0, Ok(file)) => return file,
            (_, Ok(file)) => Arc::new(file),
            (_, Err(shared)) => shared,
        };
        let job = spawn_blocking(move || {
            // Undoing read-ahead on a regular file seeks back into bytes already read: it cannot fail.
            let _ = (&*std).seek(SeekFrom::Current(-(rewind as i64)));
            // A `sync_all`/`metadata`/... whose future was dropped may still be running its system call
            // with its own handle; it ends in the time of that call.
            let mut std = std;
            loop {
                match Arc::try_unwrap(std) {
                    Ok(file) => return file,
                    Err(shared) => {
                        std = shared;
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
            }
        });
        match job.await {
            Ok(file) => file,
            // The job only seeks and sleeps; should it panic anyway, the panic is the caller's.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// The `std::fs::File` if that needs no waiting: no operation in flight, no read-ahead to undo, no
    /// `sync_all`/`metadata`/... job still holding the file. Otherwise gives the `File` back.
    #[allow(clippy::result_large_err)] // tokio's signature: the `File` itself is given back
    pub fn try_into_std(mut self) -> Result<StdFile, File> {
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        match inner.buf_mut() {
            Some(buf) if buf.unread().is_empty() && buf.rewind == 0 => {}
            _ => return Err(self),
        }
        let File { std, inner, path } = self;
        Arc::try_unwrap(std).map_err(|std| File { std, inner, path })
    }
}

impl futures_io::AsyncRead for File {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let File { std, inner, path } = self.get_mut();
        let inner = inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        loop {
            match ready!(inner.poll_inflight(cx)) {
                Some(Op::Read { result, .. }) => {
                    let res = match result {
                        // This read was started for this call, or for one whose future was dropped;
                        // either way its bytes are next in the file.
                        Ok(_) => Ok(inner.buf_mut().map_or(0, |buf| buf.take_into(dst))),
                        Err(e) => Err(file_error(path, std, e, "read from")),
                    };
                    return Poll::Ready(res);
                }
                Some(Op::Write(Err(e)) | Op::Failed(e)) => {
                    return Poll::Ready(Err(write_error(path, std, e)))
                }
                // A finished write, or the seek of a dropped `seek` future.
                Some(_) | None => {}
            }
            let (read_ahead, regular) = (inner.read_ahead, inner.regular);
            let Some(buf) = inner.buf_mut() else {
                continue;
            };
            if !buf.unread().is_empty() || dst.is_empty() {
                return Poll::Ready(Ok(buf.take_into(dst)));
            }
            // A regular file whose OS offset is the caller's position: what the page cache holds can
            // be read here and now.
            #[cfg(target_os = "linux")]
            let at_position = buf.rewind == 0;
            #[cfg(target_os = "linux")]
            if inner.try_cached && regular == Some(true) && at_position {
                // A read that never waits spends the task's I/O budget like a ready socket does, so
                // a task reading a cached file end to end still lets the others run.
                ready!(crate::coop::poll_proceed(cx));
                match read_cached(std, dst) {
                    Cached::Read(n) => return Poll::Ready(Ok(n)),
                    Cached::Unsupported => inner.try_cached = false,
                    Cached::Missing => {}
                }
            }
            let exact = dst.len().min(CHUNK_SIZE);
            let ahead = dst.len().max(read_ahead).min(CHUNK_SIZE);
            inner.start(std, move |f, buf| read_job(f, buf, exact, ahead, regular));
        }
    }
}

impl futures_io::AsyncWrite for File {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        src: &[u8],
    ) -> Poll<io::Result<usize>> {
        let File { std, inner, path } = self.get_mut();
        let inner = inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        if !src.is_empty() && matches!(inner.state, State::Busy(_)) {
            // Queueing never waits, like a cached read: it spends the task's budget instead.
            ready!(crate::coop::poll_proceed(cx));
            match inner.queue.push(src, cx.waker()) {
                Push::Queued(n) => return Poll::Ready(Ok(n)),
                Push::Full => return Poll::Pending,
                Push::NotDraining => {}
            }
        }
        if let Err(e) = ready!(inner.poll_settle(cx)) {
            return Poll::Ready(Err(write_error(path, std, e)));
        }
        if src.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = src.len().min(CHUNK_SIZE);
        let regular = inner.regular == Some(true);
        if let Some(buf) = inner.buf_mut() {
            buf.discard(regular);
            buf.storage(n).copy_from_slice(&src[..n]);
            buf.end = n;
        }
        inner.start_write(std);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let File { std, inner, path } = self.get_mut();
        let inner = inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        inner.poll_settle(cx).map_err(|e| write_error(path, std, e))
    }

    /// Waits for the write in flight and reports its error; the descriptor itself is closed when the
    /// `File` is dropped.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

impl futures_io::AsyncSeek for File {
    fn poll_seek(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        pos: SeekFrom,
    ) -> Poll<io::Result<u64>> {
        let File { std, inner, path } = self.get_mut();
        let inner = inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        loop {
            match ready!(inner.poll_inflight(cx)) {
                Some(Op::Seek { result, target }) if target == pos => {
                    return Poll::Ready(result.map_err(|e| file_error(path, std, e, "seek in")));
                }
                Some(Op::Write(Err(e)) | Op::Failed(e)) => {
                    return Poll::Ready(Err(write_error(path, std, e)))
                }
                // A finished read (its bytes are discarded below) or write, or a dropped seek's.
                Some(_) | None => {}
            }
            let regular = inner.regular == Some(true);
            let Some(buf) = inner.buf_mut() else {
                continue;
            };
            buf.discard(regular);
            inner.read_ahead = MIN_READ_AHEAD;
            inner.start(std, move |f, buf| seek_job(f, buf, pos));
        }
    }
}

impl AsRawFd for File {
    fn as_raw_fd(&self) -> RawFd {
        self.std.as_raw_fd()
    }
}

impl AsFd for File {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.std.as_fd()
    }
}

impl From<StdFile> for File {
    fn from(file: StdFile) -> File {
        File::from_std(file)
    }
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("path", &self.path)
            .field("fd", &self.std.as_raw_fd())
            .finish()
    }
}
