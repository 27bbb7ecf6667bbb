//! The runtime: [`Runtime`], the handle applications hold, and the shared
//! core behind it, split by role:
//!
//! | file | what |
//! | --- | --- |
//! | [`builder`] | configuration and its validation |
//! | [`open`] | opening storage, recovering every log group, starting the services |
//! | [`router`] | mail to shards: client calls (with backpressure), messages, timers |
//! | [`release`] | a committed batch's effects leave, in order; acks are published |
//! | [`resend`] | after a recovery: re-send the outbox, re-arm timers, resume |
//! | `transport` | cluster mode: calls and mail for shards another node serves |
//! | `groups` | cluster mode: acquiring and giving up log groups at runtime |
//! | [`lifecycle`] | in-flight work, shutdown, stop and join |
//! | [`admin`] | operators: shard status, dead letters, functions |
//! | [`invocations`] | enqueued invocations: their ids, cancelling a delayed one |
//! | [`commit_phases`] | benchmarks: where the log groups' commits spend their time |
//!
//! The public API of the runtime for egress consumers is in
//! [`crate::egress`]'s reader.

pub(crate) mod admin;
pub(crate) mod builder;
pub(crate) mod commit_phases;
#[cfg(feature = "cluster")]
mod groups;
mod inspect;
pub(crate) mod invocations;
mod lifecycle;
pub(crate) mod open;
mod release;
mod resend;
mod router;
#[cfg(feature = "cluster")]
pub(crate) mod transport;
pub(crate) mod waiters;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use parking_lot::Mutex;
use tokio::sync::Notify;

