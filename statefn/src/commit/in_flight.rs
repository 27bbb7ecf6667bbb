//! Flushes in flight: the next batches are written while the previous
//! flush is synced.
//!
//! With one thread per log group, a batch that arrives while the syncer
//! waits for an `fdatasync` waits for that sync to end, then for its own
//! write and sync, then for the release of the batch before it. With
//! `Durability::Fsync`, threads and `Builder::pipelined_commits`, two
//! [`Committer`]s share the group's [`Syncer`] instead: one takes the lock,
//! receives every waiting batch, appends and writes them, and lets go of
//! the lock before it waits for the sync; meanwhile the other takes the
//! lock and writes and syncs the next batches. Whoever's sync returned
//! releases its own batches, so a release is never on the path of the next
//! sync (which already runs on the other thread).
//!
//! Off by default: on the loaded 2-core machine of `BENCHMARKS.md` the
//! handoffs between the two threads (the lock, the release turn) cost far
//! more than the overlap gained.
//!
//! Releases keep the order of the writes (a ticket each): a batch of a
//! shard never leaves before the one the shard wrote before it, whatever
//! order the syncs return in. If the log fails while a flush is in flight,
//! that flush is refused like every batch of the failed log, even when its
//! own sync said it was durable (see [`failover`](super::failover)).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use parking_lot::{Condvar, Mutex};
use statefn_store::{Lsn, PendingFlush};

use super::{
    CommitHost, CommitObserver,
    checkpointer::CheckpointQueue,
    syncer::{Syncer, TICK, release_one},
};
use crate::{
    service::{Service, Step},
    shard::effects::Batch,
};

/// A flush handed out by the syncer: its batches leave once it is durable.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub(super) pending: PendingFlush,
    /// Each batch with the position of its last record.
    pub(super) batches: Vec<(Batch, Lsn)>,
    /// Releases go in ticket order.
    pub(super) ticket: u64,
    /// The group's failover count when it was written.
    pub(super) failovers: u64,
}

/// Whose turn it is to release.
#[derive(Debug, Default)]
struct ReleaseOrder {
    next: Mutex<u64>,
    turn: Condvar,
}

/// Runs a log group's [`Syncer`] on its thread: a [`Service`]. Two of them
/// share one syncer when flushes are pipelined.
pub(crate) struct Committer {
    name: String,
    syncer: Arc<Mutex<Syncer>>,
    order: Arc<ReleaseOrder>,
    failovers: Arc<AtomicU64>,
    host: Arc<dyn CommitHost>,
    checkpoints: Arc<CheckpointQueue>,
    observer: Option<CommitObserver>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Committer {
    /// The committers of `syncer`'s group: two when it pipelines its
    /// flushes, else one.
    pub(crate) fn for_group(syncer: Syncer) -> Vec<Committer> {
        let count = if syncer.pipelined { 2 } else { 1 };
        let group = syncer.group;
        let failovers = Arc::clone(&syncer.failovers);
        let host = Arc::clone(&syncer.parts.host);
        let checkpoints = Arc::clone(&syncer.parts.checkpoints);
        let observer = syncer.parts.observer.clone();
        let syncer = Arc::new(Mutex::new(syncer));
        let order = Arc::new(ReleaseOrder::default());
        (0..count)
            .map(|i| Committer {
                // The first keeps the name it always had.
                name: if i == 0 {
                    format!("statefn-log-{group}")
                } else {
                    format!("statefn-log{}-{group}", i + 1)
                },
                syncer: Arc::clone(&syncer),
                order: Arc::clone(&order),
                failovers: Arc::clone(&failovers),
                host: Arc::clone(&host),
                checkpoints: Arc::clone(&checkpoints),
                observer: observer.clone(),
            })
            .collect()
    }

    /// Waits until `flight` is durable, then, in its turn, releases its
    /// batches, or refuses them if the log failed.
    fn complete(&self, flight: InFlight) {
        let InFlight {
            pending,
            batches,
            ticket,
            failovers,
        } = flight;
        let started = Instant::now();
        let durable = pending.wait();
        metrics::histogram!(crate::metrics::FSYNC_DURATION).record(started.elapsed().as_secs_f64());
        let mut next = self.order.next.lock();
        while *next != ticket {
            self.order.turn.wait(&mut next);
        }
        let failed_over = self.failovers.load(Ordering::Acquire) != failovers;
        match durable {
            Ok(_) if !failed_over => {
                for (batch, lsn) in batches {
                    release_one(
                        self.host.as_ref(),
                        &self.checkpoints,
                        self.observer.as_ref(),
                        batch,
                        lsn,
                    );
                }
            }
            Ok(_) => self.refuse(batches, "its log group failed while it was synced"),
            Err(e) => {
                let reason = format!("the log failed: {e}");
                if !failed_over {
                    let mut syncer = self.syncer.lock();
                    // Unless the other committer took the group down first.
                    if syncer.failovers.load(Ordering::Acquire) == failovers {
                        syncer.take_down(&reason);
                        self.refuse(batches, &reason);
                        *next += 1;
                        self.order.turn.notify_all();
                        drop(next);
                        syncer.recover(&reason);
                        return;
                    }
                }
                self.refuse(batches, &reason);
            }
        }
        *next += 1;
        self.order.turn.notify_all();
    }

    fn refuse(&self, batches: Vec<(Batch, Lsn)>, reason: &str) {
        for (batch, _) in batches {
            self.host.refuse(batch.effects, batch.shard, reason);
        }
    }
}

impl Service for Committer {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn tick(&self) -> Duration {
        TICK
    }

