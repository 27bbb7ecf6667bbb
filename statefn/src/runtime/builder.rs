//! [`Builder`]: configuring a runtime, and the validated [`Plan`] it opens.

use std::{path::PathBuf, sync::Arc, time::Duration};

use statefn_store::{FileSystem, StdFs, WalOptions};

use super::{
    Runtime,
    open::{Drive, assemble, open_storage},
};
use crate::{
    Durability, Error, RetryPolicy, StatefulFunction, clock::Clock, registry::Registry,
    resources::Resources, shard::CoreConfig,
};

/// The default number of shards: enough to spread work over the workers and
/// keep batches large.
pub const DEFAULT_SHARDS: u16 = 16;

/// The default bytes of instance state cached in memory, over all shards.
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;

/// The default of [`Builder::timers_in_memory`]: timers per shard held in
/// memory at most (those due next).
pub const DEFAULT_TIMERS_IN_MEMORY: usize = 16_384;

/// Client calls a shard queues at most by default.
pub const DEFAULT_MAILBOX_CAPACITY: usize = 16_384;

/// How long egress records are kept by default.
pub const DEFAULT_EGRESS_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// How many bytes of log records a log group queues at most for its disk by
/// default (see [`Builder::commit_queue_bytes`]).
pub const DEFAULT_COMMIT_QUEUE_BYTES: u64 = 64 << 20;

/// How many bytes of messages from other functions a shard's mailbox holds
/// at most by default, in durable mode (see [`Builder::function_mail_bytes`]).
pub const DEFAULT_FUNCTION_MAIL_BYTES: u64 = 16 << 20;

/// How many bytes of committed egress records wait at most for the egress
/// appender by default (see [`Builder::egress_queue_bytes`]).
pub const DEFAULT_EGRESS_QUEUE_BYTES: u64 = 64 << 20;

/// How long [`Runtime::shutdown`] waits at most by default.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a stored reply answers retries with the same idempotency key.
pub const DEFAULT_IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// Configures and opens a [`Runtime`].
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
/// let runtime = Runtime::builder()
///     .in_memory()
///     .workers(2)
///     .shards(8)
///     .register::<Counter>()
///     .open()
///     .await?;
/// # runtime.shutdown().await
/// # }
/// ```
#[must_use = "a builder does nothing until `open` is awaited"]
#[derive(Debug)]
pub struct Builder {
    data_dir: Option<PathBuf>,
    durability: Option<Durability>,
    workers: Option<usize>,
    shards: u16,
    log_groups: u16,
    cache_bytes: usize,
    idempotency_retention: Duration,
    checkpoint_interval: Duration,
    checkpoint_log_bytes: u64,
    commit_queue_bytes: u64,
    function_mail_bytes: u64,
    egress_queue_bytes: u64,
    segment_bytes: u64,
    egress_retention: Duration,
    mailbox_capacity: usize,
    retry: RetryPolicy,
    timers_in_memory: usize,
    shutdown_timeout: Duration,
    file_system: Arc<dyn FileSystem>,
    store_faults: crate::commit::store_faults::StoreFaults,
    registry: Registry,
    resources: Resources,
    error: Option<Error>,
    #[cfg(feature = "cluster")]
    cluster: Option<crate::cluster::ClusterConfig>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            data_dir: None,
            durability: None,
            workers: None,
            shards: DEFAULT_SHARDS,
            log_groups: 1,
            cache_bytes: DEFAULT_CACHE_BYTES,
            idempotency_retention: DEFAULT_IDEMPOTENCY_RETENTION,
            checkpoint_interval: Duration::from_secs(60),
            checkpoint_log_bytes: 64 << 20,
            commit_queue_bytes: DEFAULT_COMMIT_QUEUE_BYTES,
            function_mail_bytes: DEFAULT_FUNCTION_MAIL_BYTES,
            egress_queue_bytes: DEFAULT_EGRESS_QUEUE_BYTES,
            segment_bytes: 64 << 20,
            egress_retention: DEFAULT_EGRESS_RETENTION,
            mailbox_capacity: DEFAULT_MAILBOX_CAPACITY,
            retry: RetryPolicy::default(),
            timers_in_memory: DEFAULT_TIMERS_IN_MEMORY,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            file_system: Arc::new(StdFs),
            store_faults: Default::default(),
            registry: Registry::default(),
            resources: Resources::default(),
            error: None,
            #[cfg(feature = "cluster")]
            cluster: None,
        }
    }
}

