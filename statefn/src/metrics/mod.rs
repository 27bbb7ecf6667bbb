//! Metric names, recorded through the `metrics` facade: install any
//! recorder (the HTTP ingress serves them as Prometheus text at `/metrics`).
//!
//! Hot-path counts are summed per batch and recorded once per batch, so
//! metrics cost nothing per invocation.
//!
//! Invocation counts and call latencies carry `function` and `handler`
//! labels. Their values are only the names of registered function types
//! and their handlers (static strings from the generated code), or
//! [`UNKNOWN`] for a name that is not registered: a client cannot add
//! series by calling names that do not exist, so the number of series is
//! bounded by the code.
//!
//! Every metric is listed in [`METRICS`] with its help text; [`describe`]
//! hands those to the installed recorder, so that a Prometheus scrape
//! carries a `# HELP` line for each. The ingress's
//! [`install_prometheus_recorder`](crate::ingress::install_prometheus_recorder)
//! calls it; call it yourself after installing another recorder.
//!
//! # Examples
//!
//! ```
//! // With your own recorder installed (here: none, so this does nothing):
//! statefn::metrics::describe();
//! assert!(statefn::metrics::METRICS.iter().all(|m| m.name.starts_with("statefn_")));
//! ```

use metrics::Unit;

mod batch_stats;
mod kept;
mod labelled;

pub(crate) use batch_stats::{BatchStats, Counted};
pub(crate) use kept::{Kept, learn_global_recorder};
#[cfg(feature = "http")]
pub(crate) use labelled::record_http_request;
pub(crate) use labelled::{ShardGauges, record_call};

/// Invocations by `function`, `handler` and `outcome`: `applied`,
/// `rejected` (handler `Err`), `failed` (panic or bad input), `duplicate`
/// (answered from a stored reply or dropped as a re-delivery).
pub const INVOCATIONS: &str = "statefn_invocations_total";
/// Replies to requests dropped on arrival because the request's timeout had
/// fired, or because the requesting instance was deleted with its pending
/// timeouts (`Runtime::delete_instance`), by the `function` and `handler`
/// they were for.
pub const LATE_REPLIES_DROPPED: &str = "statefn_late_replies_dropped_total";
/// Client call latency, submit to reply, in seconds, by `function` and
/// `handler`.
pub const CALL_DURATION: &str = "statefn_call_duration_seconds";

