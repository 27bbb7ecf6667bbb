//! [`FaultyFs`]: a [`FileSystem`] wrapper that fails on command, for tests.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::{FileSystem, LogFile};

/// Wraps another [`FileSystem`] and injects faults configured at run time
/// through a [`Faults`] handle.
///
/// Faults apply to file operations (`append`, `sync_data`), to
/// [`FileSystem::sync_dir`] and, when asked, to [`FileSystem::remove_file`];
/// reads and opens always pass through so that a test can inspect what
/// reached the disk.
///
/// It also keeps what a power cut would keep: per file, the length covered
/// by its last successful `sync_data`, every write since (with the bytes it
/// overwrote, so that an overwrite in place can be undone as well as an
/// append), and whether its directory entry was covered by a successful
/// `sync_dir` since it was created. [`Faults::power_cut`] then drops every
/// write and every new file that no sync covered, as a machine that loses
/// power (not just a killed process, whose writes the page cache keeps)
/// would; [`Faults::power_cut_tearing`] keeps a random prefix of the
/// unsynced writes instead, the last one possibly torn.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use statefn_store::{FaultyFs, FileSystem, StdFs};
///
/// let dir = tempfile::tempdir()?;
/// let fs = FaultyFs::new(Arc::new(StdFs));
/// let faults = fs.faults();
/// let file = fs.open_file(&dir.path().join("log"), true)?;
///
/// faults.fail_syncs();
/// file.append(b"written")?;
/// assert!(file.sync_data().is_err());
///
/// faults.heal();
/// file.sync_data()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct FaultyFs {
    inner: Arc<dyn FileSystem>,
    faults: Faults,
}

impl FaultyFs {
    /// Wraps `inner` with no faults configured.
    pub fn new(inner: Arc<dyn FileSystem>) -> Self {
        let faults = Faults::default();
        faults.state.lock().inner = Some(Arc::clone(&inner));
        Self { inner, faults }
    }

    /// A handle to configure faults; clones share the same configuration.
    pub fn faults(&self) -> Faults {
        self.faults.clone()
    }
}

