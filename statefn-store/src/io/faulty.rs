//! [`FaultyFs`]: a [`FileSystem`] wrapper that fails on command, for tests.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::{FileSystem, LogFile};

mod power_cut;

use power_cut::{Durable, Unsynced};

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
    /// Whether writes are recorded for [`Faults::power_cut`] (off for
    /// [`FaultyFs::counting_only`]).
    tracks_writes: bool,
}

impl FaultyFs {
    /// Wraps `inner` with no faults configured.
    pub fn new(inner: Arc<dyn FileSystem>) -> Self {
        let faults = Faults::default();
        faults.state.lock().inner = Some(Arc::clone(&inner));
        Self {
            inner,
            faults,
            tracks_writes: true,
        }
    }

    /// Wraps `inner` to count appends and syncs and inject faults, without
    /// recording what a power cut would undo.
    ///
    /// Recording costs a read of the bytes each write overwrites and a
    /// length query per write; a benchmark that only wants the counts
    /// (`statefn-bench --diagnose`) should not pay that inside every
    /// commit. [`Faults::power_cut`] on such a wrapper is an error.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use statefn_store::{FaultyFs, FileSystem, StdFs};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let fs = FaultyFs::counting_only(Arc::new(StdFs));
    /// let file = fs.open_file(&dir.path().join("log"), true)?;
    /// file.append(b"one")?;
    /// file.sync_data()?;
    /// assert_eq!((fs.faults().append_count(), fs.faults().sync_count()), (1, 1));
    /// assert!(fs.faults().power_cut().is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn counting_only(inner: Arc<dyn FileSystem>) -> Self {
        let faults = Faults::default();
        faults.state.lock().counting_only = true;
        Self {
            inner,
            faults,
            tracks_writes: false,
        }
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
            || !self.tracks_writes
            || path.parent().is_some_and(|dir| {
                self.inner
                    .list_dir(dir)
                    .is_ok_and(|files| files.iter().any(|f| f == path))
            });
        let inner = self.inner.open_file(path, create)?;
        if self.tracks_writes {
            self.faults.track(path, existed, inner.len()?);
        }
        Ok(Box::new(FaultyFile {
            inner,
            path: path.to_path_buf(),
            faults: self.faults.clone(),
            tracks_writes: self.tracks_writes,
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
    /// Built by [`FaultyFs::counting_only`]: no writes recorded, so no
    /// power cut can be simulated.
    counting_only: bool,
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
        let counting_only = state.counting_only;
        *state = FaultState {
            appends,
            syncs,
            files,
            inner,
            counting_only,
            ..FaultState::default()
        };
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
    /// See [`FaultyFs::counting_only`].
    tracks_writes: bool,
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

    /// Counts a write of `buf` and does it with `write`, or the fault
    /// configured for it.
    fn faulted_write(
        &self,
        buf: &[u8],
        write: impl FnOnce(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        match self.faults.before_append(&self.path) {
            AppendFault::None => write(buf),
            AppendFault::Fail => Err(injected("append", &self.path)),
            AppendFault::Short(bytes) => {
                write(buf.get(..bytes).unwrap_or(buf))?;
                Err(injected("short write", &self.path))
            }
        }
    }

    /// Writes `buf` at `offset`, remembering what a power cut would undo.
    fn tracked_write(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if !self.tracks_writes {
            return self.inner.write_at(offset, buf);
        }
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

impl LogFile for FaultyFile {
    fn read_all(&self) -> io::Result<Vec<u8>> {
        self.inner.read_all()
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.inner.read_at(offset, len)
    }

    fn append(&self, buf: &[u8]) -> io::Result<()> {
        if self.tracks_writes {
            self.write_at(self.inner.len()?, buf)
        } else {
            self.faulted_write(buf, |buf| self.inner.append(buf))
        }
    }

    /// Faults count appends and in-place writes alike (both are the log's
    /// writes of records).
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.faulted_write(buf, |buf| self.tracked_write(offset, buf))
    }

    /// Never fails on command: preallocation is not a write of records.
    fn zero_fill(&self, from: u64, to: u64) -> io::Result<()> {
        if !self.tracks_writes {
            return self.inner.zero_fill(from, to);
        }
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
        if !self.tracks_writes {
            return self.inner.sync_data();
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
