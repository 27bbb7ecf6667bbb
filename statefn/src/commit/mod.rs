//! The commit path (durable mode): log groups that group-commit batches to
//! their logs, the checkpointer, recovery and failover.
//!
//! Shards keep their own logical log (records tagged with the shard), their
//! own checkpoints and their own recovery position, but shards of one *log
//! group* share a physical log: on one disk every `fdatasync` is a device
//! flush, and measured here one flush per shard per commit multiplied commit
//! latency by the shard count (16 files: 3.8 ms vs 0.2 ms). A log group is
//! also the I/O failure domain: it is taken down and recovered alone.
//!
//! | step | file |
//! | --- | --- |
//! | a batch reaches its group | [`log_group`] |
//! | append, flush, wait until durable, then release | [`syncer`] |
//! | the log failed: refuse, take down, recover, resume | [`failover`] |
//! | write frozen checkpoints, then let the log truncate | [`checkpointer`] |
//! | rebuild a group's shards from checkpoint and log | [`recovery`] |
//! | cluster mode: follow a group served elsewhere, as a standby | [`standby`] |
//! | at open: upgrade or set aside stored messages this build cannot read | [`stored_messages`] |
//!
//! The commit path talks to the log only through
//! [`CommitLog`](statefn_store::CommitLog), and to the runtime only through
//! [`CommitHost`].

pub(crate) mod checkpointer;
mod failover;
pub(crate) mod log_group;
mod low_priority;
pub(crate) mod recovery;
#[cfg(test)]
mod release_tests;
#[cfg_attr(
    not(feature = "cluster"),
    expect(dead_code, reason = "standbys exist in cluster mode only")
)]
pub(crate) mod standby;
pub(crate) mod store_faults;
pub(crate) mod stored_messages;
pub(crate) mod syncer;
#[cfg(test)]
mod tests;

use std::{sync::Arc, time::Duration};

use statefn_store::CommitLog;

pub(crate) use self::log_group::LogGroup;
use self::{
    checkpointer::{CheckpointQueue, Checkpointer},
    recovery::Storage,
    syncer::Syncer,
};
use crate::{
    clock::Clock,
    protocol::{
        envelope::ReplySender,
        ids::{Epoch, LogGroupId, Lsn, Seq, ShardId},
    },
    service::Service,
    shard::{ShardCore, effects::Batch, effects::Effects},
};

/// When a committed invocation is on disk.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use statefn::Durability;
///
/// let default = Durability::default();
/// assert_eq!(default, Durability::Fsync);
/// let relaxed = Durability::Periodic(Duration::from_millis(5));
/// # let _ = relaxed;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// A reply means the invocation's log record was `fdatasync`ed (one
    /// group commit covers many invocations): nothing acknowledged is lost.
    #[default]
    Fsync,
    /// Replies are released once the record is written to the OS, and the
    /// log is synced at least every interval: a process crash loses nothing,
    /// a machine crash (or a failed sync) loses at most the last interval.
    /// What lets another party act on a commit waits for the sync that
    /// covers it: messages to shards of other log groups, egress records,
    /// acks, timers and the dead-letter listing; so a lost interval takes
    /// nothing with it that others had seen.
    Periodic(Duration),
    /// Nothing survives the process: for tests and caches.
    InMemory,
}

/// What the commit path needs from the runtime, and nothing else: it
/// releases or refuses batches, publishes acks, and hands recovered shards
/// back.
pub(crate) trait CommitHost: Send + Sync + 'static {
    /// Releases a committed batch's effects.
    fn release(&self, effects: Effects);
    /// Answers a batch of `shard` that will not commit: its callers are told
    /// to retry.
    fn refuse(&self, effects: Effects, shard: ShardId, reason: &str);
    /// Records that `dest` has durably applied these messages.
    fn publish_acks(&self, dest: ShardId, acks: &[(ShardId, Seq)]);
    /// Asks `shard` to freeze a checkpoint at the end of its next batch.
    fn request_checkpoint(&self, shard: ShardId);
    /// Marks `shard` recovering; returns the client calls that were waiting
    /// in its mailbox (to be refused).
    fn take_down(&self, shard: ShardId) -> Vec<ReplySender>;
    /// Installs a rebuilt core and lets its shard serve again (after it
    /// re-sent its outbox and re-armed its timers).
    fn resume(&self, core: ShardCore);
    /// A checkpoint of `shard` was written up to `lsn`, or failed (`None`).
    fn checkpoint_finished(&self, shard: ShardId, epoch: Epoch, lsn: Option<Lsn>);
    /// A log group recovered after a failure.
    fn count_recovery(&self);
    /// Whether the runtime is shutting down: a group that cannot recover
    /// then gives up instead of holding shutdown up.
    fn closing(&self) -> bool;
    /// Gives `shard` up until the next open (its group could not recover
    /// and the runtime shuts down): its mail is dropped, its callers told.
    fn abandon(&self, shard: ShardId);
    /// Answers a batch of `shard` whose commit the log could not confirm:
    /// its callers are told the outcome is unknown.
    fn refuse_unknown(&self, effects: Effects, shard: ShardId, reason: &str);
}

