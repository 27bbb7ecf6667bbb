//! Standbys: a node follows the streams of log groups another node serves,
//! so that taking one over replays only the tail.
//!
//! - **Who follows what.** The standby of group g is the node placement
//!   would give g to if its owner (in the owners table) went away: the
//!   same balanced rendezvous over the live, ready nodes without the owner.
//!   So when the owner dies, the node that takes g over is, unless other
//!   nodes came or went meanwhile, the one that followed it. Every node
//!   computes this for every group on each pass of the ownership manager
//!   and starts or stops its followers.
//! - **Following** (one thread per followed group): the group's shards are
//!   loaded from this node's checkpoint (after loading the group's snapshot
//!   if it is ahead, see `snapshot`), then an ordered consumer reads the
//!   group's stream (data records and fences) from the next position. The
//!   reader rule is the one `replay` applies: a data record counts only if
//!   its epoch is the epoch of the last fence before it, and once a stale
//!   record stands in a fence's section, nothing more of that section's
//!   writer counts. What counts is applied with the shard state machine's
//!   replay (no handler runs); positions that do not count are passed over.
//!   The shards are checkpointed into this node's store by an owner's
//!   triggers (the runtime's checkpoint interval, at most 10 s here, its
//!   checkpoint log bytes, a core's dirty bound), like an owner's (the acks this node hears on the group's `ack` subject
//!   prune their outboxes). A hole in the stream's positions means the
//!   owner trimmed what this follower still needed: it starts again, from
//!   the snapshot.
//! - **Takeover.** The follower stops and hands its shards, as they are, to
//!   the acquisition: the log is opened at the new epoch and only the
//!   records after the follower's position are replayed.
//! - **Step-down.** An owner that gives a group up drops its cores (they
//!   may hold effects that never committed); if it is the group's standby
//!   now, its follower loads the shards again from its checkpoint.
//! - **Lag** = the stream's last sequence - the follower's position, in
//!   heartbeats, `GET /admin/cluster` and `statefn_cluster_standby_lag_records`.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::jetstream::{
    consumer::{DeliverPolicy, pull::Ordered, pull::OrderedConfig},
    stream::{LastRawMessageErrorKind, Stream},
};
use bytes::Bytes;
use futures::StreamExt;
use tokio::task::JoinHandle;

use super::{
    JetStreamBackend,
    acker::record_epoch,
    jetstream_log::Fence,
    node::ClusterNode,
    placement, replay,
    wire::{self, AckMessage, Following},
};
use crate::{
    Error,
    commit::{recovery::Storage, standby::StandbyGroup},
    error::StorageError,
    protocol::ids::{LogGroupId, Lsn},
};

/// How long one read waits before the follower looks at its stop flag.
const POLL: Duration = Duration::from_millis(100);
/// A follower checkpoints at least this often (when it applied anything),
/// even when the runtime's checkpoint interval is longer: a restarted
/// standby catches up from its checkpoint, and the owner trims its stream
/// only below it. (It was every second: under load that cost about a
/// fifth of the standby's work and 5% of a node's CPU; see BENCHMARKS.md.)
const CHECKPOINT_AT_LEAST: Duration = Duration::from_secs(10);
/// How often a follower reads the stream's last sequence (for its lag).
const LAG_EVERY: Duration = Duration::from_millis(500);

/// A group followed here.
#[derive(Debug)]
pub(super) struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Option<StandbyGroup>>>,
    progress: Arc<Progress>,
    /// Hears the acks for the group's shards (outbox pruning).
    acks: Option<JoinHandle<()>>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acks) = self.acks.take() {
            acks.abort();
        }
    }
}

impl Follower {
    /// Stops the thread and returns the shards as it left them (blocking).
    fn finish(mut self) -> Option<StandbyGroup> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().and_then(|t| t.join().ok()).flatten()
    }
}

/// How far a follower is, for heartbeats and status.
#[derive(Debug, Default)]
struct Progress {
    applied: AtomicU64,
    checkpointed: AtomicU64,
    lag: AtomicU64,
}

/// What the stream reader found at the next position.
enum Read {
    /// A data record that counts.
    Apply(Lsn, Bytes),
    /// A position with nothing to apply.
    Pass(Lsn),
    /// Nothing new within the poll time.
    Idle,
}

/// Why a follower starts again.
#[derive(Debug, thiserror::Error)]
enum Restart {
    #[error("positions {expected} to {got} are missing: the stream was trimmed past this node")]
    Trimmed { expected: u64, got: u64 },
    #[error(
        "a fence at {at} cuts records after {cut} that this node applied: its copy of the group is dropped"
    )]
    Cut { at: u64, cut: u64 },
    #[error("{0}")]
    Failed(String),
}

