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
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), statefn::Error> {
    /// let runtime = statefn::Runtime::builder().in_memory().open().await?;
    /// assert_eq!(runtime.commit_phases().commits, 0);
    /// # Ok(())
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