    fn step(&mut self, wait: Duration) -> Step {
        let (step, flight) = self.syncer.lock().step_locked(wait);
        if let Some(flight) = flight {
            self.complete(flight);
        }
        step
    }
}

#[cfg(test)]
mod tests {
    //! Two committers over a log whose flushes the test resolves by hand.

    use std::{sync::Arc, time::Duration};

    use crossbeam_channel::{Receiver, Sender};
    use parking_lot::Mutex;
    use statefn_store::{
        CommitLog, DataDir, Epoch, FlushWait, LogError, LogStats, Lsn, PendingFlush, StateStore,
        StdFs, WalBackend, WalOptions,
    };

    use super::Committer;
    use crate::{
        clock::Clock,
        commit::{
            CommitConfig, CommitHost, Durability, LogGroup, OpenedGroup,
            checkpointer::CheckpointQueue,
            recovery::Storage,
            syncer::{Parts, Syncer},
        },
        protocol::{
            envelope::ReplySender,
            ids::{LogGroupId, Seq, ShardId},
        },
        shard::{
            RetryPolicy, ShardCore,
            effects::{Batch, Effects},
            state_machine::CoreConfig,
        },
    };

    /// Long enough never to fire unless the committers are stuck.
    const HANG: Duration = Duration::from_secs(30);

    /// Each flush waits until the test sends it `true` (durable) or `false`.
    #[derive(Debug)]
    struct ManualLog {
        next: u64,
        flushes: Sender<Sender<bool>>,
    }

    #[derive(Debug)]
    struct ManualWait {
        up_to: Lsn,
        outcome: Receiver<bool>,
    }

    impl FlushWait for ManualWait {
        fn wait(self: Box<Self>) -> Result<Lsn, LogError> {
            match self.outcome.recv() {
                Ok(true) => Ok(self.up_to),
                _ => Err(LogError::Poisoned),
            }
        }
    }

    impl CommitLog for ManualLog {
        fn append(&mut self, _record: &[u8]) -> Result<Lsn, LogError> {
            self.next += 1;
            Ok(Lsn(self.next))
        }
        fn flush(&mut self) -> Result<PendingFlush, LogError> {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let _ = self.flushes.send(tx);
            let up_to = Lsn(self.next);
            Ok(PendingFlush::new(
                up_to,
                Box::new(ManualWait { up_to, outcome: rx }),
            ))
        }
        fn durable_lsn(&self) -> Lsn {
            Lsn(0)
        }
        fn truncate_before(&mut self, _lsn: Lsn) -> Result<(), LogError> {
            Ok(())
        }
        fn epoch(&self) -> Epoch {
            Epoch(1)
        }
        fn stats(&self) -> LogStats {
            LogStats::default()
        }
    }

    /// Records which batches were released (by their `finished` count) and
    /// which were refused (0: the calls a take-down refused, none here).
    #[derive(Default)]
    struct Host {
        released: Mutex<Vec<usize>>,
        refused: Mutex<Vec<usize>>,
    }