impl From<Error> for Restart {
    fn from(error: Error) -> Self {
        Restart::Failed(error.to_string())
    }
}

/// An ordered read of a group's whole stream (data records and fences)
/// applying the reader rule as it goes.
struct StreamReader {
    messages: Ordered,
    fence_subject: String,
    /// The position expected next: positions are dense unless trimmed.
    next: u64,
    /// The epoch of the last fence read (`None`: none yet).
    epoch: Option<u64>,
    /// A stale record stands in the current fence's section.
    broken: bool,
    /// The last position applied.
    counted: u64,
}

impl StreamReader {
    async fn start(
        stream: &Stream,
        data_subject: &str,
        fence_subject: String,
        from: u64,
    ) -> Result<StreamReader, Restart> {
        let failed = |doing: &str, e: &dyn std::fmt::Display| {
            Restart::Failed(format!("{doing} of {data_subject}: {e}"))
        };
        let epoch = match stream.get_last_raw_message_by_subject(&fence_subject).await {
            Ok(last) => {
                let fences = replay::fences(stream, fence_subject.clone(), last.sequence)
                    .await
                    .map_err(|e| failed("reading the fences", &e))?;
                fences
                    .iter()
                    .rev()
                    .find(|(seq, _, _)| *seq < from)
                    .map(|(_, epoch, _)| *epoch)
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => None,
            Err(e) => return Err(failed("reading the last fence", &e)),
        };
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: from,
                },
                ..OrderedConfig::default()
            })
            .await
            .map_err(|e| failed("creating a reader", &e))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| failed("reading", &e))?;
        Ok(StreamReader {
            messages,
            fence_subject,
            next: from,
            epoch,
            broken: false,
            counted: from.saturating_sub(1),
        })
    }

    async fn read(&mut self) -> Result<Read, Restart> {
        let message = match tokio::time::timeout(POLL, self.messages.next()).await {
            Err(_) => return Ok(Read::Idle),
            Ok(None) => return Err(Restart::Failed("the stream reader ended".into())),
            Ok(Some(Err(e))) => return Err(Restart::Failed(format!("reading the stream: {e}"))),
            Ok(Some(Ok(message))) => message,
        };
        let sequence = message
            .info()
            .map_err(|e| Restart::Failed(format!("a record without metadata: {e}")))?
            .stream_sequence;
        // An ordered consumer that recreates itself may start over.
        if sequence < self.next {
            return Ok(Read::Pass(Lsn(sequence)));
        }
        if sequence > self.next {
            return Err(Restart::Trimmed {
                expected: self.next,
                got: sequence,
            });
        }
        self.next = sequence + 1;
        if message.subject.as_str() == self.fence_subject {
            let fence: Fence = serde_json::from_slice(&message.payload)
                .map_err(|e| Restart::Failed(format!("fence record at {sequence}: {e}")))?;
            if let Some(cut) = fence.cut
                && cut < self.counted
            {
                return Err(Restart::Cut { at: sequence, cut });
            }
            self.epoch = Some(fence.epoch);
            self.broken = false;
            return Ok(Read::Pass(Lsn(sequence)));
        }
        let epoch = message
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .and_then(|id| record_epoch(id.as_str()));
        if epoch.is_none() || epoch != self.epoch {
            // Stale: a fenced writer's record. Its section's writer never
            // confirmed what follows it either.
            self.broken = self.epoch.is_some();
            return Ok(Read::Pass(Lsn(sequence)));
        }
        if self.broken {
            return Ok(Read::Pass(Lsn(sequence)));
        }
        self.counted = sequence;
        Ok(Read::Apply(Lsn(sequence), message.payload.clone()))
    }
}

