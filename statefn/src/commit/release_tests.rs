//! The order in which a group commit's effects leave, pinned on a real
//! syncer (WAL on disk) with a host that records what it is handed:
//! nothing before the records are durable, every ack before any effect,
//! then one release for the whole commit with each kind in batch order
//! (`RuntimeInner::release` then fixes the order of the kinds: deliveries
//! and egress before replies).

use std::{sync::Arc, time::Duration};

use parking_lot::Mutex;
use statefn_store::{DataDir, LogGroupId, StateStore, StdFs, WalBackend, WalOptions};
use tokio::sync::oneshot;

use super::{
    CommitConfig, CommitHost, CommitObserver, Durability,
    checkpointer::CheckpointQueue,
    log_group::{GroupCommand, GroupStats},
    recovery::Storage,
    syncer::{Parts, Syncer},
};
use crate::{
    Address, RetryPolicy,
    clock::Clock,
    protocol::{
        envelope::{Envelope, Origin, Provenance, ReplySender},
        ids::{Epoch, Lsn, Seq, ShardId},
    },
    service::Service as _,
    shard::{
        CoreConfig, ShardCore,
        effects::{Batch, Effects},
    },
};

const SHARDS: u16 = 2;

/// What the syncer did, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    /// The commit observer saw these records: they are durable.
    Durable(Vec<Vec<u8>>),
    Acks(ShardId, Vec<(ShardId, Seq)>),
    /// One `release`: the deliveries' target ids, the replies' payloads,
    /// how many mails it finished.
    Release {
        deliveries: Vec<String>,
        replies: Vec<Vec<u8>>,
        finished: usize,
    },
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
}

impl CommitHost for Recorder {
    fn release(&self, effects: Effects) {
        self.events.lock().push(Event::Release {
            deliveries: effects
                .deliveries
                .iter()
                .map(|e| e.target.id().to_owned())
                .collect(),
            replies: effects
                .replies
                .into_iter()
                .map(|(tx, reply)| {
                    let payload = reply.clone().unwrap_or_default();
                    let _ = tx.send(reply);
                    payload
                })
                .collect(),
            finished: effects.finished,
        });
    }

    fn refuse(&self, _: Effects, shard: ShardId, reason: &str) {
        panic!("batch of shard {shard} refused: {reason}");
    }

    fn publish_acks(&self, dest: ShardId, acks: &[(ShardId, Seq)]) {
        self.events.lock().push(Event::Acks(dest, acks.to_vec()));
    }

    fn request_checkpoint(&self, _: ShardId) {}

    fn take_down(&self, _: ShardId) -> Vec<ReplySender> {
        Vec::new()
    }

    fn resume(&self, _: ShardCore) {}

    fn checkpoint_finished(&self, _: ShardId, _: Epoch, _: Option<Lsn>) {}

    fn count_recovery(&self) {}

    fn closing(&self) -> bool {
        false
    }

    fn abandon(&self, _: ShardId) {}

    fn refuse_unknown(&self, _: Effects, shard: ShardId, reason: &str) {
        panic!("batch of shard {shard} refused (unknown): {reason}");
    }
}

fn core_config() -> CoreConfig {
    CoreConfig {
        shards: SHARDS,
        cache_bytes: 1 << 20,
        idempotency_retention: Duration::from_secs(3600),
        checkpoint_dirty_bytes: 1 << 20,
        checkpoint_interval: Duration::from_secs(3600),
        retry: RetryPolicy::default(),
        timers_in_memory: 1024,
        resend_chunk_bytes: 1 << 20,
    }
}

/// A syncer of the one log group of a fresh data dir, its queue and what
/// its host and observer saw.
fn syncer(
    dir: &std::path::Path,
) -> (
    Syncer,
    crossbeam_channel::Sender<GroupCommand>,
    Arc<Recorder>,
) {
    let data_dir = DataDir::open_with_log_groups(dir, SHARDS, 1).expect("data dir");
    let store = StateStore::open(&data_dir.state_dir()).expect("state store");
    let logs = Arc::new(WalBackend::new(
        Arc::new(StdFs),
        &data_dir.wal_root(),
        WalOptions::default(),
    ));
    let storage = Arc::new(Storage::new(
        data_dir,
        store,
        logs,
        core_config(),
        Clock::System,
        Default::default(),
    ));
    let (opened, _cores) = storage
        .recover(LogGroupId(0), Epoch(1), None, None)
        .expect("an empty group opens")
        .into_opened(LogGroupId(0));
    let recorder = Arc::new(Recorder::default());
    let seen = Arc::clone(&recorder);
    let observer: CommitObserver = Arc::new(move |records: &[Vec<u8>]| {
        seen.events.lock().push(Event::Durable(records.to_vec()));
    });
    let (tx, rx) = crossbeam_channel::unbounded();
    let parts = Parts {
        host: Arc::clone(&recorder) as Arc<dyn CommitHost>,
        storage,
        checkpoints: Arc::new(CheckpointQueue::new()),
        stats: Arc::new(GroupStats::default()),
        config: CommitConfig {
            mode: Durability::Fsync,
            checkpoint_log_bytes: u64::MAX,
            checkpoint_interval: Duration::from_secs(3600),
            queue_bytes: u64::MAX,
            #[cfg(feature = "cluster")]
            read_barrier: false,
        },
        clock: Clock::System,
        observer: Some(observer),
        rx,
        #[cfg(feature = "cluster")]
        hand_back: None,
    };
    (Syncer::new(parts, opened), tx, recorder)
}

