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
    /// The test hook of [`RuntimeInner::lose_messages`]: whether to lose
    /// this delivery.
    #[cfg(test)]
    fn lost_in_test(&self, envelope: &crate::protocol::envelope::Envelope) -> bool {
        matches!(
            envelope.origin,
            crate::protocol::envelope::Origin::Function { .. }
        ) && self
            .lose_messages
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Releases committed effects: deliveries, egress, replies, timers.
    ///
    /// A log group's syncer calls this once per group commit with every
    /// batch of the commit merged ([`Effects::absorb`]: each kind in batch
    /// order), after it published all their acks; so across the commit's
    /// batches, too, every delivery and egress record leaves before the
    /// first reply, and the callers are woken in one burst at the end
    /// (`commit/release_tests.rs` pins this). In memory mode a worker
    /// calls it per batch.
    pub(crate) fn release(&self, mut effects: Effects) {
        // Counted against the egress queue's bound until the records are
        // queued for the appender (then counted there).
        let egress_reserved = effects.egress_reserved.take();
        // Deliveries first: a caller who has seen a transfer's reply and then
        // calls the receiver finds the deposit already queued ahead of it
        // (in `Periodic` mode, a message to another log group waits for the
        // sync, after the reply).
        let shards = self.shard_count();
        for envelope in effects.deliveries {
            #[cfg(test)]
            if self.lost_in_test(&envelope) {
                continue;
            }
            let shard = envelope.target.shard_id(shards);
            self.enqueue(shard, Mail::Invoke(envelope));
        }
        // Behind the re-send chunks just queued: the receiver asks for the
        // rest once it has handled them.
        for (source, dest, next) in effects.resend_more {
            self.enqueue(dest, Mail::ResendMore { source, next });
        }
        // Egress before replies too: in memory a caller then reads its own
        // records; durable appends are asynchronous (see `read_egress`).
        self.egress.submit(effects.egress);
        drop(egress_reserved);
        // The dead-letter listing before replies: a caller told its drop or
        // replay is done must not list the letter any more.
        for (shard, change) in effects.dead_letters {
            if let Some(target) = self.shard(shard) {
                target.dead_letter_committed(change);
            }
        }
        for (tx, reply) in effects.replies {
            // The caller may have stopped waiting; the invocation stands.
            let _ = tx.send(reply);
        }
        // With the replies: a woken waiter's next status query is answered
        // after this batch, so it reads what woke it.
        self.invocation_waiters.wake(&effects.settled);
        for timer in effects.timers_cancelled {
            self.timers.cancel(timer);
        }
        for timer in effects.timers {
            self.timers.arm(timer);
        }
        // A receiver saw a gap: its sender re-sends what it holds for it.
        for (source, dest, from) in effects.resend_requests {
            let from = Some(from);
            self.enqueue(source, Mail::Resend { dest, from });
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

    fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    fn abandon(&self, shard: ShardId) {
        let Some(target) = self.shard(shard) else {
            return;
        };
        let (count, waiting) = target.abandon();
        for tx in waiting {
            let _ = tx.send(Err(crate::Error::ShuttingDown));
        }
        self.finished(count);
    }

    fn count_recovery(&self) {
        self.recoveries.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::metrics::RECOVERIES).increment(1);
    }

    fn refuse_unknown(&self, effects: Effects, shard: ShardId, reason: &str) {
        RuntimeInner::release(self, effects.outcome_unknown(shard, reason));
    }
}
