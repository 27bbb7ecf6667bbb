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

/// Fans messages out to [`Sink`]s: one invocation sends `count` messages of
/// `bytes` bytes to each of `sinks` sinks.
#[stateful_function]
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Fan {
    sent: u64,
}

#[stateful_function]
impl Fan {
    #[handler]
    fn fan(&mut self, ctx: &mut Context, sinks: u32, count: u32, bytes: u32) -> u64 {
        for n in 0..count {
            for sink in 0..sinks {
                let payload = vec![u8::try_from(n % 251).unwrap_or(0); bytes as usize];
                ctx.send::<Sink>(&format!("sink-{sink}")).take(payload);
                self.sent += 1;
            }
        }
        self.sent
    }
}

/// A receiver slower than its senders: each message takes a moment.
#[stateful_function]
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Sink {
    got: u64,
}

#[stateful_function]
impl Sink {
    #[handler]
    fn take(&mut self, payload: Vec<u8>) {
        std::thread::sleep(std::time::Duration::from_micros(100));
        self.got += u64::from(!payload.is_empty());
    }

    #[handler]
    fn got(&self) -> u64 {
        self.got
    }
}

/// The mailbox bound on messages from functions in the test below.
const FUNCTION_MAIL_BYTES: u64 = 64 << 10;

/// Watches the deepest value of `of` over every shard until `done`.
fn watch(
    runtime: &Runtime,
    of: fn(&statefn::ShardStatus) -> u64,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<u64>) {
    let done = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn({
        let (runtime, done) = (runtime.clone(), done.clone());
        async move {
            let mut deepest = 0;
            while !done.load(Ordering::SeqCst) {
                for s in runtime.shard_status() {
                    deepest = deepest.max(of(&s));
                }
                tokio::task::yield_now().await;
            }
            deepest
        }
    });
    (done, watcher)
}

/// Messages between functions are committed by their senders, so a
/// receiver's full mailbox need not hold them: in durable mode they wait in
/// their senders' outboxes and are re-sent when the receiver asks. The
/// queued bytes stay under the bound and every message is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_faster_than_its_receivers_waits_in_the_outboxes_not_in_memory()
-> Result<(), Error> {
    use std::time::{Duration, Instant};

    const SINKS: u32 = 4;
    const COUNT: u32 = 250;
    const FANS: u32 = 4;
    const BYTES: u32 = 256;
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::builder()
        .data_dir(dir.path())
        .shards(4)
        .workers(2)
        .function_mail_bytes(FUNCTION_MAIL_BYTES)
        .register::<Fan>()
        .register::<Sink>()
        .open()
        .await?;
    let (done, watcher) = watch(&runtime, |s| s.function_mail_bytes);
    // 4 x 250 x 4 messages of 256 bytes: some 2 MiB queued at once without
    // a bound.
    let fans: Vec<_> = (0..FANS)
        .map(|f| {
            let fan = runtime.handle::<Fan>(format!("fan-{f}"));
            tokio::spawn(async move { fan.fan(SINKS, COUNT, BYTES).await })
        })
        .collect();
    for fan in fans {
        assert_eq!(fan.await.expect("task")?, u64::from(SINKS * COUNT));
    }
    let expected = u64::from(FANS * COUNT);
    let deadline = Instant::now() + Duration::from_secs(120);
    for sink in 0..SINKS {
        let sink = runtime.handle::<Sink>(format!("sink-{sink}"));
        // A liveness bound only: refused messages come back by re-sends.
        while sink.got().await? < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(sink.got().await?, expected, "every message applied once");
    }
    done.store(true, Ordering::SeqCst);
    let deepest = watcher.await.expect("watcher");
    eprintln!("deepest mailbox: {deepest} bytes of messages from functions");
    assert!(
        deepest <= FUNCTION_MAIL_BYTES,
        "a mailbox held {deepest} bytes of messages from functions, over its bound \
         {FUNCTION_MAIL_BYTES}"
    );
    assert!(
        deepest > 0,
        "the watcher never saw a message queued: it tested nothing"
    );
    runtime.shutdown().await
}

/// Writes every note to the egress log `notes`.
#[stateful_function]
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Journal {
    notes: u64,
}

#[stateful_function]
impl Journal {
    #[handler]
    fn note(&mut self, ctx: &mut Context, text: String) -> u64 {
        ctx.emit("notes", &text);
        self.notes += 1;
        self.notes
    }
}

/// The egress queue's bound in the test below.
const EGRESS_QUEUE_BYTES: u64 = 8 << 10;