impl ClusterNode {
    /// Starts and stops followers: this node follows each group it is the
    /// standby of (see the module docs) and does not serve.
    pub(super) fn update_followers(self: &Arc<Self>, candidates: &[String]) {
        let me = self.config.node_id.as_str();
        let owners = self.owners.snapshot();
        let slots = self.slots.lock().clone();
        let mut standby_by_owner: BTreeMap<String, Vec<Option<usize>>> = BTreeMap::new();
        let stopping = self.stopping.load(Ordering::SeqCst);
        let mut wanted = Vec::new();
        for (g, slot) in slots.iter().enumerate() {
            let Ok(g) = u16::try_from(g) else { continue };
            if slot.is_busy() {
                // Being acquired (which takes the follower) or given up.
                wanted.push((g, None));
                continue;
            }
            let follow = !stopping
                && slot.serving().is_none()
                && owners.get(&g).is_some_and(|(owner, _)| {
                    let others: Vec<String> = candidates
                        .iter()
                        .filter(|n| **n != owner.node)
                        .cloned()
                        .collect();
                    let placed = standby_by_owner
                        .entry(owner.node.clone())
                        .or_insert_with(|| placement::place(self.log_groups, &others));
                    placed
                        .get(usize::from(g))
                        .copied()
                        .flatten()
                        .and_then(|i| others.get(i))
                        .is_some_and(|n| n == me)
                });
            wanted.push((g, Some(follow)));
        }
        let mut followers = self.followers.lock();
        for (g, follow) in wanted {
            match (follow, followers.contains_key(&g)) {
                (Some(true), false) => {
                    followers.insert(g, self.start_follower(LogGroupId(g)));
                }
                (Some(false), true) => {
                    if let Some(follower) = followers.remove(&g) {
                        // Its last checkpoint, off the manager's task.
                        let node = Arc::clone(self);
                        std::thread::spawn(move || node.checkpoint_and_drop(follower));
                    }
                }
                _ => {}
            }
        }
    }

    /// Stops following `group` and returns its shards as the follower left
    /// them (blocking; `None` if it did not follow it or had not loaded).
    pub(super) fn take_follower(&self, group: LogGroupId) -> Option<StandbyGroup> {
        let follower = self.followers.lock().remove(&group.0)?;
        follower.finish()
    }

    pub(super) fn checkpoint_and_drop(&self, follower: Follower) {
        let Some(mut standby) = follower.finish() else {
            return;
        };
        let Some(runtime) = self.runtime() else {
            return;
        };
        let Some(commit) = runtime.commit.as_ref() else {
            return;
        };
        let group = standby.group();
        if let Err(error) = standby.checkpoint(
            &commit.storage,
            &|source, dest| runtime.acked(source, dest),
            &|shard| runtime.egress.appended(shard),
            runtime.clock.now_ms(),
        ) {
            tracing::warn!(%group, %error, "a standby's last checkpoint failed");
        }
    }

    /// The groups followed here, for heartbeats.
    pub(super) fn following(&self) -> Vec<Following> {
        self.followers
            .lock()
            .iter()
            .map(|(&group, f)| Following {
                group,
                applied: f.progress.applied.load(Ordering::Acquire),
                checkpointed: f.progress.checkpointed.load(Ordering::Acquire),
                lag: f.progress.lag.load(Ordering::Acquire),
            })
            .collect()
    }

