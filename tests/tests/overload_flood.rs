//! A flood of calls gets `Overloaded` errors, not unbounded memory: mailboxes
//! never hold more than their capacity, and every accepted call is applied.
//! In durable mode a stalled disk does not turn into a growing commit queue:
//! it is bounded (`Builder::commit_queue_bytes`), the workers wait, the
//! mailboxes fill, and the flood is refused.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use statefn::prelude::*;
use statefn_examples::bank::Account;

const CAPACITY: usize = 64;
const CALLS: usize = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_refused_with_overloaded_and_memory_stays_bounded() -> Result<(), Error> {
    let runtime = Runtime::builder()
        .in_memory()
        .shards(2)
        .workers(1)
        .mailbox_capacity(CAPACITY)
        .register::<Account>()
        .open()
        .await?;
    // Watch the mailboxes while the flood runs.
    let deepest = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn({
        let (runtime, deepest, done) = (runtime.clone(), deepest.clone(), done.clone());
        async move {
            while !done.load(Ordering::SeqCst) {
                for s in runtime.shard_status() {
                    deepest.fetch_max(s.mailbox, Ordering::SeqCst);
                }
                tokio::task::yield_now().await;
            }
        }
    });
    let account = runtime.handle::<Account>("flooded");
    // Submit everything at once: no caller waits before the next is sent.
    let calls: Vec<_> = (0..CALLS)
        .map(|_| {
            let account = account.clone();
            tokio::spawn(async move { account.deposit(1).await })
        })
        .collect();
    let (mut applied, mut overloaded) = (0i64, 0usize);
    for call in calls {
        match call.await.expect("task") {
            Ok(_) => applied += 1,
            Err(Error::Overloaded { retry_after, .. }) => {
                assert!(!retry_after.is_zero());
                overloaded += 1;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    done.store(true, Ordering::SeqCst);
    watcher.await.expect("watcher");
    assert!(
        overloaded > 0,
        "a flood of {CALLS} calls against {CAPACITY} slots was never refused"
    );
    assert!(applied > 0);
    assert!(
        deepest.load(Ordering::SeqCst) <= CAPACITY,
        "a mailbox held {} mails, over its capacity {CAPACITY}",
        deepest.load(Ordering::SeqCst)
    );
    assert_eq!(
        account.balance().await?,
        applied,
        "every accepted call applied once"
    );
    runtime.shutdown().await
}

/// The commit queue's bound in the durable test below.
const QUEUE_BYTES: u64 = 4 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_on_a_stalled_disk_is_refused_and_the_commit_queue_stays_bounded()
-> Result<(), Error> {
    use statefn_store::{FaultyFs, StdFs};
    use std::time::Duration;

    let dir = tempfile::tempdir().expect("temp dir");
    let fs = Arc::new(FaultyFs::new(Arc::new(StdFs)));
    let faults = fs.faults();
    let runtime = Runtime::builder()
        .data_dir(dir.path())
        .file_system(fs)
        .shards(1)
        .workers(1)
        .mailbox_capacity(CAPACITY)
        .commit_queue_bytes(QUEUE_BYTES)
        .register::<Account>()
        .open()
        .await?;
    let account = runtime.handle::<Account>("flooded");
    account.deposit(1).await?.expect("positive");
    // The disk stalls: without a bound the workers would drain the mailbox
    // at CPU speed into the log group's queue, which would grow with the
    // flood (and no call would be refused).
    faults.sync_delay(Duration::from_secs(3));
    let deepest = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn({
        let (runtime, deepest, done) = (runtime.clone(), deepest.clone(), done.clone());
        async move {
            while !done.load(Ordering::SeqCst) {
                for s in runtime.shard_status() {
                    let queued = usize::try_from(s.commit_queue_bytes).unwrap_or(usize::MAX);
                    deepest.fetch_max(queued, Ordering::SeqCst);
                }
                tokio::task::yield_now().await;
            }
        }
    });
    // Waves smaller than a mailbox, each given a moment to be taken: a
    // worker that takes every wave (no bound) never lets a mailbox fill.
    let mut calls = Vec::new();
    for _ in 0..300 {
        for _ in 0..CAPACITY / 2 {
            let account = account.clone();
            calls.push(tokio::spawn(async move { account.deposit(1).await }));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    faults.heal();
    let (mut applied, mut overloaded) = (1i64, 0usize);
    for call in calls {
        match call.await.expect("task") {
            Ok(_) => applied += 1,
            Err(Error::Overloaded { .. }) => overloaded += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    done.store(true, Ordering::SeqCst);
    watcher.await.expect("watcher");
    assert!(
        overloaded > 0,
        "a flood on a stalled disk was never refused"
    );
    // The bound, plus the one batch a worker may hand over past it (a
    // mailbox's worth of deposit records, ~20 bytes each).
    let bound = usize::try_from(QUEUE_BYTES).expect("small") + CAPACITY * 128;
    let deepest = deepest.load(Ordering::SeqCst);
    assert!(
        deepest <= bound,
        "the commit queue held {deepest} bytes, over its bound {bound}"
    );
    assert_eq!(
        account.balance().await?,
        applied,
        "every accepted call applied once"
    );
    runtime.shutdown().await
}
