//! `Runtime` and its builder: owns the shards, the worker threads, the timer
//! task and (in durable mode) the log groups and the checkpointer, and routes
//! mail between them.

use std::{
    path::PathBuf,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use parking_lot::Mutex;
use statefn_store::{
    CommitLog, DataDir, FileSystem, LogBackend, StateStore, StdFs, WalBackend, WalOptions,
};
use tokio::sync::{Notify, oneshot};

use crate::{
    Address, Durability, Error, Handle, JsonReply, StatefulFunction,
    clock::Clock,
    durable::{Durable, LogGroup},
    egress::Emitted,
    egress::{Egress, EgressRecord},
    envelope::{Envelope, Mail, Origin},
    record::Sent,
    registry::Registry,
    scheduler::{RunShard, Scheduler},
    shard::{CoreConfig, Effects, RetryPolicy, RunEnv, Shard, ShardCore, envelope_of},
    timer::TimerService,
};

/// The default number of shards: enough to spread work over the workers and
/// keep batches large.
pub const DEFAULT_SHARDS: u16 = 16;

/// The default bytes of instance state cached in memory, over all shards.
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;

/// Client calls a shard queues at most by default.
pub const DEFAULT_MAILBOX_CAPACITY: usize = 16_384;

/// How long egress records are kept by default.
pub const DEFAULT_EGRESS_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// How long a stored reply answers retries with the same idempotency key.
pub const DEFAULT_IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// A running statefn runtime: cheap to clone, `Send + Sync + 'static`.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use statefn::prelude::*;
///
/// #[stateful_function]
/// #[derive(Default, Serialize, Deserialize)]
/// pub struct Counter { n: u64 }
///
/// #[stateful_function]
/// impl Counter {
///     pub fn add(&mut self, by: u64) -> u64 { self.n += by; self.n }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), statefn::Error> {
/// let dir = tempfile::tempdir().expect("temp dir");
/// let runtime = Runtime::builder().data_dir(dir.path()).register::<Counter>().open().await?;
/// assert_eq!(runtime.handle::<Counter>("a").add(2).await?, 2); // on disk when it returns
/// runtime.shutdown().await?;
///
/// let runtime = Runtime::builder().data_dir(dir.path()).register::<Counter>().open().await?;
/// assert_eq!(runtime.handle::<Counter>("a").add(1).await?, 3); // recovered
/// # runtime.shutdown().await
/// # }
/// ```
#[derive(Clone)]
pub struct Runtime {
    owner: Arc<Owner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("functions", &self.owner.inner.registry)
            .field("shards", &self.owner.inner.shards.len())
            .finish_non_exhaustive()
    }
}

/// Stops the threads when the last `Runtime` clone (or `Handle`) is dropped
/// without `shutdown`.
#[derive(Debug)]
struct Owner {
    inner: Arc<RuntimeInner>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.inner.stop();
    }
}

impl Runtime {
    /// Starts configuring a runtime.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A typed handle to instance `id` of `T`. Instances are virtual: this
    /// never fails and creates nothing; the first call creates the instance
    /// with `Default` state. An invalid id (empty, over 1 KiB) makes every
    /// call fail with [`Error::InvalidAddress`].
    pub fn handle<T: StatefulFunction>(&self, id: impl AsRef<str>) -> Handle<T> {
        Handle::new(self.clone(), id.as_ref())
    }

    /// The number of shards.
    pub fn shards(&self) -> u16 {
        self.owner.inner.shard_count()
    }

    /// Each shard's state, for operators (the admin surface serves it).
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
    /// # impl Counter { pub fn add(&mut self, by: u64) -> u64 { self.n += by; self.n } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), statefn::Error> {
    /// let runtime = Runtime::builder().in_memory().shards(4).register::<Counter>().open().await?;
    /// let status = runtime.shard_status();
    /// assert_eq!(status.len(), 4);
    /// assert!(status.iter().all(|s| s.serving && s.log_group.is_none()));
    /// # Ok(())
    /// # }
    /// ```
    pub fn shard_status(&self) -> Vec<ShardStatus> {
        let inner = self.inner();
        inner
            .shards
            .iter()
            .map(|shard| {
                let group = inner.durable.as_ref().map(|d| d.group_of(shard.id));
                let log =
                    group.and_then(|g| inner.durable.as_ref().map(|d| &d.groups[usize::from(g)]));
                ShardStatus {
                    shard: shard.id,
                    serving: shard.is_serving(),
                    mailbox: shard.mailbox_len(),
                    checkpoint_lsn: shard.checkpoint_lsn(),
                    log_group: group,
                    log_bytes: log.map_or(0, |l| l.log_bytes.load(Ordering::Relaxed)),
                    log_segments: log.map_or(0, |l| l.log_segments.load(Ordering::Relaxed)),
                }
            })
            .collect()
    }

    /// How many times a log group was recovered after a failure since open.
    pub fn recoveries(&self) -> u64 {
        self.owner.inner.recoveries.load(Ordering::Relaxed)
    }

