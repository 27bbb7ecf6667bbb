//! [`ClusterConfig`]: how a node joins a statefn cluster, and the cluster
//! configuration every node must share (checked against the cluster's
//! `meta` bucket at start).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ClusterError;

/// How a node joins a statefn cluster on NATS JetStream; give it to
/// [`Builder::cluster`](crate::Builder::cluster).
///
/// Every node of a cluster must be opened with the same shard count, log
/// group count, replicas and cluster name (checked at open); each has its
/// own data directory and a unique, stable [`node_id`](Self::node_id).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use statefn::cluster::ClusterConfig;
///
/// let mut config = ClusterConfig::new("nats://10.0.0.1:4222,nats://10.0.0.2:4222", "node-a");
/// config.failure_timeout = Duration::from_secs(2);
/// assert_eq!(config.nats_urls.len(), 2);
/// assert_eq!(config.replicas, 3);
/// assert_eq!(config.cluster_name, "statefn");
/// assert_eq!(config.snapshot_interval, Duration::from_secs(60));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://host:4222`); one reachable server is
    /// enough, the client learns the others.
    pub nats_urls: Vec<String>,
    /// This node's id: unique in the cluster and the same across restarts
    /// (ASCII letters, digits, `_`, `-`).
    pub node_id: String,
    /// Replicas of every stream and bucket (default 3, so that one NATS
    /// server can fail): at most the number of JetStream servers.
    pub replicas: usize,
    /// Names the cluster's streams, buckets and subjects (default
    /// `statefn`), so that several clusters can share NATS servers.
    pub cluster_name: String,
    /// A node not heard from for this long is considered dead and its log
    /// groups are taken over (default 750 ms: seven heartbeats, 1.5 times
    /// the longest gap between two heartbeats measured under a saturating
    /// load on an overloaded 2-core machine, see docs/cluster.md). Shorter
    /// fails over sooner; too short takes groups from nodes that were only
    /// slow (safe, since the log fences the old owner, but their calls get
    /// 503s meanwhile). `statefn_cluster_heartbeat_gap_max_seconds` shows
    /// how close a node came.
    pub failure_timeout: Duration,
    /// How often a node announces that it is alive (default 100 ms).
    pub heartbeat_interval: Duration,
    /// How long a call for a log group that no node serves right now (a
    /// takeover or handoff in progress) is retried before it is refused with
    /// 503 (default 5 s).
    pub forward_budget: Duration,
    /// How long a forwarded call may take at the node serving it before its
    /// outcome counts as unknown (default 30 s; above `log_retry_for`).
    pub forward_timeout: Duration,
    /// A message to a function on another node that is not acknowledged
    /// after this long is sent again (default 1 s).
    pub retransmit_after: Duration,
    /// How long a log group's flush keeps retrying through a NATS leader
    /// election before the group fails over (default 20 s).
    pub log_retry_for: Duration,
    /// How often the owner of a log group uploads a snapshot of it to the
    /// object store (default 60 s); its stream is then trimmed below the
    /// snapshot and the standbys' checkpoints. Shorter: smaller streams and
    /// faster bootstraps of new nodes, more uploads.
    pub snapshot_interval: Duration,
    /// A snapshot is also uploaded once a group's stream has grown by this
    /// many bytes since the last one (default 64 MiB).
    pub snapshot_log_bytes: u64,
}

impl ClusterConfig {
    /// A node `node_id` of the cluster reached at `nats_urls`
    /// (comma-separated), with the defaults above.
    pub fn new(nats_urls: &str, node_id: impl Into<String>) -> Self {
        ClusterConfig {
            nats_urls: nats_urls
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect(),
            node_id: node_id.into(),
            replicas: 3,
            cluster_name: "statefn".into(),
            failure_timeout: Duration::from_millis(750),
            heartbeat_interval: Duration::from_millis(100),
            forward_budget: Duration::from_secs(5),
            forward_timeout: Duration::from_secs(30),
            retransmit_after: Duration::from_secs(1),
            log_retry_for: Duration::from_secs(20),
            snapshot_interval: Duration::from_secs(60),
            snapshot_log_bytes: 64 << 20,
        }
    }

    /// Checks what can be checked without NATS.
    pub(crate) fn validate(&self) -> Result<(), ClusterError> {
        let bad = |what: String| Err(ClusterError::Config(what));
        if self.nats_urls.is_empty() {
            return bad("no NATS URL given (`--nats nats://host:4222`)".into());
        }
        if !valid_name(&self.node_id) {
            return bad(format!(
                "node id {:?} must be 1 to 64 ASCII letters, digits, `_` or `-` (`--node-id`)",
                self.node_id
            ));
        }
        if !valid_name(&self.cluster_name) {
            return bad(format!(
                "cluster name {:?} must be 1 to 64 ASCII letters, digits, `_` or `-`",
                self.cluster_name
            ));
        }
        if self.replicas == 0 || self.replicas > 5 {
            return bad(format!(
                "replicas must be from 1 to 5 (JetStream's limit); got {}",
                self.replicas
            ));
        }
        if self.heartbeat_interval.is_zero() || self.failure_timeout < self.heartbeat_interval * 2 {
            return bad(format!(
                "the failure timeout ({:?}) must be at least two heartbeat intervals ({:?})",
                self.failure_timeout, self.heartbeat_interval
            ));
        }
        if self.snapshot_interval.is_zero() {
            return bad("the snapshot interval must be above zero".into());
        }
        Ok(())
    }
}

/// `[A-Za-z0-9_-]{1,64}`: safe in subjects, stream names and JSON.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// What every node of a cluster must agree on, stored once (key `config`
/// of the `meta` bucket) by the first node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SharedConfig {
    pub(crate) shards: u16,
    pub(crate) log_groups: u16,
    pub(crate) replicas: usize,
    /// The layout of streams and records this build writes.
    pub(crate) format: u32,
}

/// The stream and record layout of this build (bumped when it changes).
pub(crate) const CLUSTER_FORMAT: u32 = 1;

impl SharedConfig {
    /// `"16 shards, 4 log groups, 3 replicas"`.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} shards, {} log groups, {} replicas (format {})",
            self.shards, self.log_groups, self.replicas, self.format
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_on_commas_and_bad_names_are_refused() {
        let config = ClusterConfig::new(" nats://a:1, nats://b:2 ,", "n1");
        assert_eq!(config.nats_urls, vec!["nats://a:1", "nats://b:2"]);
        assert!(config.validate().is_ok());
        for id in ["", "a.b", "a b", &"x".repeat(65)] {
            let config = ClusterConfig::new("nats://a:1", id);
            assert!(config.validate().is_err(), "{id:?}");
        }
        let mut config = ClusterConfig::new("nats://a:1", "n");
        config.replicas = 0;
        assert!(config.validate().is_err());
        let config = ClusterConfig::new("", "n");
        assert!(config.validate().is_err());
    }
}
