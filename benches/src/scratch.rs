//! Scratch data directories: wiped before a run so that no run recovers or
//! reads another's data, and removed after it so runs do not fill the disk.

use std::{
    io,
    path::{Path, PathBuf},
};

/// A directory that is empty when created and deleted when dropped.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Wipes and recreates `root/name`.
    ///
    /// # Errors
    ///
    /// Any I/O error removing the old directory or creating the new one.
    pub fn new(root: &Path, name: &str) -> io::Result<Scratch> {
        let path = root.join(name);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(&path)?;
        Ok(Scratch { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort: a leftover directory is wiped by the next run anyway.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Warns when `root` looks like a RAM-backed file system: fsync there costs
/// nothing, so durable numbers would be meaningless.
pub fn warn_if_not_real_disk(root: &Path) {
    let absolute = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    if ["/tmp", "/dev/shm", "/run"]
        .iter()
        .any(|ram| absolute.starts_with(ram))
    {
        eprintln!(
            "warning: --data-dir {} may be RAM-backed (tmpfs); fsync results would not reflect a disk",
            absolute.display()
        );
    }
}

/// Bytes under `path` (a file or a directory tree); unreadable parts count
/// as 0, since this only reports sizes.
pub fn dir_bytes(path: &Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::read_dir(path)
            .map(|dir| dir.flatten().map(|e| dir_bytes(&e.path())).sum())
            .unwrap_or(0),
        Ok(meta) => meta.len(),
        Err(_) => 0,
    }
}
