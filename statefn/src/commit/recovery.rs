//! Recovery of one log group: its shards' checkpoints, then the log replayed
//! from the oldest checkpoint position through [`LogBackend::open`], which
//! also makes this process the log's writer at a new epoch. Other groups
//! keep serving.

use std::{sync::Arc, time::Instant};

use parking_lot::Mutex;
use statefn_store::{CommitLog, DataDir, LogBackend, ShardTables, StateStore};

use crate::{
    Error,
    clock::Clock,
    error::StorageError,
    protocol::{
        ids::{Epoch, LogGroupId, Lsn, ShardId},
        record::{ShardRecord, decode},
    },
    shard::{CoreConfig, ShardCore, freeze::ShardMeta},
};

/// The durable storage of a runtime: the state store and the logs.
#[derive(Debug)]
pub(crate) struct Storage {
    /// Taken at shutdown so that fjall closes and the directory can be
    /// reopened.
    store: Mutex<Option<StateStore>>,
    /// Holds the directory's lock until shutdown.
    data_dir: Mutex<Option<DataDir>>,
    /// Opens the log groups' logs.
    logs: Arc<dyn LogBackend>,
    core: CoreConfig,
    clock: Clock,
    shards: u16,
    log_groups: u16,
    /// Injected state-store faults (tests).
    faults: super::store_faults::StoreFaults,
    /// Test hook: this many checkpoint writes fail from now on.
    #[cfg(test)]
    pub(crate) checkpoint_faults: std::sync::atomic::AtomicUsize,
}

/// A recovered log group: its reopened log and its shards' cores.
#[derive(Debug)]
pub(crate) struct RecoveredGroup {
    pub(crate) log: Box<dyn CommitLog>,
    pub(crate) cores: Vec<ShardCore>,
    /// Log records replayed into the cores (barriers not counted).
    pub(crate) replayed: u64,
}

impl RecoveredGroup {
    /// Splits it into what a syncer serves `group` with (the log, and each
    /// shard's epoch and checkpoint position) and the shards' cores.
    pub(crate) fn into_opened(self, group: LogGroupId) -> (super::OpenedGroup, Vec<ShardCore>) {
        let shards = self
            .cores
            .iter()
            .map(|c| (c.id, c.epoch, c.checkpoint.lsn))
            .collect();
        let opened = super::OpenedGroup {
            group,
            log: self.log,
            shards,
        };
        (opened, self.cores)
    }
}

/// Records replayed between two yields of the CPU (about a millisecond of
/// work) after a failure: a group replaying a long log while others serve
/// must not hold a core for the whole replay, or the healthy shards' calls
/// wait behind it (issue 14: their p99 was 2.78x normal during a replay).
const REPLAY_CHUNK: u64 = 1024;