pub use self::admin::{DeadLetter, DeadLetterId, ShardStatus};
pub use self::builder::{
    Builder, DEFAULT_CACHE_BYTES, DEFAULT_COMMIT_QUEUE_BYTES, DEFAULT_EGRESS_QUEUE_BYTES,
    DEFAULT_EGRESS_RETENTION, DEFAULT_FUNCTION_MAIL_BYTES, DEFAULT_IDEMPOTENCY_RETENTION,
    DEFAULT_MAILBOX_CAPACITY, DEFAULT_SHARDS, DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_TIMERS_IN_MEMORY,
};
pub use self::inspect::{Instances, MAX_INSTANCES_PAGE, PendingTimer};
pub use self::invocations::InvocationStatus;
use self::lifecycle::{Owner, Threads};
pub use self::waiters::MAX_INVOCATION_WAITERS;
use crate::{
    Address, Error, Handle, InvocationId, JsonReply, StatefulFunction,
    clock::Clock,
    commit::Commit,
    egress::Egress,
    protocol::{acks::AckMatrix, ids::ShardId},
    registry::Registry,
    resources::Resources,
    scheduler::{RunShard, Scheduler},
    shard::{Shard, effects::RunEnv},
    timers::Timers,
};

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
///     #[handler]
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

    /// How many times a log group was recovered after a failure since open.
    pub fn recoveries(&self) -> u64 {
        self.owner.inner.recoveries.load(Ordering::Relaxed)
    }

    /// Stops accepting calls, finishes the work in flight (including the
    /// messages it sends), then stops the threads and, in durable mode,
    /// releases the data directory. Pending timers stay stored and fire after
    /// the next open. Calling it again does nothing. In cluster mode it
    /// first hands the log groups this node serves off to the other nodes
    /// (up to 30 s; calls go on meanwhile).
    ///
    /// It never waits much longer than
    /// [`Builder::shutdown_timeout`](crate::Builder::shutdown_timeout)
    /// (30 s by default; stopping the threads may take a second more): a disk that does not answer, a log group that
    /// cannot recover or a handler that never returns make it return
    /// [`Error::ShutdownIncomplete`] instead of hanging. Egress long-polls
    /// return at once.
    ///
    /// # Errors
    ///
    /// [`Error::ShutdownIncomplete`] naming what did not finish (work still
    /// in flight at the deadline, a log group that stayed down, a thread
    /// that did not stop); [`Error::Config`] for the runtime of a
    /// `statefn::testing::TestRuntime`.
    ///
    /// # Durability
    ///
    /// Whatever happened, what was committed before is durable; what was not
    /// is as after a crash: the next open recovers it.
    pub async fn shutdown(&self) -> Result<(), Error> {
        let inner = Arc::clone(&self.owner.inner);
        if inner.manual {
            // Nothing runs a manual runtime while this waits.
            return Err(Error::Config(
                "this runtime is driven by a `statefn::testing::TestRuntime`: shut it down with \
                 `TestRuntime::shutdown`"
                    .into(),
            ));
        }
        if inner.stopped.load(Ordering::SeqCst) {
            return Ok(());
        }
        let timeout = inner.shutdown_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        // Cluster mode: hand the groups served here to the other nodes
        // first, while calls are still taken (and forwarded); half the
        // deadline at most, the rest is for the local shutdown.
        #[cfg(feature = "cluster")]
        if let Some(node) = inner.cluster.get() {
            node.drain(timeout / 2).await;
        }
        inner.begin_closing();
        let mut idle = tokio::time::timeout_at(deadline, inner.wait_idle())
            .await
            .is_ok();
        if idle && inner.commit.is_some() {
            // A final checkpoint of every shard, so the next open replays
            // (almost) nothing.
            for shard in inner.shard_ids() {
                inner.request_checkpoint(shard);
            }
            idle = tokio::time::timeout_at(deadline, inner.wait_idle())
                .await
                .is_ok();
        }
        let mut unfinished = Vec::new();
        if !idle {
            unfinished.push(format!(
                "{} calls, messages or checkpoints were still in flight after {timeout:?}",
                inner.in_flight()
            ));
        }
        let until = std::time::Instant::now()
            + deadline.saturating_duration_since(tokio::time::Instant::now());
        let stopping = Arc::clone(&inner);
        // The join itself never waits past the deadline; the margin only
        // covers a blocking pool too busy to start it.
        let joined = tokio::time::timeout_at(
            deadline + 5 * lifecycle::STOP_GRACE + Duration::from_secs(1),
            tokio::task::spawn_blocking(move || stopping.stop_and_join(Some(until))),
        )
        .await;
        match joined {
            Ok(Ok(stuck)) => unfinished.extend(stuck),
            Ok(Err(e)) => unfinished.push(format!("stopping the threads failed: {e}")),
            Err(_) => unfinished.push("the threads could not be stopped in time".to_owned()),
        }
        if let Some(commit) = &inner.commit {
            for (group, reason) in commit.groups_down() {
                unfinished.push(format!(
                    "log group {group} could not recover ({reason}); its shards stayed down"
                ));
            }
        }
        if unfinished.is_empty() {
            Ok(())
        } else {
            tracing::error!(?unfinished, "shutdown did not finish cleanly");
            Err(Error::ShutdownIncomplete { unfinished })
        }
    }

    pub(crate) fn inner(&self) -> &RuntimeInner {
        &self.owner.inner
    }

    /// Cluster mode: the nodes, and each log group's owner and epoch, as
    /// this node sees them (`None` in single-node mode). `GET
    /// /admin/cluster` serves it.
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
    /// let runtime = Runtime::builder().in_memory().register::<Counter>().open().await?;
    /// assert!(runtime.cluster_status().is_none(), "a single node");
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "cluster")]
    pub fn cluster_status(&self) -> Option<crate::cluster::ClusterStatus> {
        self.owner.inner.cluster.get().map(|node| node.status())
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
    /// # impl Counter { #[handler] pub fn add(&mut self, by: u64) -> u64 { self.n += by; self.n } }
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
        self.call_json_traced(type_name, id, handler, args, idempotency_key, None)
            .await
    }

    /// [`call_json`](Self::call_json) continuing the trace `trace` (the
    /// HTTP ingress passes a request's `traceparent`).
    pub(crate) async fn call_json_traced(
        &self,
        type_name: &str,
        id: &str,
        handler: &str,
        args: serde_json::Value,
        idempotency_key: Option<String>,
        trace: Option<crate::TraceContext>,
    ) -> Result<JsonReply, Error> {
        let started = std::time::Instant::now();
        let inner = self.inner();
        let function = Arc::clone(inner.registry.get(type_name)?);
        let target = Address::new(type_name, id)?;
        let message = function.message_from_json(handler, args)?;
        let rx = inner.submit(target, message, idempotency_key, None, trace)?;
        let reply = rx.await.map_err(|_| Error::ShuttingDown)??;
        crate::metrics::record_call(
            function.type_name(),
            function.handler_label(handler),
            started,
        );
        function.reply_to_json(handler, &reply)
    }

    /// Durably enqueues a call of `handler` (arguments as for
    /// [`call_json`](Self::call_json)) to run after `delay` (zero: as soon as
    /// possible), and returns its [`InvocationId`] once the message is
    /// committed, before the handler runs. With an idempotency key,
    /// enqueueing again does nothing (and returns the same id); without
    /// one, a random key is generated. A delayed invocation can be
    /// cancelled until it runs ([`cancel_invocation`](Self::cancel_invocation)).
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
    ) -> Result<InvocationId, Error> {
        self.enqueue_json_traced(type_name, id, handler, args, delay, idempotency_key, None)
            .await
    }

    /// [`enqueue_json`](Self::enqueue_json) continuing the trace `trace`.
    #[allow(
        clippy::too_many_arguments,
        reason = "the public `enqueue_json`'s arguments and the trace"
    )]
    pub(crate) async fn enqueue_json_traced(
        &self,
        type_name: &str,
        id: &str,
        handler: &str,
        args: serde_json::Value,
        delay: Duration,
        idempotency_key: Option<String>,
        trace: Option<crate::TraceContext>,
    ) -> Result<InvocationId, Error> {
        let inner = self.inner();
        let function = Arc::clone(inner.registry.get(type_name)?);
        let target = Address::new(type_name, id)?;
        let message = function.message_from_json(handler, args)?;
        // Always keyed, so that the id names exactly one message.
        let key = idempotency_key.unwrap_or_else(|| format!("inv-{:032x}", rand::random::<u128>()));
        let rx = inner.submit(
            target.clone(),
            message,
            Some(key.clone()),
            Some(delay),
            trace,
        )?;
        rx.await.map_err(|_| Error::ShuttingDown)??;
        Ok(InvocationId::enqueued(target, key))
    }
}