    /// Stops accepting calls, finishes the work in flight (including the
    /// messages it sends), then stops the threads and, in durable mode,
    /// releases the data directory. Pending timers stay stored and fire after
    /// the next open. Calling it again does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] if a thread could not be stopped cleanly;
    /// [`Error::Config`] for the runtime of a `statefn::testing::TestRuntime`.
    pub async fn shutdown(&self) -> Result<(), Error> {
        let inner = Arc::clone(&self.owner.inner);
        if inner.drive == Drive::Manual {
            // Nothing runs a manual runtime while this waits.
            return Err(Error::Config(
                "this runtime is driven by a `statefn::testing::TestRuntime`: shut it down with                  `TestRuntime::shutdown`"
                    .into(),
            ));
        }
        inner.closing.store(true, Ordering::SeqCst);
        inner.wait_idle().await;
        if inner.durable.is_some() && !inner.stopped.load(Ordering::SeqCst) {
            // A final checkpoint of every shard, so the next open replays
            // (almost) nothing.
            for shard in 0..inner.shard_count() {
                inner.request_checkpoint(shard);
            }
            inner.wait_idle().await;
        }
        tokio::task::spawn_blocking(move || inner.stop_and_join())
            .await
            .map_err(|e| Error::Storage(format!("a runtime thread failed to stop: {e}")))
    }

    pub(crate) fn inner(&self) -> &RuntimeInner {
        &self.owner.inner
    }

