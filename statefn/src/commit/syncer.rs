//! A log group's syncer: group commit for the shards of the group.
//!
//! Workers hand it whole batches (records + effects) in order. It appends
//! every waiting batch, flushes once and waits once for the flush to be
//! durable, then releases their effects: replies, outgoing messages, acks,
//! timers and egress leave only when durable. Workers go on with their next
//! batches meanwhile (pipelining). When the log fails it hands over to
//! [`failover`](super::failover); other groups go on.

use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use statefn_store::{CommitLog, LogError, Lsn, PendingFlush};

use super::{
    CommitConfig, CommitHost, CommitObserver, Durability, OpenedGroup,
    checkpointer::CheckpointQueue,
    log_group::{GroupCommand, GroupStats},
    recovery::Storage,
};
use crate::{
    clock::Clock,
    metrics::Kept,
    protocol::{
        epoch::ShardEpochs,
        ids::{LogGroupId, ShardId},
    },
    service::{Service, Step},
    shard::effects::{Batch, Effects, Held},
};

/// How often the syncer looks at timers (periodic sync, checkpoint triggers)
/// when idle.
const TICK: Duration = Duration::from_millis(50);

/// What a syncer is built from, besides its opened group.
pub(crate) struct Parts {
    pub(crate) host: Arc<dyn CommitHost>,
    pub(crate) storage: Arc<Storage>,
    pub(crate) checkpoints: Arc<CheckpointQueue>,
    pub(crate) stats: Arc<GroupStats>,
    pub(crate) config: CommitConfig,
    pub(crate) clock: Clock,
    pub(crate) observer: Option<CommitObserver>,
    pub(crate) rx: Receiver<GroupCommand>,
    /// Cluster mode: stop and hand the group back when the log fails.
    #[cfg(feature = "cluster")]
    pub(crate) hand_back: Option<super::HandBack>,
}

/// Commits one log group's batches: a [`Service`].
pub(crate) struct Syncer {
    pub(super) parts: Parts,
    pub(super) group: LogGroupId,
    /// Batches of older cores are refused.
    pub(super) epochs: ShardEpochs,
    /// Each shard's last checkpoint position: the log keeps what follows
    /// the oldest.
    pub(super) checkpointed: BTreeMap<ShardId, Lsn>,
    /// The group's log; `None` while it is being recovered.
    pub(super) log: Option<Box<dyn CommitLog>>,
    /// The position of the last record appended (positions need not be
    /// dense: always the one `append` returned).
    pub(super) last_appended: Lsn,
    /// A `Stop` arrived (possibly during a recovery).
    pub(super) stopping: bool,
    /// Periodic mode: flushed but not yet known durable (waiting for the
    /// latest flush covers the earlier ones).
    pub(super) unsynced: Option<PendingFlush>,
    /// Periodic mode: what the unsynced batches let others act on, by
    /// shard, released once a sync covers them ([`Held`]).
    pub(super) held: Vec<(ShardId, Held)>,
    last_sync: Instant,
    /// Real time: spaces out requests for I/O reasons (a large log).
    last_checkpoint_request: Instant,
    /// The runtime's clock (virtual in tests), as the checkpoint interval is.
    last_checkpoint_request_ms: u64,
    /// The last log failure was a newer writer fencing the log.
    pub(super) fenced: bool,
    /// Its metrics, recorded on every commit.
    metrics: SyncerMetrics,
}

/// The metrics a syncer records on every commit, with the handles of the
/// global recorder kept (asking for them was ~2,000 instructions a commit,
/// issue 14).
#[derive(Debug)]
struct SyncerMetrics {
    queue_bytes: Kept<metrics::Gauge>,
    batch: Kept<metrics::Histogram>,
    fsync: Kept<metrics::Histogram>,
}

impl SyncerMetrics {
    fn new(group: LogGroupId) -> Self {
        SyncerMetrics {
            queue_bytes: Kept::new(metrics::Key::from_parts(
                crate::metrics::COMMIT_QUEUE_BYTES,
                vec![metrics::Label::new("group", group.to_string())],
            )),
            batch: Kept::new(metrics::Key::from_static_name(crate::metrics::COMMIT_BATCH)),
            fsync: Kept::new(metrics::Key::from_static_name(
                crate::metrics::FSYNC_DURATION,
            )),
        }
    }
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer")
            .field("group", &self.group)
            .field("recovering", &self.log.is_none())
            .finish_non_exhaustive()
    }
}

