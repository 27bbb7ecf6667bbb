//! What a batch produces: its log records, and the [`Effects`] the runtime
//! releases once they are durable (and only then: a reply, a message, a
//! timer or an egress record never leaves before its commit).

use std::{sync::Arc, time::Duration};

use crate::{
    Address, Error,
    egress::Reservation,
    metrics::BatchStats,
    protocol::{
        envelope::{Envelope, ReplySender},
        ids::{EgressSeq, Epoch, Seq, ShardId},
        record::Emitted,
    },
    registry::Registry,
    resources::Resources,
    shard::{dead_letters::DeadLetterChange, freeze::CheckpointJob},
    timers::TimerArm,
};

/// What a worker needs to run a batch.
pub(crate) struct RunEnv<'a> {
    pub(crate) registry: &'a Registry,
    /// What `Context::resource` reads; `None` when there is none.
    pub(crate) resources: Option<&'a Arc<Resources>>,
    pub(crate) now_ms: u64,
    /// Highest sequence from this shard that `dest` has durably applied.
    pub(crate) acked: &'a (dyn Fn(ShardId) -> Seq + Sync),
    /// Highest egress sequence of this shard the appender has stored.
    pub(crate) egress_appended: EgressSeq,
}

impl std::fmt::Debug for RunEnv<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunEnv")
            .field("now_ms", &self.now_ms)
            .finish_non_exhaustive()
    }
}

/// One batch's output: its log records and the effects released when they
/// are durable.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) shard: ShardId,
    /// The epoch of the core that built it: a batch of an older core is
    /// refused ([`epoch`](crate::protocol::epoch)).
    pub(crate) epoch: Epoch,
    pub(crate) records: Vec<Vec<u8>>,
    pub(crate) effects: Effects,
    /// A checkpoint frozen at the end of the batch; its position is the
    /// batch's last record's.
    pub(crate) checkpoint: Option<CheckpointJob>,
    /// A record of the batch could not be encoded.
    pub(crate) broken: Option<Error>,
    pub(crate) stats: BatchStats,
    /// When it was handed to the syncer (its queueing time is measured).
    pub(crate) handed_over: Option<std::time::Instant>,
}

impl Batch {
    /// An empty batch of `shard`'s core at `epoch`.
    pub(crate) fn new(shard: ShardId, epoch: Epoch) -> Self {
        Batch {
            shard,
            epoch,
            records: Vec::new(),
            effects: Effects::default(),
            checkpoint: None,
            broken: None,
            stats: BatchStats::default(),
            handed_over: None,
        }
    }
}

/// How far a batch had got before one mail: [`Batch::rollback`] drops what
/// that mail added.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BatchMark {
    records: usize,
    replies: usize,
    deliveries: usize,
    timers: usize,
    timers_cancelled: usize,
    acks: usize,
    egress: usize,
    settled: usize,
    finished: usize,
}

impl Batch {
    /// Where the batch stands now.
    pub(crate) fn mark(&self) -> BatchMark {
        BatchMark {
            records: self.records.len(),
            replies: self.effects.replies.len(),
            deliveries: self.effects.deliveries.len(),
            timers: self.effects.timers.len(),
            timers_cancelled: self.effects.timers_cancelled.len(),
            acks: self.effects.acks.len(),
            egress: self.effects.egress.len(),
            settled: self.effects.settled.len(),
            finished: self.effects.finished,
        }
    }

    /// Drops what the mail after `mark` added (it panicked half-way); that
    /// mail counts as finished: it was taken from the mailbox and is gone.
    pub(crate) fn rollback(&mut self, mark: BatchMark) {
        self.records.truncate(mark.records);
        let effects = &mut self.effects;
        effects.replies.truncate(mark.replies);
        effects.deliveries.truncate(mark.deliveries);
        effects.timers.truncate(mark.timers);
        effects.timers_cancelled.truncate(mark.timers_cancelled);
        effects.acks.truncate(mark.acks);
        effects.egress.truncate(mark.egress);
        effects.settled.truncate(mark.settled);
        effects.finished = mark.finished + 1;
        self.checkpoint = None;
    }
}

/// What a batch releases once committed.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub(crate) replies: Vec<(ReplySender, Result<Vec<u8>, Error>)>,
    /// Envelopes for other instances (possibly on this shard).
    pub(crate) deliveries: Vec<Envelope>,
    /// Timers to arm.
    pub(crate) timers: Vec<TimerArm>,
    /// Timers armed before and removed since (cancelled, replaced).
    pub(crate) timers_cancelled: Vec<TimerArm>,
    /// Function messages applied: (source shard, sequence).
    pub(crate) acks: Vec<(ShardId, Seq)>,
    /// Records for egress logs, appended once durable.
    pub(crate) egress: Vec<Emitted>,
    /// `egress` counted against the egress queue's bound while the batch
    /// is committed (see `egress/committing.rs`).
    pub(crate) egress_reserved: Option<Reservation>,
    /// Channels with a gap or refused messages: `(sender, receiver,
    /// from)`, the sender to re-send what it holds for the receiver from
    /// sequence `from` on.
    pub(crate) resend_requests: Vec<(ShardId, ShardId, Seq)>,
    /// Re-sends cut at a chunk: `(sender, receiver, next)`, the sender
    /// holds more for the receiver from `next` on ([`Mail::ResendMore`],
    /// released after the chunk's deliveries).
    ///
    /// [`Mail::ResendMore`]: crate::protocol::envelope::Mail::ResendMore
    pub(crate) resend_more: Vec<(ShardId, ShardId, Seq)>,
    /// Dead letters kept or resolved, for the listing (by shard).
    pub(crate) dead_letters: Vec<(ShardId, DeadLetterChange)>,
    /// Enqueued invocations whose outcome this batch stored (done, failed,
    /// cancelled), by instance and key: their waiters are woken
    /// ([`Runtime::invocation`](crate::Runtime::invocation)).
    pub(crate) settled: Vec<(Address, String)>,
    /// How many mails this batch finished (for shutdown's in-flight count).
    pub(crate) finished: usize,
}

