//! Files and directories, on the [blocking pool](crate::blocking): the shapes of `std::fs` (and of
//! `tokio::fs`) as futures.
//!
//! A regular file is always "ready" to epoll and kqueue, and reading it can still block for a disk
//! access, so readiness cannot drive files. Every call here runs the `std::fs` call on a pool thread and
//! wakes the task when it is done, as `tokio::fs` and `async-fs` do. One call costs one hop to the pool
//! and back (a few microseconds), so prefer few large operations to many small ones: [`read()`] moves a
//! whole file in one hop, [`write()`] and [`File`] move up to [`CHUNK_SIZE`] per hop, and [`read_dir`]
//! fetches [`READ_DIR_BATCH`] entries per hop. On Linux, a [`File`] read of data already in the page
//! cache needs no hop at all (`preadv2` with `RWF_NOWAIT`, on the caller's thread).
//!
//! Every error names the path involved (both paths for [`copy`], [`rename`] and [`hard_link`]) and keeps
//! the OS error's [`ErrorKind`](io::ErrorKind); its [`source()`](std::error::Error::source) is the
//! original `io::Error`, for [`raw_os_error()`](io::Error::raw_os_error).
//!
//! These functions need no runtime: the pool is process-wide, so they work inside [`block_on`](crate::block_on),
//! on a multi-thread [`Runtime`](crate::Runtime), and under any other executor.
//!
//! # Examples
//! ```
//! use futures::{AsyncReadExt, AsyncWriteExt};
//!
//! evloop::block_on(async {
//!     let dir = std::env::temp_dir().join(format!("evloop-fs-doc-{}", std::process::id()));
//!     evloop::fs::create_dir_all(&dir).await?;
//!     let path = dir.join("hello.txt");
//!
//!     let mut file = evloop::fs::File::create(&path).await?;
//!     file.write_all(b"hello, file").await?;
//!     file.flush().await?; // waits for the write in flight and reports its error
//!
//!     let mut text = String::new();
//!     evloop::fs::File::open(&path).await?.read_to_string(&mut text).await?;
//!     assert_eq!(text, "hello, file");
//!
//!     let err = evloop::fs::read(dir.join("missing")).await.unwrap_err();
//!     assert!(err.to_string().contains("missing"));
//!     evloop::fs::remove_dir_all(&dir).await
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::error::Error;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use futures_io::AsyncWrite;

use crate::blocking::spawn_blocking;

mod file;
mod open_options;
mod read_dir;
mod write_queue;

pub use file::{File, CHUNK_SIZE};
pub use open_options::OpenOptions;
pub use read_dir::{read_dir, DirEntry, ReadDir, READ_DIR_BATCH};
pub use std::fs::{FileType, Metadata, Permissions};

/// Runs a blocking `std::fs` call on the pool and returns its result.
async fn asyncify<T, F>(f: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    // A `JoinError` here can only be a panic inside `std::fs` (the pool never cancels a started job).
    spawn_blocking(f).await.unwrap_or_else(|e| Err(e.into()))
}

/// An `io::Error` whose message names what failed and on which path, wrapping the OS error.
#[derive(Debug)]
struct PathError {
    /// "could not open `/the/path`: No such file or directory (os error 2)".
    message: String,
    /// The original error, for `raw_os_error()`.
    cause: io::Error,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for PathError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.cause)
    }
}

/// Wraps `cause` as "could not {what} `{path}`: {cause}", keeping its kind.
fn path_error(cause: io::Error, what: &str, path: &dyn fmt::Display) -> io::Error {
    let message = format!("could not {what} `{path}`: {cause}");
    io::Error::new(cause.kind(), PathError { message, cause })
}

/// Runs `f(path)` on the pool, naming `path` in its error.
async fn with_path<T, F>(path: &Path, what: &'static str, f: F) -> io::Result<T>
where
    F: FnOnce(&Path) -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    let path = path.to_owned();
    asyncify(move || f(&path).map_err(|e| path_error(e, what, &path.display()))).await
}

