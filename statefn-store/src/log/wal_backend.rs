//! [`WalBackend`]: the local segment write-ahead log as a [`LogBackend`].
//!
//! One directory per log group (`<root>/group-0007`). A flush is a write to
//! the OS; its [`PendingFlush`] is the `fdatasync`. The epoch is recorded but
//! not enforced on disk: a second *process* is kept out by the data
//! directory's lock, and within one process a group has one writer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{CommitLog, FlushWait, LogBackend, LogError, LogStats, OpenedLog, PendingFlush};
use crate::wal::{MAX_RECORD_LEN, PendingSync, Wal, WalOptions};
use crate::{Epoch, FileSystem, LogGroupId, Lsn, data_dir::group_dir};

/// Opens log groups' write-ahead logs under one directory.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use statefn_store::{Epoch, LogBackend, LogGroupId, Lsn, StdFs, WalBackend, WalOptions};
///
/// let dir = tempfile::tempdir()?;
/// let backend = WalBackend::new(Arc::new(StdFs), dir.path(), WalOptions::default());
/// let mut opened = backend.open(LogGroupId(3), Epoch(1), Lsn(1))?;
/// opened.log.append(b"one")?;
/// opened.log.flush()?.wait()?;
/// drop(opened);
///
/// let reopened = backend.open(LogGroupId(3), Epoch(2), Lsn(1))?;
/// let records: Vec<_> = reopened.records.collect::<Result<_, _>>()?;
/// assert_eq!(records[0].payload, b"one");
/// assert!(dir.path().join("group-0003").is_dir());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct WalBackend {
    fs: Arc<dyn FileSystem>,
    root: PathBuf,
    options: WalOptions,
}

impl WalBackend {
    /// Logs in `root` (a data directory's [`wal_root`](crate::DataDir::wal_root)),
    /// through `fs`.
    pub fn new(fs: Arc<dyn FileSystem>, root: &Path, options: WalOptions) -> Self {
        WalBackend {
            fs,
            root: root.to_path_buf(),
            options,
        }
    }
}

impl LogBackend for WalBackend {
    fn open(&self, group: LogGroupId, epoch: Epoch, from: Lsn) -> Result<OpenedLog, LogError> {
        let dir = group_dir(&self.root, group);
        let opened = Wal::open(Arc::clone(&self.fs), &dir, self.options, from)?;
        Ok(Self::opened(opened, epoch))
    }

    /// Cuts the segment files after `durable` (see
    /// [`Wal::reopen_after_failure`]).
    fn reopen_after_failure(
        &self,
        group: LogGroupId,
        epoch: Epoch,
        from: Lsn,
        durable: Lsn,
    ) -> Result<OpenedLog, LogError> {
        let dir = group_dir(&self.root, group);
        let opened =
            Wal::reopen_after_failure(Arc::clone(&self.fs), &dir, self.options, from, durable)?;
        Ok(Self::opened(opened, epoch))
    }
}

impl WalBackend {
    fn opened((wal, records): (Wal, Vec<crate::LogRecord>), epoch: Epoch) -> OpenedLog {
        // Opening synced everything it found: the last record is durable.
        let durable = Arc::new(AtomicU64::new(wal.next_lsn().0.saturating_sub(1)));
        let log = WalLog {
            wal,
            epoch,
            durable,
        };
        let records = records.into_iter().map(Ok);
        OpenedLog {
            log: Box::new(log),
            records: Box::new(records),
        }
    }
}

/// One group's [`Wal`] behind [`CommitLog`].
#[derive(Debug)]
struct WalLog {
    wal: Wal,
    epoch: Epoch,
    /// The highest LSN a resolved flush made durable.
    durable: Arc<AtomicU64>,
}

impl CommitLog for WalLog {
    fn append(&mut self, record: &[u8]) -> Result<Lsn, LogError> {
        if record.len() > MAX_RECORD_LEN {
            return Err(LogError::TooLarge {
                len: record.len(),
                max: MAX_RECORD_LEN,
            });
        }
        Ok(self.wal.append(record))
    }

    fn flush(&mut self) -> Result<PendingFlush, LogError> {
        let pending = self.wal.write()?;
        let up_to = pending.up_to();
        let wait = WalFlush {
            pending,
            durable: Arc::clone(&self.durable),
        };
        Ok(PendingFlush::new(up_to, Box::new(wait)))
    }

    fn durable_lsn(&self) -> Lsn {
        Lsn(self.durable.load(Ordering::Acquire))
    }

