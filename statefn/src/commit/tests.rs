//! The commit path end to end, on the threaded runtime with the crate's
//! own test hooks: a checkpoint that fails, a record that cannot be encoded.

#![expect(
    unreachable_pub,
    reason = "handlers must be `pub`, even in a test module"
)]

use std::{future::Future, path::Path, sync::atomic::Ordering, time::Duration};

use serde::{Deserialize, Serialize};
use statefn_store::{DataDir, StateStore};

use crate::{
    Address, Context, Error, RetryPolicy, Runtime, protocol::ids::ShardId, stateful_function,
};

const SHARDS: u16 = 2;

#[stateful_function(name = "test.Inbox")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Inbox {
    got: u32,
}

#[stateful_function]
impl Inbox {
    #[handler]
    pub fn receive(&mut self, fail: bool) {
        assert!(!fail, "asked to fail");
        self.got += 1;
    }

    #[handler]
    pub fn got(&self) -> u32 {
        self.got
    }
}

#[stateful_function(name = "test.Sender")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Sender {
    sent: u32,
}

#[stateful_function]
impl Sender {
    #[handler]
    pub fn post(&mut self, ctx: &mut Context, to: String, fail: bool) {
        self.sent += 1;
        ctx.send::<Inbox>(&to).receive(fail);
    }

    #[handler]
    pub fn post_later(&mut self, ctx: &mut Context, to: String, after_ms: u64) {
        self.sent += 1;
        ctx.send_after::<Inbox>(Duration::from_millis(after_ms), &to)
            .receive(false);
    }
}

/// Its log records fail to encode (the hook in `push_record`).
#[stateful_function(name = "test.UnencodableRecord")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Unencodable {
    n: u64,
}

#[stateful_function]
impl Unencodable {
    #[handler]
    pub fn bump(&mut self) -> u64 {
        self.n += 1;
        self.n
    }

    #[handler]
    pub fn get(&self) -> u64 {
        self.n
    }
}

async fn open(dir: &Path) -> Runtime {
    Runtime::builder()
        .data_dir(dir)
        .shards(SHARDS)
        .retry_policy(RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        })
        .register::<Inbox>()
        .register::<Sender>()
        .register::<Unencodable>()
        .open()
        .await
        .expect("opens")
}

/// Polls `probe` until it gives a value (a hang detector: no bound on speed).
async fn eventually<T, Fut: Future<Output = Option<T>>>(mut probe: impl FnMut() -> Fut) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "never happened");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Asks `shard` for a checkpoint and waits until one is written.
async fn checkpoint(runtime: &Runtime, shard: u16) {
    let before = runtime.shard_status()[usize::from(shard)].checkpoint_lsn;
    runtime.inner().request_checkpoint(ShardId(shard));
    eventually(|| async {
        (runtime.shard_status()[usize::from(shard)].checkpoint_lsn > before).then_some(())
    })
    .await;
}

/// A fired timer and a dropped dead letter must not come back when the
/// checkpoint that would have deleted them from the store failed and a later
/// one succeeded (exactly-once review #8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_checkpoint_does_not_bring_back_a_fired_timer_or_a_dropped_dead_letter() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = open(dir.path()).await;
    let inbox = "inbox";
    let shard = Address::new("test.Inbox", inbox)
        .expect("valid")
        .shard(SHARDS);
    // The timer lives with its sender: both on one shard.
    let sender_id = (0..)
        .map(|i| format!("sender-{i}"))
        .find(|id| {
            Address::new("test.Sender", id)
                .expect("valid")
                .shard(SHARDS)
                == shard
        })
        .expect("some id lands on the shard");
    let sender = runtime.handle::<Sender>(sender_id);
    // A dead letter and an armed timer, both checkpointed into the store.
    sender.post(inbox.into(), true).await.expect("posted");
    let letter = eventually(|| async { runtime.dead_letters().await.first().map(|l| l.id) }).await;
    sender
        .post_later(inbox.into(), 1_000)
        .await
        .expect("posted");
    checkpoint(&runtime, shard).await;
    // The timer fires; the letter is dropped.
    let got = runtime.handle::<Inbox>(inbox);
    eventually(|| async { (got.got().await.ok() == Some(1)).then_some(()) }).await;
    runtime.drop_dead_letter(letter).await.expect("dropped");
    // The next checkpoint of the shard fails, the one after succeeds.
    let storage = &runtime.inner().commit.as_ref().expect("durable").storage;
    storage.checkpoint_faults.store(1, Ordering::SeqCst);
    runtime.inner().request_checkpoint(ShardId(shard));
    eventually(|| async { (storage.checkpoint_faults.load(Ordering::SeqCst) == 0).then_some(()) })
        .await;
    runtime.shutdown().await.expect("shuts down");

    {
        let data_dir = DataDir::open(dir.path(), SHARDS).expect("data dir");
        let store = StateStore::open(&data_dir.state_dir()).expect("store");
        let tables = store.shard(statefn_store::ShardId(shard));
        assert_eq!(
            tables
                .timers_due((0, 0), u64::MAX, usize::MAX)
                .expect("timers"),
            vec![]
        );
        assert_eq!(tables.legacy_timers().expect("timers"), vec![]);
        assert_eq!(
            tables.dead_letters().expect("dead letters"),
            Vec::<Vec<u8>>::new()
        );
    }
    let runtime = open(dir.path()).await;
    assert!(runtime.dead_letters().await.is_empty());
    runtime.shutdown().await.expect("shuts down");
}

/// A record that cannot be encoded fails its invocation: the caller gets a
/// typed error and nothing of it stays (exactly-once review #13).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_whose_record_cannot_be_encoded_fails_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = open(dir.path()).await;
    let counter = runtime.handle::<Unencodable>("u");
    let err = counter
        .bump()
        .await
        .expect_err("its record cannot be written");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("encode"), "{err}");
    // Its shard is rebuilt from the log and serves again: no trace of it.
    let seen = eventually(|| async { counter.get().await.ok() }).await;
    assert_eq!(seen, 0);
    runtime.shutdown().await.expect("shuts down");
}

/// A message lost on its way leaves a gap on its channel: the receiver
/// asks its sender to re-send instead of dropping that channel's later
/// messages until the next recovery (exactly-once review #1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_message_is_re_sent_when_its_receiver_sees_the_gap() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = open(dir.path()).await;
    let inbox = "gap-inbox";
    let shard = Address::new("test.Inbox", inbox)
        .expect("valid")
        .shard(SHARDS);
    // The sender on the other shard: the channel crosses shards.
    let sender_id = (0..)
        .map(|i| format!("gap-sender-{i}"))
        .find(|id| {
            Address::new("test.Sender", id)
                .expect("valid")
                .shard(SHARDS)
                != shard
        })
        .expect("some id lands on the other shard");
    let sender = runtime.handle::<Sender>(sender_id);
    // The first message is lost after its commit; the second arrives
    // beyond the receiver's watermark, and so do all later ones.
    runtime.inner().lose_messages.store(1, Ordering::SeqCst);
    for _ in 0..3 {
        sender.post(inbox.into(), false).await.expect("posted");
    }
    assert_eq!(runtime.inner().lose_messages.load(Ordering::SeqCst), 0);
    let got = runtime.handle::<Inbox>(inbox);
    eventually(|| async { (got.got().await.ok() == Some(3)).then_some(()) }).await;
    runtime.shutdown().await.expect("shuts down");
}
