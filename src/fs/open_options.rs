//! [`OpenOptions`]: how to open a [`File`], as [`std::fs::OpenOptions`].

use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{with_path, File};

/// Options and flags for opening a [`File`]: the builder of [`std::fs::OpenOptions`], with an async
/// [`open`](OpenOptions::open).
///
/// # Examples
/// ```
/// use futures::AsyncWriteExt;
///
/// evloop::block_on(async {
///     let path = std::env::temp_dir().join(format!("evloop-options-doc-{}", std::process::id()));
///     let mut log = evloop::fs::OpenOptions::new().append(true).create(true).open(&path).await?;
///     log.write_all(b"one line\n").await?;
///     log.close().await?;
///     evloop::fs::remove_file(&path).await
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct OpenOptions(std::fs::OpenOptions);

impl OpenOptions {
    /// No access and no flags: set at least [`read`](Self::read), [`write`](Self::write) or
    /// [`append`](Self::append).
    pub fn new() -> OpenOptions {
        OpenOptions(std::fs::OpenOptions::new())
    }

    /// Read access.
    pub fn read(&mut self, read: bool) -> &mut OpenOptions {
        self.0.read(read);
        self
    }

    /// Write access.
    pub fn write(&mut self, write: bool) -> &mut OpenOptions {
        self.0.write(write);
        self
    }

    /// Append mode: every write goes to the end of the file (implies write access).
    pub fn append(&mut self, append: bool) -> &mut OpenOptions {
        self.0.append(append);
        self
    }

    /// Truncate an existing file to length 0 (needs write access).
    pub fn truncate(&mut self, truncate: bool) -> &mut OpenOptions {
        self.0.truncate(truncate);
        self
    }

    /// Create the file if it does not exist (needs write or append access).
    pub fn create(&mut self, create: bool) -> &mut OpenOptions {
        self.0.create(create);
        self
    }

    /// Create the file, failing with `AlreadyExists` if it exists (atomically; `create` and `truncate`
    /// are then ignored).
    pub fn create_new(&mut self, create_new: bool) -> &mut OpenOptions {
        self.0.create_new(create_new);
        self
    }

    /// The permission bits of a file this call creates (before the umask); `0o666` by default.
    pub fn mode(&mut self, mode: u32) -> &mut OpenOptions {
        self.0.mode(mode);
        self
    }

    /// Extra `open(2)` flags, such as `libc::O_NOFOLLOW` (the access mode bits are ignored; evloop adds
    /// `O_CLOEXEC` as std always does).
    pub fn custom_flags(&mut self, flags: i32) -> &mut OpenOptions {
        self.0.custom_flags(flags);
        self
    }

    /// Opens `path` with these options, on the blocking pool.
    ///
    /// # Errors
    /// Whatever [`std::fs::OpenOptions::open`] reports (`NotFound`, `PermissionDenied`,
    /// `AlreadyExists` with `create_new`, `InvalidInput` for a combination that makes no sense), naming
    /// the path.
    pub async fn open(&self, path: impl AsRef<Path>) -> io::Result<File> {
        let options = self.0.clone();
        let path = path.as_ref();
        let std = with_path(path, "open", move |p| options.open(p)).await?;
        Ok(File::with_path(std, path))
    }
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions::new()
    }
}

impl From<std::fs::OpenOptions> for OpenOptions {
    fn from(options: std::fs::OpenOptions) -> OpenOptions {
        OpenOptions(options)
    }
}