    fn truncate_before(&mut self, lsn: Lsn) -> Result<(), LogError> {
        Ok(self.wal.truncate_before(lsn)?)
    }

    fn epoch(&self) -> Epoch {
        self.epoch
    }

    fn stats(&self) -> LogStats {
        LogStats::new(self.wal.size_bytes(), self.wal.segment_count() as u64)
    }

    fn prepare(&mut self) -> Result<(), LogError> {
        self.wal.preallocate()?;
        Ok(())
    }
}

/// The `fdatasync` of one write.
#[derive(Debug)]
struct WalFlush {
    pending: PendingSync,
    durable: Arc<AtomicU64>,
}

impl FlushWait for WalFlush {
    fn wait(self: Box<Self>) -> Result<Lsn, LogError> {
        let lsn = self.pending.sync()?;
        self.durable.fetch_max(lsn.0, Ordering::AcqRel);
        Ok(lsn)
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::{FaultyFs, StdFs, WalError};

    #[test]
    fn durable_lsn_moves_only_when_a_flush_resolves() {
        let dir = tempfile::tempdir().unwrap();
        let backend = WalBackend::new(Arc::new(StdFs), dir.path(), WalOptions::default());
        let mut log = backend.open(LogGroupId(0), Epoch(4), Lsn(1)).unwrap().log;
        assert_eq!((log.durable_lsn(), log.epoch()), (Lsn(0), Epoch(4)));
        let first = log.append(b"a").unwrap();
        let second = log.append(b"b").unwrap();
        assert!(first < second);
        let earlier = log.flush().unwrap();
        log.append(b"c").unwrap();
        let later = log.flush().unwrap();
        assert_eq!(log.durable_lsn(), Lsn(0), "nothing waited for yet");
        // Waiting for the later flush covers the earlier one.
        let durable = later.wait().unwrap();
        assert_eq!(durable, Lsn(3));
        assert_eq!(log.durable_lsn(), Lsn(3));
        assert_eq!(earlier.wait().unwrap(), second);
        assert_eq!(log.durable_lsn(), Lsn(3), "never moves back");
        assert_eq!(log.stats().pieces, 1);
    }

    #[test]
    fn a_failed_sync_poisons_the_log_until_it_is_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(FaultyFs::new(Arc::new(StdFs)));
        let backend = WalBackend::new(fs.clone(), dir.path(), WalOptions::default());
        let mut log = backend.open(LogGroupId(1), Epoch(1), Lsn(1)).unwrap().log;
        log.append(b"durable").unwrap();
        log.flush().unwrap().wait().unwrap();
        log.append(b"lost").unwrap();
        fs.faults().fail_syncs();
        assert!(log.flush().unwrap().wait().is_err());
        fs.faults().heal();
        assert_eq!(log.durable_lsn(), Lsn(1));
        log.append(b"refused").unwrap();
        assert!(matches!(
            log.flush(),
            Err(LogError::Wal(WalError::Poisoned))
        ));
        drop(log);
        let reopened = backend.open(LogGroupId(1), Epoch(2), Lsn(1)).unwrap();
        let records: Vec<crate::LogRecord> = reopened.records.collect::<Result<_, _>>().unwrap();
        assert_eq!(
            records.first().map(|r| r.payload.as_slice()),
            Some(&b"durable"[..])
        );
    }

    #[test]
    fn reopening_after_a_failure_keeps_only_what_was_durable() {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(FaultyFs::new(Arc::new(StdFs)));
        let backend = WalBackend::new(fs.clone(), dir.path(), WalOptions::default());
        let mut log = backend.open(LogGroupId(1), Epoch(1), Lsn(1)).unwrap().log;
        log.append(b"durable").unwrap();
        log.flush().unwrap().wait().unwrap();
        log.append(b"refused").unwrap();
        fs.faults().fail_syncs();
        assert!(log.flush().unwrap().wait().is_err());
        fs.faults().heal();
        let durable = log.durable_lsn();
        drop(log);
        let reopened = backend
            .reopen_after_failure(LogGroupId(1), Epoch(2), Lsn(1), durable)
            .unwrap();
        assert_eq!(reopened.log.durable_lsn(), durable);
        let records: Vec<crate::LogRecord> = reopened.records.collect::<Result<_, _>>().unwrap();
        let payloads: Vec<&[u8]> = records.iter().map(|r| r.payload.as_slice()).collect();
        assert_eq!(payloads, vec![&b"durable"[..]]);
    }
}
