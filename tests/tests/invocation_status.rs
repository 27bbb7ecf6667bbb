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

/// Why there is no "running" status: a status is answered by the
/// instance's shard, which runs one mail at a time, so a query is answered
/// either before the handler ran (pending) or after it (done); and like
/// every reply, the answer leaves only once the batch that read it is
/// committed, after the invocation's own. So whatever a client was told
/// survives a crash: statuses never go back. A "running" answer (the
/// handler ran, its commit pending) would have to leave before that
/// commit, and a crash could turn it back into pending. Checked here at
/// every point of the invocation's run that the seed picks.
#[test]
fn every_status_answered_survives_a_crash_so_none_is_running() -> Result<(), Error> {
    use statefn::testing::TestRuntime;
    let id = InvocationId::enqueued(Address::new("test.Jobs", "j")?, "job");
    let done = InvocationStatus::Done(JsonReply::Ok(2.into()));
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..16u64 {
        let mut rt = TestRuntime::builder()
            .seed(seed)
            .register::<Jobs>()
            .start()?;
        // Enqueue, let it go on for a number of steps the seed picks, then
        // ask while it may be anywhere: before its enqueue committed, on
        // its way, run, or run and committing.
        let sent = rt.start(rt.handle::<Jobs>("j").run(2).idempotency_key("job").send());
        for _ in 0..seed % 8 {
            rt.step();
        }
        let runtime = rt.runtime().clone();
        let asked = id.clone();
        let mut status = rt.start(async move { runtime.invocation(&asked, Duration::ZERO).await });
        while status.result().is_none() {
            assert!(rt.step(), "the status query is answered");
        }
        let told = status.take().expect("answered")?;
        let enqueued = matches!(sent.take(), Some(Ok(_)));
        // Crash as soon as the client was told: what it was told stands.
        rt.crash()?;
        let runtime = rt.runtime().clone();
        let asked = id.clone();
        let after = rt.call(async move { runtime.invocation(&asked, Duration::ZERO).await })?;
        match &told {
            InvocationStatus::Unknown => {}
            InvocationStatus::Pending => assert!(
                after == InvocationStatus::Pending || after == done,
                "seed {seed}: {after:?} after pending"
            ),
            told if *told == done => assert_eq!(after, done, "seed {seed}: taken back"),
            other => panic!("seed {seed}: {other:?}"),
        }
        seen.insert(told.name());
        if enqueued || told != InvocationStatus::Unknown {
            rt.run_until_idle();
            let runtime = rt.runtime().clone();
            let asked = id.clone();
            let last = rt.call(async move { runtime.invocation(&asked, Duration::ZERO).await })?;
            assert_eq!(last, done, "seed {seed}: it runs once, to the end");
            assert_eq!(
                rt.state::<Jobs>("j")?,
                Some(Jobs { done: 2 }),
                "seed {seed}"
            );
        }
    }
    // Each point of the run was asked about.
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["done", "pending"],
        "the seeds ask before and after the run"
    );
    Ok(())
}
