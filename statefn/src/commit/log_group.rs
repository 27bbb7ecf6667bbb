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
    Stop,
}

/// How much a group's log holds, published by its syncer for status.
#[derive(Debug, Default)]
pub(crate) struct GroupStats {
    pub(crate) bytes: AtomicU64,
    pub(crate) pieces: AtomicU64,
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
                GroupCommand::Commit(batch) => Some(batch),
                GroupCommand::Checkpointed { .. } | GroupCommand::Stop => None,
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

    /// Pieces (segment files) of the group's log.
    pub(crate) fn log_pieces(&self) -> u64 {
        self.stats.pieces.load(Ordering::Relaxed)
    }

    /// Hands a batch to the syncer; gives it back if the syncer has stopped.
    pub(crate) fn submit(&self, batch: Batch) -> Result<(), Box<Batch>> {
        match self.tx.send(GroupCommand::Commit(batch)) {
            Ok(()) => Ok(()),
            Err(e) => match e.into_inner() {
                GroupCommand::Commit(batch) => Err(Box::new(batch)),
                // What was sent is what comes back.
                GroupCommand::Checkpointed { .. } | GroupCommand::Stop => Ok(()),
            },
        }
    }

    /// Tells the syncer a checkpoint covers `shard`'s records up to `lsn`
    /// (dropped if it has stopped: it would only have truncated the log).
    pub(crate) fn checkpointed(&self, shard: ShardId, lsn: Lsn) {
        let _ = self.tx.send(GroupCommand::Checkpointed { shard, lsn });
    }

    /// Tells the syncer to stop after committing what it was given.
    pub(crate) fn stop(&self) {
        let _ = self.tx.send(GroupCommand::Stop);
    }
}