impl Builder {
    /// Keeps state durably in `path` (created if missing): a write-ahead log
    /// and a fjall state store. Opening recovers whatever is there.
    pub fn data_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(path.into());
        self
    }

    /// Keeps all state in memory: nothing survives the process. For tests and
    /// caches. Same as `.durability(Durability::InMemory)`.
    pub fn in_memory(self) -> Self {
        self.durability(Durability::InMemory)
    }

    /// When a committed invocation is on disk (default [`Durability::Fsync`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = Some(durability);
        self
    }

    /// Worker threads that run handlers (default: the number of cores).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// The number of shards (default [`DEFAULT_SHARDS`]); each is a
    /// single-writer unit of state, scheduling, checkpointing and recovery.
    /// Fixed for a data directory once created.
    pub fn shards(mut self, shards: u16) -> Self {
        self.shards = shards;
        self
    }

    /// Physical logs the shards share (default 1, at most the shard count).
    /// One log commits every shard's batch with one `fdatasync`; more logs
    /// make smaller I/O failure domains (a failed log takes down only its
    /// shards) at one `fdatasync` per log per commit. Fixed for a data
    /// directory once created.
    pub fn log_groups(mut self, groups: u16) -> Self {
        self.log_groups = groups;
        self
    }

    /// Bytes of instance state cached in memory over all shards (default
    /// [`DEFAULT_CACHE_BYTES`]); states beyond it are read from disk.
    pub fn cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// How long a stored reply answers retries with the same idempotency key
    /// (default [`DEFAULT_IDEMPOTENCY_RETENTION`], 24 h); older entries are
    /// deleted.
    pub fn idempotency_retention(mut self, retention: Duration) -> Self {
        self.idempotency_retention = retention;
        self
    }

    /// Checkpoint a shard at least this often while it has changes (default
    /// 60 s). Checkpoints also start when a log group's log reaches
    /// [`checkpoint_log_bytes`](Self::checkpoint_log_bytes).
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint_interval = interval;
        self
    }

    /// Log size that starts checkpoints of the group's shards (default 64 MiB):
    /// bounds recovery time and disk use.
    pub fn checkpoint_log_bytes(mut self, bytes: u64) -> Self {
        self.checkpoint_log_bytes = bytes;
        self
    }

    /// Size of one write-ahead log segment file (default 64 MiB).
    pub fn wal_segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }

    /// How long egress records are kept (default
    /// [`DEFAULT_EGRESS_RETENTION`], 7 days); older ones are deleted.
    pub fn egress_retention(mut self, retention: Duration) -> Self {
        self.egress_retention = retention;
        self
    }

    /// Client calls one shard queues at most (default
    /// [`DEFAULT_MAILBOX_CAPACITY`]); beyond it calls fail at once with
    /// [`Error::Overloaded`] instead of using unbounded memory.
    pub fn mailbox_capacity(mut self, calls: usize) -> Self {
        self.mailbox_capacity = calls.max(1);
        self
    }

    /// How a message from another function whose handler panics (or that
    /// cannot be decoded) is retried before it becomes a dead letter
    /// (default: 3 attempts, backoff from 100 ms doubling to 10 s). Client
    /// calls are never retried by the runtime: the caller gets the error.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = RetryPolicy {
            max_attempts: policy.max_attempts.max(1),
            ..policy
        };
        self
    }

    /// How many timers one shard reads into memory at most, the ones due
    /// next (default [`DEFAULT_TIMERS_IN_MEMORY`]); the others wait in the
    /// state store, ordered by due time, and are read as their time comes.
    /// Timers due within minutes of each other beyond this stay on disk
    /// until the earlier ones have fired. In memory mode every timer is in
    /// memory.
    pub fn timers_in_memory(mut self, timers: usize) -> Self {
        self.timers_in_memory = timers.max(2);
        self
    }

    /// How many bytes of log records may wait for a log group's disk
    /// (default [`DEFAULT_COMMIT_QUEUE_BYTES`], 64 MiB) before the workers
    /// stop taking its shards' mail: a slow disk then fills the mailboxes
    /// and new calls are refused with [`Error::Overloaded`] instead of the
    /// queue growing in memory. Durable mode only.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = statefn::Runtime::builder().commit_queue_bytes(8 << 20);
    /// # drop(builder);
    /// ```
    pub fn commit_queue_bytes(mut self, bytes: u64) -> Self {
        self.commit_queue_bytes = bytes.max(1);
        self
    }

    /// How many bytes of messages from other functions (and from its own
    /// instances) one shard's mailbox holds at most (default
    /// [`DEFAULT_FUNCTION_MAIL_BYTES`], 16 MiB). Durable mode only.
    ///
    /// A message from a function is committed by its sender, so it is never
    /// lost: past the bound the receiving shard does not queue it, the
    /// sender keeps it in its outbox (durably), and the shard asks the
    /// sender to re-send once its mailbox has drained to half the bound,
    /// from the first message it refused, in chunks of half the bound. A
    /// fan-out faster than its receivers then costs re-sends (each message
    /// about once), not memory.
    /// Order per sender is kept. [`ShardStatus::function_mail_bytes`]
    /// shows the bytes queued; `statefn_function_mail_refused_total` counts
    /// the messages refused for later.
    ///
    /// In memory mode nothing keeps a refused message, so the mailboxes
    /// are not bounded by bytes there (client calls still are, by
    /// [`mailbox_capacity`](Self::mailbox_capacity)).
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = statefn::Runtime::builder().function_mail_bytes(4 << 20);
    /// # drop(builder);
    /// ```
    ///
    /// [`ShardStatus::function_mail_bytes`]: crate::ShardStatus::function_mail_bytes
    pub fn function_mail_bytes(mut self, bytes: u64) -> Self {
        self.function_mail_bytes = bytes.max(1);
        self
    }

    /// How many bytes of committed egress records may wait for the egress
    /// appender (default [`DEFAULT_EGRESS_QUEUE_BYTES`], 64 MiB) before the
    /// workers stop running batches: a slow or failing state store then
    /// fills the mailboxes and new calls are refused with
    /// [`Error::Overloaded`], instead of the queue growing in memory. The
    /// records themselves are safe either way (they are in their
    /// invocations' log records). Durable mode only; in memory, records are
    /// appended at once.
    ///
    /// What the bound guarantees: a worker runs a batch only while the
    /// records waiting for the appender **and** those in batches still
    /// being committed weigh at most `bytes` together; it checks before the
    /// batch, so the total may exceed `bytes` by the records of one batch
    /// per worker ([`workers`](Self::workers)). At open, the records that
    /// recovered shards had not seen appended are queued whatever their
    /// size (they were committed before).
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = statefn::Runtime::builder().egress_queue_bytes(8 << 20);
    /// # drop(builder);
    /// ```
    pub fn egress_queue_bytes(mut self, bytes: u64) -> Self {
        self.egress_queue_bytes = bytes.max(1);
        self
    }

    /// The longest [`Runtime::shutdown`] waits (default
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`], 30 s) for the work in flight and the
    /// threads to finish. Past it, shutdown returns
    /// [`Error::ShutdownIncomplete`] naming what did not finish, instead of
    /// waiting for a disk that does not answer.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Faults to inject into the state store's writes (checkpoints): a seam
    /// for tests.
    ///
    /// # Examples
    ///
    /// ```
    /// use statefn::StoreFaults;
    ///
    /// let faults = StoreFaults::default();
    /// let builder = statefn::Runtime::builder().in_memory().store_faults(faults.clone());
    /// faults.fail_writes();
    /// # drop(builder);
    /// ```
    pub fn store_faults(mut self, faults: crate::StoreFaults) -> Self {
        self.store_faults = faults;
        self
    }

    /// The file system under the write-ahead log: a seam for tests that
    /// inject faults (`statefn_store::FaultyFs`, feature `fault-injection`).
    pub fn file_system(mut self, fs: Arc<dyn FileSystem>) -> Self {
        self.file_system = fs;
        self
    }

    /// Runs this runtime as one node of a cluster on NATS JetStream (feature
    /// `cluster`): each log group's log is a replicated stream, the nodes
    /// share the log groups between them (taking over those of a node that
    /// dies, handing theirs off when they shut down), and any node answers
    /// any call. Needs a [`data_dir`](Self::data_dir) of the node's own;
    /// every node must use the same shards, log groups and replicas.
    /// `docs/cluster.md` describes the protocol.
    ///
    /// # Durability
    ///
    /// A reply (or an enqueue's `Ok`) means the invocation's record is on a
    /// quorum of the NATS servers replicating its log group's stream, in
    /// their memory or fsynced as the servers' `sync_interval` says (by
    /// default in memory: it survives the crash of any process and the loss
    /// of a minority of machines; with `sync_interval: always` also a power
    /// loss of all of them).
    ///
    /// # Errors
    ///
    /// [`open`](Self::open) fails with [`Error::Cluster`] when no NATS
    /// server answers, when this node's settings differ from the cluster's,
    /// or when `replicas` exceeds the JetStream servers.
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
    /// use statefn::cluster::{ClusterConfig, ClusterError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dir = tempfile::tempdir().expect("temp dir");
    /// let mut config = ClusterConfig::new("nats://127.0.0.1:1", "node-a"); // nothing listens there
    /// config.replicas = 1;
    /// let opened = Runtime::builder()
    ///     .data_dir(dir.path())
    ///     .cluster(config)
    ///     .register::<Counter>()
    ///     .open()
    ///     .await;
    /// assert!(matches!(opened, Err(statefn::Error::Cluster(ClusterError::Connect { .. }))));
    /// # }
    /// ```
    #[cfg(feature = "cluster")]
    pub fn cluster(mut self, config: crate::cluster::ClusterConfig) -> Self {
        self.cluster = Some(config);
        self
    }

    /// Registers a function type so that it can be called.
    pub fn register<T: StatefulFunction>(mut self) -> Self {
        if let Err(e) = self.registry.register::<T>() {
            self.error.get_or_insert(e);
        }
        self
    }

    /// Gives handlers a read-only resource of type `T` (configuration, a
    /// price table, a client of another system), read with
    /// [`Context::resource`](crate::Context::resource). One per type: a
    /// second `T` replaces the first. Resources are not state: they are not
    /// stored, and every instance sees the same one.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use serde::{Deserialize, Serialize};
    /// use statefn::prelude::*;
    ///
    /// pub struct Prices { cents: std::collections::HashMap<String, u64> }
    ///
    /// #[stateful_function]
    /// #[derive(Default, Serialize, Deserialize)]
    /// pub struct Cart { total_cents: u64 }
    ///
    /// #[stateful_function]
    /// impl Cart {
    ///     #[handler]
    ///     fn add(&mut self, ctx: &Context, sku: String) -> u64 {
    ///         let prices = ctx.resource::<Prices>().expect("given at build time");
    ///         self.total_cents += prices.cents.get(&sku).copied().unwrap_or(0);
    ///         self.total_cents
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), statefn::Error> {
    /// let prices = Prices { cents: [("apple".to_owned(), 40)].into() };
    /// let runtime = Runtime::builder()
    ///     .in_memory()
    ///     .resource(Arc::new(prices))
    ///     .register::<Cart>()
    ///     .open()
    ///     .await?;
    /// assert_eq!(runtime.handle::<Cart>("c-1").add("apple".into()).await?, 40);
    /// # Ok(())
    /// # }
    /// ```
    pub fn resource<T: std::any::Any + Send + Sync>(mut self, value: Arc<T>) -> Self {
        self.resources.insert(value);
        self
    }

    /// Registers an erased function by hand (tests of what the runtime does
    /// when code it calls misbehaves).
    #[cfg(test)]
    pub(crate) fn register_erased(
        mut self,
        name: &'static str,
        f: Arc<dyn crate::registry::ErasedFunction>,
    ) -> Self {
        self.registry.register_erased(name, f);
        self
    }

    /// Opens the runtime: recovers the data directory (durable mode), then
    /// starts the worker threads, the log syncers, the checkpointer and the
    /// timer task on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid configuration (no storage chosen, no
    /// function registered, zero workers or shards, two types with one name);
    /// [`Error::Storage`] when the data directory cannot be opened (locked by
    /// another process, written by a newer version, a different shard count,
    /// corrupt log data: the message names the file and offset).
    pub async fn open(self) -> Result<Runtime, Error> {
        // Hot paths keep the handles of the global recorder installed by now.
        crate::metrics::learn_global_recorder();
        #[allow(unused_mut, reason = "assigned in cluster mode only")]
        let mut plan = self.plan()?;
        #[cfg(feature = "cluster")]
        if let Some(config) = plan.cluster_config.clone() {
            plan.cluster = Some(
                crate::cluster::ClusterNode::connect(config, plan.shards, plan.log_groups).await?,
            );
        }
        #[cfg(feature = "cluster")]
        let cluster = plan.cluster.clone();
        let opened = if matches!(plan.storage, StorageChoice::Disk { .. }) {
            let config = plan.clone();
            tokio::task::spawn_blocking(move || open_storage(&config, &Clock::System))
                .await
                .map_err(|e| Error::Thread {
                    what: format!("recovery did not finish: {e}"),
                    source: None,
                })??
        } else {
            open_storage(&plan, &Clock::System)?
        };
        let (runtime, background) = assemble(plan, opened, Clock::System, Drive::Threads, None)?;
        background.spawn(&runtime.owner.inner)?;
        #[cfg(feature = "cluster")]
        if let Some(node) = cluster {
            let inner = &runtime.owner.inner;
            let _ = inner.cluster.set(std::sync::Arc::clone(&node));
            node.start(inner).await?;
        }
        Ok(runtime)
    }

    pub(crate) fn plan(self) -> Result<Plan, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let storage = match (self.durability, self.data_dir) {
            (Some(Durability::InMemory), None) => StorageChoice::InMemory,
            (Some(Durability::InMemory), Some(_)) => {
                return Err(Error::Config(
                    "both `.in_memory()` and `.data_dir(..)` were given; choose one".into(),
                ));
            }
            (mode, Some(path)) => StorageChoice::Disk {
                path,
                mode: mode.unwrap_or_default(),
            },
            (_, None) => {
                return Err(Error::Config(
                    "choose where state lives: `.data_dir(path)` (durable) or `.in_memory()` \
                     (nothing survives the process)"
                        .into(),
                ));
            }
        };
        if self.registry.is_empty() {
            return Err(Error::Config(
                "no function type is registered; call `.register::<YourFunction>()`".into(),
            ));
        }
        let workers = self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
        });
        if workers == 0 || self.shards == 0 {
            return Err(Error::Config(
                "workers and shards must be at least 1".into(),
            ));
        }
        if self.log_groups == 0 || self.log_groups > self.shards {
            return Err(Error::Config(format!(
                "log_groups must be from 1 to the shard count ({}); got {}",
                self.shards, self.log_groups
            )));
        }
        #[cfg(feature = "cluster")]
        if self.cluster.is_some() {
            match &storage {
                StorageChoice::Disk {
                    mode: Durability::Fsync,
                    ..
                } => {}
                StorageChoice::Disk { .. } => {
                    return Err(Error::Config(
                        "cluster mode acknowledges once a quorum of NATS servers has a record: \
                         leave `.durability(..)` at its default"
                            .into(),
                    ));
                }
                StorageChoice::InMemory => {
                    return Err(Error::Config(
                        "cluster mode needs a `.data_dir(path)` of the node's own".into(),
                    ));
                }
            }
        }
        let per_shard_cache = self.cache_bytes / usize::from(self.shards);
        Ok(Plan {
            storage,
            workers,
            shards: self.shards,
            log_groups: self.log_groups,
            core: CoreConfig {
                shards: self.shards,
                cache_bytes: per_shard_cache,
                idempotency_retention: self.idempotency_retention,
                checkpoint_dirty_bytes: (per_shard_cache / 2).max(1 << 20),
                checkpoint_interval: self.checkpoint_interval,
                retry: self.retry,
                timers_in_memory: self.timers_in_memory,
                resend_chunk_bytes: (self.function_mail_bytes / 2).max(1),
            },
            checkpoint_log_bytes: self.checkpoint_log_bytes,
            commit_queue_bytes: self.commit_queue_bytes,
            function_mail_bytes: self.function_mail_bytes,
            egress_queue_bytes: self.egress_queue_bytes,
            wal_options: WalOptions {
                segment_bytes: self.segment_bytes,
                ..WalOptions::default()
            },
            egress_retention: self.egress_retention,
            mailbox_capacity: self.mailbox_capacity,
            shutdown_timeout: self.shutdown_timeout,
            file_system: self.file_system,
            store_faults: self.store_faults,
            registry: self.registry,
            resources: (!self.resources.is_empty()).then(|| Arc::new(self.resources)),
            #[cfg(feature = "cluster")]
            cluster_config: self.cluster,
            #[cfg(feature = "cluster")]
            cluster: None,
        })
    }
}

