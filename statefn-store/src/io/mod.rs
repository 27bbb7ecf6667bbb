//! The file-system seam under the write-ahead log.
//!
//! The log never calls `std::fs` directly: it goes through [`FileSystem`] and
//! [`LogFile`] so that tests can swap in `FaultyFs` (feature `fault-injection`) and prove what happens
//! when an append, a write or an fsync fails half-way. The real implementation
//! is [`StdFs`].

#[cfg(feature = "fault-injection")]
mod faulty;
mod std_fs;

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};

#[cfg(feature = "fault-injection")]
pub use faulty::{Faults, FaultyFs};
pub use std_fs::StdFs;

/// Directory-level operations the log needs.
///
/// Kept deliberately small so that a fault-injecting or remote implementation
/// stays easy to write.
pub trait FileSystem: Send + Sync + Debug + 'static {
    /// Creates `path` and all missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// Lists the regular files directly inside `path` (full paths, any order).
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>>;

    /// Opens `path` for reading and appending, creating it if `create` is set.
    fn open_file(&self, path: &Path, create: bool) -> io::Result<Box<dyn LogFile>>;

    /// Removes the file at `path`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Fsyncs the directory `path`, so that files created in or removed from
    /// it survive a crash (creating a file and syncing its data is not enough).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// An open, append-only file.
///
/// Methods take `&self` so that one handle can be shared between the writer
/// (which appends) and a syncer thread (which fsyncs) without a lock around
/// the whole file.
pub trait LogFile: Send + Sync + Debug {
    /// Reads the whole file from the start.
    fn read_all(&self) -> io::Result<Vec<u8>>;

    /// Writes all of `buf` at the end of the file. Not durable until
    /// [`LogFile::sync_data`] returns.
    fn append(&self, buf: &[u8]) -> io::Result<()>;

    /// Flushes written data (and the size) to stable storage (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;

    /// Shrinks (or extends) the file to `len` bytes.
    fn truncate(&self, len: u64) -> io::Result<()>;

    /// Current length of the file in bytes.
    fn len(&self) -> io::Result<u64>;

    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}
