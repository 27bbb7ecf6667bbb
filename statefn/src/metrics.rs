//! Metric names, recorded through the `metrics` facade: install any
//! recorder (the HTTP ingress serves them as Prometheus text at `/metrics`).
//!
//! Hot-path counts are summed per batch and recorded once per batch, so
//! metrics cost nothing per invocation.

/// Invocations by outcome: `applied`, `rejected` (handler `Err`), `failed`
/// (panic or bad input), `duplicate` (answered from a stored reply or dropped
/// as a re-delivery).
pub const INVOCATIONS: &str = "statefn_invocations_total";
/// Client call latency, submit to reply, in seconds.
pub const CALL_DURATION: &str = "statefn_call_duration_seconds";
/// Invocations per group commit.
pub const COMMIT_BATCH: &str = "statefn_commit_batch_invocations";
/// `fdatasync` latency of a log group, in seconds.
pub const FSYNC_DURATION: &str = "statefn_fsync_duration_seconds";
/// Mail waiting in a shard's mailbox (label `shard`).
pub const MAILBOX_DEPTH: &str = "statefn_mailbox_depth";
/// Time to write one shard checkpoint, in seconds.
pub const CHECKPOINT_DURATION: &str = "statefn_checkpoint_duration_seconds";
/// Log-group recoveries after a failure.
pub const RECOVERIES: &str = "statefn_recoveries_total";
/// Time to recover one log group (open or after a failure), in seconds.
pub const RECOVERY_DURATION: &str = "statefn_recovery_duration_seconds";
/// State cache hits.
pub const CACHE_HITS: &str = "statefn_cache_hits_total";
/// State cache misses (read from disk).
pub const CACHE_MISSES: &str = "statefn_cache_misses_total";

/// Per-batch counts, recorded at the end of the batch.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BatchStats {
    pub(crate) applied: u64,
    pub(crate) rejected: u64,
    pub(crate) failed: u64,
    pub(crate) duplicate: u64,
    pub(crate) cache_hits: u64,
    pub(crate) cache_misses: u64,
}

impl BatchStats {
    pub(crate) fn record(&self) {
        for (outcome, n) in [
            ("applied", self.applied),
            ("rejected", self.rejected),
            ("failed", self.failed),
            ("duplicate", self.duplicate),
        ] {
            if n > 0 {
                metrics::counter!(INVOCATIONS, "outcome" => outcome).increment(n);
            }
        }
        if self.cache_hits > 0 {
            metrics::counter!(CACHE_HITS).increment(self.cache_hits);
        }
        if self.cache_misses > 0 {
            metrics::counter!(CACHE_MISSES).increment(self.cache_misses);
        }
    }
}