/// Cluster mode: what a group's syncer does when its log fails. It does not
/// reopen the log itself (only a node that won the group's ownership may
/// open it, at the epoch it won): it takes the group's shards down, calls
/// this with whether a newer writer fenced the log, and stops.
#[cfg(feature = "cluster")]
pub(crate) type HandBack = Arc<dyn Fn(LogGroupId, bool, &str) + Send + Sync>;

/// Called with the records of every commit once they are durable (the test
/// kit reads the messages handlers sent from them). Costs nothing when
/// absent.
pub(crate) type CommitObserver = Arc<dyn Fn(&[Vec<u8>]) + Send + Sync>;

/// How the commit path is tuned.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CommitConfig {
    pub(crate) mode: Durability,
    /// Ask for checkpoints of a group once its log holds this many bytes.
    pub(crate) checkpoint_log_bytes: u64,
    /// Ask idle shards for checkpoints this often, so the log can truncate.
    pub(crate) checkpoint_interval: Duration,
    /// Bytes of batches a log group's queue holds at most before workers
    /// wait to run more of its shards' batches.
    pub(crate) queue_bytes: u64,
    /// Cluster mode: a batch with replies but no records appends an empty
    /// record (a barrier) before its replies leave, so that a deposed owner
    /// cannot answer a read from state a newer owner has changed.
    #[cfg(feature = "cluster")]
    pub(crate) read_barrier: bool,
}

/// The durable runtime's commit path, as the workers and the runtime see
/// it: where batches go, and the storage behind.
#[derive(Debug)]
pub(crate) struct Commit {
    pub(crate) storage: Arc<Storage>,
    pub(crate) groups: Arc<[LogGroup]>,
    checkpoints: Arc<CheckpointQueue>,
    config: CommitConfig,
}

/// A log group opened for writing, with the epoch and checkpoint position
/// of each of its shards.
#[derive(Debug)]
pub(crate) struct OpenedGroup {
    pub(crate) group: LogGroupId,
    pub(crate) log: Box<dyn CommitLog>,
    pub(crate) shards: Vec<(ShardId, Epoch, Lsn)>,
}

/// The commit path's background services, not yet running.
pub(crate) struct CommitServices {
    pub(crate) syncers: Vec<Box<dyn Service>>,
    pub(crate) checkpointer: Option<Box<dyn Service>>,
}

impl Commit {
    /// How the commit path is tuned (checkpoint triggers, for standbys).
    #[cfg(feature = "cluster")]
    pub(crate) fn config(&self) -> &CommitConfig {
        &self.config
    }

    pub(crate) fn new(storage: Arc<Storage>, config: CommitConfig) -> Self {
        let groups = (0..storage.log_groups())
            .map(|_| LogGroup::new())
            .collect::<Vec<_>>();
        Commit {
            storage,
            groups: groups.into(),
            checkpoints: Arc::new(CheckpointQueue::new()),
            config,
        }
    }

    /// The log group of `shard`.
    pub(crate) fn group_of(&self, shard: ShardId) -> LogGroupId {
        self.storage.group_of(shard)
    }

    /// The handle to `group`.
    pub(crate) fn group(&self, group: LogGroupId) -> Option<&LogGroup> {
        self.groups.get(group.index())
    }

