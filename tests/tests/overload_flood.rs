//! A flood of calls gets `Overloaded` errors, not unbounded memory: mailboxes
//! never hold more than their capacity, and every accepted call is applied.

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
