//! Messages from one sender to one instance arrive in the order sent, and
//! each exactly once, while other senders interleave.

use statefn::prelude::*;
use statefn_tests::{Emitter, Recorder, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_sender_order_is_kept() -> Result<(), Error> {
    let runtime = Runtime::builder()
        .in_memory()
        .workers(4)
        .register::<Emitter>()
        .register::<Recorder>()
        .open()
        .await?;
    let senders = ["e1", "e2", "e3", "e4"];
    let batches = 20;
    let per_batch = 25;
    let mut tasks = Vec::new();
    for name in senders {
        let emitter = runtime.handle::<Emitter>(name);
        tasks.push(tokio::spawn(async move {
            for _ in 0..batches {
                emitter.emit("sink".into(), per_batch).await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for t in tasks {
        t.await.expect("task")?;
    }
    let recorder = runtime.handle::<Recorder>("sink");
    let total = senders.len() * usize::try_from(batches * per_batch).expect("small");
    let seen = eventually(10, || async {
        let seen = recorder.seen().await.ok()?;
        (seen.len() >= total).then_some(seen)
    })
    .await;
    assert_eq!(seen.len(), total, "nothing delivered twice");
    for name in senders {
        let from_one: Vec<u64> = seen
            .iter()
            .filter(|(from, _)| from == name)
            .map(|(_, n)| *n)
            .collect();
        let expected: Vec<u64> = (0..batches * per_batch).collect();
        assert_eq!(
            from_one, expected,
            "messages from {name} out of order or missing"
        );
    }
    runtime.shutdown().await
}
