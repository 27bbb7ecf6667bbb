//! [`PendingSync`]: the fsync half of a write, to run on another thread.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::io::FileSystem;

use super::segment::SegmentFile;
use super::{Lsn, WalError};

/// State shared between a [`Wal`](super::Wal) and its pending syncs.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    poisoned: AtomicBool,
    /// Highest directory generation (segment creations) known durable.
    dir_synced: AtomicU64,
}

impl Shared {
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    pub(crate) fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
    }

    pub(crate) fn mark_dir_synced(&self, generation: u64) {
        self.dir_synced.fetch_max(generation, Ordering::AcqRel);
    }

    fn dir_synced(&self) -> u64 {
        self.dir_synced.load(Ordering::Acquire)
    }
}

/// Records written by [`Wal::write`](super::Wal::write) but not yet durable.
///
/// It owns handles to every segment file holding not-yet-synced data at the
/// time of the write (not only the files this write touched), so syncing
/// it makes *all* records up to [`PendingSync::up_to`] durable, whatever order
/// pending syncs are synced in. It can be sent to a syncer thread while the
/// writer goes on buffering and writing.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use statefn_store::{Lsn, StdFs, Wal, WalOptions};
///
/// let dir = tempfile::tempdir()?;
/// let (mut wal, _) = Wal::open(Arc::new(StdFs), dir.path(), WalOptions::default(), Lsn(1))?;
/// wal.append(b"a");
/// let mut first = wal.write()?;
/// wal.append(b"b");
/// first.merge(wal.write()?); // group commit: one fdatasync for both
/// let durable = std::thread::spawn(move || first.sync()).join().expect("syncer")?;
/// assert_eq!(durable, Lsn(2));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "records are not durable until the PendingSync is synced"]
pub struct PendingSync {
    /// Files to fdatasync, each with the highest LSN it must make durable.
    pub(crate) files: Vec<(Arc<SegmentFile>, Lsn)>,
    /// The directory to fsync if segments were created up to this generation.
    pub(crate) dir: Option<DirSync>,
    pub(crate) up_to: Lsn,
    pub(crate) shared: Arc<Shared>,
}

/// A directory that must be synced because segments were created in it.
#[derive(Debug)]
pub(crate) struct DirSync {
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) path: PathBuf,
    pub(crate) generation: u64,
}

impl PendingSync {
    /// The highest LSN that is durable once [`PendingSync::sync`] returns
    /// (`Lsn(0)` if nothing was ever written).
    pub fn up_to(&self) -> Lsn {
        self.up_to
    }

    /// Folds a later pending sync into this one, so a single
    /// [`PendingSync::sync`] covers both and each file is synced once.
    ///
    /// Both must come from the same [`Wal`](super::Wal).
    pub fn merge(&mut self, later: PendingSync) {
        debug_assert!(
            Arc::ptr_eq(&self.shared, &later.shared),
            "merged PendingSyncs of different logs"
        );
        for (file, lsn) in later.files {
            match self.files.iter_mut().find(|(f, _)| Arc::ptr_eq(f, &file)) {
                Some((_, existing)) => *existing = (*existing).max(lsn),
                None => self.files.push((file, lsn)),
            }
        }
        self.dir = match (self.dir.take(), later.dir) {
            (Some(a), Some(b)) => Some(if a.generation >= b.generation { a } else { b }),
            (a, b) => a.or(b),
        };
        self.up_to = self.up_to.max(later.up_to);
    }

    /// Fdatasyncs every file holding records up to [`PendingSync::up_to`]
    /// (and the directory, if segments were created) and returns `up_to`.
    ///
    /// # Durability
    ///
    /// When this returns `Ok(lsn)`, every record with an LSN `<= lsn`
    /// survives a crash or power loss.
    ///
    /// # Errors
    ///
    /// [`WalError::Io`] if an fsync fails, which also poisons the log;
    /// [`WalError::Poisoned`] if the log was poisoned before or during this
    /// sync (a success after another failure proves nothing).
    pub fn sync(self) -> Result<Lsn, WalError> {
        if self.shared.is_poisoned() {
            return Err(WalError::Poisoned);
        }
        for (file, lsn) in &self.files {
            if file.synced() >= *lsn {
                continue;
            }
            file.file.sync_data().map_err(|source| {
                self.shared.poison();
                WalError::Io {
                    path: file.path.clone(),
                    source,
                }
            })?;
            file.mark_synced(*lsn);
        }
        if let Some(dir) = &self.dir
            && dir.generation > self.shared.dir_synced()
        {
            dir.fs.sync_dir(&dir.path).map_err(|source| {
                self.shared.poison();
                WalError::Io {
                    path: dir.path.clone(),
                    source,
                }
            })?;
            self.shared.mark_dir_synced(dir.generation);
        }
        if self.shared.is_poisoned() {
            return Err(WalError::Poisoned);
        }
        Ok(self.up_to)
    }
}