/// What of a committed batch's effects waits, in `Periodic` mode, for the
/// sync that makes its records durable: what lets another party act on
/// them. A machine crash would lose the records; what others did on them
/// must not outlive them.
#[derive(Debug, Default)]
pub(crate) struct Held {
    /// Messages to shards of other log groups (within the group, the
    /// receiver's record follows the sender's in the same log).
    pub(crate) deliveries: Vec<Envelope>,
    /// The markers behind re-send chunks among `deliveries`.
    pub(crate) resend_more: Vec<(ShardId, ShardId, Seq)>,
    pub(crate) egress: Vec<Emitted>,
    pub(crate) egress_reserved: Option<Reservation>,
    /// Acks let their senders prune their outboxes.
    pub(crate) acks: Vec<(ShardId, Seq)>,
    /// Timer ids are given again after a failed sync cuts the log.
    pub(crate) timers: Vec<TimerArm>,
    pub(crate) dead_letters: Vec<(ShardId, DeadLetterChange)>,
}

impl Held {
    /// The effects to release once synced (the acks go separately).
    pub(crate) fn into_effects(self) -> (Vec<(ShardId, Seq)>, Effects) {
        let effects = Effects {
            deliveries: self.deliveries,
            resend_more: self.resend_more,
            egress: self.egress,
            egress_reserved: self.egress_reserved,
            timers: self.timers,
            dead_letters: self.dead_letters,
            ..Effects::default()
        };
        (self.acks, effects)
    }
}

impl Effects {
    /// Appends `later`'s effects after this one's, kind by kind: a group
    /// commit releases all its batches' effects at once (one pass of
    /// deliveries, then one of replies...), each kind in batch order.
    pub(crate) fn absorb(&mut self, later: Effects) {
        let Effects {
            replies,
            deliveries,
            timers,
            timers_cancelled,
            acks,
            egress,
            egress_reserved,
            resend_requests,
            resend_more,
            dead_letters,
            settled,
            finished,
        } = later;
        self.egress_reserved = Reservation::join(self.egress_reserved.take(), egress_reserved);
        self.replies.extend(replies);
        self.deliveries.extend(deliveries);
        self.timers.extend(timers);
        self.timers_cancelled.extend(timers_cancelled);
        self.acks.extend(acks);
        self.egress.extend(egress);
        self.resend_requests.extend(resend_requests);
        self.resend_more.extend(resend_more);
        self.dead_letters.extend(dead_letters);
        self.settled.extend(settled);
        self.finished += finished;
    }

    /// Takes out what must wait for the sync (see [`Held`]); `local` tells
    /// the shards of this log group.
    pub(crate) fn hold(&mut self, local: impl Fn(ShardId) -> bool, shards: u16) -> Held {
        let (near, far) = std::mem::take(&mut self.deliveries)
            .into_iter()
            .partition(|envelope| local(envelope.target.shard_id(shards)));
        self.deliveries = near;
        let (near_more, far_more) = std::mem::take(&mut self.resend_more)
            .into_iter()
            .partition(|(_, dest, _)| local(*dest));
        self.resend_more = near_more;
        Held {
            deliveries: far,
            resend_more: far_more,
            egress: std::mem::take(&mut self.egress),
            egress_reserved: self.egress_reserved.take(),
            acks: std::mem::take(&mut self.acks),
            timers: std::mem::take(&mut self.timers),
            dead_letters: std::mem::take(&mut self.dead_letters),
        }
    }

    /// The effects of a batch of `shard` that will not commit: its callers
    /// are told to retry, nothing else leaves.
    pub(crate) fn refused(self, shard: ShardId, reason: &str) -> Effects {
        let replies = self
            .replies
            .into_iter()
            .map(|(tx, _)| {
                (
                    tx,
                    Err(Error::Unavailable {
                        shard: shard.0,
                        reason: format!(
                            "{reason}; the call was not committed (retry it with the same idempotency key)"
                        ),
                        retry_after: Duration::from_millis(100),
                    }),
                )
            })
            .collect();
        Effects {
            replies,
            finished: self.finished,
            ..Effects::default()
        }
    }

    /// The effects of a batch of `shard` whose commit the log could not
    /// confirm (a replicated log that stopped answering): it may or may not
    /// be committed, so its callers are told to retry with the same
    /// idempotency key, which answers without applying it twice.
    pub(crate) fn outcome_unknown(self, shard: ShardId, reason: &str) -> Effects {
        let replies = self
            .replies
            .into_iter()
            .map(|(tx, _)| {
                (
                    tx,
                    Err(Error::Unavailable {
                        shard: shard.0,
                        reason: format!(
                            "{reason}; the call may or may not have been committed: retry it with \
                             the same idempotency key to find out without applying it twice"
                        ),
                        retry_after: Duration::from_secs(1),
                    }),
                )
            })
            .collect();
        Effects {
            replies,
            finished: self.finished,
            ..Effects::default()
        }
    }
}
