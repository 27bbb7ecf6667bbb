//! `Durability::Periodic`: replies leave once the record is written, but
//! what lets another party act on a commit (a message to another log group,
//! an egress record, an ack) waits for the periodic sync that covers the
//! sender's record, so a machine crash loses only the last interval, not
//! later messages and egress records (exactly-once review #4).

use std::time::Duration;

use statefn::{Address, Durability, prelude::*};
use statefn_examples::bank::Account;
use statefn_tests::eventually;

/// An account id on `shard` of 2.
fn on_shard(shard: u16, tag: &str) -> String {
    (0..)
        .map(|i| format!("{tag}-{i}"))
        .find(|id| Address::new("Account", id).expect("valid").shard(2) == shard)
        .expect("some id lands on the shard")
}

async fn open(dir: &std::path::Path, durability: Durability) -> Result<Runtime, Error> {
    Runtime::builder()
        .data_dir(dir)
        .shards(2)
        .log_groups(2)
        .durability(durability)
        .register::<Account>()
        .open()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_mode_holds_messages_to_other_groups_and_egress_until_the_sync()
-> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    // An interval no test reaches: only shutdown syncs.
    let runtime = open(dir.path(), Durability::Periodic(Duration::from_secs(3600))).await?;
    let (alice, near, far) = (
        on_shard(0, "alice"),
        on_shard(0, "near"),
        on_shard(1, "far"),
    );
    let account = |id: &str| runtime.handle::<Account>(id);
    assert_eq!(account(&alice).deposit(100).await?, Ok(100));
    assert_eq!(account(&alice).transfer(far.clone(), 10).await?, Ok(90));
    assert_eq!(account(&alice).transfer(near.clone(), 5).await?, Ok(85));
    // A message within the log group leaves at once: its receiver's record
    // follows the sender's in the same log, so it can never outlive it.
    eventually(20, || async {
        (account(&near).balance().await.ok()? == 5).then_some(())
    })
    .await;
    // One to another group, and the egress records, wait for the sync.
    assert_eq!(
        account(&far).balance().await?,
        0,
        "a message left before its sender's record was synced"
    );
    assert!(
        runtime
            .read_egress("transfers", 0, 10, Duration::from_millis(100))
            .await?
            .is_empty(),
        "egress was appended before its record was synced"
    );
    // Shutdown syncs and lets them go; each arrives once.
    runtime.shutdown().await?;
    let runtime = open(dir.path(), Durability::Fsync).await?;
    let far_balance = eventually(20, || async {
        let balance = runtime.handle::<Account>(&far).balance().await.ok()?;
        (balance == 10).then_some(balance)
    })
    .await;
    assert_eq!(far_balance, 10);
    let records = eventually(20, || async {
        let records = runtime
            .read_egress("transfers", 0, 10, Duration::from_millis(100))
            .await
            .ok()?;
        (records.len() >= 2).then_some(records)
    })
    .await;
    assert_eq!(records.len(), 2);
    runtime.shutdown().await
}
