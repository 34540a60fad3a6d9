//! [`read_dir`]: a directory's entries as a [`Stream`], fetched [`READ_DIR_BATCH`] at a time.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_core::Stream;

use super::{asyncify, path_error, with_path, FileType, Metadata};
use crate::blocking::spawn_blocking;
use crate::task::JoinHandle;

/// How many entries one hop to the blocking pool reads (as tokio's `ReadDir`): a directory of 10,000
/// entries costs 313 hops, not 10,000.
pub const READ_DIR_BATCH: usize = 32;

/// Opens a directory for reading its entries, like [`std::fs::read_dir`].
///
/// The entries come in the order the OS gives them, without `.` and `..`.
///
/// # Errors
/// Whatever `std::fs::read_dir` reports (`NotFound`, `NotADirectory`, `PermissionDenied`), naming the
/// path; an entry that cannot be read is an `Err` item naming the directory.
///
/// # Examples
/// ```
/// use futures::StreamExt;
///
/// evloop::block_on(async {
///     let mut entries = evloop::fs::read_dir(".").await?;
///     let mut names = Vec::new();
///     while let Some(entry) = entries.next().await {
///         names.push(entry?.file_name());
///     }
///     assert!(names.iter().any(|n| n == "Cargo.toml"));
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub async fn read_dir(path: impl AsRef<Path>) -> io::Result<ReadDir> {
    let path: Arc<Path> = path.as_ref().into();
    let std = with_path(&path, "read directory", |p| std::fs::read_dir(p)).await?;
    Ok(ReadDir {
        state: State::Idle(Batch {
            entries: VecDeque::new(),
            std: Some(std),
        }),
        path,
    })
}

/// The entries of a directory: a [`Stream`] of `io::Result<DirEntry>`, also readable with
/// [`next_entry`](ReadDir::next_entry) as in tokio.
pub struct ReadDir {
    state: State,
    /// The directory, for error messages.
    path: Arc<Path>,
}

enum State {
    Idle(Batch),
    /// A job on the pool fetches the next batch.
    Busy(JoinHandle<Batch>),
}

struct Batch {
    /// Entries fetched and not yet yielded.
    entries: VecDeque<io::Result<DirEntry>>,
    /// The directory stream; `None` once it is exhausted.
    std: Option<std::fs::ReadDir>,
}

/// The blocking part: up to [`READ_DIR_BATCH`] entries, with their file types (free on most file
/// systems, where the directory entry carries it; one `lstat` each elsewhere, still on the pool).
fn fetch(mut batch: Batch, dir: &Path) -> Batch {
    let Some(std) = batch.std.as_mut() else {
        return batch;
    };
    for _ in 0..READ_DIR_BATCH {
        match std.next() {
            Some(Ok(entry)) => {
                let file_type = entry.file_type().ok();
                batch.entries.push_back(Ok(DirEntry {
                    std: Arc::new(entry),
                    file_type,
                }));
            }
            Some(Err(e)) => {
                let e = path_error(e, "read an entry of directory", &dir.display());
                batch.entries.push_back(Err(e));
            }
            None => {
                batch.std = None;
                break;
            }
        }
    }
    batch
}

impl ReadDir {
    /// The next entry, or `None` at the end, like tokio's `ReadDir::next_entry`.
    ///
    /// # Errors
    /// An entry that could not be read, naming the directory.
    pub async fn next_entry(&mut self) -> io::Result<Option<DirEntry>> {
        poll_fn(|cx| Pin::new(&mut *self).poll_next(cx))
            .await
            .transpose()
    }
}

impl Stream for ReadDir {
    type Item = io::Result<DirEntry>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Idle(batch) => {
                    if let Some(entry) = batch.entries.pop_front() {
                        return Poll::Ready(Some(entry));
                    }
                    if batch.std.is_none() {
                        return Poll::Ready(None);
                    }
                    let batch = std::mem::replace(
                        batch,
                        Batch {
                            entries: VecDeque::new(),
                            std: None,
                        },
                    );
                    let dir = this.path.clone();
                    this.state = State::Busy(spawn_blocking(move || fetch(batch, &dir)));
                }
                State::Busy(job) => {
                    let done = ready!(Pin::new(job).poll(cx));
                    let (batch, failed) = match done {
                        Ok(batch) => (batch, None),
                        // Only a panic inside `std::fs` could get here; the stream then ends.
                        Err(e) => {
                            let e = path_error(e.into(), "read directory", &this.path.display());
                            let batch = Batch {
                                entries: VecDeque::new(),
                                std: None,
                            };
                            (batch, Some(e))
                        }
                    };
                    this.state = State::Idle(batch);
                    if let Some(e) = failed {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.state {
            State::Idle(batch) if batch.std.is_none() => {
                (batch.entries.len(), Some(batch.entries.len()))
            }
            State::Idle(batch) => (batch.entries.len(), None),
            State::Busy(_) => (0, None),
        }
    }
}

impl fmt::Debug for ReadDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadDir").field("path", &self.path).finish()
    }
}

/// One entry of a [`ReadDir`].
pub struct DirEntry {
    /// Shared with a `metadata` job.
    std: Arc<std::fs::DirEntry>,
    /// Read with the batch; `None` if that failed (then [`file_type`](DirEntry::file_type) asks again).
    file_type: Option<FileType>,
}

impl DirEntry {
    /// The full path of the entry: the directory given to [`read_dir`] joined with the file name.
    pub fn path(&self) -> PathBuf {
        self.std.path()
    }

    /// The entry's file name, without its directory.
    pub fn file_name(&self) -> OsString {
        self.std.file_name()
    }

    /// The entry's metadata, without following a symbolic link, like
    /// [`std::fs::DirEntry::metadata`]: one hop to the pool.
    ///
    /// # Errors
    /// Whatever `lstat` reports (`NotFound` if the entry was removed since), naming the entry's path.
    pub async fn metadata(&self) -> io::Result<Metadata> {
        let std = self.std.clone();
        asyncify(move || {
            std.metadata()
                .map_err(|e| path_error(e, "stat", &std.path().display()))
        })
        .await
    }

    /// The entry's file type, without following a symbolic link. Usually known already (read with the
    /// batch); otherwise one hop to the pool.
    ///
    /// # Errors
    /// Whatever `lstat` reports, naming the entry's path.
    pub async fn file_type(&self) -> io::Result<FileType> {
        if let Some(file_type) = self.file_type {
            return Ok(file_type);
        }
        let std = self.std.clone();
        asyncify(move || {
            std.file_type()
                .map_err(|e| path_error(e, "stat", &std.path().display()))
        })
        .await
    }
}

impl fmt::Debug for DirEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirEntry")
            .field("path", &self.path())
            .finish()
    }
}