    /// Calls `handler` of instance `id` of the function type named
    /// `type_name`, with its arguments as a JSON object (`{"amount": 5}`;
    /// `null` for none), and returns the reply as JSON. This is what HTTP
    /// ingress uses; typed code should use [`Handle`].
    ///
    /// # Errors
    ///
    /// [`Error::UnknownFunction`] / [`Error::UnknownHandler`] (listing the
    /// known ones), [`Error::InvalidArguments`] (naming the field and the
    /// expected type), and the errors of a typed call. A handler's own `Err`
    /// is `Ok(JsonReply::Err { .. })`.
    ///
    /// # Durability
    ///
    /// As for a typed [`Call`](crate::Call): the reply is released once the
    /// invocation is committed.
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
    /// # impl Counter { pub fn add(&mut self, by: u64) -> u64 { self.n += by; self.n } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), statefn::Error> {
    /// # let runtime = Runtime::builder().in_memory().register::<Counter>().open().await?;
    /// use statefn::JsonReply;
    /// let reply = runtime
    ///     .call_json("Counter", "c", "add", serde_json::json!({"by": 3}), None)
    ///     .await?;
    /// assert_eq!(reply, JsonReply::Ok(serde_json::json!(3)));
    /// let err = runtime.call_json("Counter", "c", "add", serde_json::json!({"by": "x"}), None).await;
    /// assert!(matches!(err, Err(statefn::Error::InvalidArguments { field: Some(f), .. }) if f == "by"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call_json(
        &self,
        type_name: &str,
        id: &str,
        handler: &str,
        args: serde_json::Value,
        idempotency_key: Option<String>,
    ) -> Result<JsonReply, Error> {
        let inner = self.inner();
        let function = Arc::clone(inner.registry.get(type_name)?);
        let target = Address::new(type_name, id)?;
        let message = function.message_from_json(handler, args)?;
        let rx = inner.submit(target, message, idempotency_key, None)?;
        let reply = rx.await.map_err(|_| Error::ShuttingDown)??;
        function.reply_to_json(handler, &reply)
    }

    /// Durably enqueues a call of `handler` (arguments as for
    /// [`call_json`](Self::call_json)) to run after `delay` (zero: as soon as
    /// possible), and returns once the message is committed, before the
    /// handler runs. With an idempotency key, enqueueing again does nothing.
    ///
    /// # Errors
    ///
    /// As [`call_json`](Self::call_json), before anything is enqueued.
    ///
    /// # Durability
    ///
    /// When this returns `Ok`, the message is committed: it will be delivered
    /// exactly once, across crashes (a delayed one as a durable timer).
    pub async fn enqueue_json(
        &self,
        type_name: &str,
        id: &str,
        handler: &str,
        args: serde_json::Value,
        delay: Duration,
        idempotency_key: Option<String>,
    ) -> Result<(), Error> {
        let inner = self.inner();
        let function = Arc::clone(inner.registry.get(type_name)?);
        let target = Address::new(type_name, id)?;
        let message = function.message_from_json(handler, args)?;
        let rx = inner.submit(target, message, idempotency_key, Some(delay))?;
        rx.await.map_err(|_| Error::ShuttingDown)?.map(|_| ())
    }

    /// Up to `limit` records of egress log `log` from offset `from`. If there
    /// are none yet, waits up to `wait` for the first (long-poll).
    ///
    /// In durable mode a record is readable shortly after its invocation's
    /// reply: the appender stores it with its own `fdatasync`, so that an
    /// offset, once read, never changes. In memory it is readable at once.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidAddress`] for an invalid log name, [`Error::Storage`]
    /// when the store cannot be read.
    pub async fn read_egress(
        &self,
        log: &str,
        from: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<EgressRecord>, Error> {
        crate::egress::check_name(log)?;
        let egress = Arc::clone(&self.inner().egress);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let appended = egress.appended_notify.notified();
            let (reader, name) = (Arc::clone(&egress), log.to_owned());
            let records = tokio::task::spawn_blocking(move || reader.read(&name, from, limit))
                .await
                .map_err(|e| Error::Storage(format!("egress read did not finish: {e}")))??;
            if !records.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(records);
            }
            let _ = tokio::time::timeout_at(deadline, appended).await;
        }
    }

    /// The records of egress log `log` from offset `from` on, as a stream
    /// that waits for new ones (it ends only on an error).
    ///
    /// # Examples
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use statefn::prelude::*;
    /// # #[stateful_function]
    /// # #[derive(Default, Serialize, Deserialize)]
    /// # pub struct Order { n: u32 }
    /// # #[stateful_function]
    /// # impl Order { pub fn ship(&mut self, ctx: &mut Context) { self.n += 1; ctx.emit("shipped", &self.n); } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), statefn::Error> {
    /// use futures::StreamExt;
    /// let runtime = Runtime::builder().in_memory().register::<Order>().open().await?;
    /// let mut shipped = Box::pin(runtime.egress_stream("shipped", 0));
    /// runtime.handle::<Order>("o").ship().await?;
    /// let first = shipped.next().await.expect("a record")?;
    /// assert_eq!((first.offset, first.record), (0, serde_json::json!(1)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn egress_stream(
        &self,
        log: &str,
        from: u64,
    ) -> impl futures::Stream<Item = Result<EgressRecord, Error>> + Send + 'static {
        let runtime = self.clone();
        let log = log.to_owned();
        futures::stream::unfold(
            (runtime, log, from, std::collections::VecDeque::new(), false),
            |(runtime, log, next, mut buffered, failed)| async move {
                if failed {
                    return None;
                }
                loop {
                    if let Some(record) = buffered.pop_front() {
                        let next = next.max(record_offset(&record) + 1);
                        return Some((Ok(record), (runtime, log, next, buffered, false)));
                    }
                    match runtime
                        .read_egress(&log, next, 256, Duration::from_secs(30))
                        .await
                    {
                        Ok(records) => buffered.extend(records),
                        Err(e) => return Some((Err(e), (runtime, log, next, buffered, true))),
                    }
                }
            },
        )
    }

    /// The messages from functions that failed every attempt (see
    /// [`Builder::retry_policy`]), oldest first per shard.
    ///
    /// A dead letter does not block its sender's later messages: they are
    /// applied, and a replayed dead letter arrives after them.
    pub async fn dead_letters(&self) -> Vec<DeadLetter> {
        let runtime = self.clone();
        tokio::task::spawn_blocking(move || runtime.dead_letters_now())
            .await
            .unwrap_or_default()
    }

    /// [`dead_letters`](Self::dead_letters) on the calling thread (it may
    /// wait for a shard to finish its batch).
    pub(crate) fn dead_letters_now(&self) -> Vec<DeadLetter> {
        let inner = self.inner();
        let mut out = Vec::new();
        for shard in &inner.shards {
            let letters: Vec<_> = shard.core.lock().dead_letters.values().cloned().collect();
            for letter in letters {
                let message = inner
                    .registry
                    .get(letter.target.type_name())
                    .and_then(|f| f.message_to_json(&letter.message))
                    .unwrap_or(serde_json::Value::Null);
                out.push(DeadLetter {
                    id: DeadLetterId {
                        shard: shard.id,
                        seq: letter.id,
                    },
                    target: letter.target,
                    message,
                    error: letter.error,
                    attempts: letter.attempts,
                    at_ms: letter.at_ms,
                });
            }
        }
        out
    }

    /// Delivers a dead letter again (a fresh set of attempts), durably
    /// removing it from the dead letters.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownDeadLetter`] if there is no such dead letter.
    pub async fn replay_dead_letter(&self, id: DeadLetterId) -> Result<(), Error> {
        self.resolve_dead_letter(id, true).await
    }

    /// Removes a dead letter durably without delivering it.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownDeadLetter`] if there is no such dead letter.
    pub async fn drop_dead_letter(&self, id: DeadLetterId) -> Result<(), Error> {
        self.resolve_dead_letter(id, false).await
    }

    async fn resolve_dead_letter(&self, id: DeadLetterId, replay: bool) -> Result<(), Error> {
        let inner = self.inner();
        if id.shard >= inner.shard_count() {
            return Err(Error::UnknownDeadLetter { id: id.to_string() });
        }
        let (reply, rx) = oneshot::channel();
        inner.enqueue(
            id.shard,
            Mail::DeadLetter {
                id: id.seq,
                replay,
                reply,
            },
        );
        rx.await.map_err(|_| Error::ShuttingDown)?.map(|_| ())
    }

    /// The registered function types and their handlers, sorted by name.
    pub fn functions(&self) -> Vec<(String, &'static [crate::HandlerInfo])> {
        self.inner().registry.describe()
    }
}