/// Runs `f(from, to)` on the pool, naming both paths in its error as "{what} `from` {join} `to`".
async fn with_paths<T, F>(
    from: &Path,
    to: &Path,
    what: &'static str,
    join: &'static str,
    f: F,
) -> io::Result<T>
where
    F: FnOnce(&Path, &Path) -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    let (from, to) = (from.to_owned(), to.to_owned());
    asyncify(move || {
        f(&from, &to).map_err(|e| {
            let both = format!("{}` {join} `{}", from.display(), to.display());
            path_error(e, what, &both)
        })
    })
    .await
}

/// Reads a whole file into a vector, like [`std::fs::read`], in one hop to the pool.
///
/// # Errors
/// Whatever `std::fs::read` reports, naming the path.
pub async fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    with_path(path.as_ref(), "read", |p| std::fs::read(p)).await
}

/// Reads a whole UTF-8 file into a string, like [`std::fs::read_to_string`].
///
/// # Errors
/// Whatever `std::fs::read_to_string` reports (`InvalidData` for bytes that are not UTF-8), naming the
/// path.
pub async fn read_to_string(path: impl AsRef<Path>) -> io::Result<String> {
    with_path(path.as_ref(), "read", |p| std::fs::read_to_string(p)).await
}

/// Creates or truncates a file and writes `contents` to it, like [`std::fs::write`].
///
/// Up to [`CHUNK_SIZE`] bytes are copied for the pool thread and written in one hop. Larger contents go
/// through a [`File`], one chunk per hop through one reused buffer, so that writing a large buffer
/// does not allocate a second copy of it (`tokio::fs::write` copies it whole).
///
/// # Caveats
/// Dropping the future of a write larger than [`CHUNK_SIZE`] before it completes leaves a prefix of
/// `contents` in the file (the chunk in flight is still written).
///
/// # Errors
/// Whatever `std::fs::write` reports, naming the path.
pub async fn write(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> io::Result<()> {
    let (path, contents) = (path.as_ref(), contents.as_ref());
    if contents.len() <= CHUNK_SIZE {
        let contents = contents.to_owned();
        return with_path(path, "write", move |p| std::fs::write(p, contents)).await;
    }
    let mut file = File::create(path).await?;
    for chunk in contents.chunks(CHUNK_SIZE) {
        // A chunk is never more than one `poll_write` takes, so each call takes all of it.
        let n = poll_fn(|cx| Pin::new(&mut file).poll_write(cx, chunk)).await?;
        debug_assert_eq!(n, chunk.len());
    }
    poll_fn(|cx| Pin::new(&mut file).poll_close(cx)).await
}

/// Copies the contents and permissions of one file to another, like [`std::fs::copy`]; returns the
/// number of bytes copied.
///
/// # Errors
/// Whatever `std::fs::copy` reports, naming both paths.
pub async fn copy(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<u64> {
    with_paths(from.as_ref(), to.as_ref(), "copy", "to", |f, t| {
        std::fs::copy(f, t)
    })
    .await
}

/// Renames a file or directory, replacing `to` if it exists, like [`std::fs::rename`].
///
/// # Errors
/// Whatever `std::fs::rename` reports, naming both paths.
pub async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    with_paths(from.as_ref(), to.as_ref(), "rename", "to", |f, t| {
        std::fs::rename(f, t)
    })
    .await
}

/// Creates `link` as a hard link to `original`, like [`std::fs::hard_link`].
///
/// # Errors
/// Whatever `std::fs::hard_link` reports, naming both paths.
pub async fn hard_link(original: impl AsRef<Path>, link: impl AsRef<Path>) -> io::Result<()> {
    with_paths(
        original.as_ref(),
        link.as_ref(),
        "hard-link",
        "as",
        |o, l| std::fs::hard_link(o, l),
    )
    .await
}

/// Removes a file, like [`std::fs::remove_file`].
///
/// # Errors
/// Whatever `std::fs::remove_file` reports, naming the path.
pub async fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    with_path(path.as_ref(), "remove file", |p| std::fs::remove_file(p)).await
}