impl FileSystem for FaultyFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner.list_dir(path)
    }

    fn open_file(&self, path: &Path, create: bool) -> io::Result<Box<dyn LogFile>> {
        let existed = !create
            || path.parent().is_some_and(|dir| {
                self.inner
                    .list_dir(dir)
                    .is_ok_and(|files| files.iter().any(|f| f == path))
            });
        let inner = self.inner.open_file(path, create)?;
        self.faults.track(path, existed, inner.len()?);
        Ok(Box::new(FaultyFile {
            inner,
            path: path.to_path_buf(),
            faults: self.faults.clone(),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.faults.before_remove(path)?;
        // (A removal is taken as durable at once: a power cut does not bring
        // a removed file back.)
        self.faults.untrack(path);
        self.inner.remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        if self.faults.before_sync(path)? == SyncFault::Lie {
            return Ok(());
        }
        self.inner.sync_dir(path)?;
        self.faults.dir_synced(path);
        Ok(())
    }
}

/// Shared, cloneable fault configuration of a [`FaultyFs`].
///
/// All settings take effect immediately, also for files opened earlier.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    state: Arc<Mutex<FaultState>>,
}

#[derive(Debug, Default)]
struct FaultState {
    /// Only paths containing this substring are affected.
    path_filter: Option<String>,
    /// Fail the append when `appends_until_failure` reaches zero.
    appends_until_failure: Option<u64>,
    /// Write only this many bytes of the next append, then fail.
    short_write: Option<usize>,
    fail_syncs: bool,
    /// Syncs return success without syncing (a disk that lies, or a
    /// missing `fdatasync`).
    lie_about_syncs: bool,
    fail_removes: bool,
    sync_delay: Option<Duration>,
    appends: u64,
    syncs: u64,
    /// What a power cut keeps of each file opened through the wrapper.
    files: HashMap<PathBuf, Durable>,
    /// The wrapped file system, for [`Faults::power_cut`].
    inner: Option<Arc<dyn FileSystem>>,
}

/// What a power cut keeps of one file.
#[derive(Debug, Clone)]
struct Durable {
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
struct Unsynced {
    offset: u64,
    len: u64,
    /// The file's length before the write.
    len_before: u64,
    /// The bytes it overwrote (those below `len_before`).
    old: Vec<u8>,
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

/// What a sync should do.
#[derive(Debug, PartialEq, Eq)]
enum SyncFault {
    None,
    Lie,
}

impl FaultState {
    fn applies_to(&self, path: &Path) -> bool {
        self.path_filter
            .as_deref()
            .is_none_or(|filter| path.to_string_lossy().contains(filter))
    }
}

/// What an append should do, decided under the lock and acted on outside it.
enum AppendFault {
    None,
    Fail,
    Short(usize),
}

impl Faults {
    /// Makes the `n`th append from now on (1 = the next one) fail without
    /// writing anything. Later appends succeed again.
    pub fn fail_nth_append(&self, n: u64) {
        self.state.lock().appends_until_failure = Some(n.max(1));
    }

    /// Makes the next append write only the first `bytes` bytes of its buffer
    /// and then fail, like a crash or a full disk in the middle of a write.
    pub fn short_write(&self, bytes: usize) {
        self.state.lock().short_write = Some(bytes);
    }

    /// Makes every file and directory sync fail from now on, until
    /// [`Faults::heal`].
    pub fn fail_syncs(&self) {
        self.state.lock().fail_syncs = true;
    }

    /// Makes every file removal fail from now on (nothing is removed), until
    /// [`Faults::heal`].
    pub fn fail_removes(&self) {
        self.state.lock().fail_removes = true;
    }

    /// Sleeps this long in every sync, to widen race windows in tests.
    pub fn sync_delay(&self, delay: Duration) {
        self.state.lock().sync_delay = Some(delay);
    }

    /// Restricts all faults to paths containing `substring` (for example one
    /// log group's directory name).
    pub fn only_paths_containing(&self, substring: impl Into<String>) {
        self.state.lock().path_filter = Some(substring.into());
    }

    /// Makes every file and directory sync return success without syncing
    /// anything, until [`Faults::heal`]: a disk that lies, or a build with
    /// its `fdatasync` calls removed. A [`Faults::power_cut`] then loses
    /// what was "synced" that way.
    pub fn lie_about_syncs(&self) {
        self.state.lock().lie_about_syncs = true;
    }

    /// Clears every fault and the path filter; counters and what a power
    /// cut would keep are kept.
    pub fn heal(&self) {
        let mut state = self.state.lock();
        let (appends, syncs) = (state.appends, state.syncs);
        let files = std::mem::take(&mut state.files);
        let inner = state.inner.take();
        *state = FaultState {
            appends,
            syncs,
            files,
            inner,
            ..FaultState::default()
        };
    }

    /// Simulates a power cut on every file opened through the wrapper so
    /// far: each is cut back to the length its last successful `sync_data`
    /// covered, and a file created since its directory was last synced is
    /// removed. Call it once nothing writes any more (the runtime is
    /// stopped), before opening the directory again; the files are then
    /// tracked afresh, as after a reboot.
    ///
    /// # Errors
    ///
    /// The first error of the wrapped file system while cutting.
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
    fn track(&self, path: &Path, existed: bool, len: u64) {
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

    fn untrack(&self, path: &Path) {
        self.state.lock().files.remove(path);
    }

    /// How many unsynced writes a sync starting now covers.
    fn unsynced_writes(&self, path: &Path) -> usize {
        self.state
            .lock()
            .files
            .get(path)
            .map_or(0, |durable| durable.unsynced.len())
    }

    /// A sync covered the first `writes` unsynced writes and `len` bytes.
    fn file_synced(&self, path: &Path, len: u64, writes: usize) {
        if let Some(durable) = self.state.lock().files.get_mut(path) {
            durable.synced_len = len;
            durable.unsynced.drain(..writes.min(durable.unsynced.len()));
        }
    }

    fn file_written(&self, path: &Path, write: Unsynced) {
        if let Some(durable) = self.state.lock().files.get_mut(path) {
            durable.unsynced.push(write);
        }
    }

    /// A truncation is taken as durable at once; the writes it cut off need
    /// no undoing past the new end.
    fn file_truncated(&self, path: &Path, len: u64) {
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

    fn dir_synced(&self, dir: &Path) {
        for (path, durable) in &mut self.state.lock().files {
            if path.parent() == Some(dir) {
                durable.entry_synced = true;
            }
        }
    }

    /// Appends attempted on affected paths so far (including failed ones).
    pub fn append_count(&self) -> u64 {
        self.state.lock().appends
    }

    /// Syncs (file and directory) attempted on affected paths so far.
    pub fn sync_count(&self) -> u64 {
        self.state.lock().syncs
    }

    fn before_append(&self, path: &Path) -> AppendFault {
        let mut state = self.state.lock();
        if !state.applies_to(path) {
            return AppendFault::None;
        }
        state.appends += 1;
        if let Some(bytes) = state.short_write.take() {
            return AppendFault::Short(bytes);
        }
        match state.appends_until_failure {
            Some(1) => {
                state.appends_until_failure = None;
                AppendFault::Fail
            }
            Some(n) => {
                state.appends_until_failure = Some(n - 1);
                AppendFault::None
            }
            None => AppendFault::None,
        }
    }

    fn before_remove(&self, path: &Path) -> io::Result<()> {
        let state = self.state.lock();
        if state.applies_to(path) && state.fail_removes {
            return Err(injected("remove", path));
        }
        Ok(())
    }

    fn before_sync(&self, path: &Path) -> io::Result<SyncFault> {
        let (delay, fail, lie) = {
            let mut state = self.state.lock();
            if !state.applies_to(path) {
                return Ok(SyncFault::None);
            }
            state.syncs += 1;
            (state.sync_delay, state.fail_syncs, state.lie_about_syncs)
        };
        if let Some(delay) = delay {
            std::thread::sleep(delay);
        }
        if fail {
            return Err(injected("sync", path));
        }
        Ok(if lie { SyncFault::Lie } else { SyncFault::None })
    }
}

fn injected(op: &str, path: &Path) -> io::Error {
    io::Error::other(format!("injected {op} fault on {}", path.display()))
}

#[derive(Debug)]
struct FaultyFile {
    inner: Box<dyn LogFile>,
    path: PathBuf,
    faults: Faults,
}

impl FaultyFile {
    /// The bytes of `from..to` that exist now (below `len`).
    fn old_bytes(&self, from: u64, to: u64, len: u64) -> io::Result<Vec<u8>> {
        if from >= len {
            return Ok(Vec::new());
        }
        let n = usize::try_from(to.min(len) - from).map_err(io::Error::other)?;
        self.inner.read_at(from, n)
    }

    /// Writes `buf` at `offset`, remembering what a power cut would undo.
    fn tracked_write(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let len_before = self.inner.len()?;
        let old = self.old_bytes(offset, offset + buf.len() as u64, len_before)?;
        self.inner.write_at(offset, buf)?;
        self.faults.file_written(
            &self.path,
            Unsynced {
                offset,
                len: buf.len() as u64,
                len_before,
                old,
            },
        );
        Ok(())
    }
}

/// A step of xorshift64*: enough randomness to pick what a power cut keeps.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

impl LogFile for FaultyFile {
    fn read_all(&self) -> io::Result<Vec<u8>> {
        self.inner.read_all()
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.inner.read_at(offset, len)
    }

    fn append(&self, buf: &[u8]) -> io::Result<()> {
        self.write_at(self.inner.len()?, buf)
    }

    /// Faults count appends and in-place writes alike (both are the log's
    /// writes of records).
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        match self.faults.before_append(&self.path) {
            AppendFault::None => self.tracked_write(offset, buf),
            AppendFault::Fail => Err(injected("append", &self.path)),
            AppendFault::Short(bytes) => {
                self.tracked_write(offset, buf.get(..bytes).unwrap_or(buf))?;
                Err(injected("short write", &self.path))
            }
        }
    }

    /// Never fails on command: preallocation is not a write of records.
    fn zero_fill(&self, from: u64, to: u64) -> io::Result<()> {
        let len_before = self.inner.len()?;
        let old = self.old_bytes(from, to, len_before)?;
        self.inner.zero_fill(from, to)?;
        self.faults.file_written(
            &self.path,
            Unsynced {
                offset: from,
                len: to.saturating_sub(from),
                len_before,
                old,
            },
        );
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        if self.faults.before_sync(&self.path)? == SyncFault::Lie {
            return Ok(());
        }
        // The length and writes before the sync: what is written while it
        // runs may not be covered.
        let writes = self.faults.unsynced_writes(&self.path);
        let len = self.inner.len()?;
        self.inner.sync_data()?;
        self.faults.file_synced(&self.path, len, writes);
        Ok(())
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)?;
        self.faults.file_truncated(&self.path, len);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StdFs;

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
