//! The shard state machine alone: no runtime, no threads, no log. Mail goes
//! in through [`ShardCore::handle`], records and effects come out; records
//! go back in through [`ShardCore::replay`].

#![expect(
    unreachable_pub,
    reason = "handlers must be `pub`, even in a test module"
)]

use std::time::Duration;

use serde::{Deserialize, Serialize};
use statefn_store::StateStore;
use tokio::sync::oneshot;

use super::{
    CoreConfig, RetryPolicy, ShardCore,
    effects::{Batch, RunEnv},
};
use crate::protocol::channel::RESEND_REQUEST_INTERVAL;
use crate::{
    Address, Context, Error,
    protocol::{
        envelope::{Envelope, Mail, Origin},
        ids::{EgressSeq, Epoch, Lsn, Seq, ShardId},
        record::{ShardRecord, decode, encode},
    },
    registry::Registry,
    stateful_function,
};

#[stateful_function]
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Acct {
    balance: i64,
}

#[stateful_function]
impl Acct {
    #[handler]
    pub fn deposit(&mut self, amount: i64) -> i64 {
        self.balance += amount;
        self.balance
    }

    /// Sends, emits and arms a timer: everything a record can hold.
    #[handler]
    pub fn transfer(&mut self, ctx: &mut Context, to: String, amount: i64) -> i64 {
        self.balance -= amount;
        ctx.send::<Acct>(&to).deposit(amount);
        ctx.send_after::<Acct>(Duration::from_secs(5), &to)
            .deposit(1);
        ctx.emit("transfers", &amount);
        self.balance
    }

    /// Sets (or replaces) the keyed timer `r`: deposits `amount` in 5 s.
    #[handler]
    pub fn remind(&mut self, ctx: &mut Context, amount: i64) {
        ctx.timer::<Acct>("r")
            .after(Duration::from_secs(5))
            .deposit(amount);
    }

    /// Cancels the keyed timer `r`.
    #[handler]
    pub fn forget(&mut self, ctx: &mut Context) {
        ctx.cancel_timer("r");
    }

    #[handler]
    pub fn boom(&mut self) {
        panic!("boom");
    }

    #[handler]
    pub fn balance(&self) -> i64 {
        self.balance
    }
}

const NOW_MS: u64 = 1_000_000;
/// This core's shard among `SHARDS`.
const SHARD: ShardId = ShardId(0);
const SHARDS: u16 = 4;

fn config() -> CoreConfig {
    CoreConfig {
        shards: SHARDS,
        cache_bytes: 1 << 20,
        idempotency_retention: Duration::from_secs(3600),
        checkpoint_dirty_bytes: 1 << 20,
        checkpoint_interval: Duration::from_secs(60),
        retry: RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
        timers_in_memory: 1024,
        resend_chunk_bytes: 1 << 20,
    }
}

/// A durable core (it builds records) over an empty store of its own.
fn durable_core() -> (ShardCore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = StateStore::open(dir.path()).expect("store");
    let mut core = ShardCore::new(SHARD, Epoch(1), config(), Some(store.shard(SHARD)));
    core.open_timers().expect("an empty timer table opens");
    (core, dir)
}

/// Its log records fail to encode (a test hook of `push_record`).
#[stateful_function(name = "test.UnencodableRecord")]
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Unencodable {
    n: u64,
}

#[stateful_function]
impl Unencodable {
    #[handler]
    pub fn bump(&mut self, ctx: &mut Context) -> u64 {
        self.n += 1;
        ctx.emit("bumps", &self.n);
        self.n
    }
}

fn registry() -> Registry {
    let mut registry = Registry::default();
    registry.register::<Acct>().expect("registers");
    registry.register::<Unencodable>().expect("registers");
    registry
}

fn message(registry: &Registry, handler: &str, args: serde_json::Value) -> Vec<u8> {
    registry
        .get("Acct")
        .and_then(|f| f.message_from_json(handler, args))
        .expect("a valid message")
}

fn addr(id: &str) -> Address {
    Address::new("Acct", id).expect("valid")
}

/// An id of an `Acct` on this core's shard.
fn local(n: usize) -> String {
    (0..)
        .map(|i| format!("local-{n}-{i}"))
        .find(|id| addr(id).shard_id(SHARDS) == SHARD)
        .expect("some id lands on the shard")
}

fn client(target: &str, message: Vec<u8>, key: Option<&str>) -> Mail {
    let (reply, _rx) = oneshot::channel();
    Mail::Invoke(Envelope {
        target: addr(target),
        message,
        origin: Origin::Client {
            key: key.map(str::to_owned),
            reply: Some(reply),
            enqueue: None,
        },
        reply_to: None,
        guard: None,
        provenance: Default::default(),
    })
}

