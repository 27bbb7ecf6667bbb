//! Cluster mode (issue 12): log groups' logs as NATS JetStream streams.
//!
//! Enabled by the `cluster` feature. What is here so far is the log layer:
//! [`JetStreamBackend`] implements [`LogBackend`] (one replicated stream per
//! log group, single writer enforced by fence records), so the runtime's
//! commit path can write to JetStream instead of the local WAL. Ownership,
//! standbys, forwarding and placement build on it.
//!
//! `log_api` is a stand-in copy of the log trait until `statefn_store::log`
//! lands; the lead will switch the import.

mod acker;
mod jetstream_log;
mod log_api;
mod replay;

pub use jetstream_log::{JetStreamBackend, JetStreamOptions};
pub use log_api::{
    CommitLog, Epoch, FlushWait, LogBackend, LogError, LogGroupId, LogRecord, LogStats, Lsn,
    OpenedLog, PendingFlush, WalError,
};