/// Identifies a dead letter: its shard and its number there (`"3-17"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeadLetterId {
    /// The shard that holds it (the target instance's shard).
    pub shard: u16,
    /// Its number in that shard.
    pub seq: u64,
}

impl std::fmt::Display for DeadLetterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.shard, self.seq)
    }
}

impl std::str::FromStr for DeadLetterId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let unknown = || Error::UnknownDeadLetter { id: s.to_owned() };
        let (shard, seq) = s.split_once('-').ok_or_else(unknown)?;
        Ok(DeadLetterId {
            shard: shard.parse().map_err(|_| unknown())?,
            seq: seq.parse().map_err(|_| unknown())?,
        })
    }
}

impl serde::Serialize for DeadLetterId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A message from a function that failed every attempt, from
/// [`Runtime::dead_letters`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Its id, for [`Runtime::replay_dead_letter`] / [`Runtime::drop_dead_letter`].
    pub id: DeadLetterId,
    /// The instance it was for.
    pub target: Address,
    /// The message as JSON (`{"handler": {"arg": value}}`), or null if it
    /// cannot be decoded.
    pub message: serde_json::Value,
    /// The last attempt's error.
    pub error: String,
    /// How many deliveries were tried.
    pub attempts: u32,
    /// When it became a dead letter (unix milliseconds).
    pub at_ms: u64,
}

/// One shard's state, from [`Runtime::shard_status`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ShardStatus {
    /// The shard.
    pub shard: u16,
    /// Serving, or recovering after a failure (its mail waits).
    pub serving: bool,
    /// Mail waiting in its mailbox.
    pub mailbox: usize,
    /// Its records up to this log position are in its last checkpoint.
    pub checkpoint_lsn: u64,
    /// The log group it writes to (`None` in memory).
    pub log_group: Option<u16>,
    /// Bytes in its log group's live log segments.
    pub log_bytes: u64,
    /// Live segments of its log group's log.
    pub log_segments: u64,
}

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
/// # impl Counter { pub fn add(&mut self, by: u64) -> u64 { self.n += by; self.n } }
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
    segment_bytes: u64,
    egress_retention: Duration,
    mailbox_capacity: usize,
    retry: RetryPolicy,
    file_system: Arc<dyn FileSystem>,
    registry: Registry,
    error: Option<Error>,
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
            segment_bytes: 64 << 20,
            egress_retention: DEFAULT_EGRESS_RETENTION,
            mailbox_capacity: DEFAULT_MAILBOX_CAPACITY,
            retry: RetryPolicy::default(),
            file_system: Arc::new(StdFs),
            registry: Registry::default(),
            error: None,
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

    /// The file system under the write-ahead log: a seam for tests that
    /// inject faults (`statefn_store::FaultyFs`, feature `fault-injection`).
    pub fn file_system(mut self, fs: Arc<dyn FileSystem>) -> Self {
        self.file_system = fs;
        self
    }

    /// Registers a function type so that it can be called.
    pub fn register<T: StatefulFunction>(mut self) -> Self {
        if let Err(e) = self.registry.register::<T>() {
            self.error.get_or_insert(e);
        }
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
        let plan = self.plan()?;
        let opened = if matches!(plan.storage, Storage::Disk { .. }) {
            let config = plan.clone();
            tokio::task::spawn_blocking(move || open_storage(&config, &Clock::System))
                .await
                .map_err(|e| Error::Storage(format!("recovery did not finish: {e}")))??
        } else {
            open_storage(&plan, &Clock::System)?
        };
        assemble(plan, opened, Clock::System, Drive::Threads)
    }

    pub(crate) fn plan(self) -> Result<Plan, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let storage = match (self.durability, self.data_dir) {
            (Some(Durability::InMemory), None) => Storage::InMemory,
            (Some(Durability::InMemory), Some(_)) => {
                return Err(Error::Config(
                    "both `.in_memory()` and `.data_dir(..)` were given; choose one".into(),
                ));
            }
            (mode, Some(path)) => Storage::Disk {
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
            },
            checkpoint_log_bytes: self.checkpoint_log_bytes,
            wal_options: WalOptions {
                segment_bytes: self.segment_bytes,
            },
            egress_retention: self.egress_retention,
            mailbox_capacity: self.mailbox_capacity,
            file_system: self.file_system,
            registry: self.registry,
        })
    }
}

#[derive(Debug, Clone)]
enum Storage {
    InMemory,
    Disk { path: PathBuf, mode: Durability },
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    storage: Storage,
    workers: usize,
    shards: u16,
    log_groups: u16,
    core: CoreConfig,
    checkpoint_log_bytes: u64,
    wal_options: WalOptions,
    egress_retention: Duration,
    mailbox_capacity: usize,
    file_system: Arc<dyn FileSystem>,
    registry: Registry,
}

