//! The log trait the JetStream log implements: `statefn_store`'s, re-exported
//! here so the cluster modules name it in one place.

pub use statefn_store::{
    CommitLog, Epoch, FlushWait, LogBackend, LogError, LogGroupId, LogRecord, LogStats, Lsn,
    OpenedLog, PendingFlush, WalError,
};
