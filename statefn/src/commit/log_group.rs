//! [`LogGroup`]: the handle through which workers hand batches to a log
//! group's syncer, and status reads the group's log size.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::{
    protocol::ids::{Lsn, ShardId},
    shard::effects::Batch,
};

/// What a log group's syncer is asked to do.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "Commit is the hot path; boxing it costs an allocation per batch"
)]
pub(crate) enum GroupCommand {
    Commit(Batch),
    /// A shard's checkpoint covers its records up to `lsn`.
    Checkpointed {
        shard: ShardId,
        lsn: Lsn,
    },
    /// A shard of the group broke (the runtime panicked running it): take
    /// the group down and recover it, after the batches handed over before.
    Fail {
        reason: String,
    },
    Stop,
}

/// How much a group's log holds, published by its syncer for status.
#[derive(Debug, Default)]
pub(crate) struct GroupStats {
    pub(crate) bytes: AtomicU64,
    pub(crate) pieces: AtomicU64,
    /// Why the group is down, while it is (recovering, or given up).
    pub(crate) down: Mutex<Option<String>>,
    /// Bytes of records in batches queued for the syncer and not taken yet.
    pub(crate) queued: AtomicU64,
}

impl GroupStats {
    /// The syncer took `batch` off the queue; returns the bytes still
    /// queued.
    pub(crate) fn dequeued(&self, batch: &Batch) -> u64 {
        let bytes = batch_bytes(batch);
        self.queued
            .fetch_sub(bytes, Ordering::AcqRel)
            .saturating_sub(bytes)
    }
}

/// What a batch weighs in the queue: its records' bytes (at least 1, so
/// that empty batches count too).
fn batch_bytes(batch: &Batch) -> u64 {
    let bytes: usize = batch.records.iter().map(Vec::len).sum();
    u64::try_from(bytes).unwrap_or(u64::MAX).max(1)
}

/// The handle to one log group's syncer.
#[derive(Debug)]
pub(crate) struct LogGroup {
    stats: Arc<GroupStats>,
    tx: Sender<GroupCommand>,
    /// Until its syncer is made.
    rx: Mutex<Option<Receiver<GroupCommand>>>,
}

impl LogGroup {
    pub(crate) fn new() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        LogGroup {
            stats: Arc::default(),
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }

    /// The syncer's end of the queue (once).
    pub(crate) fn take_receiver(&self) -> Option<Receiver<GroupCommand>> {
        self.rx.lock().take()
    }

    /// Cluster mode: the queue back from a syncer that stopped (the group
    /// was given up), for the next one.
    #[cfg(feature = "cluster")]
    pub(crate) fn put_back_receiver(&self, rx: Receiver<GroupCommand>) {
        *self.rx.lock() = Some(rx);
    }

    /// Cluster mode: the batches queued while no syncer runs (the group is
    /// served elsewhere), to be refused; other commands are dropped.
    #[cfg(feature = "cluster")]
    pub(crate) fn sweep(&self) -> Vec<Batch> {
        let rx = self.rx.lock();
        let Some(rx) = rx.as_ref() else {
            return Vec::new();
        };
        rx.try_iter()
            .filter_map(|command| match command {
                GroupCommand::Commit(batch) => {
                    // Refused, so no longer queued for the commit-queue bound.
                    self.stats.dequeued(&batch);
                    Some(batch)
                }
                GroupCommand::Checkpointed { .. }
                | GroupCommand::Fail { .. }
                | GroupCommand::Stop => None,
            })
            .collect()
    }

    pub(crate) fn stats(&self) -> Arc<GroupStats> {
        Arc::clone(&self.stats)
    }

    /// Bytes in the group's log.
    pub(crate) fn log_bytes(&self) -> u64 {
        self.stats.bytes.load(Ordering::Relaxed)
    }

    /// Why the group is down, while it is.
    pub(crate) fn down_reason(&self) -> Option<String> {
        self.stats.down.lock().clone()
    }

    /// Pieces (segment files) of the group's log.
    pub(crate) fn log_pieces(&self) -> u64 {
        self.stats.pieces.load(Ordering::Relaxed)
    }

    /// Bytes of batches waiting for the syncer.
    pub(crate) fn queued_bytes(&self) -> u64 {
        self.stats.queued.load(Ordering::Acquire)
    }

    /// Hands a batch to the syncer; gives it back if the syncer has stopped.
    pub(crate) fn submit(&self, batch: Batch) -> Result<(), Box<Batch>> {
        let bytes = batch_bytes(&batch);
        self.stats.queued.fetch_add(bytes, Ordering::AcqRel);
        match self.tx.send(GroupCommand::Commit(batch)) {
            Ok(()) => Ok(()),
            Err(e) => match e.into_inner() {
                GroupCommand::Commit(batch) => {
                    self.stats.queued.fetch_sub(bytes, Ordering::AcqRel);
                    Err(Box::new(batch))
                }
                // What was sent is what comes back.
                GroupCommand::Checkpointed { .. }
                | GroupCommand::Fail { .. }
                | GroupCommand::Stop => Ok(()),
            },
        }
    }

    /// Tells the syncer a checkpoint covers `shard`'s records up to `lsn`
    /// (dropped if it has stopped: it would only have truncated the log).
    pub(crate) fn checkpointed(&self, shard: ShardId, lsn: Lsn) {
        let _ = self.tx.send(GroupCommand::Checkpointed { shard, lsn });
    }

    /// Tells the syncer to recover the group after committing what it was
    /// given (dropped if it has stopped).
    pub(crate) fn fail(&self, reason: String) {
        let _ = self.tx.send(GroupCommand::Fail { reason });
    }

    /// Tells the syncer to stop after committing what it was given.
    pub(crate) fn stop(&self) {
        let _ = self.tx.send(GroupCommand::Stop);
    }
}
