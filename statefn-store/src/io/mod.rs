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

/// An open log file, written at positions the writer chooses.
///
/// The log writes its records in place over a tail it filled with zeros
/// ahead of time ([`LogFile::zero_fill`]), so that the `fdatasync` of a
/// commit changes no file size (see `docs/formats.md`).
///
/// Methods take `&self` so that one handle can be shared between the writer
/// (which writes) and a syncer thread (which fsyncs) without a lock around
/// the whole file.
pub trait LogFile: Send + Sync + Debug {
    /// Reads the whole file from the start.
    fn read_all(&self) -> io::Result<Vec<u8>>;

    /// Reads up to `len` bytes at `offset` (fewer at the end of the file).
    fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let all = self.read_all()?;
        let start = usize::try_from(offset).map_or(all.len(), |o| o.min(all.len()));
        let end = start.saturating_add(len).min(all.len());
        Ok(all.get(start..end).unwrap_or_default().to_vec())
    }

    /// Writes all of `buf` at the end of the file. Not durable until
    /// [`LogFile::sync_data`] returns.
    fn append(&self, buf: &[u8]) -> io::Result<()>;

    /// Writes all of `buf` at byte `offset`, over what is there or past the
    /// end (the file grows). Not durable until [`LogFile::sync_data`]
    /// returns; until then a power cut may keep it, lose it, or keep a part.
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()>;

    /// Writes zeros over `from..to`, really (not `fallocate`: its unwritten
    /// extents are converted, and journaled, on the first write into them).
    /// Not durable until [`LogFile::sync_data`] returns.
    fn zero_fill(&self, from: u64, to: u64) -> io::Result<()> {
        const PIECE: u64 = 256 << 10;
        let zeros = vec![0u8; usize::try_from(to.saturating_sub(from).min(PIECE)).unwrap_or(0)];
        let mut at = from;
        while at < to {
            let n = (to - at).min(PIECE);
            let piece = zeros
                .get(..usize::try_from(n).unwrap_or(0))
                .unwrap_or_default();
            self.write_at(at, piece)?;
            at += n;
        }
        Ok(())
    }

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
