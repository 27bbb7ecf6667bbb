//! What a batch produces: its log records, and the [`Effects`] the runtime
//! releases once they are durable (and only then: a reply, a message, a
//! timer or an egress record never leaves before its commit).

use std::{sync::Arc, time::Duration};

use crate::{
    Error,
    metrics::BatchStats,
    protocol::{
        envelope::{Envelope, ReplySender},
        ids::{EgressSeq, Epoch, Seq, ShardId},
        record::Emitted,
    },
    registry::Registry,
    resources::Resources,
    shard::freeze::CheckpointJob,
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
    pub(crate) stats: BatchStats,
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
            stats: BatchStats::default(),
        }
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
    /// Function messages applied: (source shard, sequence).
    pub(crate) acks: Vec<(ShardId, Seq)>,
    /// Records for egress logs, appended once durable.
    pub(crate) egress: Vec<Emitted>,
    /// How many mails this batch finished (for shutdown's in-flight count).
    pub(crate) finished: usize,
}

impl Effects {
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
}
