//! The power-cut model of [`FaultyFs`](super::FaultyFs): what each file would
//! keep if the machine lost power now, and cutting it back to that.

use std::io;
use std::path::Path;

use super::{Faults, LogFile};

/// What a power cut keeps of one file.
#[derive(Debug, Clone)]
pub(super) struct Durable {
    /// Bytes covered by the last successful `sync_data`.
    synced_len: u64,
    /// Whether its directory entry survives (it existed when first opened,
    /// or its directory was synced since).
    entry_synced: bool,
    /// Writes since the last successful `sync_data`, oldest first.
    unsynced: Vec<Unsynced>,
}

/// One write no sync has covered yet, and how to undo it.
#[derive(Debug, Clone)]
pub(super) struct Unsynced {
    pub(super) offset: u64,
    pub(super) len: u64,
    /// The file's length before the write.
    pub(super) len_before: u64,
    /// The bytes it overwrote (those below `len_before`).
    pub(super) old: Vec<u8>,
}

impl Unsynced {
    /// Undoes all of the write but its first `keep` bytes.
    fn undo(&self, file: &dyn LogFile, keep: u64) -> io::Result<()> {
        let keep_old = usize::try_from(keep).unwrap_or(usize::MAX);
        if let Some(old) = self.old.get(keep_old..).filter(|old| !old.is_empty()) {
            file.write_at(self.offset + keep, old)?;
        }
        let len = if keep == 0 {
            self.len_before
        } else {
            self.len_before.max(self.offset + keep.min(self.len))
        };
        if file.len()? > len {
            file.truncate(len)?;
        }
        Ok(())
    }
}

impl Faults {
    /// Simulates a power cut on every file opened through the wrapper so
    /// far: each is cut back to the length its last successful `sync_data`
    /// covered, and a file created since its directory was last synced is
    /// removed. Call it once nothing writes any more (the runtime is
    /// stopped), before opening the directory again; the files are then
    /// tracked afresh, as after a reboot.
    ///
    /// # Errors
    ///
    /// The first error of the wrapped file system while cutting;
    /// [`io::ErrorKind::Unsupported`] on a [`FaultyFs::counting_only`](super::FaultyFs::counting_only)
    /// wrapper, which kept no record of what to cut.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use statefn_store::{FaultyFs, FileSystem, StdFs};
    ///
    /// let dir = tempfile::tempdir()?;
    /// std::fs::create_dir_all(dir.path())?;
    /// let fs = FaultyFs::new(Arc::new(StdFs));
    /// let path = dir.path().join("log");
    /// let file = fs.open_file(&path, true)?;
    /// file.append(b"synced")?;
    /// file.sync_data()?;
    /// fs.sync_dir(dir.path())?;
    /// file.append(b" and not")?;
    ///
    /// fs.faults().power_cut()?;
    /// assert_eq!(std::fs::read(&path)?, b"synced");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn power_cut(&self) -> io::Result<()> {
        self.cut_power(None)
    }

    /// A power cut that keeps, of each file, a random prefix of the writes
    /// no sync covered (`seed` picks it): the first ones whole, the next one
    /// torn at a random byte, the rest lost. Whether the disk wrote an
    /// overwrite in place or an append before the power went, the log must
    /// recover either way. (Writes are kept in order: a disk that persists
    /// a later unsynced write but not an earlier one is not modelled.)
    ///
    /// # Errors
    ///
    /// As [`Faults::power_cut`].
    pub fn power_cut_tearing(&self, seed: u64) -> io::Result<()> {
        self.cut_power(Some(seed))
    }

    fn cut_power(&self, seed: Option<u64>) -> io::Result<()> {
        let (files, inner) = {
            let mut state = self.state.lock();
            if state.counting_only {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "this FaultyFs was built with FaultyFs::counting_only, which records \
                     no writes to undo: build it with FaultyFs::new to simulate a power cut",
                ));
            }
            (std::mem::take(&mut state.files), state.inner.clone())
        };
        let Some(inner) = inner else {
            return Ok(());
        };
        let mut random = seed.map(|seed| seed ^ 0x9e37_79b9_7f4a_7c15);
        let mut files: Vec<_> = files.into_iter().collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, durable) in files {
            if !durable.entry_synced {
                match inner.remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => continue,
                }
            }
            let file = match inner.open_file(&path, false) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let writes = &durable.unsynced;
            // Writes kept whole, then the torn one keeps `torn` bytes.
            let (whole, torn) = match random.as_mut() {
                None => (0, 0),
                Some(state) => {
                    let whole = next_random(state) % (writes.len() as u64 + 1);
                    let torn = writes
                        .get(usize::try_from(whole).unwrap_or(usize::MAX))
                        .map_or(0, |w| next_random(state) % (w.len + 1));
                    (usize::try_from(whole).unwrap_or(usize::MAX), torn)
                }
            };
            for (index, write) in writes.iter().enumerate().rev() {
                if index < whole {
                    break;
                }
                write.undo(file.as_ref(), if index == whole { torn } else { 0 })?;
            }
            if whole == 0 && torn == 0 && file.len()? > durable.synced_len {
                file.truncate(durable.synced_len)?;
            }
            file.sync_data()?;
        }
        Ok(())
    }

    /// Starts tracking `path` (first open only): what it holds now is
    /// durable if the file `existed`; a new file's entry is not, yet.
    pub(super) fn track(&self, path: &Path, existed: bool, len: u64) {
        self.state
            .lock()
            .files
            .entry(path.to_path_buf())
            .or_insert(Durable {
                synced_len: if existed { len } else { 0 },
                entry_synced: existed,
                unsynced: Vec::new(),
            });
    }

    pub(super) fn untrack(&self, path: &Path) {
        self.state.lock().files.remove(path);
    }

    /// How many unsynced writes a sync starting now covers.
    pub(super) fn unsynced_writes(&self, path: &Path) -> usize {
        self.state
            .lock()
            .files
            .get(path)
            .map_or(0, |durable| durable.unsynced.len())
    }

    /// A sync covered the first `writes` unsynced writes and `len` bytes.
    pub(super) fn file_synced(&self, path: &Path, len: u64, writes: usize) {
        if let Some(durable) = self.state.lock().files.get_mut(path) {
            durable.synced_len = len;
            durable.unsynced.drain(..writes.min(durable.unsynced.len()));
        }
    }

    pub(super) fn file_written(&self, path: &Path, write: Unsynced) {
        if let Some(durable) = self.state.lock().files.get_mut(path) {
            durable.unsynced.push(write);
        }
    }

    /// A truncation is taken as durable at once; the writes it cut off need
    /// no undoing past the new end.
    pub(super) fn file_truncated(&self, path: &Path, len: u64) {
        if let Some(durable) = self.state.lock().files.get_mut(path) {
            durable.synced_len = durable.synced_len.min(len);
            durable.unsynced.retain_mut(|write| {
                write.len_before = write.len_before.min(len);
                write
                    .old
                    .truncate(usize::try_from(len.saturating_sub(write.offset)).unwrap_or(0));
                write.offset < len
            });
        }
    }

    pub(super) fn dir_synced(&self, dir: &Path) {
        for (path, durable) in &mut self.state.lock().files {
            if path.parent() == Some(dir) {
                durable.entry_synced = true;
            }
        }
    }
}

