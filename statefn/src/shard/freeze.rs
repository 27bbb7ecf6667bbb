//! Checkpoints, the shard's side: when to freeze one, freezing the dirty
//! sets and metadata into a [`CheckpointJob`] at the end of a batch (the
//! shard goes on processing while the checkpointer writes it), and taking
//! the result back.

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

use super::{state_machine::ShardCore, state_table::Frozen, timer_table::TimerChanges};
use crate::{
    Address,
    protocol::{
        ids::{DeadLetterSeq, EgressSeq, Epoch, Lsn, Seq, ShardId, TimerId},
        record::{DeadLetterEntry, Emitted, Sent, StoredReply},
    },
};

/// A shard's metadata as of a checkpoint (the `meta` table's value).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ShardMeta {
    /// Every record of this shard up to this position is reflected in the
    /// store.
    pub(crate) checkpoint_lsn: Lsn,
    pub(crate) next_timer: TimerId,
    /// The last sequence sent on each outgoing channel.
    pub(crate) next_seq: Vec<(ShardId, Seq)>,
    /// The last sequence applied from each incoming channel.
    pub(crate) watermarks: Vec<(ShardId, Seq)>,
    pub(crate) next_egress: EgressSeq,
    pub(crate) next_dead_letter: DeadLetterSeq,
}

/// Unchanged since record version 1.
impl crate::protocol::record::Stored for ShardMeta {}

/// A checkpoint frozen by a shard, for the checkpointer to write. No other
/// shard takes part.
#[derive(Debug)]
pub(crate) struct CheckpointJob {
    pub(crate) shard: ShardId,
    pub(crate) epoch: Epoch,
    /// Set by the log group once the batch that froze it is durable: the
    /// last position this checkpoint covers.
    pub(crate) lsn: Lsn,
    pub(crate) states: Frozen<Address, Option<Vec<u8>>>,
    pub(crate) idempotency: Frozen<(Address, String), StoredReply>,
    pub(crate) meta: ShardMeta,
    /// The timers armed and removed since the last checkpoint (not all
    /// timers: the store keeps those).
    pub(crate) timers: Arc<TimerChanges>,
    pub(crate) outbox: Vec<Sent>,
    pub(crate) outbox_removed: Vec<(ShardId, Seq)>,
    pub(crate) egress: Vec<Emitted>,
    pub(crate) egress_removed: Vec<EgressSeq>,
    pub(crate) dead_letters: Vec<DeadLetterEntry>,
    pub(crate) dead_letters_removed: Vec<DeadLetterSeq>,
    pub(crate) idempotency_retention_ms: u64,
}

/// Where a shard's checkpoints stand.
#[derive(Debug, Default)]
pub(crate) struct CheckpointState {
    /// A frozen checkpoint is being written.
    pub(crate) in_flight: bool,
    /// Freeze one at the end of the next batch.
    pub(crate) requested: bool,
    /// The last written checkpoint covers the shard's records up to here.
    pub(crate) lsn: Lsn,
    /// When the last checkpoint was frozen, on the runtime's clock (set at
    /// the first batch).
    last_ms: Option<u64>,
    /// Checkpoints that failed in a row: the next is not frozen before
    /// [`retry_backoff`] of that many has passed since the last one, so a
    /// state store that cannot write is not retried in a hot loop.
    pub(crate) failures: u32,
    /// Asked for from outside (shutdown, the log group, an operator): not
    /// held back by the backoff, since each such request is one attempt,
    /// not a loop.
    asked: bool,
}

impl CheckpointState {
    /// A checkpoint was asked for from outside the shard.
    pub(crate) fn asked(&mut self) {
        self.requested = true;
        self.asked = true;
    }
}

/// How long a shard waits after `failures` failed checkpoints in a row
/// before it freezes the next: 100 ms, doubling, at most 30 s.
pub(crate) fn retry_backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(100)
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(Duration::from_secs(30))
}