    fn start_follower(self: &Arc<Self>, group: LogGroupId) -> Follower {
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Progress::default());
        let node = Arc::clone(self);
        let (thread_stop, thread_progress) = (Arc::clone(&stop), Arc::clone(&progress));
        let thread = std::thread::Builder::new()
            .name(format!("statefn-standby-{group}"))
            .spawn(move || node.follow(group, &thread_stop, &thread_progress))
            .map_err(|error| tracing::error!(%group, %error, "cannot start a standby thread"))
            .ok();
        tracing::info!(%group, "following the log group as its standby");
        Follower {
            stop,
            thread,
            progress,
            acks: Some(self.handle.spawn(Arc::clone(self).hear_acks(group))),
        }
    }

    /// Acks for the followed group's shards: the standby's checkpoints
    /// prune their outboxes with them, as the owner's do.
    async fn hear_acks(self: Arc<Self>, group: LogGroupId) {
        let Ok(mut acks) = self.client.subscribe(self.names.ack(group)).await else {
            return;
        };
        while let Some(message) = acks.next().await {
            if let (Some(runtime), Ok(ack)) = (
                self.runtime(),
                wire::from_bytes::<AckMessage>(&message.payload),
            ) {
                runtime.acks_arrived(ack.dest, &ack.acks);
            }
        }
    }

    /// The follower thread: follows until stopped, starting again (with
    /// backoff) after a failure. Returns the shards as of its stop.
    fn follow(
        &self,
        group: LogGroupId,
        stop: &AtomicBool,
        progress: &Progress,
    ) -> Option<StandbyGroup> {
        let mut backoff = Duration::from_millis(100);
        while !stop.load(Ordering::SeqCst) {
            let mut loaded = None;
            match self.follow_once(group, stop, progress, &mut loaded) {
                Ok(()) => return loaded,
                Err(Restart::Cut { at, cut }) => {
                    tracing::error!(%group, at, cut, "a fence cuts records this standby applied; dropping its copy of the group");
                    drop(loaded);
                    if let Some(storage) = self.storage() {
                        let empty = storage
                            .group_shards(group)
                            .into_iter()
                            .map(|s| (s, Vec::new()))
                            .collect();
                        if let Err(error) = storage.replace_group_rows(group, empty) {
                            tracing::error!(%group, %error, "cannot drop the standby's copy");
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%group, %error, ?backoff, "the standby starts again");
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                        std::thread::sleep(POLL.min(backoff));
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        None
    }

    pub(super) fn storage(&self) -> Option<Arc<Storage>> {
        self.runtime()
            .and_then(|r| r.commit.as_ref().map(|c| Arc::clone(&c.storage)))
    }

    /// One run of a follower: load, then read and apply until stopped
    /// (`Ok`, with the shards in `loaded`) or until something fails.
    fn follow_once(
        &self,
        group: LogGroupId,
        stop: &AtomicBool,
        progress: &Progress,
        loaded: &mut Option<StandbyGroup>,
    ) -> Result<(), Restart> {
        let runtime = self
            .runtime()
            .ok_or_else(|| Restart::Failed("the runtime stopped".into()))?;
        let storage = self
            .storage()
            .ok_or_else(|| Restart::Failed("no durable storage".into()))?;
        self.restore_if_behind(group, &storage)?;
        let standby = loaded.insert(storage.standby(group)?);
        let from = standby.applied().next();
        progress
            .applied
            .store(standby.applied().0, Ordering::Release);
        progress
            .checkpointed
            .store(standby.checkpointed().0, Ordering::Release);
        let cluster = self.names.cluster().to_owned();
        let name = JetStreamBackend::stream_name(&cluster, group);
        let data = JetStreamBackend::data_subject(&cluster, group);
        let fences = JetStreamBackend::fence_subject(&cluster, group);
        let (stream, mut reader) = self.handle.block_on(async {
            let stream = self
                .js
                .get_stream(&name)
                .await
                .map_err(|e| Restart::Failed(format!("looking up stream {name}: {e}")))?;
            let reader = StreamReader::start(&stream, &data, fences, from.0).await?;
            Ok::<_, Restart>((stream, reader))
        })?;
        // The owners' checkpoint triggers (Builder::checkpoint_interval and
        // checkpoint_log_bytes, the cores' dirty bound), the interval capped.
        let (checkpoint_interval, checkpoint_log_bytes) =
            runtime
                .commit
                .as_ref()
                .map_or((CHECKPOINT_AT_LEAST, 64 << 20), |c| {
                    let config = c.config();
                    (
                        config.checkpoint_interval.min(CHECKPOINT_AT_LEAST),
                        config.checkpoint_log_bytes,
                    )
                });
        let mut last_checkpoint = Instant::now();
        let mut last_lag = Instant::now() - LAG_EVERY;
        let mut last_sequence = 0u64;
        let label = group.to_string();
        while !stop.load(Ordering::SeqCst) {
            match self.handle.block_on(reader.read())? {
                Read::Apply(lsn, payload) => {
                    standby.apply(lsn, &payload, runtime.clock.now_ms())?;
                }
                Read::Pass(lsn) => standby.passed(lsn),
                Read::Idle => {}
            }
            if last_lag.elapsed() >= LAG_EVERY {
                last_lag = Instant::now();
                let mut stream = stream.clone();
                if let Ok(info) = self.handle.block_on(stream.info()) {
                    last_sequence = info.state.last_sequence;
                }
            }
            let lag = last_sequence.saturating_sub(standby.applied().0);
            progress
                .applied
                .store(standby.applied().0, Ordering::Release);
            progress.lag.store(lag, Ordering::Release);
            #[expect(clippy::cast_precision_loss, reason = "a gauge")]
            metrics::gauge!(crate::metrics::CLUSTER_STANDBY_LAG, "group" => label.clone())
                .set(lag as f64);
            if standby.wants_checkpoint(
                last_checkpoint.elapsed(),
                checkpoint_interval,
                checkpoint_log_bytes,
            ) {
                last_checkpoint = Instant::now();
                standby.checkpoint(
                    &storage,
                    &|source, dest| runtime.acked(source, dest),
                    &|shard| runtime.egress.appended(shard),
                    runtime.clock.now_ms(),
                )?;
                progress
                    .checkpointed
                    .store(standby.checkpointed().0, Ordering::Release);
            }
        }
        Ok(())
    }
}

impl From<StorageError> for Restart {
    fn from(error: StorageError) -> Self {
        Restart::Failed(error.to_string())
    }
}