/// The `function` or `handler` label of a name that is not registered (or
/// a message that could not be decoded).
pub const UNKNOWN: &str = "unknown";
/// Invocations per group commit.
pub const COMMIT_BATCH: &str = "statefn_commit_batch_invocations";
/// `fdatasync` latency of a log group, in seconds.
pub const FSYNC_DURATION: &str = "statefn_fsync_duration_seconds";
/// Mail waiting in a shard's mailbox (label `shard`).
pub const MAILBOX_DEPTH: &str = "statefn_mailbox_depth";
/// Time to write one shard checkpoint, in seconds.
pub const CHECKPOINT_DURATION: &str = "statefn_checkpoint_duration_seconds";
/// Bytes (keys and values) one shard checkpoint writes to the state store.
pub const CHECKPOINT_BYTES: &str = "statefn_checkpoint_bytes";
/// Log-group recoveries after a failure.
pub const RECOVERIES: &str = "statefn_recoveries_total";
/// Time to recover one log group (open or after a failure), in seconds.
pub const RECOVERY_DURATION: &str = "statefn_recovery_duration_seconds";
/// State cache hits.
pub const CACHE_HITS: &str = "statefn_cache_hits_total";
/// State cache misses (read from disk).
pub const CACHE_MISSES: &str = "statefn_cache_misses_total";
/// HTTP requests answered, by `route` (the route pattern, such as
/// `/v1/{type}/{id}/{handler}`, or `unmatched`) and `status`.
pub const HTTP_REQUESTS: &str = "statefn_http_requests_total";
/// Time from receiving an HTTP request to answering it, in seconds, by `route`.
pub const HTTP_REQUEST_DURATION: &str = "statefn_http_request_duration_seconds";
/// HTTP connections open now (at most `IngressConfig::max_connections`).
pub const HTTP_CONNECTIONS: &str = "statefn_http_connections";
/// Cluster mode: log groups this node took over from a node that died.
pub const CLUSTER_FAILOVERS: &str = "statefn_cluster_failovers_total";
/// Cluster mode: log groups this node handed off to another (a join, a
/// graceful shutdown).
pub const CLUSTER_HANDOFFS: &str = "statefn_cluster_handoffs_total";
/// Cluster mode: log groups this node stopped serving because another node
/// took them over (its log was fenced, or the owners table moved on).
pub const CLUSTER_STEP_DOWNS: &str = "statefn_cluster_step_downs_total";
/// Cluster mode: calls this node forwarded to the node serving them.
pub const CLUSTER_FORWARDED: &str = "statefn_cluster_forwarded_calls_total";
/// Cluster mode: how many positions of a log group's stream a standby on
/// this node has not applied yet (stream last sequence - applied), by `group`.
pub const CLUSTER_STANDBY_LAG: &str = "statefn_cluster_standby_lag_records";
/// Cluster mode: log records replayed when this node took a log group
/// over (after a standby's position, or after its checkpoint).
pub const CLUSTER_TAKEOVER_REPLAYED: &str = "statefn_cluster_takeover_replayed_records_total";
/// Cluster mode: snapshots of log groups this node uploaded.
pub const CLUSTER_SNAPSHOTS: &str = "statefn_cluster_snapshots_total";
/// Cluster mode: snapshots this node loaded into its store (a new or
/// lagging node).
pub const CLUSTER_SNAPSHOT_LOADS: &str = "statefn_cluster_snapshot_loads_total";
/// Cluster mode: purges of log groups' streams below a snapshot.
pub const CLUSTER_TRIMS: &str = "statefn_cluster_trims_total";
/// Cluster mode: the longest time between two consecutive heartbeats of
/// another node heard here, in seconds (how close a slow node came to
/// being declared dead: compare with `failure_timeout`).
pub const CLUSTER_HEARTBEAT_GAP_MAX: &str = "statefn_cluster_heartbeat_gap_max_seconds";

/// Panics in the runtime's own code that it survived (a statefn bug), by
/// `where`: `shard` or the name of a background thread.
pub const PANICS: &str = "statefn_panics_total";
/// Checkpoints that failed to be written to the state store (label `shard`).
pub const CHECKPOINT_FAILURES: &str = "statefn_checkpoint_failures_total";
/// Failed attempts to append egress records to the state store.
pub const EGRESS_APPEND_FAILURES: &str = "statefn_egress_append_failures_total";
/// Bytes in a log group's log (label `group`): checkpoints let it shrink.
pub const LOG_BYTES: &str = "statefn_log_bytes";
/// Bytes of batches handed to a log group and not yet committed or refused
/// (label `group`): what a slow disk makes wait in memory.
pub const COMMIT_QUEUE_BYTES: &str = "statefn_commit_queue_bytes";
/// Bytes of messages from functions waiting in a shard's mailbox (label
/// `shard`): bounded in durable mode by `Builder::function_mail_bytes`.
pub const FUNCTION_MAIL_BYTES: &str = "statefn_function_mail_bytes";
/// Messages from functions a shard's full mailbox did not queue (label
/// `shard`); their senders re-send them when asked.
pub const FUNCTION_MAIL_REFUSED: &str = "statefn_function_mail_refused_total";
/// Bytes of committed egress records waiting for the egress appender:
/// bounded by `Builder::egress_queue_bytes`.
pub const EGRESS_QUEUE_BYTES: &str = "statefn_egress_queue_bytes";

/// What kind of metric a [`Metric`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricKind {
    /// Only goes up (Prometheus `counter`; the name ends in `_total`).
    Counter,
    /// Goes up and down (Prometheus `gauge`).
    Gauge,
    /// A distribution in buckets (Prometheus `histogram`).
    Histogram,
}