impl ShardCore {
    /// Whether to freeze a checkpoint at the end of this batch. (It starts
    /// the interval at the first batch.)
    pub(crate) fn wants_checkpoint(&mut self, now_ms: u64) -> bool {
        let last_ms = *self.checkpoint.last_ms.get_or_insert(now_ms);
        if !self.durable || self.checkpoint.in_flight {
            return false;
        }
        let backoff = retry_backoff(self.checkpoint.failures);
        if !self.checkpoint.asked && Duration::from_millis(now_ms.saturating_sub(last_ms)) < backoff
        {
            return false;
        }
        let dirty = self.states.dirty_bytes() + self.timers.dirty_bytes();
        self.checkpoint.requested
            || dirty >= self.config.checkpoint_dirty_bytes
            || (dirty > 0
                && Duration::from_millis(now_ms.saturating_sub(last_ms))
                    >= self.config.checkpoint_interval)
    }

    /// Whether the dirty states and timers reached the bound that makes an
    /// owner's core checkpoint at once (a standby applies the same bound).
    pub(crate) fn dirty_over_bound(&self) -> bool {
        self.states.dirty_bytes() + self.timers.dirty_bytes() >= self.config.checkpoint_dirty_bytes
    }

    /// Freezes the dirty sets and metadata into a checkpoint job; the shard
    /// goes on processing while it is written. `acked` prunes the outbox,
    /// `egress_appended` the pending egress records.
    pub(crate) fn freeze(
        &mut self,
        acked: &dyn Fn(ShardId) -> Seq,
        egress_appended: EgressSeq,
        now_ms: u64,
    ) -> CheckpointJob {
        self.outbox.prune(acked, true);
        self.emitted.appended(egress_appended);
        self.checkpoint.in_flight = true;
        self.checkpoint.requested = false;
        self.checkpoint.asked = false;
        self.checkpoint.last_ms = Some(now_ms);
        CheckpointJob {
            shard: self.id,
            epoch: self.epoch,
            lsn: Lsn(0),
            states: self.states.freeze(),
            idempotency: self.idempotency.freeze(),
            meta: ShardMeta {
                checkpoint_lsn: Lsn(0),
                next_timer: self.timers.next(),
                next_seq: self.channels.sent(),
                watermarks: self.channels.watermarks(),
                next_egress: self.emitted.next(),
                next_dead_letter: self.dead_letters.next(),
            },
            dead_letters: self.dead_letters.entries().cloned().collect(),
            dead_letters_removed: self.dead_letters.take_removed(),
            egress: self.emitted.pending().cloned().collect(),
            egress_removed: self.emitted.take_removed(),
            timers: self.timers.freeze(),
            outbox: self.outbox.entries().cloned().collect(),
            outbox_removed: self.outbox.take_removed(),
            idempotency_retention_ms: self.idempotency.retention_ms(),
        }
    }

    /// The checkpoint frozen last has been written (`Some(lsn)`) or failed.
    ///
    /// On failure the frozen states, idempotency entries and timer changes
    /// (removals included) become dirty again, and the other removals it
    /// was to delete go into the next one.
    pub(crate) fn checkpoint_finished(&mut self, epoch: Epoch, lsn: Option<Lsn>) {
        if epoch != self.epoch || !self.checkpoint.in_flight {
            return;
        }
        self.checkpoint.in_flight = false;
        let written = lsn.is_some();
        self.outbox.checkpoint_finished(written);
        self.emitted.checkpoint_finished(written);
        self.dead_letters.checkpoint_finished(written);
        match lsn {
            Some(lsn) => {
                self.checkpoint.failures = 0;
                self.checkpoint.lsn = lsn;
                self.states.checkpointed();
                self.idempotency.checkpointed();
                self.timers.checkpointed();
            }
            None => {
                self.checkpoint.failures = self.checkpoint.failures.saturating_add(1);
                self.states.unfreeze();
                self.idempotency.unfreeze();
                self.timers.unfreeze();
                self.checkpoint.requested = true;
            }
        }
    }
}
