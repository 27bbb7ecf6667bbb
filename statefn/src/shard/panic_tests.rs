//! [`Shard::run`] survives a panic in the runtime's own code: the worker
//! is not unwound, the mail after the panicking one stays queued, and what
//! the batch finished before is handed over intact.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::{
    CoreConfig, RetryPolicy, Shard, ShardCore,
    effects::{Batch, RunEnv},
};
use crate::{
    Address, Context, Error, JsonReply,
    function::HandlerInfo,
    protocol::{
        envelope::{Envelope, Mail, Origin},
        ids::{EgressSeq, Epoch, Seq, ShardId},
    },
    registry::{ErasedFunction, Invocation, Registry},
    stateful_function,
    wire::MessageError,
};

#[stateful_function(name = "panic_tests.Counter")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Counter {
    n: u64,
}

#[stateful_function]
impl Counter {
    #[handler]
    fn add(&mut self, by: u64) -> u64 {
        self.n += by;
        self.n
    }
}

/// Stands for a bug: code the shard calls that panics outside any guard.
pub(crate) struct Bomb;

impl ErasedFunction for Bomb {
    fn type_name(&self) -> &'static str {
        "panic_tests.Bomb"
    }
    fn handlers(&self) -> &'static [HandlerInfo] {
        &[]
    }
    fn invoke(&self, _: Option<&[u8]>, _: &[u8], _: &mut Context) -> Invocation {
        panic!("a bug in the runtime");
    }
    fn handler_of(&self, _: &[u8]) -> Result<&'static HandlerInfo, Error> {
        panic!("a bug in the runtime");
    }
    fn reply_message(&self, _: &str, _: &[u8]) -> Result<Vec<u8>, Error> {
        panic!("a bug in the runtime");
    }
    fn message_from_json(&self, _: &str, _: serde_json::Value) -> Result<Vec<u8>, Error> {
        panic!("a bug in the runtime");
    }
    fn reply_to_json(&self, _: &str, _: &[u8]) -> Result<JsonReply, Error> {
        panic!("a bug in the runtime");
    }
    fn expire_after_ms(&self) -> u64 {
        0
    }
    fn message_to_json(&self, _: &[u8]) -> Result<serde_json::Value, Error> {
        panic!("a bug in the runtime");
    }
    fn validate(&self, _: &[u8]) -> Result<(), MessageError> {
        panic!("a bug in the runtime");
    }
    fn upgrade_positional(&self, _: &[u8]) -> Result<Option<Vec<u8>>, MessageError> {
        panic!("a bug in the runtime");
    }
    fn state_to_json(&self, _: &str, _: &[u8]) -> Result<serde_json::Value, Error> {
        panic!("a bug in the runtime");
    }
}

fn config() -> CoreConfig {
    CoreConfig {
        shards: 1,
        cache_bytes: 1 << 20,
        idempotency_retention: std::time::Duration::from_secs(3600),
        checkpoint_dirty_bytes: 1 << 20,
        checkpoint_interval: std::time::Duration::from_secs(60),
        retry: RetryPolicy::default(),
        timers_in_memory: crate::DEFAULT_TIMERS_IN_MEMORY,
        resend_chunk_bytes: 1 << 20,
    }
}

/// A client call of `panic_tests.Counter::add(1)` (any other type: a
/// message the `Bomb` chokes on).
pub(crate) fn call(
    registry: &Registry,
    type_name: &str,
    id: &str,
) -> (Mail, oneshot::Receiver<Result<Vec<u8>, Error>>) {
    let message = match type_name {
        "panic_tests.Counter" => registry
            .get(type_name)
            .and_then(|f| f.message_from_json("add", serde_json::json!({"by": 1})))
            .expect("a message"),
        _ => vec![0],
    };
    let (reply, rx) = oneshot::channel();
    let mail = Mail::Invoke(Envelope {
        target: Address::new(type_name, id).expect("valid"),
        message,
        origin: Origin::Client {
            key: None,
            reply: Some(reply),
            enqueue: None,
        },
        reply_to: None,
        guard: None,
        provenance: crate::protocol::envelope::Provenance::default(),
    });
    (mail, rx)
}

#[test]
fn a_panic_in_the_runtime_s_code_leaves_the_rest_of_the_batch_intact() {
    let mut registry = Registry::default();
    registry.register::<Counter>().expect("registers");
    registry.register_erased("panic_tests.Bomb", Arc::new(Bomb));
    let shard = Shard::new(ShardCore::new(ShardId(0), Epoch(0), config(), None));
    let (before, mut before_rx) = call(&registry, "panic_tests.Counter", "a");
    let (bomb, mut bomb_rx) = call(&registry, "panic_tests.Bomb", "x");
    let (after, _after_rx) = call(&registry, "panic_tests.Counter", "b");
    for mail in [before, bomb, after] {
        shard.enqueue(mail, None);
    }
    let acked = |_: ShardId| Seq(0);
    let env = RunEnv {
        registry: &registry,
        now_ms: 1,
        acked: &acked,
        egress_appended: EgressSeq(0),
        resources: None,
    };
    let mut committed: Option<Batch> = None;
    let mut broken: Option<(Batch, String)> = None;
    let more = shard.run(
        &env,
        |batch| committed = Some(batch),
        |batch, panic| broken = Some((batch, panic)),
    );
    assert!(committed.is_none(), "a broken batch is not committed");
    let (batch, panic) = broken.expect("the panic is reported");
    assert_eq!(panic, "a bug in the runtime");
    assert_eq!(
        batch.effects.finished, 2,
        "the call before and the panicking one are done"
    );
    assert_eq!(
        batch.effects.replies.len(),
        1,
        "the call before has its reply"
    );
    assert!(more, "the call after the panic is still queued");
    assert_eq!(shard.mailbox_len(), 1);
    assert!(
        bomb_rx.try_recv().is_err(),
        "the panicking call's reply went with it"
    );
    assert!(before_rx.try_recv().is_err(), "not answered before release");

    // The shard runs on: the call after the panic is handled next.
    let more = shard.run(
        &env,
        |batch| committed = Some(batch),
        |_, panic| panic!("unexpected: {panic}"),
    );
    assert!(!more);
    let batch = committed.expect("the next batch commits");
    assert_eq!(batch.effects.replies.len(), 1);
    assert!(batch.effects.replies[0].1.is_ok());
}