/// The shared core of a runtime.
#[derive(Debug)]
pub(crate) struct RuntimeInner {
    pub(crate) registry: Registry,
    /// What handlers read with `Context::resource`.
    resources: Option<Arc<Resources>>,
    shards: Vec<Shard>,
    pub(crate) scheduler: Arc<Scheduler>,
    /// Armed timers (the timer service fires them).
    pub(crate) timers: Arc<Timers>,
    /// Mail queued or being processed: shutdown waits for zero.
    in_flight: AtomicUsize,
    idle: Notify,
    closing: AtomicBool,
    stopped: AtomicBool,
    /// The services' threads, joined in dependency order.
    threads: Mutex<Threads>,
    /// Which messages each receiver has durably applied.
    acks: AckMatrix,
    recoveries: AtomicU64,
    /// Client calls a shard queues at most before refusing with `Overloaded`.
    mailbox_capacity: usize,
    /// Bytes of messages from functions a shard queues at most (durable
    /// mode; `None` in memory, where nothing could re-send a refused one).
    function_mail_bytes: Option<u64>,
    /// Bytes of egress records waiting for the appender past which workers
    /// wait (durable mode).
    egress_queue_bytes: u64,
    /// The longest `shutdown` waits.
    shutdown_timeout: Duration,
    /// The commit path (durable mode).
    pub(crate) commit: Option<Commit>,
    pub(crate) egress: Arc<Egress>,
    /// Now: the system clock, or a test's virtual clock.
    pub(crate) clock: Clock,
    /// Waits for enqueued invocations, woken as their outcomes are released.
    pub(crate) invocation_waiters: Arc<waiters::InvocationWaiters>,
    /// Driven by the test kit: no service runs on its own.
    manual: bool,
    /// Cluster mode: this node's membership, ownership and transport.
    #[cfg(feature = "cluster")]
    pub(crate) cluster: std::sync::OnceLock<Arc<crate::cluster::ClusterNode>>,
    /// Test hook: this many of the next committed messages between
    /// functions are lost on their way to the receiver's mailbox.
    #[cfg(test)]
    pub(crate) lose_messages: std::sync::atomic::AtomicUsize,
    /// Test hook: how many status queries `Runtime::invocation` sent.
    #[cfg(test)]
    pub(crate) status_queries: std::sync::atomic::AtomicUsize,
}

