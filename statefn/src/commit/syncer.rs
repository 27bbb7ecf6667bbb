//! A log group's syncer: group commit for the shards of the group.
//!
//! Workers hand it whole batches (records + effects) in order. It appends
//! every waiting batch, flushes once and waits once for the flush to be
//! durable, then releases their effects: replies, outgoing messages, acks,
//! timers and egress leave only when durable. Workers go on with their next
//! batches meanwhile (pipelining). With `Builder::pipelined_commits` (and
//! `Durability::Fsync`), two committers share the syncer so that the next
//! batches are written while the previous flush is synced
//! ([`in_flight`](super::in_flight)). When the
//! log fails it hands over to [`failover`](super::failover); other groups go
//! on.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use statefn_store::{CommitLog, LogError, Lsn, PendingFlush};

use super::{
    CommitConfig, CommitHost, CommitObserver, Durability, OpenedGroup,
    checkpointer::CheckpointQueue,
    in_flight::InFlight,
    log_group::{GroupCommand, GroupStats},
    recovery::Storage,
};
use crate::{
    clock::Clock,
    protocol::{
        epoch::ShardEpochs,
        ids::{LogGroupId, ShardId},
    },
    service::Step,
    shard::effects::{Batch, Held},
};

/// How often the syncer looks at timers (periodic sync, checkpoint triggers)
/// when idle.
pub(super) const TICK: Duration = Duration::from_millis(50);

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
}