    /// Waits while `shard`'s log group has more than its bound of batches
    /// queued (a slow disk), or until `give_up` says so: the worker then
    /// takes no more mail, the mailboxes fill, and new calls are refused
    /// with `Overloaded` instead of the queue growing in memory. Called
    /// before the worker takes the shard's core, so that it holds nothing
    /// the syncer may need.
    pub(crate) fn wait_for_room(&self, shard: ShardId, give_up: impl Fn() -> bool) {
        let Some(group) = self.group(self.group_of(shard)) else {
            return;
        };
        while group.queued_bytes() > self.config.queue_bytes
            && group.down_reason().is_none()
            && !give_up()
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Hands a batch to its group's syncer; gives it back if the syncer has
    /// stopped.
    pub(crate) fn submit(&self, batch: Batch) -> Result<(), Box<Batch>> {
        match self.group(self.group_of(batch.shard)) {
            Some(group) => group.submit(batch),
            None => Err(Box::new(batch)),
        }
    }

    /// Asks `group`'s syncer to take its shards down and rebuild them (a
    /// shard's core can no longer be trusted), after committing what it
    /// was given before.
    pub(crate) fn fail_group(&self, group: LogGroupId, reason: String) {
        if let Some(group) = self.group(group) {
            group.fail(reason);
        }
    }

    /// The background services of the commit path: one syncer per opened
    /// group, and the checkpointer.
    pub(crate) fn services(
        &self,
        host: &Arc<dyn CommitHost>,
        opened: Vec<OpenedGroup>,
        clock: &Clock,
        observer: Option<&CommitObserver>,
    ) -> CommitServices {
        let mut syncers: Vec<Box<dyn Service>> = Vec::new();
        for group in opened {
            let Some(handle) = self.group(group.group) else {
                continue;
            };
            let Some(rx) = handle.take_receiver() else {
                continue;
            };
            syncers.push(Box::new(Syncer::new(
                syncer::Parts {
                    host: Arc::clone(host),
                    storage: Arc::clone(&self.storage),
                    checkpoints: Arc::clone(&self.checkpoints),
                    stats: handle.stats(),
                    config: self.config,
                    clock: clock.clone(),
                    observer: observer.cloned(),
                    rx,
                    #[cfg(feature = "cluster")]
                    hand_back: None,
                },
                group,
            )));
        }
        let checkpointer = Checkpointer::new(
            Arc::clone(host),
            Arc::clone(&self.storage),
            Arc::clone(&self.groups),
            &self.checkpoints,
        )
        .map(|c| Box::new(c) as Box<dyn Service>);
        CommitServices {
            syncers,
            checkpointer,
        }
    }

    /// The log groups that are down (recovering, or given up at shutdown),
    /// with why.
    pub(crate) fn groups_down(&self) -> Vec<(LogGroupId, String)> {
        self.groups
            .iter()
            .enumerate()
            .filter_map(|(i, g)| {
                let group = LogGroupId(u16::try_from(i).ok()?);
                g.down_reason().map(|reason| (group, reason))
            })
            .collect()
    }

    /// Cluster mode: starts the syncer of a group acquired at runtime on a
    /// thread of its own. When it stops, the group's queue goes back to its
    /// handle for the next syncer.
    #[cfg(feature = "cluster")]
    pub(crate) fn start_syncer(
        &self,
        host: &Arc<dyn CommitHost>,
        opened: OpenedGroup,
        clock: &Clock,
        hand_back: HandBack,
    ) -> Result<std::thread::JoinHandle<()>, crate::Error> {
        let group = opened.group;
        let handle = self
            .group(group)
            .ok_or_else(|| crate::Error::Config(format!("log group {group} does not exist")))?;
        let rx = handle.take_receiver().ok_or_else(|| crate::Error::Thread {
            what: format!("log group {group} already has a syncer"),
            source: None,
        })?;
        let groups = Arc::clone(&self.groups);
        let keep = rx.clone();
        let mut syncer = Syncer::new(
            syncer::Parts {
                host: Arc::clone(host),
                storage: Arc::clone(&self.storage),
                checkpoints: Arc::clone(&self.checkpoints),
                stats: handle.stats(),
                config: self.config,
                clock: clock.clone(),
                observer: None,
                rx,
                hand_back: Some(hand_back),
            },
            opened,
        );
        let tick = Service::tick(&syncer);
        std::thread::Builder::new()
            .name(Service::name(&syncer))
            .spawn(move || {
                while syncer.step(tick) != crate::service::Step::Done {}
                drop(syncer);
                if let Some(handle) = groups.get(group.index()) {
                    handle.put_back_receiver(keep);
                }
            })
            .map_err(|e| crate::Error::Thread {
                what: format!("cannot start the syncer of log group {group}"),
                source: Some(Arc::new(e)),
            })
    }

    /// Tells the syncers to stop once they have committed what they were
    /// given.
    pub(crate) fn stop_syncers(&self) {
        for group in self.groups.iter() {
            group.stop();
        }
    }

    /// Tells the checkpointer to stop once it has written what it was given
    /// (after the syncers stopped: they submit the checkpoints).
    pub(crate) fn stop_checkpointer(&self) {
        self.checkpoints.close();
    }
}