fn from_function(target: &str, message: Vec<u8>, source: u16, seq: u64) -> Mail {
    Mail::Invoke(Envelope {
        target: addr(target),
        message,
        origin: Origin::Function {
            source: ShardId(source),
            seq: Seq(seq),
            attempt: 0,
        },
        reply_to: None,
        guard: None,
        provenance: Default::default(),
    })
}

/// Runs one batch of `mails` through `core`.
fn run(core: &mut ShardCore, registry: &Registry, mails: Vec<Mail>) -> Batch {
    run_at(core, registry, mails, NOW_MS)
}

/// Runs one batch of `mails` through `core` at `now_ms`.
fn run_at(core: &mut ShardCore, registry: &Registry, mails: Vec<Mail>, now_ms: u64) -> Batch {
    let acked = |_: ShardId| Seq(0);
    let env = RunEnv {
        registry,
        resources: None,
        now_ms,
        acked: &acked,
        egress_appended: EgressSeq(0),
    };
    let mut batch = Batch::new(core.id, core.epoch);
    for mail in mails {
        core.handle(&env, mail, &mut batch);
    }
    batch
}

/// The replies of a batch, decoded as `i64` (`None`: an error).
fn replies(batch: &Batch) -> Vec<Option<i64>> {
    batch
        .effects
        .replies
        .iter()
        .map(|(_, r)| {
            r.as_ref()
                .ok()
                .map(|b| postcard::from_bytes(b).expect("an i64"))
        })
        .collect()
}

fn balance(core: &mut ShardCore, id: &str) -> Option<i64> {
    core.states.get(&addr(id)).expect("readable").map(|b| {
        crate::function::decode_state_of::<Acct>(id, b)
            .expect("decodes")
            .balance
    })
}

/// Everything the core would checkpoint, as bytes: equal bytes, equal state.
fn snapshot(core: &mut ShardCore, ids: &[String]) -> Vec<u8> {
    let states: Vec<Option<i64>> = ids.iter().map(|id| balance(core, id)).collect();
    let acked = |_: ShardId| Seq(0);
    let job = core.freeze(&acked, EgressSeq(0), NOW_MS);
    let mut idempotency: Vec<_> = job.idempotency.values().cloned().collect();
    idempotency.sort_by(|a, b| a.key.cmp(&b.key));
    let timers: Vec<_> = job.timers.timers.iter().collect();
    let keys: std::collections::BTreeMap<_, _> = job.timers.keys.iter().collect();
    let window: Vec<_> = core.timers.window().cloned().collect();
    encode(&(
        states,
        &job.meta,
        timers,
        keys,
        window,
        &job.outbox,
        &job.egress,
        &job.dead_letters,
        idempotency,
    ))
    .expect("encodes")
}

#[test]
fn replaying_an_invocations_records_rebuilds_the_same_core() {
    let registry = registry();
    let (mut live, _dir) = durable_core();
    let ids: Vec<String> = (0..3).map(local).collect();
    let (a, b, c) = (&ids[0], &ids[1], &ids[2]);
    let mut records = Vec::new();
    let batches = vec![
        vec![
            client(
                a,
                message(&registry, "deposit", serde_json::json!({"amount": 100})),
                Some("k1"),
            ),
            client(
                b,
                message(&registry, "deposit", serde_json::json!({"amount": 7})),
                None,
            ),
        ],
        vec![
            client(
                a,
                message(
                    &registry,
                    "transfer",
                    serde_json::json!({"to": c, "amount": 30}),
                ),
                Some("k2"),
            ),
            from_function(
                b,
                message(&registry, "deposit", serde_json::json!({"amount": 2})),
                3,
                1,
            ),
            from_function(c, message(&registry, "boom", serde_json::json!({})), 3, 2),
            client(
                b,
                message(&registry, "balance", serde_json::json!({})),
                None,
            ),
        ],
    ];
    for mails in batches {
        let batch = run(&mut live, &registry, mails);
        records.extend(batch.records);
    }
    // The timer `transfer` armed fires: its removal and its send are one record.
    let timer = live
        .timers
        .window()
        .next()
        .map(|t| t.slot())
        .expect("a timer");
    let batch = run(&mut live, &registry, vec![Mail::TimerDue { timer }]);
    assert_eq!(batch.records.len(), 1);
    records.extend(batch.records);
    assert_eq!(
        live.dead_letters.entries().count(),
        1,
        "boom is a dead letter"
    );
    assert!(
        live.outbox.len() >= 2,
        "the transfer's deposit and the timer's"
    );

    let (mut replayed, _dir2) = durable_core();
    for bytes in &records {
        let record: ShardRecord = decode(bytes, "a test record").expect("decodes");
        assert_eq!(record.shard, SHARD);
        replayed.replay(record.entry, NOW_MS);
    }
    assert_eq!(balance(&mut replayed, a), Some(70));
    assert_eq!(balance(&mut replayed, b), Some(9));
    assert_eq!(
        snapshot(&mut live, &ids),
        snapshot(&mut replayed, &ids),
        "replay must leave the core as the invocations did"
    );
}