impl Syncer {
    pub(crate) fn new(parts: Parts, opened: OpenedGroup) -> Self {
        let mut epochs = ShardEpochs::default();
        let mut checkpointed = BTreeMap::new();
        for (shard, epoch, lsn) in opened.shards {
            epochs.set(shard, epoch);
            checkpointed.insert(shard, lsn);
        }
        let now_ms = parts.clock.now_ms();
        Syncer {
            parts,
            group: opened.group,
            epochs,
            checkpointed,
            last_appended: opened.log.durable_lsn(),
            log: Some(opened.log),
            stopping: false,
            unsynced: None,
            held: Vec::new(),
            last_sync: Instant::now(),
            last_checkpoint_request: Instant::now(),
            last_checkpoint_request_ms: now_ms,
            fenced: false,
            metrics: SyncerMetrics::new(opened.group),
        }
    }

    /// How long to wait for commands: less than `wait` when a periodic sync
    /// falls due sooner.
    fn tick(&self, wait: Duration) -> Duration {
        match self.parts.config.mode {
            Durability::Periodic(interval) if self.unsynced.is_some() => {
                interval.saturating_sub(self.last_sync.elapsed()).min(wait)
            }
            _ => wait,
        }
    }

    /// Handles the commands that arrived together: one group commit for all
    /// their batches. Returns whether the syncer is done.
    fn handle(&mut self, commands: Vec<GroupCommand>) -> bool {
        let mut batches = Vec::new();
        let mut stop = false;
        let now = Instant::now();
        // The queue's bytes once all are taken: the gauge is set once per
        // commit, not per batch (its key is built each time).
        let mut queued = None;
        for command in commands {
            match command {
                GroupCommand::Commit(batch) => {
                    self.parts.stats.phases.taken(batch.handed_over, now);
                    queued = Some(self.parts.stats.dequeued(&batch));
                    batches.push(batch);
                }
                GroupCommand::Checkpointed { shard, lsn } => self.checkpointed(shard, lsn),
                GroupCommand::Fail { reason } => {
                    // What was handed over before is from sound cores.
                    if !batches.is_empty() {
                        self.commit(std::mem::take(&mut batches));
                    }
                    if self.log.is_some() && !self.stopping {
                        self.recover(&reason);
                    }
                }
                GroupCommand::Stop => stop = true,
            }
        }
        if let Some(queued) = queued {
            #[expect(clippy::cast_precision_loss, reason = "a gauge")]
            self.metrics
                .queue_bytes
                .record(|gauge| gauge.set(queued as f64));
        }
        if !batches.is_empty() {
            self.commit(batches);
        }
        if self.stopping {
            return true;
        }
        self.periodic_sync();
        self.maybe_request_checkpoints();
        self.publish_stats();
        if stop {
            self.periodic_sync_now();
        }
        stop
    }