/// One metric statefn records: its name, kind, unit and help text.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// The name, as exported.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// The unit of its values (also the last word of the name when it has one).
    pub unit: Unit,
    /// What it measures: the Prometheus `# HELP` text.
    pub help: &'static str,
}

/// Every metric statefn records.
pub const METRICS: &[Metric] = &[
    Metric {
        name: INVOCATIONS,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        help: "Invocations processed, by function type, handler and outcome: applied, rejected \
               (the handler returned Err), failed (panic or bad input), duplicate (answered from \
               a stored reply or dropped as a re-delivery).",
    },
    Metric {
        name: LATE_REPLIES_DROPPED,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        help: "Replies to requests dropped on arrival, by the function type and handler they were \
               for: the request's timeout had fired, or the requesting instance was deleted with \
               its pending timeouts.",
    },
    Metric {
        name: CALL_DURATION,
        kind: MetricKind::Histogram,
        unit: Unit::Seconds,
        help: "Latency of calls from Rust handles and HTTP, from submission to the reply, by \
               function type and handler, in seconds.",
    },
    Metric {
        name: COMMIT_BATCH,
        kind: MetricKind::Histogram,
        unit: Unit::Count,
        help: "Invocations committed together by one group commit of a log group.",
    },
    Metric {
        name: FSYNC_DURATION,
        kind: MetricKind::Histogram,
        unit: Unit::Seconds,
        help: "Time of one fdatasync of a log group's write-ahead log, in seconds.",
    },
    Metric {
        name: MAILBOX_DEPTH,
        kind: MetricKind::Gauge,
        unit: Unit::Count,
        help: "Mail waiting in a shard's mailbox, by shard.",
    },
    Metric {
        name: CHECKPOINT_DURATION,
        kind: MetricKind::Histogram,
        unit: Unit::Seconds,
        help: "Time to write one shard checkpoint to the state store, in seconds.",
    },
    Metric {
        name: CHECKPOINT_BYTES,
        kind: MetricKind::Histogram,
        unit: Unit::Bytes,
        help: "Bytes (keys and values, deletes included) one shard checkpoint writes to the \
               state store.",
    },
    Metric {
        name: RECOVERIES,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        help: "Log-group recoveries after a storage failure.",
    },
    Metric {
        name: RECOVERY_DURATION,
        kind: MetricKind::Histogram,
        unit: Unit::Seconds,
        help: "Time to recover one log group, at open or after a failure, in seconds.",
    },
    Metric {
        name: CACHE_HITS,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        help: "Instance states found in the state cache.",
    },
    Metric {
        name: CACHE_MISSES,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        help: "Instance states not in the state cache, read from the state store.",
    },
    Metric {
        name: HTTP_REQUESTS,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        help: "HTTP requests answered, by route pattern and status code.",
    },
    Metric {
        name: HTTP_REQUEST_DURATION,
        kind: MetricKind::Histogram,
        unit: Unit::Seconds,
        help: "Time from receiving an HTTP request to answering it, by route pattern, in seconds.",
    },
    Metric {
        name: HTTP_CONNECTIONS,
        kind: MetricKind::Gauge,
        unit: Unit::Count,
        help: "HTTP connections open now; at the connection limit, new ones wait to be accepted.",
    },
    Metric {
        name: PANICS,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        help: "Panics in statefn's own code that the runtime survived (a bug: please report it), \
               by where: shard, or the background thread.",
    },
    Metric {
        name: CHECKPOINT_FAILURES,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        help: "Shard checkpoints the state store failed to write, by shard; the log cannot \
               shrink past a shard until its checkpoint succeeds.",
    },
    Metric {
        name: EGRESS_APPEND_FAILURES,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        help: "Failed attempts to store committed egress records in the state store (retried \
               with backoff).",
    },
    Metric {
        name: LOG_BYTES,
        kind: MetricKind::Gauge,
        unit: Unit::Bytes,
        help: "Bytes in a log group's log, by group; it grows while checkpoints fail.",
    },
    Metric {
        name: COMMIT_QUEUE_BYTES,
        kind: MetricKind::Gauge,
        unit: Unit::Bytes,
        help: "Bytes of batches handed to a log group and not yet committed, by group; bounded \
               by the commit queue limit.",
    },
    Metric {
        name: FUNCTION_MAIL_BYTES,
        kind: MetricKind::Gauge,
        unit: Unit::Bytes,
        help: "Bytes of messages from functions waiting in a shard's mailbox, by shard; bounded \
               in durable mode by the function mail limit.",
    },
    Metric {
        name: FUNCTION_MAIL_REFUSED,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        help: "Messages from functions that a shard's full mailbox did not queue, by shard; \
               their senders keep them and re-send them when the shard asks.",
    },
    Metric {
        name: EGRESS_QUEUE_BYTES,
        kind: MetricKind::Gauge,
        unit: Unit::Bytes,
        help: "Bytes of committed egress records waiting for the egress appender; bounded by \
               the egress queue limit.",
    },
    Metric {
        name: CLUSTER_FAILOVERS,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        help: "Cluster mode: log groups this node took over from a node that stopped answering.",
    },
    Metric {
        name: CLUSTER_HANDOFFS,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        help: "Cluster mode: log groups this node handed off to another node (a join or a graceful shutdown).",
    },
    Metric {
        name: CLUSTER_STEP_DOWNS,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        help: "Cluster mode: log groups this node stopped serving because another node took them over.",
    },
    Metric {
        name: CLUSTER_FORWARDED,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        help: "Cluster mode: calls this node forwarded to the node serving their log group.",
    },
    Metric {
        name: CLUSTER_STANDBY_LAG,
        kind: MetricKind::Gauge,
        unit: Unit::Count,
        help: "Cluster mode: positions of a log group's stream the standby on this node has not \
               applied yet, by group.",
    },
    Metric {
        name: CLUSTER_TAKEOVER_REPLAYED,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        help: "Cluster mode: log records replayed when this node took log groups over.",
    },
    Metric {
        name: CLUSTER_SNAPSHOTS,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        help: "Cluster mode: snapshots of log groups this node uploaded to the object store.",
    },
    Metric {
        name: CLUSTER_SNAPSHOT_LOADS,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        help: "Cluster mode: snapshots this node loaded into its store before following or \
               taking over a log group.",
    },
    Metric {
        name: CLUSTER_TRIMS,
        kind: MetricKind::Counter,
        unit: Unit::Count,
        help: "Cluster mode: purges of log groups' streams below their snapshot and standbys.",
    },
    Metric {
        name: CLUSTER_HEARTBEAT_GAP_MAX,
        kind: MetricKind::Gauge,
        unit: Unit::Seconds,
        help: "Cluster mode: the longest time between two consecutive heartbeats of another \
               node heard here; a gap of failure_timeout declares the node dead.",
    },
];