/// Where state lives.
#[derive(Debug, Clone)]
pub(super) enum StorageChoice {
    InMemory,
    Disk { path: PathBuf, mode: Durability },
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(super) storage: StorageChoice,
    pub(super) workers: usize,
    pub(super) shards: u16,
    pub(super) log_groups: u16,
    pub(super) core: CoreConfig,
    pub(super) checkpoint_log_bytes: u64,
    pub(super) commit_queue_bytes: u64,
    pub(super) function_mail_bytes: u64,
    pub(super) egress_queue_bytes: u64,
    pub(super) wal_options: WalOptions,
    pub(super) egress_retention: Duration,
    pub(super) mailbox_capacity: usize,
    pub(super) shutdown_timeout: Duration,
    pub(super) file_system: Arc<dyn FileSystem>,
    pub(super) store_faults: crate::commit::store_faults::StoreFaults,
    pub(super) registry: Registry,
    pub(super) resources: Option<Arc<Resources>>,
    /// Cluster mode: how to join the cluster...
    #[cfg(feature = "cluster")]
    pub(super) cluster_config: Option<crate::cluster::ClusterConfig>,
    /// ...and the node, once connected.
    #[cfg(feature = "cluster")]
    pub(super) cluster: Option<Arc<crate::cluster::ClusterNode>>,
}