    fn commit(&mut self, batches: Vec<Batch>) {
        let started = Instant::now();
        let mut accepted = Vec::with_capacity(batches.len());
        let mut refused: Option<(String, Vec<Batch>)> = None;
        {
            let Some(log) = self.log.as_mut() else {
                for batch in batches {
                    self.parts.host.refuse(
                        batch.effects,
                        batch.shard,
                        "its log group is recovering",
                    );
                }
                return;
            };
            let mut batches = batches.into_iter();
            while let Some(batch) = batches.next() {
                if !self.epochs.admits(batch.shard, batch.epoch) {
                    self.parts
                        .host
                        .refuse(batch.effects, batch.shard, "its shard was recovering");
                    continue;
                }
                if let Some(e) = &batch.broken {
                    // Its core holds what the record should have made
                    // durable: rebuild the group's shards from the log.
                    let reason = format!("a log record could not be encoded: {e}");
                    let mut rest = vec![batch];
                    rest.extend(batches);
                    refused = Some((reason, rest));
                    break;
                }
                let mut last = self.last_appended;
                #[cfg(feature = "cluster")]
                let barrier = (self.parts.config.read_barrier
                    && batch.records.is_empty()
                    && !batch.effects.replies.is_empty())
                .then_some(Vec::new());
                #[cfg(not(feature = "cluster"))]
                let barrier: Option<Vec<u8>> = None;
                let appended = batch.records.iter().chain(&barrier).try_for_each(|record| {
                    last = log.append(record)?;
                    Ok::<(), LogError>(())
                });
                if let Err(e) = appended {
                    let mut rest = vec![batch];
                    rest.extend(batches);
                    self.fenced = matches!(e, LogError::Fenced { .. });
                    refused = Some((format!("the log refused a record: {e}"), rest));
                    break;
                }
                self.last_appended = last;
                accepted.push((batch, last));
            }
        }
        if let Some((reason, rest)) = refused {
            let mut all: Vec<Batch> = accepted.into_iter().map(|(b, _)| b).collect();
            all.extend(rest);
            return self.fail(all, &reason);
        }
        if accepted.is_empty() {
            return;
        }
        let invocations: usize = accepted.iter().map(|(b, _)| b.records.len()).sum();
        self.metrics
            .batch
            .record(|histogram| histogram.record(invocations as f64));
        let appended = Instant::now();
        let (write, sync) = match self.flush(accepted.iter().any(|(b, _)| b.checkpoint.is_some())) {
            Ok(times) => times,
            Err(e) => return self.flush_failed(accepted, e),
        };
        let releasing = Instant::now();
        self.parts
            .stats
            .phases
            .committed(invocations, [appended.duration_since(started), write, sync]);
        // Periodic mode may leave the records unsynced: the replies leave
        // (its promise is about a machine crash), what others would act on
        // waits for the sync. Once synced, what earlier batches held goes
        // first.
        //
        // One release for the whole commit, not one per batch: every ack
        // is published first, then the batches' effects leave together,
        // kind by kind in batch order (`Effects::absorb`; the order of the
        // kinds is `RuntimeInner::release`'s). The callers' wake-ups then
        // come in one burst at the end of the commit instead of one per
        // batch between the others' bookkeeping (issue 14: ~26 batches
        // per commit at 64 callers).
        let synced = self.unsynced.is_none();
        let mut effects = Effects::default();
        if synced {
            effects = self.take_held();
        }
        let shards = self.parts.storage.shards();
        for (batch, lsn) in accepted {
            effects.absorb(self.committed(batch, lsn, synced, shards));
        }
        self.parts.host.release(effects);
        self.parts.stats.phases.released(releasing.elapsed());
    }

    /// A sync covered the batches whose effects were held: they leave.
    fn release_held(&mut self) {
        let effects = self.take_held();
        self.parts.host.release(effects);
    }

    /// Publishes the acks the held batches kept back and returns their
    /// other effects, merged, for the caller to release.
    fn take_held(&mut self) -> Effects {
        let mut merged = Effects::default();
        for (shard, held) in std::mem::take(&mut self.held) {
            let (acks, effects) = held.into_effects();
            self.parts.host.publish_acks(shard, &acks);
            merged.absorb(effects);
        }
        merged
    }

    /// A batch whose records (up to `lsn`) are durable: publishes its acks
    /// and returns its effects, for the caller to release (with the
    /// commit's other batches'). Unless `synced` (Periodic mode may leave
    /// the records unsynced), what others would act on is held until the
    /// sync.
    #[must_use = "the batch's effects must be released"]
    pub(super) fn committed(
        &mut self,
        batch: Batch,
        lsn: Lsn,
        synced: bool,
        shards: u16,
    ) -> Effects {
        if let Some(observe) = &self.parts.observer {
            observe(&batch.records);
        }
        let mut effects = batch.effects;
        if synced {
            self.parts.host.publish_acks(batch.shard, &effects.acks);
        } else {
            let storage = &self.parts.storage;
            let local = |shard| storage.group_of(shard) == self.group;
            self.held.push((batch.shard, effects.hold(local, shards)));
        }
        if let Some(mut job) = batch.checkpoint {
            job.lsn = lsn;
            self.parts.checkpoints.submit(job);
        }
        effects
    }

    /// Flushes what was appended and, unless `Periodic` mode may wait (no
    /// checkpoint rides on it), waits until it is durable. Returns how long
    /// the flush's write and the wait took.
    fn flush(&mut self, checkpoint: bool) -> Result<(Duration, Duration), LogError> {
        let Some(log) = self.log.as_mut() else {
            return Ok((Duration::ZERO, Duration::ZERO));
        };
        let started = Instant::now();
        let pending = log.flush()?;
        let written = Instant::now();
        let write = written.duration_since(started);
        match self.parts.config.mode {
            Durability::Periodic(_) if !checkpoint => {
                self.unsynced = Some(pending);
                Ok((write, Duration::ZERO))
            }
            _ => {
                self.unsynced = None;
                let durable = pending.wait();
                let sync = written.elapsed();
                self.metrics
                    .fsync
                    .record(|histogram| histogram.record(sync.as_secs_f64()));
                durable.map(|_| {
                    self.last_sync = Instant::now();
                    (write, sync)
                })
            }
        }
    }

