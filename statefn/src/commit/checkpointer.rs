//! The checkpointer: writes frozen shard checkpoints into the state store
//! while the shards keep processing, then tells the shard (it takes back
//! its frozen sets) and its log group (the log may drop what the
//! checkpoint covers). One thread: fjall batches are written one at a time
//! anyway, and it never blocks a shard or a tokio thread.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    sync::Arc,
    time::Duration,
};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use statefn_store::{ShardBatch, ShardTables};

use super::{CommitHost, LogGroup, recovery::Storage};
use crate::{
    Error,
    error::StorageError,
    protocol::record::{StoredReply, decode, encode},
    service::{Service, Step},
    shard::freeze::{CheckpointJob, ShardMeta},
};

/// How many expired idempotency entries one checkpoint deletes at most: the
/// sweep is spread over checkpoints instead of blocking one.
const GC_BATCH: usize = 10_000;

/// Where syncers submit frozen checkpoints once the batch that froze them
/// is durable.
#[derive(Debug)]
pub(crate) struct CheckpointQueue {
    tx: Mutex<Option<Sender<CheckpointJob>>>,
    /// Until the checkpointer is made.
    rx: Mutex<Option<Receiver<CheckpointJob>>>,
}

impl CheckpointQueue {
    pub(crate) fn new() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        CheckpointQueue {
            tx: Mutex::new(Some(tx)),
            rx: Mutex::new(Some(rx)),
        }
    }

    /// Queues a job (dropped after [`close`](Self::close): the shard's next
    /// checkpoint covers what it would have).
    pub(crate) fn submit(&self, job: CheckpointJob) {
        if let Some(tx) = &*self.tx.lock() {
            let _ = tx.send(job);
        }
    }

    /// No more jobs: the checkpointer stops once it has written the queued
    /// ones.
    pub(crate) fn close(&self) {
        self.tx.lock().take();
    }
}

/// Writes checkpoints: a [`Service`].
pub(crate) struct Checkpointer {
    host: Arc<dyn CommitHost>,
    storage: Arc<Storage>,
    groups: Arc<[LogGroup]>,
    rx: Receiver<CheckpointJob>,
}

impl Checkpointer {
    /// The checkpointer of `queue` (`None` if it was made already).
    pub(crate) fn new(
        host: Arc<dyn CommitHost>,
        storage: Arc<Storage>,
        groups: Arc<[LogGroup]>,
        queue: &CheckpointQueue,
    ) -> Option<Self> {
        let rx = queue.rx.lock().take()?;
        Some(Checkpointer {
            host,
            storage,
            groups,
            rx,
        })
    }

    /// Writes one checkpoint and tells its shard and its log group.
    fn write(&self, job: CheckpointJob) {
        let started = std::time::Instant::now();
        let result = self
            .storage
            .faults()
            .check("writing a checkpoint")
            .and_then(|()| self.storage.store())
            .and_then(|store| {
                #[cfg(test)]
                injected_fault(&self.storage)?;
                let now_ms = self.storage.clock().now_ms();
                // A panic (in the store, or a bug here) is a failed checkpoint:
                // the shard gets its frozen sets back and tries again later.
                catch_unwind(AssertUnwindSafe(|| {
                    write(&job, &store.shard(job.shard), now_ms)
                }))
                .unwrap_or_else(|panic| {
                    Err(Error::Thread {
                        what: format!(
                            "writing a checkpoint panicked: {}",
                            crate::registry::panic_message(&*panic)
                        ),
                        source: None,
                    })
                })
            });
        let (shard, epoch, lsn) = (job.shard, job.epoch, job.lsn);
        let states = job.states.len();
        // Dropped before the shard hears of it: the shard then takes its
        // frozen sets back without copying them.
        drop(job);
        match result {
            Ok(()) => {
                metrics::histogram!(crate::metrics::CHECKPOINT_DURATION)
                    .record(started.elapsed().as_secs_f64());
                tracing::debug!(
                    %shard,
                    %lsn,
                    states,
                    elapsed_ms = started.elapsed().as_millis(),
                    "checkpoint written"
                );
                self.host.checkpoint_finished(shard, epoch, Some(lsn));
                if let Some(group) = self.groups.get(self.storage.group_of(shard).index()) {
                    group.checkpointed(shard, lsn);
                }
            }
            Err(e) => {
                metrics::counter!(crate::metrics::CHECKPOINT_FAILURES, "shard" => shard.to_string())
                    .increment(1);
                let log_bytes = self
                    .groups
                    .get(self.storage.group_of(shard).index())
                    .map_or(0, LogGroup::log_bytes);
                // Loud: until a checkpoint succeeds the log is not truncated
                // and grows with every commit.
                tracing::error!(
                    %shard,
                    error = %e,
                    log_bytes,
                    "checkpoint failed: the state store cannot write; the log grows until a checkpoint succeeds (retried with backoff)"
                );
                self.host.checkpoint_finished(shard, epoch, None);
            }
        }
    }
}