/// Commits one log group's batches; run by one or two
/// [`Committer`](super::in_flight::Committer)s.
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
    /// Flushes are handed to the committer to wait for outside the lock
    /// (`Durability::Fsync` with two committers), rather than waited for here.
    pub(super) pipelined: bool,
    /// Failovers so far: a flush in flight when the log failed is refused,
    /// whatever its own wait returned.
    pub(super) failovers: Arc<AtomicU64>,
    /// The ticket of the next flush handed out: flushes are released in
    /// this order.
    next_ticket: u64,
    /// A committer saw `Stop` (or stopped during a recovery): every
    /// committer of the group is done.
    pub(super) finished: bool,
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
    pub(crate) fn new(parts: Parts, opened: OpenedGroup, pipelined: bool) -> Self {
        let mut epochs = ShardEpochs::default();
        let mut checkpointed = BTreeMap::new();
        for (shard, epoch, lsn) in opened.shards {
            epochs.set(shard, epoch);
            checkpointed.insert(shard, lsn);
        }
        let now_ms = parts.clock.now_ms();
        let fsync = parts.config.mode == Durability::Fsync;
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
            pipelined: pipelined && fsync,
            failovers: Arc::default(),
            next_ticket: 0,
            finished: false,
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
    /// their batches. Returns whether the syncer is done, and the flush to
    /// wait for when pipelined.
    fn handle(&mut self, commands: Vec<GroupCommand>) -> (bool, Option<InFlight>) {
        let mut batches = Vec::new();
        let mut stop = false;
        for command in commands {
            match command {
                GroupCommand::Commit(batch) => batches.push(batch),
                GroupCommand::Checkpointed { shard, lsn } => self.checkpointed(shard, lsn),
                GroupCommand::Stop => stop = true,
            }
        }
        let flight = if batches.is_empty() {
            None
        } else {
            self.commit(batches)
        };
        if self.stopping {
            return (true, flight);
        }
        self.periodic_sync();
        self.maybe_request_checkpoints();
        self.publish_stats();
        if stop {
            self.periodic_sync_now();
        }
        (stop, flight)
    }

    /// Appends and flushes `batches`; unless pipelined, also waits until
    /// durable and releases them. Pipelined, returns the flush for a
    /// committer to wait for and release outside the lock.
    fn commit(&mut self, batches: Vec<Batch>) -> Option<InFlight> {
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
                return None;
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
                let appended = batch.records.iter().try_for_each(|record| {
                    last = log.append(record)?;
                    Ok::<(), LogError>(())
                });
                if let Err(e) = appended {
                    let mut rest = vec![batch];
                    rest.extend(batches);
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
            self.fail(all, &reason);
            return None;
        }
        if accepted.is_empty() {
            return None;
        }
        let invocations: usize = accepted.iter().map(|(b, _)| b.records.len()).sum();
        metrics::histogram!(crate::metrics::COMMIT_BATCH).record(invocations as f64);
        if self.pipelined {
            return match self.log.as_mut().map(|log| log.flush()) {
                Some(Ok(pending)) => {
                    let ticket = self.next_ticket;
                    self.next_ticket += 1;
                    Some(InFlight {
                        pending,
                        batches: accepted,
                        ticket,
                        failovers: self.failovers.load(Ordering::Acquire),
                    })
                }
                Some(Err(e)) => {
                    let batches = accepted.into_iter().map(|(b, _)| b).collect();
                    self.fail(batches, &format!("the log failed: {e}"));
                    None
                }
                None => None,
            };
        }
        if let Err(e) = self.flush(accepted.iter().any(|(b, _)| b.checkpoint.is_some())) {
            let batches = accepted.into_iter().map(|(b, _)| b).collect();
            self.fail(batches, &format!("the log failed: {e}"));
            return None;
        }
        // Periodic mode may leave the records unsynced: the replies leave
        // (its promise is about a machine crash), what others would act on
        // waits for the sync. Once synced, what earlier batches held goes
        // first.
        let synced = self.unsynced.is_none();
        if synced {
            self.release_held();
        }
        let shards = self.parts.storage.shards();
        for (batch, lsn) in accepted {
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
            self.parts.host.release(effects);
        }
        None
    }

    /// A sync covered the batches whose effects were held: they leave.
    fn release_held(&mut self) {
        for (shard, held) in std::mem::take(&mut self.held) {
            let (acks, effects) = held.into_effects();
            self.parts.host.publish_acks(shard, &acks);
            self.parts.host.release(effects);
        }
    }

    /// Flushes what was appended and, unless `Periodic` mode may wait (no
    /// checkpoint rides on it), waits until it is durable.
    fn flush(&mut self, checkpoint: bool) -> Result<(), LogError> {
        let Some(log) = self.log.as_mut() else {
            return Ok(());
        };
        let pending = log.flush()?;
        match self.parts.config.mode {
            Durability::Periodic(_) if !checkpoint => {
                self.unsynced = Some(pending);
                Ok(())
            }
            _ => {
                self.unsynced = None;
                let started = Instant::now();
                let durable = pending.wait();
                metrics::histogram!(crate::metrics::FSYNC_DURATION)
                    .record(started.elapsed().as_secs_f64());
                durable.map(|_| self.last_sync = Instant::now())
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
                Err(e) => self.recover(&format!("the log failed to sync: {e}")),
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

impl Syncer {
    /// One step of a committer, under the syncer's lock: waits up to `wait`
    /// for commands and handles every one that arrived. Returns the flush to
    /// wait for outside the lock, if pipelined.
    pub(super) fn step_locked(&mut self, wait: Duration) -> (Step, Option<InFlight>) {
        if self.finished {
            return (Step::Done, None);
        }
        let rx = self.parts.rx.clone();
        let first = if wait.is_zero() {
            None
        } else {
            match rx.recv_timeout(self.tick(wait)) {
                Ok(command) => Some(command),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    self.finished = true;
                    return (Step::Done, None);
                }
            }
        };
        let commands: Vec<GroupCommand> = first.into_iter().chain(rx.try_iter()).collect();
        let worked = !commands.is_empty();
        let (done, flight) = self.handle(commands);
        if done {
            self.finished = true;
            (Step::Done, flight)
        } else if worked {
            (Step::Worked, flight)
        } else {
            (Step::Idle, flight)
        }
    }
}

/// Releases one durable batch: acks, its checkpoint (at its last record's
/// position), then its effects.
pub(super) fn release_one(
    host: &dyn CommitHost,
    checkpoints: &CheckpointQueue,
    observer: Option<&CommitObserver>,
    batch: Batch,
    lsn: Lsn,
) {
    if let Some(observe) = observer {
        observe(&batch.records);
    }
    host.publish_acks(batch.shard, &batch.effects.acks);
    if let Some(mut job) = batch.checkpoint {
        job.lsn = lsn;
        checkpoints.submit(job);
    }
    host.release(batch.effects);
}