/// A batch of `shard` with one record, one delivery (to `to`), one reply
/// (`reply`) and one ack of `(source, seq)`.
fn batch(
    shard: u16,
    record: &str,
    to: &str,
    reply: &str,
    ack: (u16, u64),
) -> (Batch, oneshot::Receiver<Result<Vec<u8>, crate::Error>>) {
    let mut batch = Batch::new(ShardId(shard), Epoch(1));
    batch.records.push(record.as_bytes().to_vec());
    let (tx, rx) = oneshot::channel();
    batch
        .effects
        .replies
        .push((tx, Ok(reply.as_bytes().to_vec())));
    batch.effects.deliveries.push(Envelope {
        target: Address::new("test.Target", to).expect("address"),
        message: Vec::new(),
        origin: Origin::Client {
            key: None,
            reply: None,
            enqueue: None,
        },
        reply_to: None,
        guard: None,
        provenance: Provenance::default(),
    });
    batch.effects.acks.push((ShardId(ack.0), Seq(ack.1)));
    batch.effects.finished = 1;
    (batch, rx)
}

#[test]
fn a_commit_publishes_every_ack_after_its_records_are_durable_then_releases_its_batches_at_once_in_batch_order()
 {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut syncer, tx, recorder) = syncer(dir.path());
    let (first, mut first_reply) = batch(0, "r1", "to-a", "reply-1", (1, 7));
    let (second, mut second_reply) = batch(1, "r2", "to-b", "reply-2", (0, 3));
    // Both batches wait in the queue: one group commit takes them.
    tx.send(GroupCommand::Commit(first)).expect("queued");
    tx.send(GroupCommand::Commit(second)).expect("queued");
    assert!(
        recorder.events.lock().is_empty(),
        "nothing leaves before the commit"
    );
    assert!(first_reply.try_recv().is_err());
    let _ = syncer.step(Duration::ZERO);

    let events = recorder.events.lock().clone();
    assert_eq!(
        events,
        vec![
            Event::Durable(vec![b"r1".to_vec()]),
            Event::Acks(ShardId(0), vec![(ShardId(1), Seq(7))]),
            Event::Durable(vec![b"r2".to_vec()]),
            Event::Acks(ShardId(1), vec![(ShardId(0), Seq(3))]),
            Event::Release {
                deliveries: vec!["to-a".into(), "to-b".into()],
                replies: vec![b"reply-1".to_vec(), b"reply-2".to_vec()],
                finished: 2,
            },
        ],
        "acks after the records are durable, then one release in batch order"
    );
    assert_eq!(
        first_reply.try_recv().expect("answered").expect("ok"),
        b"reply-1"
    );
    assert_eq!(
        second_reply.try_recv().expect("answered").expect("ok"),
        b"reply-2"
    );
}

#[test]
fn batches_of_separate_commits_are_released_separately() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut syncer, tx, recorder) = syncer(dir.path());
    let (first, _r1) = batch(0, "r1", "to-a", "reply-1", (1, 1));
    tx.send(GroupCommand::Commit(first)).expect("queued");
    let _ = syncer.step(Duration::ZERO);
    let (second, _r2) = batch(1, "r2", "to-b", "reply-2", (0, 1));
    tx.send(GroupCommand::Commit(second)).expect("queued");
    let _ = syncer.step(Duration::ZERO);
    let releases: Vec<Event> = recorder
        .events
        .lock()
        .iter()
        .filter(|e| matches!(e, Event::Release { .. }))
        .cloned()
        .collect();
    assert_eq!(
        releases,
        vec![
            Event::Release {
                deliveries: vec!["to-a".into()],
                replies: vec![b"reply-1".to_vec()],
                finished: 1,
            },
            Event::Release {
                deliveries: vec!["to-b".into()],
                replies: vec![b"reply-2".to_vec()],
                finished: 1,
            },
        ]
    );
}
