//! [`ProcessCrashFs`]: the test kit's log file system. A simulated crash
//! keeps what was written to the OS, as a killed process does, so an
//! `fdatasync` per commit would only slow tests down: syncs do nothing.

use std::{
    io,
    path::{Path, PathBuf},
};

use statefn_store::{FileSystem, LogFile, StdFs};

/// The real file system, with syncs that return at once.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcessCrashFs;

impl FileSystem for ProcessCrashFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        StdFs.create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        StdFs.list_dir(path)
    }

    fn open_file(&self, path: &Path, create: bool) -> io::Result<Box<dyn LogFile>> {
        Ok(Box::new(Unsynced(StdFs.open_file(path, create)?)))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_file(path)
    }

    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
}

/// A file whose `sync_data` does nothing.
#[derive(Debug)]
struct Unsynced(Box<dyn LogFile>);

impl LogFile for Unsynced {
    fn read_all(&self) -> io::Result<Vec<u8>> {
        self.0.read_all()
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.0.read_at(offset, len)
    }

    fn append(&self, buf: &[u8]) -> io::Result<()> {
        self.0.append(buf)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.0.write_at(offset, buf)
    }

    fn zero_fill(&self, from: u64, to: u64) -> io::Result<()> {
        self.0.zero_fill(from, to)
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.0.truncate(len)
    }

    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
}
