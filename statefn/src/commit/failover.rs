//! Failover of a log group: when its log fails, the batches in flight are
//! refused (their callers are told to retry), the group's shards are taken
//! down (their waiting client calls refused too), rebuilt from checkpoint
//! and log with backoff under a new epoch, and handed back to the runtime
//! to re-send and serve. Other groups keep serving throughout. The log is
//! cut at the last position the failed writer knew durable before it is
//! replayed, so that "not committed" stays true for the refused calls.

use std::time::Duration;

use statefn_store::LogError;

use super::{log_group::GroupCommand, syncer::Syncer};
use crate::{
    protocol::ids::Lsn,
    shard::effects::{Batch, Effects},
};

impl Syncer {
    /// A flush failed under these batches (each with its last record's
    /// position). A flush is not atomic: the batches whose records the log
    /// made durable (up to its `durable_lsn`) are committed, and leave as
    /// usual; a batch only partly durable is committed in part (its
    /// durable records are replayed), so its callers are told the outcome
    /// is unknown; the others fail.
    pub(super) fn flush_failed(&mut self, accepted: Vec<(Batch, Lsn)>, error: LogError) {
        let durable = self.log.as_ref().map_or(Lsn(0), |log| log.durable_lsn());
        let shards = self.parts.storage.shards();
        let mut lost = Vec::new();
        for (batch, lsn) in accepted {
            let appended = u64::try_from(batch.records.len()).unwrap_or(u64::MAX);
            let first = lsn.0.saturating_sub(appended.saturating_sub(1));
            if lsn <= durable {
                let effects = self.committed(batch, lsn, true, shards);
                self.parts.host.release(effects);
            } else if appended > 1 && first <= durable.0 {
                let reason = format!(
                    "the log of log group {} failed part-way through this call's batch: {error}",
                    self.group
                );
                self.parts
                    .host
                    .refuse_unknown(batch.effects, batch.shard, &reason);
            } else {
                lost.push(batch);
            }
        }
        self.fenced = matches!(error, LogError::Fenced { .. });
        #[cfg(feature = "cluster")]
        if self.parts.hand_back.is_some() {
            return self.fail_replicated(lost, &error);
        }
        self.fail(lost, &format!("the log failed: {error}"));
    }

    /// Cluster mode: what a caller is told depends on what the replicated
    /// log knows. Fenced: a newer owner's fence stands before every record
    /// not confirmed, and readers never apply a fenced writer's records
    /// after it, so they are not committed. Unconfirmed for another reason
    /// (no quorum within the retry time): they may have landed.
    #[cfg(feature = "cluster")]
    fn fail_replicated(&mut self, batches: Vec<Batch>, error: &LogError) {
        let reason = match error {
            LogError::Fenced { .. } => format!(
                "this node lost the ownership of log group {} (a newer owner fenced its log)",
                self.group
            ),
            LogError::Unavailable { .. } | LogError::Corrupt { .. } => {
                let reason = if matches!(error, LogError::Unavailable { .. }) {
                    format!(
                        "the NATS servers did not confirm the append to the log of log group {} \
                         (no quorum of the servers replicating its stream answered: {error})",
                        self.group
                    )
                } else {
                    format!("the log of log group {} failed: {error}", self.group)
                };
                self.take_down(&reason);
                for batch in batches {
                    self.parts
                        .host
                        .refuse_unknown(batch.effects, batch.shard, &reason);
                }
                return self.recover(&reason);
            }
            other => format!("the log failed: {other}"),
        };
        self.fail(batches, &reason);
    }
    /// The log failed under these batches: none of them commits.
    pub(super) fn fail(&mut self, batches: Vec<Batch>, reason: &str) {
        // Down first, so that no caller told to retry gets in before.
        self.take_down(reason);
        for batch in batches {
            self.parts.host.refuse(batch.effects, batch.shard, reason);
        }
        self.recover(reason);
    }

    /// Marks the group's shards as recovering and refuses the client calls
    /// waiting for them.
    fn take_down(&self, reason: &str) {
        for shard in self.epochs.shards() {
            let refused = self.parts.host.take_down(shard);
            let count = refused.len();
            let effects = Effects {
                replies: refused.into_iter().map(|tx| (tx, Ok(Vec::new()))).collect(),
                finished: count,
                ..Effects::default()
            };
            self.parts.host.refuse(effects, shard, reason);
        }
    }