/// Storage opened and recovered, before any thread starts.
struct Opened {
    durable: Option<Durable>,
    logs: Vec<(u16, Box<dyn CommitLog>)>,
    shards: Vec<Shard>,
    /// Per recovered shard: its unacknowledged outbox, its timers and its
    /// egress records not yet appended.
    recovered: Vec<Recovered>,
    egress: Egress,
}

type Recovered = (u16, Vec<Sent>, Vec<(u64, u16, u64)>, Vec<Emitted>);

/// How a runtime's shards, commits and timers are driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drive {
    /// Worker threads, syncer threads, a checkpointer thread, a tokio timer
    /// task: the runtime.
    Threads,
    /// Nothing runs unless the test driver (`statefn::testing`) runs it, on
    /// its own thread.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    Manual,
}

/// Opens the storage the plan chose and recovers it (blocking on disk).
fn open_storage(plan: &Plan, clock: &Clock) -> Result<Opened, Error> {
    let Storage::Disk { path, mode } = &plan.storage else {
        return Ok(Opened {
            durable: None,
            logs: Vec::new(),
            shards: (0..plan.shards)
                .map(|id| Shard::new(ShardCore::new(id, 0, plan.core.clone(), None)))
                .collect(),
            recovered: Vec::new(),
            egress: Egress::in_memory(plan.shards, plan.egress_retention, clock.clone()),
        });
    };
    let data_dir = DataDir::open_with_log_groups(path, plan.shards, plan.log_groups)
        .map_err(|e| Error::Storage(e.to_string()))?;
    let store =
        StateStore::open(&data_dir.state_dir()).map_err(|e| Error::Storage(e.to_string()))?;
    let logs: Arc<dyn LogBackend> = Arc::new(WalBackend::new(
        Arc::clone(&plan.file_system),
        &data_dir.wal_root(),
        plan.wal_options,
    ));
    let durable = Durable::new(
        store,
        logs,
        data_dir,
        *mode,
        plan.log_groups,
        plan.core.clone(),
        plan.checkpoint_log_bytes,
        clock.clone(),
    );
    let mut cores: Vec<ShardCore> = Vec::new();
    let mut logs = Vec::new();
    for group in 0..plan.log_groups {
        let (log, group_cores) = durable.recover(group, 1)?;
        logs.push((group, log));
        cores.extend(group_cores);
    }
    let egress = Egress::open(
        durable.store()?.egress(),
        plan.shards,
        plan.egress_retention,
        clock.clone(),
    )?;
    cores.sort_by_key(|c| c.id);
    let recovered = cores
        .iter()
        .map(|c| {
            (
                c.id,
                c.outbox.values().cloned().collect(),
                c.timers.values().map(|t| (t.due_ms, c.id, t.id)).collect(),
                c.pending_egress.values().cloned().collect(),
            )
        })
        .collect();
    Ok(Opened {
        durable: Some(durable),
        logs,
        shards: cores.into_iter().map(Shard::new).collect(),
        recovered,
        egress,
    })
}

/// Opens a runtime driven by the caller (`statefn::testing`): no threads, no
/// tokio task; `clock` is its time.
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
pub(crate) fn open_manual(plan: Plan, clock: &Clock) -> Result<Runtime, Error> {
    let opened = open_storage(&plan, clock)?;
    assemble(plan, opened, clock.clone(), Drive::Manual)
}