impl Storage {
    pub(crate) fn new(
        data_dir: DataDir,
        store: StateStore,
        logs: Arc<dyn LogBackend>,
        core: CoreConfig,
        clock: Clock,
        faults: super::store_faults::StoreFaults,
    ) -> Self {
        Storage {
            faults,
            shards: data_dir.shards(),
            log_groups: data_dir.log_groups(),
            store: Mutex::new(Some(store)),
            data_dir: Mutex::new(Some(data_dir)),
            logs,
            core,
            clock,
            #[cfg(test)]
            checkpoint_faults: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The format version recorded in the data directory (older than
    /// [`DATA_DIR_FORMAT_VERSION`](statefn_store::DATA_DIR_FORMAT_VERSION)
    /// until its upgrade finished). 0 once it is closed.
    pub(crate) fn data_format(&self) -> u32 {
        self.data_dir
            .lock()
            .as_ref()
            .map_or(0, DataDir::format_version)
    }

    /// Records that the data directory is in this build's format: every
    /// stored value was converted, durably.
    pub(crate) fn finish_upgrade(&self) -> Result<(), Error> {
        match self.data_dir.lock().as_mut() {
            Some(dir) => dir
                .finish_upgrade()
                .map_err(|e| StorageError::from(e).into()),
            None => Err(StorageError::Closed.into()),
        }
    }

    /// The state store, until shutdown.
    pub(crate) fn store(&self) -> Result<StateStore, Error> {
        self.store
            .lock()
            .clone()
            .ok_or_else(|| StorageError::Closed.into())
    }

    /// Closes the store and unlocks the data directory (after shutdown).
    pub(crate) fn close(&self) {
        self.store.lock().take();
        self.data_dir.lock().take();
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Injected state-store faults (tests).
    pub(crate) fn faults(&self) -> &super::store_faults::StoreFaults {
        &self.faults
    }

    /// How the shards' cores are configured.
    pub(crate) fn core_config(&self) -> &CoreConfig {
        &self.core
    }

    pub(crate) fn log_groups(&self) -> u16 {
        self.log_groups
    }

    pub(crate) fn shards(&self) -> u16 {
        self.shards
    }

    /// The log group of `shard`.
    pub(crate) fn group_of(&self, shard: ShardId) -> LogGroupId {
        LogGroupId::of(shard, self.log_groups)
    }

    /// The shards of `group`.
    pub(crate) fn group_shards(&self, group: LogGroupId) -> Vec<ShardId> {
        (0..self.shards)
            .map(ShardId)
            .filter(|&s| self.group_of(s) == group)
            .collect()
    }

    /// Rebuilds the cores of `group`'s shards at `epoch` and opens its log
    /// as its writer at that epoch. `after_failure`: this process's writer
    /// failed, and this was the last position it knew durable; the log drops
    /// what follows before it is replayed, since the callers of those records
    /// were told they were not committed. `warm`: the group's shards as a
    /// standby here kept them (cluster mode): only the records after its
    /// position are replayed.
    pub(crate) fn recover(
        &self,
        group: LogGroupId,
        epoch: Epoch,
        after_failure: Option<Lsn>,
        warm: Option<super::standby::StandbyGroup>,
    ) -> Result<RecoveredGroup, Error> {
        let started = Instant::now();
        let store = self.store()?;
        let shards = self.group_shards(group);
        let (mut cores, from) = match warm {
            Some(warm) if warm.group() == group => {
                let (cores, applied) = warm.into_parts();
                (cores, applied.next())
            }
            _ => {
                let cores = shards
                    .iter()
                    .map(|&shard| self.load_checkpoint(store.shard(shard), epoch))
                    .collect::<Result<Vec<_>, _>>()?;
                let from = cores
                    .iter()
                    .map(|c| c.checkpoint.lsn)
                    .min()
                    .unwrap_or_default()
                    .next();
                (cores, from)
            }
        };
        let opened = match after_failure {
            None => self.logs.open(group, epoch, from),
            Some(durable) => self.logs.reopen_after_failure(group, epoch, from, durable),
        }
        .map_err(StorageError::log(group.0))?;
        // The writer's epoch (a replicated log may have fenced at a higher
        // one than asked): the cores' batches carry it.
        let epoch = opened.log.epoch();
        for core in &mut cores {
            core.epoch = epoch;
        }
        let now_ms = self.clock.now_ms();
        let mut replayed = 0u64;
        // After a failure the other groups are serving; at open nothing is
        // yet, and yielding to other processes would only slow the open.
        let yielding = after_failure.is_some();
        for record in opened.records {
            let record = record.map_err(StorageError::log(group.0))?;
            let lsn = record.lsn;
            // An empty record is a barrier (cluster mode: a read-only batch
            // proves its writer still owns the log); it carries nothing.
            if record.payload.is_empty() {
                continue;
            }
            replayed += 1;
            if yielding && replayed.is_multiple_of(REPLAY_CHUNK) {
                // Other groups' shards serve meanwhile, on the same cores:
                // let the threads that are waiting run first.
                std::thread::yield_now();
            }
            // The record's name is only formatted for an error: a
            // `format!` per record was a large part of replaying one.
            let decoded: ShardRecord = decode(&record.payload, "").or_else(|_| {
                decode(
                    &record.payload,
                    &format!("log record {lsn} of log group {group}"),
                )
            })?;
            match cores.iter_mut().find(|c| c.id == decoded.shard) {
                Some(core) if lsn > core.checkpoint.lsn => core.replay(decoded.entry, now_ms),
                Some(_) => {}
                None => {
                    return Err(StorageError::Corrupt {
                        what: format!("log record {lsn} of log group {group}"),
                        reason: format!(
                            "it belongs to shard {}, which is not in this log group: the data \
                             directory's layout changed",
                            decoded.shard
                        ),
                    }
                    .into());
                }
            }
        }
        for core in &mut cores {
            core.open_timers()?;
        }
        metrics::histogram!(crate::metrics::RECOVERY_DURATION)
            .record(started.elapsed().as_secs_f64());
        tracing::info!(
            ?shards,
            replayed,
            %from,
            elapsed_ms = started.elapsed().as_millis(),
            "log group recovered"
        );
        Ok(RecoveredGroup {
            log: opened.log,
            cores,
            replayed,
        })
    }

    /// A shard's core as of its last checkpoint.
    pub(super) fn load_checkpoint(
        &self,
        tables: ShardTables,
        epoch: Epoch,
    ) -> Result<ShardCore, Error> {
        let shard = tables.shard();
        let doing = || format!("reading the checkpoint of shard {shard}");
        let meta: ShardMeta = match tables.meta().map_err(StorageError::store(doing()))? {
            Some(bytes) => decode(&bytes, &format!("the checkpoint of shard {shard}"))?,
            None => ShardMeta::default(),
        };
        let outbox = decode_all(tables.outbox(), doing(), "an outbox entry")?;
        let egress = decode_all(tables.pending_egress(), doing(), "a pending egress record")?;
        let dead_letters = decode_all(tables.dead_letters(), doing(), "a dead letter")?;
        ShardCore::new(shard, epoch, self.core.clone(), Some(tables)).restored(
            meta,
            outbox,
            egress,
            dead_letters,
        )
    }
}

/// Every value of one of a shard's tables, decoded.
fn decode_all<T: crate::protocol::record::Stored>(
    rows: Result<Vec<Vec<u8>>, statefn_store::StoreError>,
    doing: String,
    what: &str,
) -> Result<Vec<T>, Error> {
    rows.map_err(StorageError::store(doing))?
        .iter()
        .map(|v| decode(v, what))
        .collect()
}