/// A state store that cannot take egress records does not turn into a
/// growing egress queue: past its bound the workers wait, the mailboxes
/// fill and the flood is refused; once the store heals, every accepted
/// call's record is in the log once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_on_a_failing_egress_store_is_refused_and_the_egress_queue_stays_bounded()
-> Result<(), Error> {
    use std::time::Duration;

    let dir = tempfile::tempdir().expect("temp dir");
    let faults = statefn::StoreFaults::default();
    let runtime = Runtime::builder()
        .data_dir(dir.path())
        .shards(1)
        .workers(1)
        .mailbox_capacity(CAPACITY)
        .commit_queue_bytes(QUEUE_BYTES)
        .egress_queue_bytes(EGRESS_QUEUE_BYTES)
        .store_faults(faults.clone())
        .register::<Journal>()
        .open()
        .await?;
    let journal = runtime.handle::<Journal>("j");
    let text = "n".repeat(400);
    journal.note(text.clone()).await?;
    faults.fail_writes();
    let (done, watcher) = watch(&runtime, |s| s.egress_queue_bytes);
    let mut calls = Vec::new();
    for _ in 0..300 {
        for _ in 0..CAPACITY / 2 {
            let (journal, text) = (journal.clone(), text.clone());
            calls.push(tokio::spawn(async move { journal.note(text).await }));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The calls the mailbox took wait for the store.
    faults.heal();
    let (mut applied, mut overloaded) = (1u64, 0usize);
    for call in calls {
        match call.await.expect("task") {
            Ok(_) => applied += 1,
            Err(Error::Overloaded { .. }) => overloaded += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    done.store(true, Ordering::SeqCst);
    let deepest = watcher.await.expect("watcher");
    eprintln!("deepest egress queue: {deepest} bytes; {applied} applied, {overloaded} refused");
    assert!(
        overloaded > 0,
        "a flood on a failing egress store was never refused"
    );
    // The bound, plus what passes the worker's check: one batch (a mailbox
    // of ~490-byte records). Batches being committed count against the
    // bound, so the commit queue adds nothing.
    let bound = EGRESS_QUEUE_BYTES + CAPACITY as u64 * 512;
    assert!(
        deepest <= bound,
        "the egress queue held {deepest} bytes, over its bound {bound}"
    );
    assert!(deepest > 0, "the watcher never saw a record queued");
    let mut records = Vec::new();
    while (records.len() as u64) < applied {
        let from = records.len() as u64;
        let read = runtime
            .read_egress("notes", from, 1000, Duration::from_secs(10))
            .await?;
        assert!(!read.is_empty(), "records missing after {from}");
        records.extend(read);
    }
    assert_eq!(
        records.len() as u64,
        applied,
        "every accepted call's record once"
    );
    assert_eq!(journal.note(text).await?, applied + 1);
    runtime.shutdown().await
}

/// The egress queue's bound counts a batch's records from the moment the
/// batch is handed to the commit path, not only once its commit is durable:
/// while one batch's record waits for a failing store, no other batch runs,
/// however long its commit takes. (Counted only at release, every batch run
/// while the first was being synced passed the check, and the queue held
/// them all.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_whose_commit_is_in_flight_count_against_the_egress_queue_bound()
-> Result<(), Error> {
    use statefn_store::{FaultyFs, StdFs};
    use std::time::Duration;

    /// Any record queued stops the workers.
    const BOUND: u64 = 1;
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = Arc::new(FaultyFs::new(Arc::new(StdFs)));
    let disk = fs.faults();
    let store = statefn::StoreFaults::default();
    let runtime = Runtime::builder()
        .data_dir(dir.path())
        .file_system(fs)
        .shards(1)
        .workers(1)
        .egress_queue_bytes(BOUND)
        .store_faults(store.clone())
        .register::<Journal>()
        .open()
        .await?;
    let journal = runtime.handle::<Journal>("j");
    journal.note("warm-up".into()).await?;
    let status = || runtime.shard_status()[0].clone();
    // The warm-up's record is stored: the queue is empty, the worker runs.
    statefn_tests::eventually(10, || async {
        (status().egress_queue_bytes == 0).then_some(())
    })
    .await;
    // The store cannot take egress records, and every commit takes a while.
    store.fail_writes();
    disk.sync_delay(Duration::from_secs(1));
    let note = |text: &str| {
        let (journal, text) = (journal.clone(), text.to_owned());
        tokio::spawn(async move { journal.note(text).await })
    };
    let first = note("first");
    // The worker takes it at once, and its commit takes a second: the
    // later calls come while it is in flight (checked, so that a slow
    // machine fails here rather than testing nothing).
    tokio::time::sleep(Duration::from_millis(200)).await;
    statefn_tests::eventually(10, || async { (status().mailbox == 0).then_some(()) }).await;
    assert!(
        !first.is_finished(),
        "the first call's commit was not in flight"
    );
    // The first call's batch is being committed; its record is not queued
    // for the appender yet.
    let later = [note("second"), note("third"), note("fourth")];
    first.await.expect("task")?;
    // One batch may take the queue past its bound: the first one.
    let one_batch = status().egress_queue_bytes;
    assert!(one_batch > BOUND, "the first record waits for the store");
    // Wait until the worker is done with what it may run: each later call
    // has either finished (it ran past the bound) or waits in the mailbox
    // (the bound holds). Nothing changes then until the store heals.
    statefn_tests::eventually(10, || async {
        let finished = later.iter().filter(|c| c.is_finished()).count();
        (finished + status().mailbox == later.len()).then_some(())
    })
    .await;
    let queued = status().egress_queue_bytes;
    assert!(
        queued <= BOUND + one_batch,
        "the egress queue holds {queued} bytes while its store fails: over its bound \
         ({BOUND}) plus the first batch ({one_batch})"
    );
    disk.heal();
    store.heal();
    for call in later {
        call.await.expect("task")?;
    }
    assert_eq!(journal.note("last".into()).await?, 6);
    runtime.shutdown().await
}