    impl CommitHost for Host {
        fn release(&self, effects: Effects) {
            self.released.lock().push(effects.finished);
        }
        fn refuse(&self, effects: Effects, _shard: ShardId, _reason: &str) {
            self.refused.lock().push(effects.finished);
        }
        fn publish_acks(&self, _dest: ShardId, _acks: &[(ShardId, Seq)]) {}
        fn request_checkpoint(&self, _shard: ShardId) {}
        fn take_down(&self, _shard: ShardId) -> Vec<ReplySender> {
            Vec::new()
        }
        fn resume(&self, _core: ShardCore) {}
        fn checkpoint_finished(&self, _shard: ShardId, _epoch: Epoch, _lsn: Option<Lsn>) {}
        fn count_recovery(&self) {}
    }

    fn batch(tag: usize) -> Batch {
        let mut batch = Batch::new(ShardId(0), Epoch(1));
        batch.records.push(vec![tag as u8]);
        batch.effects.finished = tag;
        batch
    }

    fn storage(dir: &std::path::Path) -> Arc<Storage> {
        let data_dir = DataDir::open(dir, 1).expect("data dir");
        let store = StateStore::open(&data_dir.state_dir()).expect("store");
        let logs = Arc::new(WalBackend::new(
            Arc::new(StdFs),
            &data_dir.wal_root(),
            WalOptions::default(),
        ));
        let core = CoreConfig {
            shards: 1,
            cache_bytes: 1 << 20,
            idempotency_retention: Duration::from_secs(60),
            checkpoint_dirty_bytes: 1 << 20,
            checkpoint_interval: Duration::from_secs(3600),
            retry: RetryPolicy::default(),
        };
        Arc::new(Storage::new(data_dir, store, logs, core, Clock::default()))
    }

    fn wait_for(what: &str, done: impl Fn() -> bool) {
        let start = std::time::Instant::now();
        while !done() {
            assert!(start.elapsed() < HANG, "never happened: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn the_next_flush_is_written_while_one_syncs_and_releases_keep_write_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let host = Arc::new(Host::default());
        let (flushes_tx, flushes) = crossbeam_channel::unbounded();
        let group = LogGroup::new();
        let parts = Parts {
            host: Arc::clone(&host) as Arc<dyn CommitHost>,
            storage: storage(dir.path()),
            checkpoints: Arc::new(CheckpointQueue::new()),
            stats: group.stats(),
            config: CommitConfig {
                mode: Durability::Fsync,
                checkpoint_log_bytes: u64::MAX,
                checkpoint_interval: Duration::from_secs(3600),
            },
            clock: Clock::default(),
            observer: None,
            rx: group.take_receiver().expect("receiver"),
        };
        let opened = OpenedGroup {
            group: LogGroupId(0),
            log: Box::new(ManualLog {
                next: 0,
                flushes: flushes_tx,
            }),
            shards: vec![(ShardId(0), Epoch(1), Lsn(0))],
        };
        let committers = Committer::for_group(Syncer::new(parts, opened, true));
        assert_eq!(committers.len(), 2, "Fsync mode pipelines on two threads");
        let threads: Vec<_> = committers
            .into_iter()
            .map(|c| crate::service::spawn(Box::new(c)).expect("thread"))
            .collect();

        group.submit(batch(1)).expect("running");
        let first = flushes.recv_timeout(HANG).expect("first flush written");
        group.submit(batch(2)).expect("running");
        // Written while the first is still syncing: two flushes in flight.
        let second = flushes.recv_timeout(HANG).expect("second flush written");
        // The later sync returns first: nothing may leave before batch 1.
        second.send(true).expect("waiting");
        std::thread::sleep(Duration::from_millis(50));
        assert!(host.released.lock().is_empty(), "released out of order");
        first.send(true).expect("waiting");
        wait_for("both released", || host.released.lock().len() == 2);
        assert_eq!(*host.released.lock(), vec![1, 2]);

        // A failed sync refuses its batch; the one in flight behind it is
        // refused too, even though its own sync succeeds.
        group.submit(batch(3)).expect("running");
        let third = flushes.recv_timeout(HANG).expect("third flush written");
        group.submit(batch(4)).expect("running");
        let fourth = flushes.recv_timeout(HANG).expect("fourth flush written");
        fourth.send(true).expect("waiting");
        third.send(false).expect("waiting");
        let refused = || -> Vec<usize> {
            host.refused
                .lock()
                .iter()
                .copied()
                .filter(|&t| t != 0)
                .collect()
        };
        wait_for("both refused", || refused().len() >= 2);
        assert_eq!(refused(), vec![3, 4]);
        assert_eq!(*host.released.lock(), vec![1, 2], "nothing else released");

        group.stop();
        for thread in threads {
            thread.join().expect("committer exits");
        }
    }
}
