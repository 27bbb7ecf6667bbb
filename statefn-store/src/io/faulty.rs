//! [`FaultyFs`]: a [`FileSystem`] wrapper that fails on command, for tests.

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
        Self {
            inner,
            faults: Faults::default(),
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
        let inner = self.inner.open_file(path, create)?;
        Ok(Box::new(FaultyFile {
            inner,
            path: path.to_path_buf(),
            faults: self.faults.clone(),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.faults.before_remove(path)?;
        self.inner.remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.faults.before_sync(path)?;
        self.inner.sync_dir(path)
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
    fail_removes: bool,
    sync_delay: Option<Duration>,
    appends: u64,
    syncs: u64,
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

    /// Clears every fault and the path filter; counters are kept.
    pub fn heal(&self) {
        let mut state = self.state.lock();
        let (appends, syncs) = (state.appends, state.syncs);
        *state = FaultState {
            appends,
            syncs,
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

    fn before_sync(&self, path: &Path) -> io::Result<()> {
        let (delay, fail) = {
            let mut state = self.state.lock();
            if !state.applies_to(path) {
                return Ok(());
            }
            state.syncs += 1;
            (state.sync_delay, state.fail_syncs)
        };
        if let Some(delay) = delay {
            std::thread::sleep(delay);
        }
        if fail {
            return Err(injected("sync", path));
        }
        Ok(())
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
        self.faults.before_sync(&self.path)?;
        self.inner.sync_data()
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
}
