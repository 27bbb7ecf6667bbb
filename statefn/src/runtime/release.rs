//! Releasing a committed batch: its effects leave only now that its records
//! are durable, in an order that keeps what a caller can observe
//! consistent. Also what the commit path hands back to the runtime
//! ([`CommitHost`]): acks, refusals, checkpoints, recovered shards.

use std::sync::atomic::Ordering;

use super::RuntimeInner;
use crate::{
    commit::CommitHost,
    protocol::{
        envelope::{Mail, ReplySender},
        ids::{Epoch, Lsn, Seq, ShardId},
    },
    shard::{ShardCore, effects::Effects},
};

impl RuntimeInner {
    /// Releases a committed batch's effects: deliveries, egress, replies,
    /// timers.
    pub(crate) fn release(&self, effects: Effects) {
        // Deliveries first: a caller who has seen a transfer's reply and then
        // calls the receiver finds the deposit already queued ahead of it.
        let shards = self.shard_count();
        for envelope in effects.deliveries {
            let shard = envelope.target.shard_id(shards);
            self.enqueue(shard, Mail::Invoke(envelope));
        }
        // Egress before replies too: in memory a caller then reads its own
        // records; durable appends are asynchronous (see `read_egress`).
        self.egress.submit(effects.egress);
        for (tx, reply) in effects.replies {
            // The caller may have stopped waiting; the invocation stands.
            let _ = tx.send(reply);
        }
        for timer in effects.timers {
            self.timers.arm(timer);
        }
        self.finished(effects.finished);
    }

    /// Answers a batch that will not commit: its callers get `Unavailable`.
    pub(crate) fn refuse(&self, effects: Effects, shard: ShardId, reason: &str) {
        self.release(effects.refused(shard, reason));
    }
}

impl CommitHost for RuntimeInner {
    fn release(&self, effects: Effects) {
        RuntimeInner::release(self, effects);
    }

    fn refuse(&self, effects: Effects, shard: ShardId, reason: &str) {
        RuntimeInner::refuse(self, effects, shard, reason);
    }

    fn publish_acks(&self, dest: ShardId, acks: &[(ShardId, Seq)]) {
        self.acks.publish(dest, acks);
        #[cfg(feature = "cluster")]
        if let Some(transport) = self.transport() {
            let remote: Vec<(ShardId, Seq)> = acks
                .iter()
                .filter(|(source, _)| self.is_remote(*source))
                .copied()
                .collect();
            if !remote.is_empty() {
                transport.send_acks(dest, remote);
            }
        }
    }

    fn request_checkpoint(&self, shard: ShardId) {
        RuntimeInner::request_checkpoint(self, shard);
    }

    fn take_down(&self, shard: ShardId) -> Vec<ReplySender> {
        self.shard(shard).map(|s| s.take_down()).unwrap_or_default()
    }

    fn resume(&self, core: ShardCore) {
        self.resume_recovered(core);
    }

    fn checkpoint_finished(&self, shard: ShardId, epoch: Epoch, lsn: Option<Lsn>) {
        if let Some(target) = self.shard(shard) {
            target.checkpoint_finished(epoch, lsn);
        }
        // The shard takes the result at its next batch.
        self.enqueue(shard, Mail::Wake);
    }

    fn count_recovery(&self) {
        self.recoveries.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::metrics::RECOVERIES).increment(1);
    }

    #[cfg(feature = "cluster")]
    fn refuse_unknown(&self, effects: Effects, shard: ShardId, reason: &str) {
        RuntimeInner::release(self, effects.outcome_unknown(shard, reason));
    }
}
