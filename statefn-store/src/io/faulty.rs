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
/// by its last successful `sync_data`, and whether its directory entry was
/// covered by a successful `sync_dir` since it was created.
/// [`Faults::power_cut`] then drops every byte and every new file that no
/// sync covered, as a machine that loses power (not just a killed process,
/// whose writes the page cache keeps) would.
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
#[derive(Debug, Clone, Copy)]
struct Durable {
    /// Bytes covered by the last successful `sync_data`.
    synced_len: u64,
    /// Whether its directory entry survives (it existed when first opened,
    /// or its directory was synced since).
    entry_synced: bool,
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
        let (files, inner) = {
            let mut state = self.state.lock();
            (std::mem::take(&mut state.files), state.inner.clone())
        };
        let Some(inner) = inner else {
            return Ok(());
        };
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
            if file.len()? > durable.synced_len {
                file.truncate(durable.synced_len)?;
                file.sync_data()?;
            }
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
            });
    }

    fn untrack(&self, path: &Path) {
        self.state.lock().files.remove(path);
    }

    fn file_synced(&self, path: &Path, len: u64) {
        if let Some(durable) = self.state.lock().files.get_mut(path) {
            durable.synced_len = len;
        }
    }

    fn file_truncated(&self, path: &Path, len: u64) {
        if let Some(durable) = self.state.lock().files.get_mut(path) {
            durable.synced_len = durable.synced_len.min(len);
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

impl LogFile for FaultyFile {
    fn read_all(&self) -> io::Result<Vec<u8>> {
        self.inner.read_all()
    }

    fn append(&self, buf: &[u8]) -> io::Result<()> {
        match self.faults.before_append(&self.path) {
            AppendFault::None => self.inner.append(buf),
            AppendFault::Fail => Err(injected("append", &self.path)),
            AppendFault::Short(bytes) => {
                let prefix = buf.get(..bytes).unwrap_or(buf);
                self.inner.append(prefix)?;
                Err(injected("short write", &self.path))
            }
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        if self.faults.before_sync(&self.path)? == SyncFault::Lie {
            return Ok(());
        }
        // The length before the sync: bytes appended while it runs may not
        // be covered.
        let len = self.inner.len()?;
        self.inner.sync_data()?;
        self.faults.file_synced(&self.path, len);
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
