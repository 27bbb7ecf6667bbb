//! A log group's syncer thread: group commit for the shards of the group.
//!
//! Workers hand it whole batches (records + effects) in order. It appends
//! every waiting batch, writes once and syncs once, then releases their
//! effects: replies and outgoing messages leave only when durable. Workers
//! go on with their next batches meanwhile (pipelining). On a write or sync
//! failure it refuses the batches in flight, rebuilds its shards from
//! checkpoint and log with backoff, and resumes them; other groups go on.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use statefn_store::{CommitLog, Lsn, PendingFlush};

use super::Durability;
use crate::{
    Error,
    runtime::RuntimeInner,
    shard::{Batch, Effects},
};

/// What a log group's syncer is asked to do.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // Commit is the hot path; boxing it costs an allocation per batch
pub(crate) enum GroupCommand {
    Commit(Batch),
    /// A shard's checkpoint covers its records up to `lsn`.
    Checkpointed {
        shard: u16,
        lsn: u64,
    },
    Stop,
}

/// The handle to one log group's syncer.
#[derive(Debug)]
pub(crate) struct LogGroup {
    /// Bytes and segments of the log, published by the syncer for status.
    pub(crate) log_bytes: AtomicU64,
    pub(crate) log_segments: AtomicU64,
    tx: Sender<GroupCommand>,
    rx: Mutex<Option<Receiver<GroupCommand>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Manual mode: the syncer, run by the test driver instead of a thread.
    manual: Mutex<Option<Syncer>>,
}

impl LogGroup {
    pub(crate) fn new() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        LogGroup {
            log_bytes: AtomicU64::new(0),
            log_segments: AtomicU64::new(0),
            tx,
            rx: Mutex::new(Some(rx)),
            thread: Mutex::new(None),
            manual: Mutex::new(None),
        }
    }

    /// Hands a batch to the syncer. If it has stopped, the batch is refused.
    pub(crate) fn submit(&self, inner: &RuntimeInner, batch: Batch) {
        if let Err(e) = self.tx.send(GroupCommand::Commit(batch)) {
            if let GroupCommand::Commit(batch) = e.into_inner() {
                inner.refuse(batch.effects, batch.shard, "the runtime is stopping");
            }
        }
    }

    pub(crate) fn send(&self, command: GroupCommand) {
        let _ = self.tx.send(command);
    }

    /// Starts the syncer thread for `group`, owning its log.
    pub(crate) fn start(
        &self,
        inner: &Arc<RuntimeInner>,
        group: u16,
        log: Box<dyn CommitLog>,
        positions: &[(u16, u64, u64)],
    ) -> std::io::Result<()> {
        let Some(syncer) = self.syncer(inner, group, log, positions) else {
            return Ok(());
        };
        let thread = std::thread::Builder::new()
            .name(format!("statefn-log-{group}"))
            .spawn(move || syncer.run())?;
        *self.thread.lock() = Some(thread);
        Ok(())
    }

    /// Manual mode: keeps the syncer for [`pump`](Self::pump) instead of
    /// starting a thread.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn start_manual(
        &self,
        inner: &Arc<RuntimeInner>,
        group: u16,
        log: Box<dyn CommitLog>,
        positions: &[(u16, u64, u64)],
    ) {
        *self.manual.lock() = self.syncer(inner, group, log, positions);
    }

    /// Manual mode: commits what was handed over, on the calling thread.
    /// Returns whether there was anything.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn pump(&self) -> bool {
        let mut manual = self.manual.lock();
        let Some(syncer) = manual.as_mut() else {
            return false;
        };
        let commands: Vec<GroupCommand> = syncer.rx.try_iter().collect();
        let any = !commands.is_empty();
        if syncer.step(commands) {
            manual.take();
        }
        any
    }

    fn syncer(
        &self,
        inner: &Arc<RuntimeInner>,
        group: u16,
        log: Box<dyn CommitLog>,
        positions: &[(u16, u64, u64)],
    ) -> Option<Syncer> {
        let rx = self.rx.lock().take()?;
        Some(Syncer {
            last_appended: log.durable_lsn(),
            inner: Arc::clone(inner),
            group,
            epochs: positions.iter().map(|&(s, epoch, _)| (s, epoch)).collect(),
            checkpoints: positions.iter().map(|&(s, _, lsn)| (s, lsn)).collect(),
            log: Some(log),
            rx,
            stopping: false,
            unsynced: None,
            last_sync: Instant::now(),
            last_checkpoint_request: Instant::now(),
            last_checkpoint_request_ms: inner.clock.now_ms(),
        })
    }

    /// Stops the syncer after it has committed what it was given.
    /// In manual mode the syncer is dropped with what it was not pumped:
    /// uncommitted, as in a crash.
    pub(crate) fn stop(&self) -> Option<JoinHandle<()>> {
        let _ = self.tx.send(GroupCommand::Stop);
        self.manual.lock().take();
        self.thread.lock().take()
    }
}