impl RunShard for RuntimeInner {
    fn run_shard(&self, shard: ShardId) -> bool {
        let acked = |dest: ShardId| self.acks.acked(shard, dest);
        let env = RunEnv {
            registry: &self.registry,
            resources: self.resources.as_ref(),
            now_ms: self.clock.now_ms(),
            acked: &acked,
            egress_appended: self.egress.appended(shard),
        };
        let Some(target) = self.shard(shard) else {
            return false;
        };
        if let Some(commit) = &self.commit
            && !self.manual
        {
            let give_up = || self.stopped.load(Ordering::SeqCst) || self.scheduler.is_stopping();
            commit.wait_for_room(shard, give_up);
            // Egress records come from any shard's batches: a slow
            // appender holds every worker back.
            self.egress.wait_for_room(self.egress_queue_bytes, give_up);
        }
        target.run(
            &env,
            |mut batch| match &self.commit {
                None => self.release(batch.effects),
                Some(commit) => {
                    // Its records count against the egress bound from now.
                    batch.effects.egress_reserved = self.egress.reserve(&batch.effects.egress);
                    if let Err(batch) = commit.submit(batch) {
                        self.refuse(batch.effects, batch.shard, "the runtime is stopping");
                    }
                }
            },
            |batch, panic| self.shard_panicked(batch, &panic),
        )
    }
}

impl RuntimeInner {
    /// The runtime's own code panicked while running a batch of
    /// `batch.shard` (a bug). In memory the core is all there is: what the
    /// batch finished is released and the shard goes on. In durable mode the
    /// core may be half-changed: the batch is refused, the shard is taken
    /// down at once, and its log group rebuilds it from checkpoint and log.
    fn shard_panicked(&self, batch: crate::shard::effects::Batch, panic: &str) {
        let shard = batch.shard;
        metrics::counter!(crate::metrics::PANICS, "where" => "shard").increment(1);
        let Some(commit) = &self.commit else {
            tracing::error!(
                %shard,
                panic,
                "statefn bug: the runtime panicked while running a batch; the mail that \
                 caused it was dropped, the shard goes on"
            );
            return self.release(batch.effects);
        };
        tracing::error!(
            %shard,
            panic,
            "statefn bug: the runtime panicked while running a batch; the shard's log group \
             recovers it from its checkpoint and log"
        );
        let reason = "its shard failed and is recovering";
        let waiting = self.shard(shard).map(Shard::take_down).unwrap_or_default();
        self.refuse(batch.effects, shard, reason);
        self.refuse(
            crate::shard::effects::Effects {
                finished: waiting.len(),
                replies: waiting.into_iter().map(|tx| (tx, Ok(Vec::new()))).collect(),
                ..Default::default()
            },
            shard,
            reason,
        );
        commit.fail_group(
            commit.group_of(shard),
            format!("shard {shard} panicked: {panic}"),
        );
    }
}

#[cfg(test)]
#[expect(
    unreachable_pub,
    reason = "handlers must be `pub`, even in a test module"
)]
mod tests;
