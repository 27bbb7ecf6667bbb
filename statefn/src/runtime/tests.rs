//! Runtime-level unit tests (shared `counter_runtime` for other modules' tests).

use serde::{Deserialize, Serialize};

use crate::{Address, Error, Runtime, stateful_function};

#[stateful_function]
#[derive(Default, Serialize, Deserialize)]
pub struct Counter {
    n: u64,
}

#[stateful_function]
impl Counter {
    #[handler]
    pub fn add(&mut self, by: u64) -> u64 {
        self.n += by;
        self.n
    }
}

pub(crate) async fn counter_runtime() -> Runtime {
    Runtime::builder()
        .in_memory()
        .register::<Counter>()
        .open()
        .await
        .expect("opens")
}

#[tokio::test]
async fn undecodable_message_is_a_typed_error_and_changes_nothing() {
    let runtime = counter_runtime().await;
    let target = Address::new("Counter", "x").expect("valid");
    for garbage in [vec![], vec![0xff; 3], vec![7, 1, 2]] {
        let rx = runtime
            .inner()
            .submit_call(target.clone(), garbage, None)
            .expect("accepted");
        let err = rx.await.expect("answered").expect_err("undecodable");
        assert!(
            matches!(&err, Error::Decode { function, .. } if function == "Counter"),
            "{err:?}"
        );
    }
    assert_eq!(runtime.handle::<Counter>("x").add(1).await.expect("ok"), 1);
}

#[tokio::test]
async fn unknown_function_is_refused_before_queueing() {
    let runtime = counter_runtime().await;
    let target = Address::new("Nope", "x").expect("valid");
    let err = runtime
        .inner()
        .submit_call(target, vec![0], None)
        .expect_err("unknown type");
    assert!(matches!(err, Error::UnknownFunction { .. }), "{err:?}");
}

/// A handle computes its address's shard once, when it is made: with a
/// shard count other than the default, every call still lands on the
/// shard that owns the address (where an operator's read looks for it).
#[tokio::test]
async fn a_handle_s_calls_land_on_the_shard_of_its_address() {
    let runtime = Runtime::builder()
        .in_memory()
        .shards(7)
        .workers(1)
        .register::<Counter>()
        .open()
        .await
        .expect("opens");
    let mut shards = std::collections::BTreeSet::new();
    for i in 1..=40_u64 {
        let id = format!("c-{i}");
        shards.insert(Address::new("Counter", &id).expect("valid").shard(7));
        assert_eq!(runtime.handle::<Counter>(&id).add(i).await.expect("ok"), i);
        assert_eq!(
            runtime.state_json("Counter", &id).await.expect("read"),
            Some(serde_json::json!({ "n": i })),
            "{id}"
        );
    }
    assert_eq!(shards.len(), 7, "every shard was called");
    runtime.shutdown().await.expect("shuts down");
}

/// A typed handle looks its type up once, when it is made (calls then skip
/// the registry): a handle of a type this runtime does not have is still
/// refused at every call and send, before anything is queued.
#[tokio::test]
async fn a_handle_of_an_unregistered_type_is_refused_before_queueing() {
    #[stateful_function]
    #[derive(Default, Serialize, Deserialize)]
    pub struct Unregistered {
        n: u64,
    }

    #[stateful_function]
    impl Unregistered {
        #[handler]
        pub fn add(&mut self, by: u64) -> u64 {
            self.n += by;
            self.n
        }
    }

    let runtime = counter_runtime().await;
    let handle = runtime.handle::<Unregistered>("x");
    for _ in 0..2 {
        let err = handle.add(1).await.expect_err("not registered");
        assert!(matches!(err, Error::UnknownFunction { .. }), "{err:?}");
        let err = handle.add(1).send().await.expect_err("not registered");
        assert!(matches!(err, Error::UnknownFunction { .. }), "{err:?}");
        assert_eq!(runtime.inner().in_flight(), 0, "nothing was queued");
    }
    assert_eq!(runtime.handle::<Counter>("x").add(1).await.expect("ok"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_runtime_s_code_takes_the_shard_s_group_down_and_recovers_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::builder()
        .data_dir(dir.path())
        .shards(2)
        .workers(1)
        .register::<Counter>()
        .register_erased(
            "panic_tests.Bomb",
            std::sync::Arc::new(crate::shard::panic_tests::Bomb),
        )
        .open()
        .await
        .expect("opens");
    let counter = runtime.handle::<Counter>("c");
    assert_eq!(counter.add(1).await.expect("ok"), 1);
    let bomb = Address::new("panic_tests.Bomb", "x").expect("valid");
    let rx = runtime
        .inner()
        .submit_call(bomb, vec![0], None)
        .expect("accepted");
    let answer = tokio::time::timeout(std::time::Duration::from_secs(30), rx)
        .await
        .expect("the panicking call is answered, not stranded");
    assert!(answer.is_err(), "{answer:?}");
    // The group comes back with what was committed before.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let n = loop {
        match counter.add(1).await {
            Ok(n) => break n,
            Err(Error::Unavailable { .. }) => {
                assert!(tokio::time::Instant::now() < deadline, "never recovered");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    };
    assert_eq!(n, 2);
    assert_eq!(runtime.recoveries(), 1);
    tokio::time::timeout(std::time::Duration::from_secs(30), runtime.shutdown())
        .await
        .expect("shutdown finishes")
        .expect("cleanly");
}

/// A key is stored with its reply and written into every checkpoint of
/// its shard: one too long for the store would break them all
/// (exactly-once review #9). The Rust API checks as HTTP does.
#[tokio::test]
async fn an_overlong_or_unprintable_idempotency_key_is_refused_at_submit() {
    let runtime = counter_runtime().await;
    let counter = runtime.handle::<Counter>("keyed");
    let longest = "k".repeat(crate::MAX_IDEMPOTENCY_KEY_LEN);
    assert_eq!(
        counter
            .add(1)
            .idempotency_key(longest)
            .await
            .expect("a valid key"),
        1
    );
    let too_long = "k".repeat(crate::MAX_IDEMPOTENCY_KEY_LEN + 1);
    for bad in [too_long, String::new(), "a b".into(), "caf\u{e9}".into()] {
        let err = counter
            .add(1)
            .idempotency_key(bad.clone())
            .await
            .expect_err("refused");
        assert!(
            matches!(err, Error::InvalidIdempotencyKey { .. }),
            "{err:?}"
        );
        let err = runtime
            .call_json(
                "Counter",
                "keyed",
                "add",
                serde_json::json!({"by": 1}),
                Some(bad),
            )
            .await
            .expect_err("refused");
        assert!(
            matches!(err, Error::InvalidIdempotencyKey { .. }),
            "{err:?}"
        );
    }
    assert_eq!(
        counter.add(0).await.expect("ok"),
        1,
        "nothing refused was applied"
    );
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_workers() {
    let runtime = counter_runtime().await;
    let inner = std::sync::Arc::clone(&runtime.owner.inner);
    drop(runtime);
    assert!(inner.stopped.load(std::sync::atomic::Ordering::SeqCst));
}