impl Service for Checkpointer {
    fn name(&self) -> String {
        "statefn-checkpointer".into()
    }

    fn step(&mut self, wait: Duration) -> Step {
        let first = if wait.is_zero() {
            None
        } else {
            match self.rx.recv_timeout(wait) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return Step::Done,
            }
        };
        let jobs: Vec<CheckpointJob> = first.into_iter().chain(self.rx.try_iter()).collect();
        if jobs.is_empty() {
            return Step::Idle;
        }
        for job in jobs {
            self.write(job);
        }
        Step::Worked
    }
}

/// The test hook of [`Storage::checkpoint_faults`]: fails this write if
/// failures are asked for.
#[cfg(test)]
fn injected_fault(storage: &Storage) -> Result<(), Error> {
    use std::sync::atomic::Ordering;
    let take = storage
        .checkpoint_faults
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    match take {
        Ok(_) => Err(Error::Config("injected checkpoint failure".into())),
        Err(_) => Ok(()),
    }
}

/// Writes a checkpoint atomically and durably, then sweeps expired
/// idempotency entries. (Also used at open, before this service runs.)
pub(crate) fn write(job: &CheckpointJob, tables: &ShardTables, now_ms: u64) -> Result<(), Error> {
    let mut batch = tables.batch();
    writes(job, &mut batch)?;
    metrics::histogram!(crate::metrics::CHECKPOINT_BYTES).record(batch.bytes() as f64);
    batch.commit().map_err(StorageError::store(format!(
        "writing a checkpoint of shard {}",
        job.shard
    )))?;
    let cutoff = now_ms.saturating_sub(job.idempotency_retention_ms);
    tables
        .sweep_idempotency(cutoff, GC_BATCH, |value| {
            decode::<StoredReply>(value, "an idempotency entry")
                .ok()
                .map(|reply| reply.at_ms)
        })
        .map_err(StorageError::store("sweeping expired idempotency entries"))?;
    Ok(())
}

/// Everything a checkpoint puts into and deletes from the shard's tables.
fn writes(job: &CheckpointJob, batch: &mut ShardBatch) -> Result<(), Error> {
    for (address, state) in job.states.iter() {
        batch.put_state(address.type_name(), address.id(), state.clone());
    }
    for ((address, key), reply) in job.idempotency.iter() {
        batch.put_idempotency(
            address.type_name(),
            address.id(),
            key,
            reply.at_ms,
            encode(reply)?,
        );
    }
    for (slot, timer) in &job.timers.timers {
        match timer {
            Some(timer) => batch.put_timer(slot.due_ms, slot.id.0, encode(timer)?),
            None => batch.delete_timer(slot.due_ms, slot.id.0),
        }
    }
    for ((owner, key), slot) in &job.timers.keys {
        batch.put_timer_slot(
            owner.type_name(),
            owner.id(),
            &key.stored(),
            slot.map(|s| s.stored()),
        );
    }
    for id in &job.timers.legacy_removed {
        batch.delete_legacy_timer(id.0);
    }
    for (dest, seq) in &job.outbox_removed {
        batch.delete_outbox(*dest, seq.0);
    }
    for sent in &job.outbox {
        batch.put_outbox(sent.dest, sent.seq.0, encode(sent)?);
    }
    for seq in &job.egress_removed {
        batch.delete_pending_egress(seq.0);
    }
    for emitted in &job.egress {
        batch.put_pending_egress(emitted.seq.0, encode(emitted)?);
    }
    for id in &job.dead_letters_removed {
        batch.delete_dead_letter(id.0);
    }
    for letter in &job.dead_letters {
        batch.put_dead_letter(letter.id.0, encode(letter)?);
    }
    let meta = ShardMeta {
        checkpoint_lsn: job.lsn,
        ..job.meta.clone()
    };
    batch.put_meta(encode(&meta)?);
    Ok(())
}