struct Syncer {
    inner: Arc<RuntimeInner>,
    group: u16,
    /// The epoch of each shard's current core: batches of older cores are
    /// refused. (Ordered maps: a seeded test run must not depend on hashing.)
    epochs: BTreeMap<u16, u64>,
    checkpoints: BTreeMap<u16, u64>,
    /// The group's log; `None` while it is being recovered.
    log: Option<Box<dyn CommitLog>>,
    /// The position of the last record appended (positions need not be
    /// dense: always the one `append` returned).
    last_appended: Lsn,
    rx: Receiver<GroupCommand>,
    /// A `Stop` arrived (possibly during a recovery).
    stopping: bool,
    /// Periodic mode: flushed but not yet known durable (the latest flush
    /// covers the earlier ones).
    unsynced: Option<PendingFlush>,
    last_sync: Instant,
    /// Real time: spaces out requests for I/O reasons (a large log).
    last_checkpoint_request: Instant,
    /// The runtime's clock (virtual in tests), as the checkpoint interval is.
    last_checkpoint_request_ms: u64,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer")
            .field("group", &self.group)
            .field("recovering", &self.log.is_none())
            .finish_non_exhaustive()
    }
}

/// How often the syncer looks at timers (periodic sync, checkpoint triggers)
/// when idle.
const TICK: Duration = Duration::from_millis(50);