/// Removes an empty directory, like [`std::fs::remove_dir`].
///
/// # Errors
/// Whatever `std::fs::remove_dir` reports, naming the path.
pub async fn remove_dir(path: impl AsRef<Path>) -> io::Result<()> {
    with_path(path.as_ref(), "remove directory", |p| {
        std::fs::remove_dir(p)
    })
    .await
}

/// Removes a directory and everything in it, like [`std::fs::remove_dir_all`], in one hop.
///
/// # Errors
/// Whatever `std::fs::remove_dir_all` reports, naming the path.
pub async fn remove_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    with_path(path.as_ref(), "remove directory", |p| {
        std::fs::remove_dir_all(p)
    })
    .await
}

/// Creates a directory, like [`std::fs::create_dir`].
///
/// # Errors
/// Whatever `std::fs::create_dir` reports (`AlreadyExists`, a missing parent), naming the path.
pub async fn create_dir(path: impl AsRef<Path>) -> io::Result<()> {
    with_path(path.as_ref(), "create directory", |p| {
        std::fs::create_dir(p)
    })
    .await
}

/// Creates a directory and all its missing parents, like [`std::fs::create_dir_all`].
///
/// # Errors
/// Whatever `std::fs::create_dir_all` reports, naming the path.
pub async fn create_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    with_path(path.as_ref(), "create directory", |p| {
        std::fs::create_dir_all(p)
    })
    .await
}

/// The metadata of a path, following symbolic links, like [`std::fs::metadata`].
///
/// # Errors
/// Whatever `std::fs::metadata` reports, naming the path.
pub async fn metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    with_path(path.as_ref(), "stat", |p| std::fs::metadata(p)).await
}

/// The metadata of a path without following a final symbolic link, like [`std::fs::symlink_metadata`].
///
/// # Errors
/// Whatever `std::fs::symlink_metadata` reports, naming the path.
pub async fn symlink_metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    with_path(path.as_ref(), "stat", |p| std::fs::symlink_metadata(p)).await
}

/// The absolute path with every symbolic link and `.`/`..` resolved, like [`std::fs::canonicalize`].
///
/// # Errors
/// Whatever `std::fs::canonicalize` reports, naming the path.
pub async fn canonicalize(path: impl AsRef<Path>) -> io::Result<PathBuf> {
    with_path(path.as_ref(), "canonicalize", |p| std::fs::canonicalize(p)).await
}

/// The target of a symbolic link, like [`std::fs::read_link`].
///
/// # Errors
/// Whatever `std::fs::read_link` reports (`InvalidInput` when `path` is not a link), naming the path.
pub async fn read_link(path: impl AsRef<Path>) -> io::Result<PathBuf> {
    with_path(path.as_ref(), "read link", |p| std::fs::read_link(p)).await
}

/// Whether a path exists, like [`std::fs::exists`]: `Ok(false)` when it does not, an error when that
/// cannot be told (for example a parent directory without search permission).
///
/// # Errors
/// Any error other than "not found", naming the path.
pub async fn try_exists(path: impl AsRef<Path>) -> io::Result<bool> {
    with_path(path.as_ref(), "stat", |p| p.try_exists()).await
}

/// Changes the permissions of a file or directory, like [`std::fs::set_permissions`].
///
/// # Errors
/// Whatever `std::fs::set_permissions` reports, naming the path.
pub async fn set_permissions(path: impl AsRef<Path>, perm: Permissions) -> io::Result<()> {
    with_path(path.as_ref(), "set permissions of", move |p| {
        std::fs::set_permissions(p, perm)
    })
    .await
}

/// Creates a symbolic link at `link` pointing to `original`, like [`std::os::unix::fs::symlink`].
///
/// # Errors
/// Whatever `symlink` reports, naming both paths.
pub async fn symlink(original: impl AsRef<Path>, link: impl AsRef<Path>) -> io::Result<()> {
    with_paths(original.as_ref(), link.as_ref(), "symlink", "as", |o, l| {
        std::os::unix::fs::symlink(o, l)
    })
    .await
}

// Every type here can move between threads and be shared by them.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<File>();
    assert_send_sync::<OpenOptions>();
    assert_send_sync::<ReadDir>();
    assert_send_sync::<DirEntry>();
};
