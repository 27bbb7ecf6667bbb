//! Where durable commits spend their time, for benchmarks: the sums the log
//! groups' syncers keep (`commit::log_group::PhaseTimes`), read together.

use std::time::Duration;

use crate::Runtime;

/// Time the log groups' syncers spent in each step of their group commits
/// since the runtime opened, summed over groups (zero in memory mode).
///
/// For benchmarks (`statefn-bench embedded --diagnose`): take two readings
/// and subtract. A group commit takes the batches waiting for it, appends
/// their records, writes them (`write`), waits until they are durable
/// (`sync`), then releases their effects: replies, messages, timers.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitPhases {
    /// Group commits.
    pub commits: u64,
    /// Batches (one per worker turn of a shard) the commits took.
    pub batches: u64,
    /// Log records (invocations) the commits made durable.
    pub invocations: u64,
    /// Summed over batches: from a worker handing a batch over until its
    /// syncer took it (waiting for the commit before to finish).
    pub queued: Duration,
    /// Appending the records to the log.
    pub append: Duration,
    /// The flush's write.
    pub write: Duration,
    /// Waiting until the flush is durable (`fdatasync`).
    pub sync: Duration,
    /// Releasing the committed batches' effects (waking their callers).
    pub release: Duration,
}

impl Runtime {
    /// Where the log groups' commits spent their time so far.
    ///
    /// # Examples
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use statefn::prelude::*;
    /// # #[stateful_function]
    /// # #[derive(Default, Serialize, Deserialize)]
    /// # pub struct Counter { n: u64 }
    /// # #[stateful_function]
    /// # impl Counter { #[handler] pub fn add(&mut self, by: u64) -> u64 { self.n += by; self.n } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), statefn::Error> {
    /// let dir = tempfile::tempdir().expect("temp dir");
    /// let runtime = Runtime::builder().data_dir(dir.path()).register::<Counter>().open().await?;
    /// let before = runtime.commit_phases();
    /// runtime.handle::<Counter>("a").add(1).await?;
    /// let after = runtime.commit_phases();
    /// // The call's record was committed: at least one group commit with it.
    /// assert!(after.invocations > before.invocations);
    /// assert!(after.commits > before.commits && after.batches > before.batches);
    /// # runtime.shutdown().await
    /// # }
    /// ```
    #[doc(hidden)]
    pub fn commit_phases(&self) -> CommitPhases {
        let mut total = CommitPhases::default();
        if let Some(commit) = &self.inner().commit {
            for group in commit.groups.iter() {
                group.stats().phases.add_to(&mut total);
            }
        }
        total
    }
}
