//! [`StdFs`]: the real file system, via `std::fs`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use super::{FileSystem, LogFile};

/// The real file system (`std::fs`).
///
/// # Examples
///
/// ```
/// use statefn_store::{FileSystem, StdFs};
///
/// let dir = tempfile::tempdir()?;
/// let file = StdFs.open_file(&dir.path().join("log"), true)?;
/// file.append(b"hello")?;
/// file.sync_data()?;
/// assert_eq!(file.read_all()?, b"hello");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFs;

impl FileSystem for StdFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                files.push(entry.path());
            }
        }
        files.sort();
        Ok(files)
    }

    fn open_file(&self, path: &Path, create: bool) -> io::Result<Box<dyn LogFile>> {
        // Not append mode: positional writes (`pwrite`) ignore their offset
        // on a file opened with `O_APPEND` on Linux.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Box::new(StdFile {
            file,
            read_cursor: Mutex::new(()),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

/// A `std::fs::File` written with positional writes.
#[derive(Debug)]
struct StdFile {
    file: File,
    /// Serialises seek+read pairs: the cursor is shared by all users of `file`.
    read_cursor: Mutex<()>,
}

impl LogFile for StdFile {
    fn read_all(&self) -> io::Result<Vec<u8>> {
        let _cursor = self.read_cursor.lock();
        let mut file = &self.file;
        file.seek(SeekFrom::Start(0))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let end = self.len()?;
        let available = usize::try_from(end.saturating_sub(offset)).unwrap_or(usize::MAX);
        let mut buf = vec![0u8; len.min(available)];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    fn append(&self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, self.len()?)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}
