//! A call answered "not committed" after a failed write or fsync of its log
//! is never applied by the recovery that follows, so a retry without an
//! idempotency key applies it once (exactly-once review #2 and #3).

use std::{path::Path, sync::Arc};

use statefn::{Address, prelude::*, testing::TestRuntime};
use statefn_examples::bank::Account;
use statefn_store::{FaultyFs, StdFs};
use statefn_tests::eventually;

fn faulty() -> Arc<FaultyFs> {
    Arc::new(FaultyFs::new(Arc::new(StdFs)))
}

/// Bytes of log in the write-ahead log segments under `dir` (not the zeros
/// written ahead of the records).
fn log_bytes(dir: &Path) -> u64 {
    statefn_tests::wal_files::log_bytes(dir)
}

/// Two ids of one shard (of the test kit's 4).
fn two_on_one_shard() -> (String, String) {
    let mut ids = (0..)
        .map(|i| format!("acct-{i}"))
        .filter(|id| Address::new("Account", id).expect("valid").shard(4) == 0);
    (ids.next().expect("an id"), ids.next().expect("another"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_refused_after_a_failed_fsync_is_not_applied_by_recovery() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = faulty();
    let faults = fs.faults();
    let open = |fs: Arc<FaultyFs>| {
        Runtime::builder()
            .data_dir(dir.path())
            .shards(2)
            .file_system(fs)
            .register::<Account>()
            .open()
    };
    let runtime = open(Arc::clone(&fs)).await?;
    let account = runtime.handle::<Account>("a");
    assert_eq!(account.deposit(100).await?, Ok(100));

    // The record of this keyless call reaches the page cache, its fsync
    // fails: the caller is told it was not committed.
    faults.fail_syncs();
    let err = account.deposit(5).await.expect_err("its fsync failed");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    faults.heal();
    // Once the log group is back, the refused call is not there...
    let balance = eventually(20, || async { account.balance().await.ok() }).await;
    assert_eq!(balance, 100, "a call refused as not committed was applied");
    // ...so the caller's retry, without a key, applies it once.
    assert_eq!(account.deposit(5).await?, Ok(105));
    runtime.shutdown().await?;
    let runtime = open(fs).await?;
    assert_eq!(runtime.handle::<Account>("a").balance().await?, 105);
    runtime.shutdown().await
}

/// Runs two keyless deposits that share one batch (and so one write).
fn two_deposits(rt: &mut TestRuntime, a: &str, b: &str) -> (bool, bool) {
    let first = rt.start(rt.handle::<Account>(a).deposit(10));
    let second = rt.start(rt.handle::<Account>(b).deposit(20));
    rt.run_until_idle();
    let ok = |call: Option<Result<Result<i64, _>, Error>>| matches!(call, Some(Ok(Ok(_))));
    (ok(first.take()), ok(second.take()))
}

/// A short write leaves the first records of a write whole in the file: the
/// calls they belong to were refused and must not be replayed.
#[test]
fn calls_refused_after_a_short_write_are_not_applied_by_recovery() -> Result<(), Error> {
    let (a, b) = two_on_one_shard();
    // How many bytes the two records take, on a scratch runtime.
    let scratch = tempfile::tempdir().expect("temp dir");
    let mut rt = TestRuntime::builder()
        .data_dir(scratch.path())
        .register::<Account>()
        .start()?;
    let before = log_bytes(scratch.path());
    assert_eq!(two_deposits(&mut rt, &a, &b), (true, true));
    let written = log_bytes(scratch.path()) - before;
    drop(rt);

    let dir = tempfile::tempdir().expect("temp dir");
    let fs = faulty();
    let mut rt = TestRuntime::builder()
        .data_dir(dir.path())
        .file_system(fs.clone())
        .register::<Account>()
        .start()?;
    // The write stops one byte short: the first record is whole.
    fs.faults()
        .short_write(usize::try_from(written - 1).expect("small"));
    assert_eq!(two_deposits(&mut rt, &a, &b), (false, false));
    assert!(
        rt.state::<Account>(&a)?.is_none(),
        "a refused call was replayed"
    );
    assert!(
        rt.state::<Account>(&b)?.is_none(),
        "a refused call was replayed"
    );
    // Retried without a key, each applies once.
    assert_eq!(two_deposits(&mut rt, &a, &b), (true, true));
    rt.crash()?;
    assert_eq!(rt.call(rt.handle::<Account>(&a).balance())?, 10);
    assert_eq!(rt.call(rt.handle::<Account>(&b).balance())?, 20);
    Ok(())
}
