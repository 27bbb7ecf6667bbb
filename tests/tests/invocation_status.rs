//! `Runtime::invocation`: a client follows the invocation it enqueued
//! (`Call::send`, `send_after`) by its id: scheduled or pending, then done
//! with its reply, failed (a dead letter) or cancelled. The outcome is
//! stored with the invocation's own commit, so it survives a restart, and a
//! wait returns when the invocation completes.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use statefn::{Address, InvocationId, InvocationStatus, JsonReply, RetryPolicy, prelude::*};

#[stateful_function(name = "test.Jobs")]
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Jobs {
    done: u32,
}

#[stateful_function]
impl Jobs {
    #[handler]
    fn run(&mut self, n: u32) -> u32 {
        self.done += n;
        self.done
    }

    #[handler]
    fn explode(&mut self) {
        panic!("this job always fails");
    }
}

const WAIT: Duration = Duration::from_secs(30);

async fn open(dir: &std::path::Path) -> Result<Runtime, Error> {
    Runtime::builder()
        .data_dir(dir)
        .retry_policy(RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(20),
        })
        .register::<Jobs>()
        .open()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_is_kept_across_a_restart() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = open(dir.path()).await?;
    let jobs = runtime.handle::<Jobs>("j");
    let id = jobs.run(3).idempotency_key("job-1").send().await?;
    assert_eq!(id.to_string(), "test~2EJobs.j.job-1");
    let done = runtime.invocation(&id, WAIT).await?;
    assert_eq!(done, InvocationStatus::Done(JsonReply::Ok(3.into())));
    let failed_id = jobs.explode().send().await?;
    let failed = runtime.invocation(&failed_id, WAIT).await?;
    let InvocationStatus::Failed { error } = &failed else {
        panic!("expected a failure, got {failed:?}");
    };
    assert!(error.contains("this job always fails"), "{error}");
    runtime.shutdown().await?;

    // Reopened: the outcomes come from the log (or the checkpoint).
    let runtime = open(dir.path()).await?;
    assert_eq!(runtime.invocation(&id, Duration::ZERO).await?, done);
    assert_eq!(
        runtime.invocation(&failed_id, Duration::ZERO).await?,
        failed
    );
    // Parsed back from its text, as an HTTP client has it.
    let parsed: InvocationId = id.to_string().parse()?;
    assert_eq!(runtime.invocation(&parsed, Duration::ZERO).await?, done);
    // It ran once: enqueueing it again runs nothing.
    assert_eq!(
        runtime
            .handle::<Jobs>("j")
            .run(3)
            .idempotency_key("job-1")
            .send()
            .await?,
        id
    );
    assert_eq!(runtime.handle::<Jobs>("j").run(0).await?, 3);
    runtime.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_returns_when_the_invocation_completes() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = open(dir.path()).await?;
    let jobs = runtime.handle::<Jobs>("w");
    let id = jobs.run(5).send_after(Duration::from_millis(300)).await?;
    assert_eq!(
        runtime.invocation(&id, Duration::ZERO).await?,
        InvocationStatus::Scheduled
    );
    // Waits past the delay, for the run: the answer is the reply, not a
    // status that is still scheduled.
    let done = runtime.invocation(&id, WAIT).await?;
    assert_eq!(done, InvocationStatus::Done(JsonReply::Ok(5.into())));
    runtime.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_cancelled_or_unknown_invocation_says_so() -> Result<(), Error> {
    let runtime = Runtime::builder()
        .in_memory()
        .register::<Jobs>()
        .open()
        .await?;
    let jobs = runtime.handle::<Jobs>("c");
    let id = jobs.run(1).send_after(Duration::from_secs(3600)).await?;
    runtime.cancel_invocation(&id).await?;
    assert_eq!(
        runtime.invocation(&id, Duration::ZERO).await?,
        InvocationStatus::Cancelled
    );
    // Final: a wait does not wait.
    assert_eq!(
        runtime.invocation(&id, WAIT).await?,
        InvocationStatus::Cancelled
    );
    let never = InvocationId::enqueued(Address::new("test.Jobs", "c")?, "never");
    assert_eq!(
        runtime.invocation(&never, WAIT).await?,
        InvocationStatus::Unknown
    );
    let not_enqueued = InvocationId::from_key("k");
    assert_eq!(
        runtime.invocation(&not_enqueued, Duration::ZERO).await?,
        InvocationStatus::Unknown
    );
    runtime.shutdown().await?;
    Ok(())
}