/// A step of xorshift64*: enough randomness to pick what a power cut keeps.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{FaultyFs, FileSystem, StdFs};

    #[test]
    fn a_counting_only_wrapper_counts_and_fails_on_command_but_refuses_a_power_cut()
    -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let fs = FaultyFs::counting_only(Arc::new(StdFs));
        let faults = fs.faults();
        let path = dir.path().join("log");
        let file = fs.open_file(&path, true)?;
        file.append(b"one ")?;
        file.write_at(4, b"two")?;
        file.zero_fill(7, 16)?;
        file.sync_data()?;
        faults.short_write(2);
        assert!(file.append(b"three").is_err());
        faults.fail_syncs();
        assert!(file.sync_data().is_err());
        assert_eq!((faults.append_count(), faults.sync_count()), (3, 2));
        let mut expected = b"one two".to_vec();
        expected.extend([0; 9]);
        expected.extend(b"th");
        assert_eq!(std::fs::read(&path)?, expected);
        faults.heal();
        let refused = faults.power_cut().err().map(|e| (e.kind(), e.to_string()));
        let (kind, message) = refused.unwrap_or((io::ErrorKind::Other, String::new()));
        assert_eq!(kind, io::ErrorKind::Unsupported);
        assert!(message.contains("FaultyFs::new"), "{message}");
        assert_eq!(std::fs::read(&path)?.len(), 18, "nothing was cut");
        Ok(())
    }

    #[test]
    fn a_power_cut_drops_a_new_file_whose_directory_was_not_synced() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let fs = FaultyFs::new(Arc::new(StdFs));
        let kept = dir.path().join("kept");
        let lost = dir.path().join("lost");
        let file = fs.open_file(&kept, true)?;
        file.append(b"kept")?;
        file.sync_data()?;
        fs.sync_dir(dir.path())?;
        let file = fs.open_file(&lost, true)?;
        file.append(b"synced data, unsynced entry")?;
        file.sync_data()?;

        fs.faults().power_cut()?;
        assert_eq!(std::fs::read(&kept)?, b"kept");
        assert!(!lost.exists(), "its directory entry was never synced");
        Ok(())
    }

    #[test]
    fn a_power_cut_keeps_only_what_a_successful_sync_covered() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let fs = FaultyFs::new(Arc::new(StdFs));
        let faults = fs.faults();
        let path = dir.path().join("log");
        std::fs::write(&path, b"old ")?;
        // A file that existed before is durable as it was.
        let file = fs.open_file(&path, false)?;
        file.append(b"synced ")?;
        file.sync_data()?;
        file.append(b"failed ")?;
        faults.fail_syncs();
        assert!(file.sync_data().is_err());
        faults.heal();
        file.append(b"lied")?;
        faults.lie_about_syncs();
        file.sync_data()?;

        faults.power_cut()?;
        assert_eq!(std::fs::read(&path)?, b"old synced ");
        Ok(())
    }
}
