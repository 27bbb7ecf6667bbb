//! Cluster mode (issue 12, feature `cluster`): log groups on NATS
//! JetStream, fenced ownership, forwarding, messages between nodes.
//!
//! statefn adds no consensus and no replication of its own: each log
//! group's log is a replicated JetStream stream ([`JetStreamBackend`]), one
//! writer per group is enforced in the stream by fence records, and a
//! JetStream key-value bucket decides who *should* own each group. Open a
//! node with [`Builder::cluster`](crate::Builder::cluster); `docs/cluster.md`
//! describes the protocol and what each acknowledgement means.
//!
//! | concern | module |
//! | --- | --- |
//! | configuration, and the settings every node must share | `config` |
//! | names of streams, buckets and subjects | `names` |
//! | a log group's log as a stream: fencing, pipelined appends, replay | `jetstream_log`, `acker`, `replay` |
//! | who is alive (heartbeats) | `membership` |
//! | who should own each group (balanced rendezvous) | `placement` |
//! | owners table, takeover, handoff, step-down | `ownership` |
//! | standbys: following a group served elsewhere | `standby` |
//! | snapshots of groups, and trimming their streams | `snapshot` |
//! | any node answers any call | `forward` |
//! | messages, acks and re-sends between nodes | `mail` |
//! | egress logs as streams | `egress_streams` |
//! | the node itself, and what operators see | `node`, `status` |
//!
//! The runtime meets this module only through its seams:
//! `runtime/transport.rs` (traffic for shards served elsewhere) and
//! `runtime/groups.rs` (acquiring and giving up groups at runtime).

mod acker;
mod config;
mod egress_streams;
mod error;
mod forward;
mod jetstream_log;
mod log_api;
mod mail;
mod membership;
mod names;
mod node;
mod ownership;
mod placement;
mod replay;
mod snapshot;
mod standby;
mod status;
mod wire;

pub use config::ClusterConfig;
pub use error::ClusterError;
pub use jetstream_log::{JetStreamBackend, JetStreamOptions};
pub use log_api::{
    CommitLog, Epoch, FlushWait, LogBackend, LogError, LogGroupId, LogRecord, LogStats, Lsn,
    OpenedLog, PendingFlush, WalError,
};
pub(crate) use node::ClusterNode;
pub use status::{ClusterStatus, GroupStatus, NodeStatus};
