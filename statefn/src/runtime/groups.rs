//! Log groups served here or elsewhere (cluster mode): a node opens its
//! storage without serving any group, then acquires and gives up groups at
//! runtime as the cluster layer decides (`crate::cluster`).
//!
//! - **Acquire** (blocking): the group's shards go from `Remote` to
//!   `Recovering` (mail for them now queues here), the log is opened at the
//!   epoch the node won (fencing the previous writer) and the shards are
//!   rebuilt from this node's checkpoint and the log's tail; a syncer starts;
//!   each shard re-sends its outbox, re-arms its timers, resubmits its
//!   pending egress records, asks every other shard to re-send to it, and
//!   serves. Its one-time keyed timers whose messages this build cannot
//!   decode (a rolling deploy removed their handler) run at once: each
//!   becomes a dead letter in the record that removes it, in the log, so
//!   every node that takes the group over later agrees (a single node sets
//!   such timers aside at open, `commit/stored_messages.rs`, with one copy
//!   of the data there is no log to agree on).
//! - **Release** (blocking): the shards go `Remote` (new calls and mail go
//!   to the group's next owner), their cores are dropped (a worker running a
//!   batch finishes handing it over first), the syncer commits what it was
//!   handed and stops, and the calls still queued are forwarded.

use std::{collections::BTreeSet, sync::Arc};

use super::RuntimeInner;
use crate::{
    Error,
    commit::{CommitHost, HandBack, standby::StandbyGroup},
    error::StorageError,
    protocol::{
        envelope::Mail,
        ids::{Epoch, LogGroupId, ShardId},
    },
    shard::{ShardCore, Status},
};

impl RuntimeInner {
    /// The shards of `group`.
    pub(crate) fn group_shards(&self, group: LogGroupId) -> Vec<ShardId> {
        self.commit
            .as_ref()
            .map(|c| c.storage.group_shards(group))
            .unwrap_or_default()
    }

    /// Takes `group` over as its writer at `epoch` and serves it (blocking:
    /// it reads the log). `hand_back` is called if the log fails later.
    /// `warm`: the group's shards as this node's standby kept them (only
    /// the log's tail after them is replayed). Returns the epoch the log
    /// was opened at and how many records were replayed.
    ///
    /// # Errors
    ///
    /// When the log cannot be opened (another writer fenced it at a higher
    /// epoch, no quorum) or the group cannot be rebuilt; the shards are
    /// `Remote` again.
    pub(crate) fn acquire_group(
        self: &Arc<Self>,
        group: LogGroupId,
        epoch: Epoch,
        hand_back: HandBack,
        warm: Option<StandbyGroup>,
    ) -> Result<(Epoch, u64), Error> {
        let commit = self.commit.as_ref().ok_or(StorageError::Closed)?;
        let shards = self.group_shards(group);
        for &shard in &shards {
            if let Some(s) = self.shard(shard) {
                s.set_status(Status::Recovering);
            }
        }
        self.sweep_group(group, "its log group is changing owner");
        let started = (|| {
            let recovered = commit.storage.recover(group, epoch, None, warm)?;
            let replayed = recovered.replayed;
            for core in &recovered.cores {
                let logs: BTreeSet<&str> = core.emitted.pending().map(|e| e.log.as_str()).collect();
                if !logs.is_empty() {
                    let logs: Vec<&str> = logs.into_iter().collect();
                    self.egress.learn_stored(core.id, &logs)?;
                }
            }
            let (opened, cores) = recovered.into_opened(group);
            let epoch = opened.log.epoch();
            let host: Arc<dyn CommitHost> = Arc::clone(self) as Arc<dyn CommitHost>;
            let thread = commit.start_syncer(&host, opened, &self.clock, hand_back)?;
            Ok::<_, Error>((epoch, replayed, cores, thread))
        })();
        let (epoch, replayed, cores, thread) = match started {
            Ok(started) => started,
            Err(e) => {
                self.give_up_shards(&shards, "its log group could not be taken over here");
                return Err(e);
            }
        };
        self.threads.lock().groups.insert(group, thread);
        for core in cores {
            let undecodable = core.undecodable_keyed_timers(&self.registry);
            let shard = core.id;
            self.resume_recovered(core);
            for (timer, error) in undecodable {
                tracing::warn!(%shard, %error, "a stored timer no longer decodes; it runs now and becomes a dead letter");
                self.enqueue(shard, Mail::TimerDue { timer });
            }
        }
        Ok((epoch, replayed))
    }

    /// Stops serving `group` (blocking): see the module docs. `reason` is
    /// what callers of batches that will not commit are told.
    pub(crate) fn release_group(&self, group: LogGroupId, reason: &str) {
        let shards = self.group_shards(group);
        for &shard in &shards {
            if let Some(s) = self.shard(shard) {
                s.set_status(Status::Remote);
            }
        }
        self.drop_cores(&shards);
        if let Some(handle) = self.commit.as_ref().and_then(|c| c.group(group)) {
            handle.stop();
        }
        let thread = self.threads.lock().groups.remove(&group);
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        self.sweep_group(group, reason);
        self.give_up_shards(&shards, reason);
    }

    /// Refuses the batches of `group` queued while no syncer runs.
    pub(crate) fn sweep_group(&self, group: LogGroupId, reason: &str) {
        let Some(handle) = self.commit.as_ref().and_then(|c| c.group(group)) else {
            return;
        };
        for batch in handle.sweep() {
            self.refuse(batch.effects, batch.shard, reason);
        }
    }

    /// Replaces the shards' cores by empty ones, once a worker running a
    /// batch of theirs has handed it over.
    fn drop_cores(&self, shards: &[ShardId]) {
        let Some(commit) = &self.commit else { return };
        for &shard in shards {
            if let Some(s) = self.shard(shard) {
                let config = commit.storage.core_config().clone();
                *s.core.lock() = ShardCore::new(shard, Epoch(0), config, None);
            }
        }
    }

    /// Marks the shards `Remote` and empties their mailboxes: client calls
    /// are forwarded to the group's next owner; messages from functions are
    /// dropped (their senders keep them until acknowledged and send again).
    fn give_up_shards(&self, shards: &[ShardId], reason: &str) {
        for &shard in shards {
            let Some(s) = self.shard(shard) else { continue };
            s.set_status(Status::Remote);
            let evicted = s.evict();
            let count = evicted.len();
            if let Some(transport) = self.transport() {
                for mail in evicted {
                    self.route_remote(transport, shard, mail);
                }
            }
            tracing::debug!(%shard, count, reason, "shard given up; its queued mail goes to the next owner");
            self.finished(count);
        }
        self.drop_cores(shards);
    }
}