#[test]
fn a_gap_on_a_channel_waits_and_a_duplicate_is_dropped_by_the_watermark() {
    let registry = registry();
    let (mut core, _dir) = durable_core();
    let id = local(0);
    let deposit = |n: i64| message(&registry, "deposit", serde_json::json!({"amount": n}));
    // Sequence 2 before 1: a gap. Nothing applied, nothing acked, no record.
    let batch = run(
        &mut core,
        &registry,
        vec![from_function(&id, deposit(2), 1, 2)],
    );
    assert!(batch.records.is_empty() && batch.effects.acks.is_empty());
    assert_eq!(balance(&mut core, &id), None);
    // 1 then the re-sent 2 apply in order, each acked once.
    let batch = run(
        &mut core,
        &registry,
        vec![
            from_function(&id, deposit(1), 1, 1),
            from_function(&id, deposit(2), 1, 2),
        ],
    );
    assert_eq!(
        batch.effects.acks,
        vec![(ShardId(1), Seq(1)), (ShardId(1), Seq(2))]
    );
    assert_eq!(batch.records.len(), 2);
    assert_eq!(balance(&mut core, &id), Some(3));
    // At or below the watermark: a duplicate, dropped, and acked with the
    // watermark once the batch is durable, so that a re-sent outbox is
    // pruned (exactly-once review note 14).
    let batch = run(
        &mut core,
        &registry,
        vec![from_function(&id, deposit(1), 1, 1)],
    );
    assert_eq!(batch.stats.duplicate, 1);
    assert!(batch.records.is_empty());
    assert_eq!(batch.effects.acks, vec![(ShardId(1), Seq(2))]);
    assert_eq!(balance(&mut core, &id), Some(3));
    // Another source has its own channel.
    let batch = run(
        &mut core,
        &registry,
        vec![from_function(&id, deposit(5), 2, 1)],
    );
    assert_eq!(batch.effects.acks, vec![(ShardId(2), Seq(1))]);
    assert_eq!(balance(&mut core, &id), Some(8));
}

#[test]
fn a_retried_client_call_is_answered_from_its_stored_reply() {
    let registry = registry();
    let (mut core, _dir) = durable_core();
    let id = local(0);
    let deposit = |n: i64| message(&registry, "deposit", serde_json::json!({"amount": n}));
    let first = run(
        &mut core,
        &registry,
        vec![client(&id, deposit(10), Some("k"))],
    );
    assert_eq!(replies(&first), vec![Some(10)]);
    assert_eq!(first.records.len(), 1);
    // Same key, even with other arguments: the stored reply, nothing applied.
    let retry = run(
        &mut core,
        &registry,
        vec![client(&id, deposit(99), Some("k"))],
    );
    assert_eq!(replies(&retry), vec![Some(10)]);
    assert!(retry.records.is_empty());
    assert_eq!(retry.stats.duplicate, 1);
    assert_eq!(balance(&mut core, &id), Some(10));
    // Same key, another handler: refused.
    let reused = run(
        &mut core,
        &registry,
        vec![client(
            &id,
            message(&registry, "balance", serde_json::json!({})),
            Some("k"),
        )],
    );
    assert!(matches!(
        reused.effects.replies.first(),
        Some((_, Err(Error::IdempotencyKeyReused { .. })))
    ));
    // Without a key a retry is a new call.
    run(&mut core, &registry, vec![client(&id, deposit(1), None)]);
    run(&mut core, &registry, vec![client(&id, deposit(1), None)]);
    assert_eq!(balance(&mut core, &id), Some(12));
}

/// The slots of the timers `core` holds in memory.
fn timer_slots(core: &ShardCore) -> Vec<crate::protocol::ids::TimerSlot> {
    core.timers.window().map(|t| t.slot()).collect()
}

