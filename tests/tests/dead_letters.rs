//! Poison messages: a message from a function whose handler keeps panicking
//! is retried with backoff, then becomes a durable dead letter that can be
//! inspected, replayed or dropped; the sender's later messages go on.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use statefn::{RetryPolicy, prelude::*};
use statefn_tests::eventually;

/// While set, `Inbox::take` panics on the text "poison".
static POISON_PANICS: AtomicBool = AtomicBool::new(true);

#[stateful_function(name = "test.Inbox")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Inbox {
    items: Vec<String>,
}

#[stateful_function]
impl Inbox {
    #[handler]
    pub fn take(&mut self, text: String) {
        assert!(
            !(text == "poison" && POISON_PANICS.load(Ordering::SeqCst)),
            "cannot digest {text}"
        );
        self.items.push(text);
    }

    #[handler]
    pub fn items(&self) -> Vec<String> {
        self.items.clone()
    }
}

#[stateful_function(name = "test.Postman")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Postman {}

#[stateful_function]
impl Postman {
    #[handler]
    pub fn deliver(&mut self, ctx: &mut Context, to: String, texts: Vec<String>) {
        for text in texts {
            ctx.send::<Inbox>(&to).take(text);
        }
    }
}

async fn open(dir: &std::path::Path) -> Result<Runtime, Error> {
    Runtime::builder()
        .data_dir(dir)
        .retry_policy(RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
        })
        .register::<Inbox>()
        .register::<Postman>()
        .open()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_becomes_a_dead_letter_that_can_be_replayed_or_dropped()
-> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = open(dir.path()).await?;
    let texts = ["a", "poison", "b"].map(String::from).to_vec();
    runtime
        .handle::<Postman>("p")
        .deliver("box".into(), texts)
        .await?;

    // The poison is retried, then dead-lettered; "b" is not held up by it.
    let inbox = runtime.handle::<Inbox>("box");
    let letters = eventually(20, || async {
        let letters = runtime.dead_letters().await;
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(inbox.items().await?, ["a", "b"]);
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.target.to_string(), "test.Inbox/box");
    assert!(
        letter.error.contains("cannot digest poison"),
        "{}",
        letter.error
    );
    assert_eq!(
        letter.message,
        serde_json::json!({"take": {"text": "poison"}})
    );

    // Dead letters are durable.
    runtime.shutdown().await?;
    let runtime = open(dir.path()).await?;
    assert_eq!(runtime.dead_letters().await, letters);

    // Replayed once the bug is fixed: applied once, and gone from the list.
    POISON_PANICS.store(false, Ordering::SeqCst);
    runtime.replay_dead_letter(letter.id).await?;
    let inbox = runtime.handle::<Inbox>("box");
    eventually(10, || async {
        (inbox.items().await.ok()?.len() == 3).then_some(())
    })
    .await;
    assert_eq!(inbox.items().await?, ["a", "b", "poison"]);
    assert!(runtime.dead_letters().await.is_empty());
    let again = runtime
        .replay_dead_letter(letter.id)
        .await
        .expect_err("gone");
    assert!(
        matches!(again, Error::UnknownDeadLetter { .. }),
        "{again:?}"
    );

    // A dropped one is never applied.
    POISON_PANICS.store(true, Ordering::SeqCst);
    runtime
        .handle::<Postman>("p")
        .deliver("box2".into(), vec!["poison".into()])
        .await?;
    let letters = eventually(20, || async {
        let letters = runtime.dead_letters().await;
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    runtime.drop_dead_letter(letters[0].id).await?;
    assert!(runtime.dead_letters().await.is_empty());
    POISON_PANICS.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(runtime.handle::<Inbox>("box2").items().await?.is_empty());
    runtime.shutdown().await
}

/// `(inbox id, postman id)` on shards 1 and 0 of 2, so that with two log
/// groups they are in different groups.
fn ids_on_two_groups() -> (String, String) {
    let on = |type_name: &str, shard: u16, tag: &str| {
        (0..)
            .map(|i| format!("{tag}-{i}"))
            .find(|id| {
                statefn::Address::new(type_name, id)
                    .expect("valid")
                    .shard(2)
                    == shard
            })
            .expect("some id lands on the shard")
    };
    (on("test.Inbox", 1, "box"), on("test.Postman", 0, "p"))
}

/// The listing shows only dead letters whose record is durable: not one
/// made by a batch whose commit failed (exactly-once review #12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_whose_commit_failed_is_never_listed() -> Result<(), Error> {
    use statefn_store::{FaultyFs, StdFs};
    use std::sync::Arc;

    let dir = tempfile::tempdir().expect("temp dir");
    let fs = Arc::new(FaultyFs::new(Arc::new(StdFs)));
    let faults = fs.faults();
    let runtime = Runtime::builder()
        .data_dir(dir.path())
        .shards(2)
        .log_groups(2)
        .file_system(fs)
        .retry_policy(RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        })
        .register::<Inbox>()
        .register::<Postman>()
        .open()
        .await?;
    let (inbox, postman) = ids_on_two_groups();
    // The inbox's log cannot sync: the batch that makes the dead letter
    // fails, and its group stays down while the disk fails.
    faults.only_paths_containing("group-0001");
    faults.fail_syncs();
    runtime
        .handle::<Postman>(&postman)
        .deliver(inbox.clone(), vec!["poison".into()])
        .await?;
    eventually(20, || async {
        runtime
            .shard_status()
            .iter()
            .any(|s| s.shard == 1 && !s.serving)
            .then_some(())
    })
    .await;
    assert!(
        runtime.dead_letters().await.is_empty(),
        "a dead letter that was never committed is listed"
    );
    // Healed: the postman re-sends, the message fails again, and this
    // time its dead letter is durable and listed once.
    faults.heal();
    let letters = eventually(20, || async {
        let letters = runtime.dead_letters().await;
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].target.id(), inbox);
    runtime.shutdown().await
}