/// Builds the runtime around opened storage (on `clock`, which it was
/// opened with) and starts what `drive` says.
fn assemble(plan: Plan, opened: Opened, clock: Clock, drive: Drive) -> Result<Runtime, Error> {
    let Opened {
        durable,
        logs,
        shards,
        recovered,
        egress,
    } = opened;
    let (scheduler, slots) = match drive {
        Drive::Threads => Scheduler::new(plan.workers),
        Drive::Manual => (Scheduler::manual(), Vec::new()),
    };
    let shard_count = plan.shards;
    let inner = Arc::new(RuntimeInner {
        registry: plan.registry,
        shards,
        scheduler: Arc::new(scheduler),
        timers: Mutex::new(None),
        in_flight: AtomicUsize::new(0),
        idle: Notify::new(),
        closing: AtomicBool::new(false),
        stopped: AtomicBool::new(false),
        threads: Mutex::new(Vec::new()),
        acked: (0..usize::from(shard_count) * usize::from(shard_count))
            .map(|_| AtomicU64::new(0))
            .collect(),
        recoveries: AtomicU64::new(0),
        mailbox_capacity: plan.mailbox_capacity,
        durable,
        egress: Arc::new(egress),
        clock,
        drive,
        committed: (drive == Drive::Manual).then(|| Mutex::new(Vec::new())),
    });
    let spawn_error = |e: std::io::Error| Error::Config(format!("cannot start a thread: {e}"));
    match drive {
        Drive::Threads => {
            let weak: Weak<RuntimeInner> = Arc::downgrade(&inner);
            let (timers, task) = TimerService::start(move |shard, timer| {
                if let Some(inner) = weak.upgrade() {
                    inner.enqueue(shard, Mail::TimerDue { timer });
                }
            });
            *inner.timers.lock() = Some((timers, Some(task)));
        }
        Drive::Manual => *inner.timers.lock() = Some((TimerService::manual(), None)),
    }
    if let Some(d) = &inner.durable {
        for (group, log) in logs {
            let positions = d
                .group_shards(group)
                .into_iter()
                .map(|s| {
                    let core = inner.shard(s).core.lock();
                    (s, core.epoch, core.checkpoint.lsn)
                })
                .collect::<Vec<_>>();
            match drive {
                Drive::Threads => d.groups[usize::from(group)]
                    .start(&inner, group, log, &positions)
                    .map_err(spawn_error)?,
                Drive::Manual => {
                    d.groups[usize::from(group)].start_manual(&inner, group, log, &positions);
                }
            }
        }
        if drive == Drive::Threads {
            d.checkpointer.start(&inner).map_err(spawn_error)?;
        }
    }
    match drive {
        Drive::Threads => {
            let threads = inner
                .scheduler
                .start(slots, Arc::clone(&inner))
                .map_err(spawn_error)?;
            *inner.threads.lock() = threads;
            inner.egress.start().map_err(spawn_error)?;
        }
        Drive::Manual => inner.egress.start_manual(),
    }
    // Every recovered egress record goes to the appender before any shard
    // runs: the appender drops a shard's records at or below the highest
    // sequence it has seen from it, so none may overtake them.
    let mut resume = Vec::with_capacity(recovered.len());
    for (shard, outbox, timers, egress) in recovered {
        inner.egress.submit(egress);
        resume.push((shard, outbox, timers));
    }
    for (shard, outbox, timers) in resume {
        inner.after_recovery(shard, outbox, timers, false);
    }
    Ok(Runtime {
        owner: Arc::new(Owner { inner }),
    })
}

/// The shared core of a runtime.
#[derive(Debug)]
pub(crate) struct RuntimeInner {
    pub(crate) registry: Registry,
    shards: Vec<Shard>,
    scheduler: Arc<Scheduler>,
    timers: Mutex<Option<(TimerService, Option<tokio::task::JoinHandle<()>>)>>,
    /// Mail queued or being processed: shutdown waits for zero.
    in_flight: AtomicUsize,
    idle: Notify,
    closing: AtomicBool,
    stopped: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// `acked[source * shards + dest]`: the highest sequence from `source`
    /// that `dest` has durably applied; `source` prunes its outbox with it.
    acked: Vec<AtomicU64>,
    pub(crate) recoveries: AtomicU64,
    /// Client calls a shard queues at most before refusing with `Overloaded`.
    mailbox_capacity: usize,
    pub(crate) durable: Option<Durable>,
    pub(crate) egress: Arc<Egress>,
    /// Now: the system clock, or a test's virtual clock.
    pub(crate) clock: Clock,
    /// Threads, or the test driver.
    pub(crate) drive: Drive,
    /// Manual mode: every committed log record, for the test driver to read.
    pub(crate) committed: Option<Mutex<Vec<Vec<u8>>>>,
}

impl RuntimeInner {
    /// Queues a client call; the receiver resolves to the encoded reply.
    pub(crate) fn submit_call(
        &self,
        target: Address,
        message: Vec<u8>,
        key: Option<String>,
    ) -> Result<oneshot::Receiver<Result<Vec<u8>, Error>>, Error> {
        self.submit(target, message, key, None)
    }

