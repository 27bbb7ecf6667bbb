//! [`LogGroup`]: the handle through which workers hand batches to a log
//! group's syncer, and status reads the group's log size.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
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
    /// Where the syncer's time goes.
    pub(crate) phases: PhaseTimes,
}

/// Where a log group's commits spend their time, summed since the group
/// opened (a few clock reads per group commit, none per invocation): what
/// `statefn-bench embedded --diagnose` splits a durable call's wait into.
#[derive(Debug, Default)]
pub(crate) struct PhaseTimes {
    commits: AtomicU64,
    batches: AtomicU64,
    invocations: AtomicU64,
    queued_ns: AtomicU64,
    append_ns: AtomicU64,
    write_ns: AtomicU64,
    sync_ns: AtomicU64,
    release_ns: AtomicU64,
}

impl PhaseTimes {
    /// A batch handed over at `at` was taken by the syncer at `now`.
    pub(crate) fn taken(&self, at: Option<Instant>, now: Instant) {
        if let Some(at) = at {
            add(&self.queued_ns, now.saturating_duration_since(at));
            self.batches.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One group commit of `invocations` records is durable: appending
    /// them, the flush's write and its sync took `times`. Counted before
    /// the release, so that a caller who got its reply sees its commit.
    pub(crate) fn committed(&self, invocations: usize, times: [Duration; 3]) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.invocations.fetch_add(
            u64::try_from(invocations).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let [append, write, sync] = times;
        add(&self.append_ns, append);
        add(&self.write_ns, write);
        add(&self.sync_ns, sync);
    }

    /// Releasing the committed batches' effects took `release`.
    pub(crate) fn released(&self, release: Duration) {
        add(&self.release_ns, release);
    }

    /// Adds this group's sums to `total`.
    pub(crate) fn add_to(&self, total: &mut crate::CommitPhases) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let time = |a: &AtomicU64| Duration::from_nanos(get(a));
        total.commits += get(&self.commits);
        total.batches += get(&self.batches);
        total.invocations += get(&self.invocations);
        total.queued += time(&self.queued_ns);
        total.append += time(&self.append_ns);
        total.write += time(&self.write_ns);
        total.sync += time(&self.sync_ns);
        total.release += time(&self.release_ns);
    }
}

fn add(sum: &AtomicU64, d: Duration) {
    sum.fetch_add(
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
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
    pub(crate) fn submit(&self, mut batch: Batch) -> Result<(), Box<Batch>> {
        batch.handed_over = Some(Instant::now());
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
