//! [`ClusterStatus`]: what `GET /admin/cluster` shows (and
//! [`Runtime::cluster_status`](crate::Runtime::cluster_status) returns).

use serde::Serialize;

pub use super::membership::NodeStatus;

/// The cluster as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ClusterStatus {
    /// The cluster's name.
    pub cluster: String,
    /// The node answering.
    pub node: String,
    /// Every node heard from, this one included.
    pub nodes: Vec<NodeStatus>,
    /// Every log group.
    pub groups: Vec<GroupStatus>,
}

/// One log group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct GroupStatus {
    /// The log group.
    pub group: u16,
    /// The node the owners table names (`None`: never owned yet).
    pub owner: Option<String>,
    /// The owner's epoch: it goes up at every takeover and handoff.
    pub epoch: Option<u64>,
    /// Whether the answering node serves it now.
    pub served_here: bool,
    /// The nodes following its log as standbys (from their heartbeats).
    pub standbys: Vec<String>,
    /// How far the standbys lag: the stream's last position minus the
    /// position a standby applied, the largest of them (`None`: no standby).
    pub lag: Option<u64>,
    /// The stream position the standbys applied, the lowest of them
    /// (`None`: no standby).
    pub standby_applied: Option<u64>,
    /// The stream position the standbys' checkpoints cover, the lowest of
    /// them: the owner never trims the stream past it (`None`: no standby).
    pub standby_checkpointed: Option<u64>,
    /// Log records the answering node replayed when it last took this
    /// group over (`None`: it never did since it started). A takeover by
    /// the group's standby replays only the records after its position.
    pub replayed_at_takeover: Option<u64>,
}