    /// Queues a client call, or (with `enqueue`) a durable send.
    pub(crate) fn submit(
        &self,
        target: Address,
        message: Vec<u8>,
        key: Option<String>,
        enqueue: Option<Duration>,
    ) -> Result<oneshot::Receiver<Result<Vec<u8>, Error>>, Error> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(Error::ShuttingDown);
        }
        self.registry.get(target.type_name())?;
        let (tx, rx) = oneshot::channel();
        let shard = target.shard(self.shard_count());
        self.enqueue_call(
            shard,
            Mail::Invoke(Envelope {
                target,
                message,
                origin: Origin::Client {
                    key,
                    reply: Some(tx),
                    enqueue,
                },
                reply_to: None,
            }),
        )?;
        Ok(rx)
    }

    fn enqueue_call(&self, shard: u16, mail: Mail) -> Result<(), Error> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        match self
            .shard(shard)
            .try_enqueue_call(mail, self.mailbox_capacity)
        {
            Ok(schedule) => {
                if schedule {
                    self.scheduler.push(shard);
                }
                Ok(())
            }
            Err(e) => {
                if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
                    self.idle.notify_waiters();
                }
                Err(e)
            }
        }
    }

    pub(crate) fn shard_count(&self) -> u16 {
        u16::try_from(self.shards.len()).unwrap_or(u16::MAX)
    }

    pub(crate) fn shard(&self, shard: u16) -> &Shard {
        &self.shards[usize::from(shard)]
    }

    pub(crate) fn enqueue(&self, shard: u16, mail: Mail) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.shard(shard).enqueue(mail) {
            self.scheduler.push(shard);
        }
    }

    /// Resolves when no mail is queued or being processed.
    async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            // The timeout guards against a missed notification only.
            let _ = tokio::time::timeout(Duration::from_millis(10), idle).await;
        }
    }

    pub(crate) fn request_checkpoint(&self, shard: u16) {
        self.enqueue(shard, Mail::Checkpoint);
    }

    /// Releases a committed batch's effects: deliveries, replies, timers.
    pub(crate) fn release(&self, effects: Effects) {
        // Deliveries first: a caller who has seen a transfer's reply and then
        // calls the receiver finds the deposit already queued ahead of it.
        let shards = self.shard_count();
        for envelope in effects.deliveries {
            let shard = envelope.target.shard(shards);
            self.enqueue(shard, Mail::Invoke(envelope));
        }
        // Egress before replies too: in memory a caller then reads its own
        // records; durable appends are asynchronous (see `read_egress`).
        self.egress.submit(effects.egress);
        for (tx, reply) in effects.replies {
            // The caller may have stopped waiting; the invocation stands.
            let _ = tx.send(reply);
        }
        if !effects.timers.is_empty()
            && let Some((timers, _)) = &*self.timers.lock()
        {
            for timer in effects.timers {
                timers.arm(timer);
            }
        }
        if effects.finished > 0
            && self.in_flight.fetch_sub(effects.finished, Ordering::SeqCst) == effects.finished
        {
            self.idle.notify_waiters();
        }
    }

    /// Answers a batch that will not commit: its callers get `Unavailable`.
    pub(crate) fn refuse(&self, effects: Effects, shard: u16, reason: &str) {
        self.release(crate::durable::refused_effects(effects, shard, reason));
    }

    /// Records that `dest` has durably applied these messages.
    pub(crate) fn publish_acks(&self, dest: u16, acks: &[(u16, u64)]) {
        let shards = usize::from(self.shard_count());
        for &(source, seq) in acks {
            self.acked[usize::from(source) * shards + usize::from(dest)]
                .fetch_max(seq, Ordering::AcqRel);
        }
    }

    fn acked(&self, source: u16, dest: u16) -> u64 {
        let shards = usize::from(self.shard_count());
        self.acked[usize::from(source) * shards + usize::from(dest)].load(Ordering::Acquire)
    }

    /// After a shard was rebuilt: re-send its unacknowledged outbox, re-arm
    /// its timers, and (after a failure) ask every other shard to re-send
    /// what the recovered one may have lost. Then let it serve.
    pub(crate) fn after_recovery(
        &self,
        shard: u16,
        outbox: Vec<Sent>,
        timers: Vec<(u64, u16, u64)>,
        ask_senders: bool,
    ) {
        let shards = self.shard_count();
        for sent in outbox {
            let dest = sent.dest;
            debug_assert_eq!(sent.target.shard(shards), dest);
            self.enqueue(dest, Mail::Invoke(envelope_of(sent, shard)));
        }
        if let Some((service, _)) = &*self.timers.lock() {
            for timer in timers {
                service.arm(timer);
            }
        }
        if ask_senders {
            for other in (0..shards).filter(|&s| s != shard) {
                self.enqueue(other, Mail::Resend { dest: shard });
            }
        }
        if self.shard(shard).resume() {
            self.scheduler.push(shard);
        }
    }

    /// Manual mode: runs one batch of the runnable shard at the index `pick`
    /// chooses among `n` (`pick(n) < n`); returns `false` if none is runnable.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn run_one(&self, pick: impl FnOnce(usize) -> usize) -> bool {
        let Some(shard) = self.scheduler.take_ready(pick) else {
            return false;
        };
        if self.run_shard(shard) {
            self.scheduler.push(shard);
        }
        true
    }

    /// Manual mode: commits the batches handed to the log groups, writes the
    /// checkpoints they froze and appends egress records, on the calling
    /// thread. Returns whether there was anything to do.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn pump(&self) -> bool {
        let mut any = false;
        if let Some(durable) = &self.durable {
            for group in &durable.groups {
                any |= group.pump();
            }
            any |= durable.checkpointer.pump(self);
        }
        any | self.egress.pump()
    }

    /// Manual mode: whether a shard has mail to run.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn has_ready(&self) -> bool {
        self.scheduler.has_ready()
    }

    /// Manual mode: the earliest armed timer's due time.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn next_timer_due(&self) -> Option<u64> {
        self.timers.lock().as_ref().and_then(|(t, _)| t.next_due())
    }

    /// Manual mode: queues the timers due by the clock's now; returns
    /// whether there were any.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn fire_due_timers(&self) -> bool {
        let due = match &*self.timers.lock() {
            Some((timers, _)) => timers.take_due(self.clock.now_ms()),
            None => Vec::new(),
        };
        let any = !due.is_empty();
        for (shard, timer) in due {
            self.enqueue(shard, Mail::TimerDue { timer });
        }
        any
    }

    /// Refuses new calls from now on (the first step of a clean shutdown).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn refuse_new_calls(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    /// Manual mode: stops as a crash would. Queued mail, uncommitted batches,
    /// unwritten checkpoints and unappended egress records are dropped; what
    /// was committed stays on disk.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn crash(&self) {
        self.closing.store(true, Ordering::SeqCst);
        for shard in &self.shards {
            shard.clear_mailbox();
        }
        self.stop_and_join();
    }

    /// Stops the threads without waiting for them (idempotent).
    fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.closing.store(true, Ordering::SeqCst);
        self.scheduler.stop();
        if let Some((_, Some(task))) = self.timers.lock().take() {
            task.abort();
        }
        if let Some(durable) = &self.durable {
            for group in &durable.groups {
                group.stop();
            }
            durable.checkpointer.stop();
        }
    }

    /// Stops the threads, waits for them, and releases the data directory.
    pub(crate) fn stop_and_join(&self) {
        let join = |handles: Vec<JoinHandle<()>>| {
            for handle in handles {
                let _ = handle.join();
            }
        };
        // In dependency order: workers feed the syncers, which feed the
        // checkpointer and the egress appender.
        self.scheduler.stop();
        join(std::mem::take(&mut *self.threads.lock()));
        if let Some(durable) = &self.durable {
            join(durable.groups.iter().filter_map(LogGroup::stop).collect());
            join(durable.checkpointer.stop().into_iter().collect());
        }
        join(self.egress.stop().into_iter().collect());
        self.egress.close();
        self.stop();
        if let Some(durable) = &self.durable {
            // Shard cores hold store handles: replace them so fjall closes.
            for shard in &self.shards {
                let mut core = shard.core.lock();
                let config = durable.core.clone();
                *core = ShardCore::new(shard.id, core.epoch, config, None);
            }
            durable.close();
        }
    }
}

