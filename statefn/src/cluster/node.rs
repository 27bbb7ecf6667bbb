//! [`ClusterNode`]: one statefn node's part in its cluster. It connects to
//! NATS with a tokio runtime of its own (the application's may be
//! single-threaded, and the log's blocking calls must not run on it), checks
//! the cluster's shared configuration, and runs the background tasks of the
//! sibling modules: heartbeats (`membership`), the owners table and the
//! ownership manager (`ownership`), forwarding (`forward`), and messages,
//! acks and re-sends between nodes (`mail`). It is the runtime's
//! [`ClusterTransport`].
//!
//! (Over 500 lines: connecting, the shared configuration check and the
//! background tasks' wiring; most of it is error mapping.)

use std::{
    collections::BTreeMap,
    sync::{
        Arc, OnceLock, Weak,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, kv, object_store::ObjectStore};
use parking_lot::Mutex;
use tokio::{runtime::Handle, sync::Notify, task::JoinHandle};

use super::{
    ClusterConfig, ClusterError, JetStreamBackend, JetStreamOptions,
    config::{CLUSTER_FORMAT, SharedConfig},
    egress_streams::EgressStreams,
    mail::{Outbound, Unacked},
    membership::Membership,
    names::Names,
    ownership::{GroupSlot, OwnersTable},
    snapshot::SnapshotBucket,
    standby::Follower,
    status::{ClusterStatus, GroupStatus},
    wire::Heartbeat,
};
use crate::{
    egress::Egress,
    protocol::ids::{EgressSeq, LogGroupId, ShardId},
    runtime::RuntimeInner,
};

/// One node's membership, ownership and transport; see the module docs.
#[derive(Debug)]
pub(crate) struct ClusterNode {
    /// This node, for the tasks it starts from `&self`.
    pub(super) this: Weak<ClusterNode>,
    pub(super) config: ClusterConfig,
    pub(super) names: Names,
    /// The node's own runtime for NATS I/O; shut down at
    /// [`close`](Self::close).
    tokio: Mutex<NatsRuntime>,
    pub(super) handle: Handle,
    pub(super) client: async_nats::Client,
    pub(super) owners_kv: kv::Store,
    backend: JetStreamBackend,
    pub(super) js: jetstream::Context,
    /// Snapshots of log groups (`snapshot`).
    pub(super) snapshots: SnapshotBucket,
    /// The groups followed here as a standby (`standby`).
    pub(super) followers: Mutex<BTreeMap<u16, Follower>>,
    pub(super) shards: u16,
    pub(super) log_groups: u16,
    pub(super) runtime: OnceLock<Weak<RuntimeInner>>,
    pub(super) membership: Membership,
    pub(super) owners: OwnersTable,
    /// This node's view of each group.
    pub(super) slots: Mutex<Vec<GroupSlot>>,
    /// The subscriptions of the groups served (or being taken over) here.
    pub(super) subscriptions: Mutex<BTreeMap<u16, Subscriptions>>,
    /// Messages, acks and re-send requests to publish, in order.
    pub(super) outbound: tokio::sync::mpsc::UnboundedSender<Outbound>,
    outbound_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Outbound>>>,
    /// Messages sent to other nodes and not acknowledged yet, per channel.
    pub(super) unacked: Mutex<BTreeMap<(ShardId, ShardId), Unacked>>,
    /// Wakes the ownership manager.
    pub(super) wake: Notify,
    /// Groups whose syncer stopped on a log failure: `(group, fenced, why)`.
    pub(super) failed: Mutex<Vec<(LogGroupId, bool, String)>>,
    pub(super) stopping: AtomicBool,
    pub(super) draining: AtomicBool,
    /// Acquisitions and releases running.
    pub(super) ops: AtomicUsize,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A tokio runtime shut down without blocking when dropped: a plain drop
/// blocks, which panics on an async thread (the application's, or its own).
#[derive(Debug)]
struct NatsRuntime(Option<tokio::runtime::Runtime>);

impl NatsRuntime {
    fn shut_down(&mut self) {
        if let Some(tokio) = self.0.take() {
            tokio.shutdown_background();
        }
    }
}

impl Drop for NatsRuntime {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// A group's subscriptions; dropping the tasks unsubscribes.
#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    /// Forwarded calls: only while the group serves.
    pub(super) call: Option<JoinHandle<()>>,
    /// Messages, acks and re-send requests.
    pub(super) mail: Option<JoinHandle<()>>,
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        for task in [self.call.take(), self.mail.take()].into_iter().flatten() {
            task.abort();
        }
    }
}

impl ClusterNode {
    /// Connects to NATS, checks (or records) the cluster's shared
    /// configuration and makes the buckets. Runs on the node's own runtime.
    ///
    /// # Errors
    ///
    /// [`ClusterError`]: no server reachable, a configuration that differs
    /// from the cluster's, fewer JetStream servers than `replicas`.
    pub(crate) async fn connect(
        config: ClusterConfig,
        shards: u16,
        log_groups: u16,
    ) -> Result<Arc<ClusterNode>, ClusterError> {
        config.validate()?;
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("statefn-nats")
            .enable_all()
            .build()
            .map_err(|e| ClusterError::nats("starting the NATS client's threads")(Box::new(e)))?;
        let handle = tokio.handle().clone();
        let tokio = NatsRuntime(Some(tokio));
        let shared = SharedConfig {
            shards,
            log_groups,
            replicas: config.replicas,
            format: CLUSTER_FORMAT,
        };
        let parts = handle
            .spawn(connect_parts(config.clone(), shared, handle.clone()))
            .await
            .map_err(|e| ClusterError::nats("connecting")(Box::new(e)))??;
        let (outbound, outbound_rx) = tokio::sync::mpsc::unbounded_channel();
        Ok(Arc::new_cyclic(|this| ClusterNode {
            this: this.clone(),
            names: Names::new(&config.cluster_name),
            membership: Membership::new(&config.node_id, config.failure_timeout),
            config,
            tokio: Mutex::new(tokio),
            handle,
            client: parts.client,
            owners_kv: parts.owners,
            backend: parts.backend,
            js: parts.js,
            snapshots: SnapshotBucket(parts.snapshots),
            followers: Mutex::new(BTreeMap::new()),
            shards,
            log_groups,
            runtime: OnceLock::new(),
            owners: OwnersTable::default(),
            slots: Mutex::new((0..log_groups).map(|_| GroupSlot::default()).collect()),
            subscriptions: Mutex::new(BTreeMap::new()),
            outbound,
            outbound_rx: Mutex::new(Some(outbound_rx)),
            unacked: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
            failed: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            ops: AtomicUsize::new(0),
            tasks: Mutex::new(Vec::new()),
        }))
    }

    /// The log backend: a JetStream stream per log group.
    pub(crate) fn log_backend(&self) -> JetStreamBackend {
        self.backend.clone()
    }

    /// The egress logs: a JetStream stream per egress log.
    pub(crate) fn egress(
        &self,
        shards: u16,
        retention: Duration,
        clock: crate::clock::Clock,
    ) -> Egress {
        let sink = EgressStreams::new(
            self.js.clone(),
            self.handle.clone(),
            self.names.clone(),
            self.config.replicas,
            retention,
        );
        let appended = vec![EgressSeq(0); usize::from(shards)];
        Egress::durable(Box::new(sink), &appended, retention, clock)
    }

    /// The runtime this node serves, while it runs.
    pub(super) fn runtime(&self) -> Option<Arc<RuntimeInner>> {
        self.runtime.get().and_then(Weak::upgrade)
    }

    /// The log group of `shard`.
    pub(super) fn group_of(&self, shard: ShardId) -> LogGroupId {
        LogGroupId::of(shard, self.log_groups)
    }

    /// Reads the owners table, retrying for `log_retry_for`: a node that
    /// starts while a NATS server is down may find the bucket's stream
    /// without a leader for seconds (an election), which is no reason to
    /// refuse to start.
    async fn load_owners_patiently(&self) -> Result<(), ClusterError> {
        let started = Instant::now();
        loop {
            match self.load_owners().await {
                Ok(()) => return Ok(()),
                Err(error) if started.elapsed() < self.config.log_retry_for => {
                    tracing::warn!(%error, "cannot read the owners table yet; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Starts the background tasks for `runtime`: loads the owners table,
    /// then heartbeats, the owners watch, the manager, forwarding and the
    /// transport.
    pub(crate) async fn start(
        self: &Arc<Self>,
        runtime: &Arc<RuntimeInner>,
    ) -> Result<(), ClusterError> {
        let _ = self.runtime.set(Arc::downgrade(runtime));
        let node = Arc::clone(self);
        self.handle
            .spawn(async move { node.load_owners_patiently().await })
            .await
            .map_err(|e| ClusterError::nats("reading the owners table")(Box::new(e)))??;
        let mut tasks = vec![
            self.handle.spawn(Arc::clone(self).heartbeats()),
            self.handle.spawn(Arc::clone(self).listen_to_heartbeats()),
            self.handle.spawn(Arc::clone(self).watch_owners()),
            self.handle.spawn(Arc::clone(self).manage()),
            self.handle.spawn(Arc::clone(self).retransmit()),
            self.handle.spawn(Arc::clone(self).snapshot_and_trim()),
        ];
        if let Some(rx) = self.outbound_rx.lock().take() {
            tasks.push(self.handle.spawn(Arc::clone(self).publish_outbound(rx)));
        }
        self.tasks.lock().extend(tasks);
        Ok(())
    }

    /// This node's heartbeat as of now.
    pub(super) fn heartbeat(&self) -> Heartbeat {
        let owned = self
            .slots
            .lock()
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.serving().is_some())
            .filter_map(|(g, _)| u16::try_from(g).ok())
            .collect();
        Heartbeat {
            node: self.config.node_id.clone(),
            ready: self.membership.settled() && !self.stopping.load(Ordering::SeqCst),
            draining: self.draining.load(Ordering::SeqCst),
            owned,
            following: self.following(),
        }
    }

    async fn heartbeats(self: Arc<Self>) {
        let subject = self.names.heartbeats();
        let mut ticks = tokio::time::interval(self.config.heartbeat_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let beat = self.heartbeat();
            self.membership.heard(beat.clone());
            let payload = serde_json::to_vec(&beat).unwrap_or_default();
            if let Err(error) = self.client.publish(subject.clone(), payload.into()).await {
                tracing::debug!(%error, "heartbeat not sent");
            }
        }
    }

    async fn listen_to_heartbeats(self: Arc<Self>) {
        use futures::StreamExt;
        loop {
            match self.client.subscribe(self.names.heartbeats()).await {
                Ok(mut beats) => {
                    self.membership.listening();
                    while let Some(message) = beats.next().await {
                        if let Ok(beat) = serde_json::from_slice::<Heartbeat>(&message.payload)
                            && beat.node != self.config.node_id
                        {
                            self.membership.heard(beat);
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot listen to heartbeats; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Hands every group served here off to the other nodes (a graceful
    /// shutdown), waiting up to `timeout`; returns whether none is left.
    pub(crate) async fn drain(&self, timeout: Duration) -> bool {
        self.draining.store(true, Ordering::SeqCst);
        // Tell the others before the first handoff: a node handed a group
        // while it still counts this one as a candidate would pass the
        // group back, and it would only move on when this node is dead.
        let beat = self.heartbeat();
        self.membership.heard(beat.clone());
        let payload = serde_json::to_vec(&beat).unwrap_or_default();
        if self
            .client
            .publish(self.names.heartbeats(), payload.into())
            .await
            .is_ok()
        {
            let _ = self.client.flush().await;
        }
        self.wake.notify_one();
        let deadline = Instant::now() + timeout;
        loop {
            let (served, busy) = {
                let slots = self.slots.lock();
                (
                    slots.iter().filter(|s| s.serving().is_some()).count(),
                    slots.iter().filter(|s| s.is_busy()).count(),
                )
            };
            if served == 0 && busy == 0 {
                return true;
            }
            let others = self
                .membership
                .candidates(false, true)
                .into_iter()
                .any(|n| n != self.config.node_id);
            if !others || Instant::now() >= deadline {
                tracing::info!(
                    served,
                    "shutting down while serving groups: no node to hand them to"
                );
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the background tasks, without waiting.
    pub(crate) fn stop(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
        self.subscriptions.lock().clear();
        // Their threads stop within a read's poll time.
        self.followers.lock().clear();
        self.wake.notify_one();
    }

    /// Stops the background tasks and the standbys (checkpointing what they
    /// applied) and waits for the acquisitions and releases running
    /// (blocking; bounded).
    pub(crate) fn stop_and_wait(&self) {
        let followers = std::mem::take(&mut *self.followers.lock());
        self.stop();
        for follower in followers.into_values() {
            self.checkpoint_and_drop(follower);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.ops.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.subscriptions.lock().clear();
    }

    /// Shuts the node's runtime down (after the syncers and the egress
    /// appender, which use it, have stopped).
    pub(crate) fn close(&self) {
        self.tokio.lock().shut_down();
    }

    /// What `GET /admin/cluster` shows.
    pub(crate) fn status(&self) -> ClusterStatus {
        let me = self.heartbeat();
        let owners = self.owners.snapshot();
        let slots = self.slots.lock().clone();
        let groups = (0..self.log_groups)
            .map(|g| {
                let owner = owners.get(&g);
                let mut standbys = self.membership.following(g);
                if let Some(mine) = me.following.iter().find(|f| f.group == g) {
                    standbys.push((me.node.clone(), mine.clone()));
                }
                standbys.sort_by(|a, b| a.0.cmp(&b.0));
                let slot = slots.get(usize::from(g));
                GroupStatus {
                    group: g,
                    owner: owner.map(|(o, _)| o.node.clone()),
                    epoch: owner.map(|(o, _)| o.epoch),
                    served_here: slot.is_some_and(|s| s.serving().is_some()),
                    lag: standbys.iter().map(|(_, f)| f.lag).max(),
                    standby_applied: standbys.iter().map(|(_, f)| f.applied).min(),
                    standby_checkpointed: standbys.iter().map(|(_, f)| f.checkpointed).min(),
                    standbys: standbys.into_iter().map(|(n, _)| n).collect(),
                    replayed_at_takeover: slot.and_then(GroupSlot::replayed),
                }
            })
            .collect();
        ClusterStatus {
            cluster: self.names.cluster().to_owned(),
            node: self.config.node_id.clone(),
            nodes: self.membership.status(me),
            groups,
        }
    }
}

/// What [`ClusterNode::connect`] builds on the node's runtime.
struct Parts {
    client: async_nats::Client,
    js: jetstream::Context,
    owners: kv::Store,
    backend: JetStreamBackend,
    snapshots: ObjectStore,
}

async fn connect_parts(
    config: ClusterConfig,
    shared: SharedConfig,
    handle: Handle,
) -> Result<Parts, ClusterError> {
    let urls = config.nats_urls.join(",");
    let addrs = config
        .nats_urls
        .iter()
        .map(|u| u.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClusterError::Connect {
            urls: urls.clone(),
            source: Arc::new(e),
        })?;
    let client = async_nats::ConnectOptions::new()
        .name(format!("statefn-{}", config.node_id))
        .connect(addrs)
        .await
        .map_err(|e| ClusterError::Connect {
            urls: urls.clone(),
            source: Arc::new(e),
        })?;
    let js = jetstream::context::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .build(client.clone());
    let names = Names::new(&config.cluster_name);
    let meta = bucket(
        &js,
        &names.meta_bucket(),
        config.replicas,
        "the cluster's configuration",
        config.log_retry_for,
    )
    .await?;
    check_shared(&meta, &names, shared, config.log_retry_for).await?;
    let owners = bucket(
        &js,
        &names.owners_bucket(),
        config.replicas,
        "the owners of log groups",
        config.log_retry_for,
    )
    .await?;
    let mut options = JetStreamOptions::new(config.cluster_name.clone(), config.node_id.clone());
    options.replicas = config.replicas;
    options.retry_for = config.log_retry_for;
    // The owner's syncer does not trim: the stream is trimmed below the
    // group's snapshot and its standbys' checkpoints (`snapshot`).
    options.truncate = false;
    let backend = JetStreamBackend::with_client(client.clone(), options, handle)
        .map_err(|e| ClusterError::nats("making the log backend")(Box::new(e)))?;
    let snapshots_bucket = names.snapshots_bucket();
    let snapshots = patiently("the snapshots' object store", config.log_retry_for, || {
        object_bucket(&js, &snapshots_bucket, config.replicas)
    })
    .await?;
    Ok(Parts {
        client,
        js,
        owners,
        backend,
        snapshots,
    })
}

/// Whether a failure to make or find a bucket may pass by itself: a server
/// the cluster knows has not reported in yet ("peer offline", right after
/// the servers start), or JetStream has no meta leader for a moment (one
/// was just killed: "temporarily unavailable", or no answer in time).
fn transient(error: &ClusterError) -> bool {
    let detail = match error {
        ClusterError::TooFewServers { detail, .. } => detail.to_lowercase(),
        other => format!("{other} {other:?}").to_lowercase(),
    };
    [
        "peer offline",
        "temporarily unavailable",
        "timedout",
        "timed out",
        "noresponders",
        "no responders",
    ]
    .iter()
    .any(|needle| detail.contains(needle))
}

/// Runs `make` again while it fails with a [`transient`] error, for
/// `retry_for`: no reason to refuse to start (too few servers is, and says
/// so at once).
async fn patiently<T, F, Fut>(
    what: &str,
    retry_for: Duration,
    mut make: F,
) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClusterError>>,
{
    let started = Instant::now();
    loop {
        match make().await {
            Err(error) if transient(&error) && started.elapsed() < retry_for => {
                tracing::warn!(%error, what, "JetStream is not ready yet; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => return other,
        }
    }
}

/// The bucket `name`, created (with `replicas`) if missing; transient
/// failures are tried again for `retry_for` ([`patiently`]).
async fn bucket(
    js: &jetstream::Context,
    name: &str,
    replicas: usize,
    what: &str,
    retry_for: Duration,
) -> Result<kv::Store, ClusterError> {
    patiently(name, retry_for, || create_bucket(js, name, replicas, what)).await
}

async fn create_bucket(
    js: &jetstream::Context,
    name: &str,
    replicas: usize,
    what: &str,
) -> Result<kv::Store, ClusterError> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    let config = kv::Config {
        bucket: name.to_owned(),
        description: format!("statefn: {what}"),
        history: 1,
        num_replicas: replicas,
        storage: jetstream::stream::StorageType::File,
        ..kv::Config::default()
    };
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        Err(error) => {
            // Another node may have created it meanwhile.
            if let Ok(store) = js.get_key_value(name).await {
                return Ok(store);
            }
            let detail = error.to_string();
            let lower = detail.to_lowercase();
            if lower.contains("insufficient resources")
                || lower.contains("replicas > 1 not supported")
                || lower.contains("no suitable peers")
            {
                return Err(ClusterError::TooFewServers { replicas, detail });
            }
            Err(ClusterError::nats(format!("creating bucket {name}"))(
                Box::new(error),
            ))
        }
    }
}

/// The object store `name`, created (with `replicas`) if missing.
async fn object_bucket(
    js: &jetstream::Context,
    name: &str,
    replicas: usize,
) -> Result<ObjectStore, ClusterError> {
    if let Ok(store) = js.get_object_store(name).await {
        return Ok(store);
    }
    let config = jetstream::object_store::Config {
        bucket: name.to_owned(),
        description: Some("statefn: snapshots of log groups".into()),
        num_replicas: replicas,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    };
    match js.create_object_store(config).await {
        Ok(store) => Ok(store),
        Err(error) => {
            if let Ok(store) = js.get_object_store(name).await {
                return Ok(store);
            }
            Err(ClusterError::nats(format!("creating object store {name}"))(
                Box::new(error),
            ))
        }
    }
}

/// Records the shared configuration, or checks this node's against it.
///
/// The create is tried again for `retry_for`: a bucket created a moment
/// ago may have no stream leader yet ("no responders" while its replicas
/// elect one), which is no reason to refuse to start.
async fn check_shared(
    meta: &kv::Store,
    names: &Names,
    ours: SharedConfig,
    retry_for: Duration,
) -> Result<(), ClusterError> {
    let encoded = serde_json::to_vec(&ours).unwrap_or_default();
    let started = Instant::now();
    loop {
        match meta.create("config", encoded.clone().into()).await {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => break,
            Err(e) if started.elapsed() < retry_for => {
                tracing::warn!(error = %e, "cannot record the cluster's configuration yet; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => {
                return Err(ClusterError::nats("recording the cluster's configuration")(
                    Box::new(e),
                ));
            }
        }
    }
    let stored = meta
        .get("config")
        .await
        .map_err(|e| ClusterError::nats("reading the cluster's configuration")(Box::new(e)))?;
    let theirs: Option<SharedConfig> = stored.and_then(|b| serde_json::from_slice(&b).ok());
    match theirs {
        Some(theirs) if theirs == ours => Ok(()),
        Some(theirs) => Err(ClusterError::Mismatch {
            cluster: names.cluster().to_owned(),
            ours: ours.describe(),
            theirs: theirs.describe(),
        }),
        None => Err(ClusterError::Mismatch {
            cluster: names.cluster().to_owned(),
            ours: ours.describe(),
            theirs: "a configuration this build cannot read".into(),
        }),
    }
}