/// Gives the installed `metrics` recorder the unit and help text of every
/// metric in [`METRICS`]. Call it after installing a recorder (a recorder
/// installed later does not see it); calling it again is harmless.
pub fn describe() {
    for metric in METRICS {
        match metric.kind {
            MetricKind::Counter => {
                metrics::describe_counter!(metric.name, metric.unit, metric.help)
            }
            MetricKind::Gauge => metrics::describe_gauge!(metric.name, metric.unit, metric.help),
            MetricKind::Histogram => {
                metrics::describe_histogram!(metric.name, metric.unit, metric.help);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{METRICS, MetricKind};

    #[test]
    fn names_follow_prometheus_conventions() {
        for metric in METRICS {
            let name = metric.name;
            assert!(name.starts_with("statefn_"), "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name}"
            );
            assert_eq!(
                metric.kind == MetricKind::Counter,
                name.ends_with("_total"),
                "only counters end in _total: {name}"
            );
            assert_eq!(
                metric.unit == metrics::Unit::Seconds,
                name.ends_with("_seconds"),
                "durations are in seconds and say so: {name}"
            );
            assert!(
                metric.help.len() > 20 && metric.help.ends_with('.'),
                "{name}"
            );
        }
        let mut names: Vec<_> = METRICS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METRICS.len(), "a metric is listed twice");
    }
}