fn record_offset(record: &EgressRecord) -> u64 {
    record.offset
}

impl RunShard for RuntimeInner {
    fn run_shard(&self, shard: u16) -> bool {
        let acked = |dest: u16| self.acked(shard, dest);
        let env = RunEnv {
            registry: &self.registry,
            now_ms: self.clock.now_ms(),
            acked: &acked,
            egress_appended: self.egress.appended(shard),
        };
        self.shard(shard).run(&env, |batch| match &self.durable {
            None => self.release(batch.effects),
            Some(durable) => {
                durable.groups[usize::from(durable.group_of(batch.shard))].submit(self, batch);
            }
        })
    }
}
#[cfg(test)]
#[allow(unreachable_pub)] // handlers must be `pub`, even in a test module
mod tests {
    use serde::{Deserialize, Serialize};

    use crate::{Address, Error, Runtime, stateful_function};

    #[stateful_function]
    #[derive(Default, Serialize, Deserialize)]
    pub struct Counter {
        n: u64,
    }

    #[stateful_function]
    impl Counter {
        pub fn add(&mut self, by: u64) -> u64 {
            self.n += by;
            self.n
        }
    }

    async fn counter_runtime() -> Runtime {
        Runtime::builder()
            .in_memory()
            .register::<Counter>()
            .open()
            .await
            .expect("opens")
    }

    #[tokio::test]
    async fn undecodable_message_is_a_typed_error_and_changes_nothing() {
        let runtime = counter_runtime().await;
        let target = Address::new("Counter", "x").expect("valid");
        for garbage in [vec![], vec![0xff; 3], vec![7, 1, 2]] {
            let rx = runtime
                .inner()
                .submit_call(target.clone(), garbage, None)
                .expect("accepted");
            let err = rx.await.expect("answered").expect_err("undecodable");
            assert!(
                matches!(&err, Error::Decode { function, .. } if function == "Counter"),
                "{err:?}"
            );
        }
        assert_eq!(runtime.handle::<Counter>("x").add(1).await.expect("ok"), 1);
    }

    #[tokio::test]
    async fn unknown_function_is_refused_before_queueing() {
        let runtime = counter_runtime().await;
        let target = Address::new("Nope", "x").expect("valid");
        let err = runtime
            .inner()
            .submit_call(target, vec![0], None)
            .expect_err("unknown type");
        assert!(matches!(err, Error::UnknownFunction { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn dropping_the_last_handle_stops_the_workers() {
        let runtime = counter_runtime().await;
        let inner = std::sync::Arc::clone(&runtime.owner.inner);
        drop(runtime);
        assert!(inner.stopped.load(std::sync::atomic::Ordering::SeqCst));
    }
}