    /// Takes the group's shards down, rebuilds them from checkpoint and log
    /// (retrying with backoff), and resumes them.
    pub(super) fn recover(&mut self, reason: &str) {
        tracing::error!(
            group = %self.group,
            reason,
            "log group failed; recovering its shards"
        );
        self.take_down(reason);
        // What the failed writer knew durable: the rest was refused as not
        // committed, so the log drops it before it is replayed, even where
        // it sits whole in the page cache.
        let durable = self.log.take().map(|log| log.durable_lsn());
        self.unsynced = None;
        // Held back for a sync that will not come: their batches are cut.
        self.held.clear();
        // Cluster mode: only the node that wins the group's ownership may
        // reopen its log (at the epoch it won); this syncer stops.
        #[cfg(feature = "cluster")]
        if let Some(hand_back) = self.parts.hand_back.clone() {
            self.stopping = true;
            hand_back(self.group, self.fenced, reason);
            return;
        }
        // Down until recovered (in cluster mode the group is not down here:
        // the node that wins its ownership serves it, maybe this one again).
        *self.parts.stats.down.lock() = Some(reason.to_owned());
        let epoch = self.epochs.next();
        let mut backoff = Duration::from_millis(20);
        // Set once shutdown began: one more attempt at once (the disk may be
        // back), then the group is given up.
        let mut last_try = false;
        let recovered = loop {
            // The other groups serve meanwhile: the replay runs at a lower
            // CPU priority than their threads (`low_priority.rs`).
            let (storage, group) = (&self.parts.storage, self.group);
            let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                super::low_priority::run(format!("statefn-replay-{group}"), || {
                    storage.recover(group, epoch, durable, None)
                })
            }))
            .unwrap_or_else(|panic| {
                Err(crate::Error::Thread {
                    what: format!(
                        "recovering log group {} panicked (a statefn bug, or data it cannot read): {}",
                        self.group,
                        crate::registry::panic_message(&*panic)
                    ),
                    source: None,
                })
            });
            match attempt {
                Ok(recovered) => break recovered,
                Err(e) => {
                    tracing::warn!(group = %self.group, error = %e, ?backoff, "recovery failed; retrying");
                    *self.parts.stats.down.lock() = Some(format!("{reason}; recovery failed: {e}"));
                    if !last_try {
                        self.pause(backoff);
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            // Batches handed over before the shards went down: their callers
            // must not wait for the disk to come back.
            for command in self.parts.rx.clone().try_iter() {
                match command {
                    GroupCommand::Commit(batch) => {
                        self.parts.stats.dequeued(&batch);
                        self.parts.host.refuse(batch.effects, batch.shard, reason);
                    }
                    GroupCommand::Checkpointed { .. } | GroupCommand::Fail { .. } => {}
                    GroupCommand::Stop => self.stopping = true,
                }
            }
            if self.stopping || self.parts.host.closing() {
                if !last_try {
                    last_try = true;
                    continue;
                }
                // Shutdown must not wait for a disk that does not come back:
                // the shards stay down until the next open, which recovers
                // them from what is durable.
                tracing::warn!(
                    group = %self.group,
                    "shutting down while recovering; the group's shards stay down until the next open"
                );
                for shard in self.epochs.shards() {
                    self.parts.host.abandon(shard);
                }
                return;
            }
        };
        *self.parts.stats.down.lock() = None;
        let replayed = recovered.replayed;
        for core in recovered.cores {
            self.epochs.set(core.id, core.epoch);
            self.checkpointed.insert(core.id, core.checkpoint.lsn);
            self.parts.host.resume(core);
        }
        self.last_appended = recovered.log.durable_lsn();
        self.log = Some(recovered.log);
        self.parts.host.count_recovery();
        tracing::info!(group = %self.group, replayed, "log group recovered; serving again");
    }

    /// Sleeps `backoff` between recovery attempts, cut short when the
    /// runtime starts shutting down.
    fn pause(&self, backoff: Duration) {
        let slice = Duration::from_millis(20);
        let until = std::time::Instant::now() + backoff;
        while !self.parts.host.closing() {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(slice));
        }
    }
}