    fn publish_stats(&self) {
        if let Some(log) = &self.log {
            let stats = log.stats();
            self.parts.stats.bytes.store(stats.bytes, Ordering::Relaxed);
            self.parts
                .stats
                .pieces
                .store(stats.pieces, Ordering::Relaxed);
        }
    }

    fn periodic_sync(&mut self) {
        if let Durability::Periodic(interval) = self.parts.config.mode
            && self.last_sync.elapsed() >= interval
        {
            self.periodic_sync_now();
        }
    }

    fn periodic_sync_now(&mut self) {
        if let Some(pending) = self.unsynced.take() {
            match pending.wait() {
                Ok(_) => {
                    self.last_sync = Instant::now();
                    self.release_held();
                }
                Err(e) => {
                    self.fenced = matches!(e, LogError::Fenced { .. });
                    self.recover(&format!("the log failed to sync: {e}"));
                }
            }
        }
    }

    fn checkpointed(&mut self, shard: ShardId, lsn: Lsn) {
        self.checkpointed.insert(shard, lsn);
        let Some(oldest) = self.checkpointed.values().min().copied() else {
            return;
        };
        if let Some(log) = self.log.as_mut()
            && let Err(e) = log.truncate_before(oldest.next())
        {
            tracing::warn!(group = %self.group, error = %e, "cannot delete checkpointed log segments; will retry");
        }
    }

    /// Asks every shard of the group to checkpoint when the log is large, or
    /// on the interval: idle shards must checkpoint too, or their old
    /// position would keep the log from being truncated.
    fn maybe_request_checkpoints(&mut self) {
        let Some(log) = &self.log else { return };
        let oldest = self
            .checkpointed
            .values()
            .min()
            .copied()
            .unwrap_or_default();
        let behind = self.last_appended > oldest;
        let now_ms = self.parts.clock.now_ms();
        let large = log.stats().bytes >= self.parts.config.checkpoint_log_bytes
            && self.last_checkpoint_request.elapsed() >= Duration::from_secs(1);
        let due = behind
            && Duration::from_millis(now_ms.saturating_sub(self.last_checkpoint_request_ms))
                >= self.parts.config.checkpoint_interval;
        if large || due {
            self.last_checkpoint_request = Instant::now();
            self.last_checkpoint_request_ms = now_ms;
            for shard in self.epochs.shards() {
                self.parts.host.request_checkpoint(shard);
            }
        }
    }
}

impl Service for Syncer {
    fn name(&self) -> String {
        format!("statefn-log-{}", self.group)
    }

    fn tick(&self) -> Duration {
        TICK
    }

    fn after_panic(&mut self) -> Step {
        if self.stopping {
            return Step::Done;
        }
        // What the panicking step held is gone: rebuild the group from what
        // is durable, as after a log failure.
        self.recover("the log group's syncer panicked (a statefn bug)");
        Step::Worked
    }

    fn step(&mut self, wait: Duration) -> Step {
        let rx = self.parts.rx.clone();
        let first = if wait.is_zero() {
            None
        } else {
            match rx.recv_timeout(self.tick(wait)) {
                Ok(command) => Some(command),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return Step::Done,
            }
        };
        let commands: Vec<GroupCommand> = first.into_iter().chain(rx.try_iter()).collect();
        let worked = !commands.is_empty();
        if self.handle(commands) {
            Step::Done
        } else if worked {
            Step::Worked
        } else {
            self.prepare_log();
            Step::Idle
        }
    }
}

impl Syncer {
    /// Idle: lets the log do ahead of time what a commit would otherwise
    /// wait for (write and sync the next chunk of zeros of its segment). A
    /// failure there is a log failure: the group is rebuilt from what is
    /// durable, as after a failed commit.
    fn prepare_log(&mut self) {
        if self.stopping {
            return;
        }
        if let Some(log) = self.log.as_mut()
            && let Err(e) = log.prepare()
        {
            self.fenced = matches!(e, LogError::Fenced { .. });
            self.recover(&format!("the log failed while preparing ahead: {e}"));
        }
    }
}