impl Syncer {
    fn run(mut self) {
        let rx = self.rx.clone();
        loop {
            let first = match rx.recv_timeout(self.tick()) {
                Ok(command) => Some(command),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if self.step(first.into_iter().chain(rx.try_iter()).collect()) {
                return;
            }
        }
    }

    /// Handles the commands that arrived together: one group commit for all
    /// their batches. Returns whether the syncer is done.
    fn step(&mut self, commands: Vec<GroupCommand>) -> bool {
        let mut batches = Vec::new();
        let mut stop = false;
        for command in commands {
            match command {
                GroupCommand::Commit(batch) => batches.push(batch),
                GroupCommand::Checkpointed { shard, lsn } => self.checkpointed(shard, lsn),
                GroupCommand::Stop => stop = true,
            }
        }
        if !batches.is_empty() {
            self.commit(batches);
        }
        if self.stopping {
            return true;
        }
        self.periodic_sync();
        self.maybe_request_checkpoints();
        self.publish_size();
        if stop {
            self.periodic_sync_now();
        }
        stop
    }

    fn durable(&self) -> &super::Durable {
        self.inner
            .durable
            .as_ref()
            .unwrap_or_else(|| unreachable!("log groups exist only in durable mode"))
    }

    fn tick(&self) -> Duration {
        match self.durable().mode {
            Durability::Periodic(interval) if self.unsynced.is_some() => {
                interval.saturating_sub(self.last_sync.elapsed()).min(TICK)
            }
            _ => TICK,
        }
    }

    fn commit(&mut self, batches: Vec<Batch>) {
        let mut accepted = Vec::with_capacity(batches.len());
        let mut failed: Option<(String, Vec<Batch>)> = None;
        {
            let Some(log) = self.log.as_mut() else {
                for batch in batches {
                    self.inner
                        .refuse(batch.effects, batch.shard, "its log group is recovering");
                }
                return;
            };
            let mut batches = batches.into_iter();
            while let Some(batch) = batches.next() {
                if self.epochs.get(&batch.shard) != Some(&batch.epoch) {
                    self.inner
                        .refuse(batch.effects, batch.shard, "its shard was recovering");
                    continue;
                }
                let mut last = self.last_appended;
                let appended = batch.records.iter().try_for_each(|record| {
                    last = log.append(record)?;
                    Ok::<(), statefn_store::LogError>(())
                });
                if let Err(e) = appended {
                    let mut rest = vec![batch];
                    rest.extend(batches);
                    failed = Some((format!("the log refused a record: {e}"), rest));
                    break;
                }
                self.last_appended = last;
                accepted.push((batch, last));
            }
        }
        if let Some((reason, rest)) = failed {
            accepted.extend(rest.into_iter().map(|b| (b, Lsn(0))));
            return self.fail(accepted, &reason);
        }
        if accepted.is_empty() {
            return;
        }
        let invocations: usize = accepted.iter().map(|(b, _)| b.records.len()).sum();
        metrics::histogram!(crate::metrics::COMMIT_BATCH).record(invocations as f64);
        let Some(log) = self.log.as_mut() else { return };
        let flushed = log.flush();
        let result = flushed.and_then(|pending| match self.durable().mode {
            Durability::Periodic(_) if !accepted.iter().any(|(b, _)| b.checkpoint.is_some()) => {
                // Waiting for this flush later covers the earlier ones.
                self.unsynced = Some(pending);
                Ok(())
            }
            _ => {
                self.unsynced = None;
                let started = Instant::now();
                let synced = pending.wait();
                metrics::histogram!(crate::metrics::FSYNC_DURATION)
                    .record(started.elapsed().as_secs_f64());
                synced.map(|_| self.last_sync = Instant::now())
            }
        });
        if let Err(e) = result {
            return self.fail(accepted, &format!("the log failed: {e}"));
        }
        for (batch, lsn) in accepted {
            if let Some(committed) = &self.inner.committed {
                committed.lock().extend(batch.records.iter().cloned());
            }
            self.inner.publish_acks(batch.shard, &batch.effects.acks);
            if let Some(mut job) = batch.checkpoint {
                job.lsn = lsn.0;
                self.durable().checkpointer.submit(job);
            }
            self.inner.release(batch.effects);
        }
    }

    /// The log failed under these batches: none of them commits.
    fn fail(&mut self, batches: Vec<(Batch, Lsn)>, reason: &str) {
        // Down first, so that no caller told to retry gets in before.
        self.take_down(reason);
        for (batch, _) in batches {
            self.inner.refuse(batch.effects, batch.shard, reason);
        }
        self.recover(reason);
    }

    fn publish_size(&self) {
        if let Some(log) = &self.log {
            let stats = log.stats();
            let group = &self.durable().groups[usize::from(self.group)];
            group.log_bytes.store(stats.bytes, Ordering::Relaxed);
            group.log_segments.store(stats.pieces, Ordering::Relaxed);
        }
    }

    fn periodic_sync(&mut self) {
        if let Durability::Periodic(interval) = self.durable().mode
            && self.last_sync.elapsed() >= interval
        {
            self.periodic_sync_now();
        }
    }

    fn periodic_sync_now(&mut self) {
        if let Some(pending) = self.unsynced.take() {
            match pending.wait() {
                Ok(_) => self.last_sync = Instant::now(),
                Err(e) => self.recover(&format!("the log failed to sync: {e}")),
            }
        }
    }

    fn checkpointed(&mut self, shard: u16, lsn: u64) {
        self.checkpoints.insert(shard, lsn);
        let Some(oldest) = self.checkpoints.values().min().copied() else {
            return;
        };
        if let Some(log) = self.log.as_mut()
            && let Err(e) = log.truncate_before(Lsn(oldest + 1))
        {
            tracing::warn!(group = self.group, error = %e, "cannot delete checkpointed log segments; will retry");
        }
    }

    /// Asks every shard of the group to checkpoint when the log is large, or
    /// on the interval: idle shards must checkpoint too, or their old
    /// position would keep the log from being truncated.
    fn maybe_request_checkpoints(&mut self) {
        let Some(log) = &self.log else { return };
        let durable = self.durable();
        let oldest = self.checkpoints.values().min().copied().unwrap_or(0);
        let behind = self.last_appended.0 > oldest;
        let now_ms = self.inner.clock.now_ms();
        let large = log.stats().bytes >= durable.checkpoint_log_bytes
            && self.last_checkpoint_request.elapsed() >= Duration::from_secs(1);
        let due = behind
            && Duration::from_millis(now_ms.saturating_sub(self.last_checkpoint_request_ms))
                >= durable.core.checkpoint_interval;
        if large || due {
            self.last_checkpoint_request = Instant::now();
            self.last_checkpoint_request_ms = now_ms;
            for shard in self.epochs.keys() {
                self.inner.request_checkpoint(*shard);
            }
        }
    }

    /// Marks the group's shards as recovering and refuses the client calls
    /// waiting for them.
    fn take_down(&self, reason: &str) {
        for &shard in self.epochs.keys() {
            let refused = self.inner.shard(shard).take_down();
            let count = refused.len();
            let effects = Effects {
                replies: refused.into_iter().map(|tx| (tx, Ok(Vec::new()))).collect(),
                finished: count,
                ..Effects::default()
            };
            self.inner.refuse(effects, shard, reason);
        }
    }

    /// Takes the group's shards down, rebuilds them from checkpoint and log
    /// (retrying with backoff), and resumes them.
    fn recover(&mut self, reason: &str) {
        tracing::error!(
            group = self.group,
            reason,
            "log group failed; recovering its shards"
        );
        self.take_down(reason);
        self.log = None;
        self.unsynced = None;
        let epoch = self.epochs.values().max().copied().unwrap_or(0) + 1;
        let mut backoff = Duration::from_millis(20);
        let (log, cores) = loop {
            match self.durable().recover(self.group, epoch) {
                Ok(recovered) => break recovered,
                Err(e) => {
                    tracing::warn!(group = self.group, error = %e, ?backoff, "recovery failed; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            // Batches handed over before the shards went down: their callers
            // must not wait for the disk to come back.
            for command in self.rx.clone().try_iter() {
                match command {
                    GroupCommand::Commit(batch) => {
                        self.inner.refuse(batch.effects, batch.shard, reason);
                    }
                    GroupCommand::Checkpointed { .. } => {}
                    GroupCommand::Stop => self.stopping = true,
                }
            }
            if self.stopping {
                tracing::warn!(
                    group = self.group,
                    "stopping while recovering; the shards stay down"
                );
                return;
            }
        };
        for core in cores {
            self.epochs.insert(core.id, core.epoch);
            self.checkpoints.insert(core.id, core.checkpoint.lsn);
            let shard = self.inner.shard(core.id);
            let resend: Vec<_> = core.outbox.values().cloned().collect();
            let timers: Vec<_> = core
                .timers
                .values()
                .map(|t| (t.due_ms, core.id, t.id))
                .collect();
            let egress: Vec<_> = core.pending_egress.values().cloned().collect();
            *shard.core.lock() = core;
            self.inner.egress.submit(egress);
            self.inner.after_recovery(shard.id, resend, timers, true);
        }
        self.last_appended = log.durable_lsn();
        self.log = Some(log);
        self.inner.recoveries.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::metrics::RECOVERIES).increment(1);
        tracing::info!(group = self.group, "log group recovered; serving again");
    }
}

/// Effects of a batch that will not commit: callers are told to retry.
pub(crate) fn refused_effects(effects: Effects, shard: u16, reason: &str) -> Effects {
    let replies = effects
        .replies
        .into_iter()
        .map(|(tx, _)| {
            (
                tx,
                Err(Error::Unavailable {
                    shard,
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
        deliveries: Vec::new(),
        timers: Vec::new(),
        acks: Vec::new(),
        egress: Vec::new(),
        finished: effects.finished,
    }
}