#[test]
fn a_cancel_or_a_replacement_queued_before_a_due_keyed_timer_wins() {
    let registry = registry();
    let (mut live, _dir) = durable_core();
    let a = &local(0);
    let remind =
        |amount: i64| message(&registry, "remind", serde_json::json!({ "amount": amount }));
    let mut records = Vec::new();
    let mut go = |core: &mut ShardCore, mails| {
        let batch = run(core, &registry, mails);
        records.extend(batch.records.clone());
        batch
    };

    go(&mut live, vec![client(a, remind(10), None)]);
    let first = timer_slots(&live);
    assert_eq!(first.len(), 1);
    // The timer is due and its wake-up queued behind a cancel: the cancel
    // wins, the handler never runs.
    let forget = message(&registry, "forget", serde_json::json!({}));
    go(
        &mut live,
        vec![client(a, forget, None), Mail::TimerDue { timer: first[0] }],
    );
    assert_eq!(balance(&mut live, a), Some(0));
    assert!(timer_slots(&live).is_empty());

    // Set twice: the first one is replaced, and its queued wake-up finds
    // nothing; the second fires once.
    go(&mut live, vec![client(a, remind(10), None)]);
    let replaced = timer_slots(&live);
    go(
        &mut live,
        vec![
            client(a, remind(20), None),
            Mail::TimerDue { timer: replaced[0] },
        ],
    );
    assert_eq!(balance(&mut live, a), Some(0));
    let latest = timer_slots(&live);
    assert_eq!(latest.len(), 1);
    assert_ne!(latest, replaced);
    let fired = go(
        &mut live,
        vec![
            Mail::TimerDue { timer: latest[0] },
            Mail::TimerDue { timer: latest[0] },
        ],
    );
    assert_eq!(balance(&mut live, a), Some(20));
    assert_eq!(
        fired.records.len(),
        1,
        "it ran once: its removal and its run are one record"
    );
    assert!(timer_slots(&live).is_empty());

    // The records say the same to a recovering core.
    let (mut replayed, _dir2) = durable_core();
    for bytes in &records {
        let record: ShardRecord = decode(bytes, "a test record").expect("decodes");
        replayed.replay(record.entry, NOW_MS);
    }
    let ids = vec![a.clone()];
    assert_eq!(snapshot(&mut live, &ids), snapshot(&mut replayed, &ids));
}

#[test]
fn a_gap_asks_its_sender_to_resend_at_most_once_per_interval() {
    let registry = registry();
    let (mut core, _dir) = durable_core();
    let id = local(0);
    let deposit = |n: i64| message(&registry, "deposit", serde_json::json!({"amount": n}));
    let interval = u64::try_from(RESEND_REQUEST_INTERVAL.as_millis()).expect("small");
    // Sequences 3 and 4 with nothing applied from shard 1: one request to
    // shard 1 to re-send what it holds for this shard.
    let batch = run(
        &mut core,
        &registry,
        vec![
            from_function(&id, deposit(3), 1, 3),
            from_function(&id, deposit(4), 1, 4),
        ],
    );
    assert_eq!(
        batch.effects.resend_requests,
        vec![(ShardId(1), SHARD, Seq(1))]
    );
    assert!(batch.records.is_empty() && batch.effects.acks.is_empty());
    // Within the interval the channel is not asked again...
    let batch = run_at(
        &mut core,
        &registry,
        vec![from_function(&id, deposit(5), 1, 5)],
        NOW_MS + interval - 1,
    );
    assert!(batch.effects.resend_requests.is_empty());
    // ...another channel is asked on its own...
    let batch = run_at(
        &mut core,
        &registry,
        vec![from_function(&id, deposit(2), 2, 2)],
        NOW_MS + 1,
    );
    assert_eq!(
        batch.effects.resend_requests,
        vec![(ShardId(2), SHARD, Seq(1))]
    );
    // ...and after the interval, a gap that is still there asks again.
    let batch = run_at(
        &mut core,
        &registry,
        vec![from_function(&id, deposit(5), 1, 5)],
        NOW_MS + interval,
    );
    assert_eq!(
        batch.effects.resend_requests,
        vec![(ShardId(1), SHARD, Seq(1))]
    );
    assert_eq!(
        balance(&mut core, &id),
        None,
        "nothing applied out of order"
    );
}

#[test]
fn a_record_that_cannot_be_encoded_breaks_its_batch() {
    let registry = registry();
    let (mut core, _dir) = durable_core();
    let id = (0..)
        .map(|i| format!("u-{i}"))
        .find(|id| {
            Address::new("test.UnencodableRecord", id)
                .expect("valid")
                .shard_id(SHARDS)
                == SHARD
        })
        .expect("some id lands on the shard");
    let bump = registry
        .get("test.UnencodableRecord")
        .and_then(|f| f.message_from_json("bump", serde_json::json!({})))
        .expect("a message");
    let (reply, _rx) = oneshot::channel();
    let batch = run(
        &mut core,
        &registry,
        vec![Mail::Invoke(Envelope {
            target: Address::new("test.UnencodableRecord", &id).expect("valid"),
            message: bump,
            origin: Origin::Client {
                key: None,
                reply: Some(reply),
                enqueue: None,
            },
            reply_to: None,
            guard: None,
            provenance: Default::default(),
        })],
    );
    // Its effects must not leave without the record: the batch is broken,
    // so the commit path refuses it and rebuilds the shard from the log.
    assert!(batch.records.is_empty());
    assert!(
        matches!(&batch.broken, Some(Error::Encode { .. })),
        "{:?}",
        batch.broken
    );
}

mod checkpoints;
mod resend;
