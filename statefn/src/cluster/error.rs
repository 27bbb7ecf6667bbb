//! [`ClusterError`]: why a node could not join its cluster, or what a
//! forwarded call failed with.

use std::sync::Arc;

/// An error of cluster mode.
///
/// # Examples
///
/// ```
/// use statefn::cluster::ClusterError;
///
/// let error = ClusterError::TooFewServers { replicas: 3, detail: "replicas > 1 not supported".into() };
/// assert!(error.to_string().contains("lower --replicas"));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The cluster configuration is invalid.
    #[error("invalid cluster configuration: {0}")]
    Config(String),
    /// No NATS server could be reached.
    #[error(
        "cannot connect to NATS at {urls}: {source}; check that the servers run and the URLs (`--nats`) are right"
    )]
    Connect {
        /// The URLs tried.
        urls: String,
        /// The client's error.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// A JetStream or NATS operation failed.
    #[error(
        "{doing} failed: {source}; check the NATS cluster (JetStream enabled, a quorum of its servers up)"
    )]
    Nats {
        /// What the node was doing.
        doing: String,
        /// The client's error.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// This node's configuration differs from the cluster's.
    #[error(
        "this node was opened with {ours}, but cluster `{cluster}` was created with {theirs}: every node of a cluster must use the same shards, log groups and replicas"
    )]
    Mismatch {
        /// The cluster name.
        cluster: String,
        /// This node's configuration.
        ours: String,
        /// The cluster's.
        theirs: String,
    },
    /// The NATS cluster has fewer JetStream servers than the replicas asked.
    #[error(
        "{replicas} replicas need at least {replicas} JetStream servers in the NATS cluster ({detail}); start more servers or lower --replicas"
    )]
    TooFewServers {
        /// The replicas asked for.
        replicas: usize,
        /// What the server said.
        detail: String,
    },
    /// The node serving the instance failed the call with an error that
    /// has no equivalent on this node (a storage fault there).
    #[error("the node serving this instance failed the call: {message}")]
    Remote {
        /// What it said.
        message: String,
    },
}

impl ClusterError {
    /// A failed NATS operation while `doing`.
    pub(crate) fn nats(
        doing: impl Into<String>,
    ) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> ClusterError {
        let doing = doing.into();
        move |source| ClusterError::Nats {
            doing,
            source: Arc::from(source),
        }
    }
}
