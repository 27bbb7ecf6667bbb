//! A failing log takes down only its shards: calls to them get
//! `Unavailable`, every other shard keeps serving, and once the disk heals
//! the failed shards come back with their state intact.

use std::sync::Arc;

use statefn::{Address, prelude::*};
use statefn_examples::bank::Account;
use statefn_store::{FaultyFs, StdFs};
use statefn_tests::eventually;

/// An account id owned by `shard` (of 4).
fn id_on_shard(shard: u16, tag: &str) -> String {
    (0..)
        .map(|i| format!("{tag}-{i}"))
        .find(|id| Address::new("Account", id).expect("valid").shard(4) == shard)
        .expect("some id lands on every shard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_recovers_while_others_serve() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = Arc::new(FaultyFs::new(Arc::new(StdFs)));
    let faults = fs.faults();
    let runtime = Runtime::builder()
        .data_dir(dir.path())
        .shards(4)
        .log_groups(4) // one log per shard: the smallest failure domain
        .file_system(fs)
        .register::<Account>()
        .open()
        .await?;
    let victim = runtime.handle::<Account>(id_on_shard(1, "victim"));
    let healthy: Vec<_> = [0, 2, 3]
        .iter()
        .map(|&s| runtime.handle::<Account>(id_on_shard(s, "healthy")))
        .collect();
    victim
        .deposit(100)
        .idempotency_key("v-0")
        .await?
        .expect("a positive amount");
    for account in &healthy {
        account.deposit(100).await?.expect("a positive amount");
    }

    // Shard 1's disk starts failing every fsync.
    faults.only_paths_containing("group-0001");
    faults.fail_syncs();
    let err = victim
        .deposit(5)
        .idempotency_key("v-1")
        .await
        .expect_err("its log cannot sync");
    assert!(
        matches!(&err, Error::Unavailable { shard: 1, .. }),
        "expected Unavailable from shard 1, got {err:?}"
    );
    assert!(err.to_string().contains("same idempotency key"), "{err}");

    // While shard 1 cannot recover, calls to it are refused at once with a
    // retry hint...
    let refused = victim
        .deposit(7)
        .idempotency_key("v-2")
        .await
        .expect_err("shard 1 is recovering");
    match &refused {
        Error::Unavailable {
            shard: 1,
            retry_after,
            ..
        } => assert!(!retry_after.is_zero()),
        other => panic!("expected Unavailable from shard 1, got {other:?}"),
    }
    // ...and every other shard keeps serving.
    for round in 1..=50 {
        for account in &healthy {
            assert_eq!(account.deposit(1).await?, Ok(100 + round));
        }
    }
    assert!(
        runtime
            .shard_status()
            .iter()
            .any(|s| s.shard == 1 && !s.serving),
        "shard 1 is still down while its disk fails"
    );

    faults.heal();
    // Once healed it serves again: the client retries with its key.
    eventually(20, || async {
        victim.deposit(7).idempotency_key("v-2").await.ok()
    })
    .await
    .expect("a positive amount");
    // The call that failed is retried with its key: applied exactly once,
    // whether or not its record had reached the disk before the failure.
    victim
        .deposit(5)
        .idempotency_key("v-1")
        .await?
        .expect("a positive amount");
    victim
        .deposit(5)
        .idempotency_key("v-1")
        .await?
        .expect("a positive amount");
    assert_eq!(victim.balance().await?, 112);
    assert!(runtime.recoveries() >= 1);
    for account in &healthy {
        assert_eq!(account.balance().await?, 150);
    }
    runtime.shutdown().await
}
