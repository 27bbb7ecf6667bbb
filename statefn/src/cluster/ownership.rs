//! Ownership: leases decide who should own a log group, the log decides who
//! may write to it.
//!
//! The owners bucket holds, per group, `{node, epoch}`: who should write
//! the group's log and at which epoch. Every change is a compare-and-set on
//! the key's revision, so two nodes never win the same epoch, and a node
//! opens a group's log only at an epoch it won. The log's fence (see
//! `jetstream_log`) is what keeps an older writer out; the bucket only
//! decides who should write.
//!
//! Every node runs the same manager loop over all groups (on any change, and
//! every 100 ms), from its view of the live nodes and the bucket:
//!
//! | this node | the bucket names | placement wants | action |
//! | --- | --- | --- | --- |
//! | serves g at epoch e | another node, or another epoch | | **step down**: give g up, its callers get 503 |
//! | serves g | this node | another ready node X | **hand off**: give g up, then CAS `{X, e}` |
//! | does not serve g | nobody | this node | **acquire**: create `{me, 1}` |
//! | does not serve g | this node | this node (or nobody else) | **acquire**: CAS `{me, e+1}` (a restart, or a handoff to it) |
//! | does not serve g | this node | another ready node X | **pass**: CAS `{X, e}` |
//! | does not serve g | a node that is not live | this node | **take over**: CAS `{me, e+1}` |
//!
//! To acquire is to CAS the epoch up, subscribe to the group's mail, open
//! the log at that epoch (fencing the previous writer), rebuild and serve
//! (`RuntimeInner::acquire_group`), then take forwarded calls. To give up is
//! the reverse (`RuntimeInner::release_group`). A syncer whose log fails
//! hands the group back here: a fenced node steps down; otherwise the group
//! is acquired again at a new epoch (with backoff), if this node still owns
//! it in the bucket.
//!
//! (Over 500 lines: the decision table, the manager loop and the actions
//! it runs are one state machine; splitting them would scatter it.)

use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use async_nats::jetstream::kv;
use futures::StreamExt;
use parking_lot::Mutex;

use super::{ClusterError, names::Names, node::ClusterNode, placement, wire::Owner};
use crate::{
    commit::HandBack,
    protocol::ids::{Epoch, LogGroupId},
};

/// How often the manager looks at every group, besides when woken.
const TICK: Duration = Duration::from_millis(100);

/// The owners bucket as this node last saw it: `group -> (owner, revision)`.
#[derive(Debug)]
pub(crate) struct OwnersTable {
    owners: Mutex<BTreeMap<u16, (Owner, u64)>>,
    /// Bumped whenever a call in flight may have lost its target: an owner
    /// changed, or a node died, came back or started draining. Forwarded
    /// calls wait on it (`forward`) instead of waiting out their timeout.
    routing: tokio::sync::watch::Sender<u64>,
}

impl Default for OwnersTable {
    fn default() -> Self {
        OwnersTable {
            owners: Mutex::default(),
            routing: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl OwnersTable {
    /// Changes of the routing (see `routing`).
    pub(crate) fn routing_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.routing.subscribe()
    }

    /// The nodes' liveness or draining changed.
    pub(crate) fn routing_changed(&self) {
        self.routing.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn get(&self, group: LogGroupId) -> Option<(Owner, u64)> {
        self.owners.lock().get(&group.0).cloned()
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<u16, (Owner, u64)> {
        self.owners.lock().clone()
    }

    /// Records a value unless a newer revision is known.
    fn apply(&self, group: LogGroupId, owner: Option<Owner>, revision: u64) {
        let mut owners = self.owners.lock();
        if owners.get(&group.0).is_some_and(|(_, r)| *r > revision) {
            return;
        }
        let before = owners.get(&group.0).map(|(o, _)| o.clone());
        match &owner {
            Some(owner) => owners.insert(group.0, (owner.clone(), revision)),
            None => owners.remove(&group.0),
        };
        drop(owners);
        if before != owner {
            self.routing_changed();
        }
    }
}

/// This node's view of one group.
#[derive(Debug, Clone, Default)]
pub(crate) struct GroupSlot {
    state: Local,
    /// After a failure, nothing is tried before this.
    retry_at: Option<Instant>,
    failures: u32,
    /// Records replayed when this node last took the group over.
    replayed: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Local {
    /// Another node serves it (or nobody).
    #[default]
    Remote,
    /// Being acquired or given up.
    Busy,
    /// Served here, at this epoch.
    Serving { epoch: u64 },
}

impl GroupSlot {
    /// The epoch it is served at here.
    pub(crate) fn serving(&self) -> Option<u64> {
        match self.state {
            Local::Serving { epoch } => Some(epoch),
            Local::Remote | Local::Busy => None,
        }
    }

    /// Records replayed when this node last took the group over.
    pub(crate) fn replayed(&self) -> Option<u64> {
        self.replayed
    }

    pub(crate) fn is_busy(&self) -> bool {
        self.state == Local::Busy
    }

    fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let backoff = Duration::from_millis(100)
            .saturating_mul(1 << self.failures.min(5))
            .min(Duration::from_secs(3));
        self.retry_at = Some(Instant::now() + backoff);
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.retry_at = None;
    }
}

/// What the manager decided for a group.
#[derive(Debug)]
enum Action {
    /// CAS to this node at `epoch` (from `revision`; `None`: create).
    Acquire {
        epoch: u64,
        revision: Option<u64>,
        takeover: bool,
    },
    /// Give it up, then CAS to `to` at the same epoch.
    HandOff {
        to: String,
        owner: Owner,
        revision: u64,
    },
    /// Give it up: the bucket names another owner, or the log was fenced.
    StepDown { reason: String },
    /// CAS to `to` at the same epoch without serving it.
    Pass {
        to: String,
        owner: Owner,
        revision: u64,
    },
}

fn decode_owner(value: &[u8]) -> Option<Owner> {
    serde_json::from_slice(value).ok()
}

impl ClusterNode {
    /// Reads the whole owners bucket once (before the manager starts).
    pub(super) async fn load_owners(&self) -> Result<(), ClusterError> {
        let mut keys = self
            .owners_kv
            .keys()
            .await
            .map_err(|e| ClusterError::nats("listing the owners of log groups")(Box::new(e)))?;
        while let Some(key) = keys.next().await {
            let Ok(key) = key else { continue };
            let Some(group) = Names::group_of_key(&key) else {
                continue;
            };
            if let Ok(Some(entry)) = self.owners_kv.entry(key).await {
                self.owners
                    .apply(group, decode_owner(&entry.value), entry.revision);
            }
        }
        Ok(())
    }

    /// Keeps the owners table current; restarts the watch if it ends.
    pub(super) async fn watch_owners(self: Arc<Self>) {
        loop {
            match self.owners_kv.watch_with_history(">").await {
                Ok(mut entries) => {
                    while let Some(entry) = entries.next().await {
                        let Ok(entry) = entry else { break };
                        let Some(group) = Names::group_of_key(&entry.key) else {
                            continue;
                        };
                        let owner = match entry.operation {
                            kv::Operation::Put => decode_owner(&entry.value),
                            kv::Operation::Delete | kv::Operation::Purge => None,
                        };
                        self.owners.apply(group, owner, entry.revision);
                        self.wake.notify_one();
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot watch the owners bucket; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = self.load_owners().await;
        }
    }

    /// The manager loop: see the module docs.
    pub(super) async fn manage(self: Arc<Self>) {
        let mut membership_changed = Box::pin(self.membership.changed.notified());
        loop {
            tokio::select! {
                () = self.wake.notified() => {}
                () = &mut membership_changed => {
                    membership_changed = Box::pin(self.membership.changed.notified());
                }
                () = tokio::time::sleep(TICK) => {}
            }
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            self.take_failures();
            if self.membership.unavailable_changed() {
                self.owners.routing_changed();
            }
            for (group, action) in self.decide() {
                self.begin(group, action);
            }
            let ready = self.membership.settled();
            let draining = self.draining.load(Ordering::SeqCst);
            self.update_followers(&self.membership.candidates(ready, draining));
        }
    }

    /// Groups whose syncer stopped on a log failure step down.
    fn take_failures(self: &Arc<Self>) {
        let failed = std::mem::take(&mut *self.failed.lock());
        for (group, fenced, why) in failed {
            let serving = self
                .slots
                .lock()
                .get(group.index())
                .is_some_and(|s| s.serving().is_some());
            if !serving {
                continue;
            }
            let reason = if fenced {
                format!("this node lost the ownership of log group {group}")
            } else {
                // The syncer's reason names the log group and what failed
                // (e.g. the NATS servers did not confirm an append): calls
                // refused while the group steps down are told the same.
                why
            };
            self.begin(group, Action::StepDown { reason });
            if let Some(slot) = self.slots.lock().get_mut(group.index())
                && !fenced
            {
                slot.failed();
            }
        }
    }

    /// One pass over every group.
    fn decide(&self) -> Vec<(LogGroupId, Action)> {
        let me = self.config.node_id.as_str();
        let ready = self.membership.settled();
        let draining = self.draining.load(Ordering::SeqCst);
        let candidates = self.membership.candidates(ready, draining);
        let placed = placement::place(self.log_groups, &candidates);
        let slots = self.slots.lock().clone();
        let now = Instant::now();
        let runtime = self.runtime();
        let mut actions = Vec::new();
        for (index, slot) in slots.iter().enumerate() {
            let Ok(g) = u16::try_from(index) else {
                continue;
            };
            let group = LogGroupId(g);
            if slot.is_busy() || slot.retry_at.is_some_and(|at| now < at) {
                continue;
            }
            let desired = placed
                .get(index)
                .copied()
                .flatten()
                .and_then(|i| candidates.get(i))
                .map(String::as_str);
            let other = desired.filter(|d| *d != me);
            let owner = self.owners.get(group);
            let action = match (slot.state, owner) {
                (Local::Serving { epoch }, Some((o, revision))) => {
                    if o.node != me || o.epoch != epoch {
                        Some(Action::StepDown {
                            reason: format!(
                                "this node lost the ownership of log group {group} (now {} at epoch {})",
                                o.node, o.epoch
                            ),
                        })
                    } else {
                        other.map(|to| Action::HandOff {
                            to: to.to_owned(),
                            owner: o,
                            revision,
                        })
                    }
                }
                (Local::Serving { .. }, None) | (Local::Busy, _) => None,
                (Local::Remote, owner) => {
                    if let Some(runtime) = &runtime {
                        runtime.sweep_group(group, "its log group is served by another node");
                    }
                    match owner {
                        None if ready && !draining && desired == Some(me) => {
                            Some(Action::Acquire {
                                epoch: 1,
                                revision: None,
                                takeover: false,
                            })
                        }
                        None => None,
                        Some((o, revision)) if o.node == me => match other {
                            Some(to) => Some(Action::Pass {
                                to: to.to_owned(),
                                owner: o,
                                revision,
                            }),
                            None if ready && !draining => Some(Action::Acquire {
                                epoch: o.epoch + 1,
                                revision: Some(revision),
                                takeover: false,
                            }),
                            None => None,
                        },
                        Some((o, revision))
                            if ready
                                && !draining
                                && desired == Some(me)
                                && !self.membership.is_live(&o.node) =>
                        {
                            Some(Action::Acquire {
                                epoch: o.epoch + 1,
                                revision: Some(revision),
                                takeover: true,
                            })
                        }
                        Some(_) => None,
                    }
                }
            };
            if let Some(action) = action {
                actions.push((group, action));
            }
        }
        actions
    }

    /// Marks the group busy and runs `action` in the background.
    fn begin(self: &Arc<Self>, group: LogGroupId, action: Action) {
        {
            let mut slots = self.slots.lock();
            let Some(slot) = slots.get_mut(group.index()) else {
                return;
            };
            if slot.is_busy() {
                return;
            }
            slot.state = Local::Busy;
        }
        self.ops.fetch_add(1, Ordering::SeqCst);
        let node = Arc::clone(self);
        self.handle.spawn(async move {
            let state = node.run(group, action).await;
            if let Some(slot) = node.slots.lock().get_mut(group.index()) {
                slot.state = state;
            }
            node.ops.fetch_sub(1, Ordering::SeqCst);
            node.wake.notify_one();
        });
    }

    /// Runs one action; returns the group's state after it.
    async fn run(self: &Arc<Self>, group: LogGroupId, action: Action) -> Local {
        match action {
            Action::Acquire {
                epoch,
                revision,
                takeover,
            } => self.acquire(group, epoch, revision, takeover).await,
            Action::HandOff {
                to,
                owner,
                revision,
            } => {
                let reason = format!("log group {group} is moving to node {to}");
                self.give_up(group, &reason).await;
                let next = Owner {
                    node: to.clone(),
                    epoch: owner.epoch,
                };
                if self.cas(group, &next, Some(revision)).await.is_ok() {
                    metrics::counter!(crate::metrics::CLUSTER_HANDOFFS).increment(1);
                    tracing::info!(%group, to, "log group handed off");
                }
                Local::Remote
            }
            Action::StepDown { reason } => {
                self.give_up(group, &reason).await;
                metrics::counter!(crate::metrics::CLUSTER_STEP_DOWNS).increment(1);
                tracing::warn!(%group, reason, "stepped down");
                Local::Remote
            }
            Action::Pass {
                to,
                owner,
                revision,
            } => {
                let next = Owner {
                    node: to,
                    epoch: owner.epoch,
                };
                let _ = self.cas(group, &next, Some(revision)).await;
                Local::Remote
            }
        }
    }

    /// Compare-and-set of `group`'s owner; on success the table has it.
    async fn cas(
        &self,
        group: LogGroupId,
        owner: &Owner,
        revision: Option<u64>,
    ) -> Result<u64, ()> {
        let key = Names::owner_key(group);
        let value = serde_json::to_vec(owner).unwrap_or_default();
        let result = match revision {
            None => self
                .owners_kv
                .create(&key, value.into())
                .await
                .map_err(|e| e.to_string()),
            Some(revision) => self
                .owners_kv
                .update(&key, value.into(), revision)
                .await
                .map_err(|e| e.to_string()),
        };
        match result {
            Ok(revision) => {
                self.owners.apply(group, Some(owner.clone()), revision);
                Ok(revision)
            }
            Err(error) => {
                tracing::debug!(%group, %error, "owner not changed");
                Err(())
            }
        }
    }

    async fn acquire(
        self: &Arc<Self>,
        group: LogGroupId,
        epoch: u64,
        revision: Option<u64>,
        takeover: bool,
    ) -> Local {
        let me = Owner {
            node: self.config.node_id.clone(),
            epoch,
        };
        if self.cas(group, &me, revision).await.is_err() {
            return Local::Remote;
        }
        let Some(runtime) = self.runtime() else {
            return Local::Remote;
        };
        self.subscribe_mail(group).await;
        let started = Instant::now();
        let hand_back = self.hand_back();
        let node = Arc::clone(self);
        let acquired = tokio::task::spawn_blocking(move || {
            // A standby here hands its shards over: only the tail after its
            // position is replayed. Without one, the group's snapshot is
            // loaded first if it is ahead of this node's checkpoints.
            let warm = node.take_follower(group);
            if warm.is_none()
                && let Some(storage) = node.storage()
                && let Err(error) = node.restore_if_behind(group, &storage)
            {
                tracing::warn!(%group, %error, "cannot load the log group's snapshot; replaying from this node's checkpoint");
            }
            runtime.acquire_group(group, Epoch(epoch), hand_back, warm)
        })
        .await;
        match acquired {
            Ok(Ok(opened)) if self.stopping.load(Ordering::SeqCst) => {
                // Stopping meanwhile: take no calls; the runtime stops the
                // group's syncer.
                Local::Serving { epoch: opened.0.0 }
            }
            Ok(Ok(opened)) => {
                self.subscribe_calls(group).await;
                if let Some(slot) = self.slots.lock().get_mut(group.index()) {
                    slot.succeeded();
                    slot.replayed = Some(opened.1);
                }
                metrics::counter!(crate::metrics::CLUSTER_TAKEOVER_REPLAYED).increment(opened.1);
                if takeover {
                    metrics::counter!(crate::metrics::CLUSTER_FAILOVERS).increment(1);
                }
                tracing::info!(
                    %group,
                    epoch = opened.0.0,
                    replayed = opened.1,
                    takeover,
                    elapsed_ms = started.elapsed().as_millis(),
                    "serving log group"
                );
                Local::Serving { epoch: opened.0.0 }
            }
            Ok(Err(error)) => {
                tracing::warn!(%group, epoch, %error, "could not take the log group over");
                self.unsubscribe(group);
                if let Some(slot) = self.slots.lock().get_mut(group.index()) {
                    slot.failed();
                }
                Local::Remote
            }
            Err(error) => {
                tracing::error!(%group, %error, "taking the log group over panicked");
                self.unsubscribe(group);
                Local::Remote
            }
        }
    }

    /// Stops serving `group` here.
    async fn give_up(self: &Arc<Self>, group: LogGroupId, reason: &str) {
        if let Some(subscriptions) = self.subscriptions.lock().get_mut(&group.0)
            && let Some(call) = subscriptions.call.take()
        {
            call.abort();
        }
        if let Some(runtime) = self.runtime() {
            let reason = reason.to_owned();
            let _ =
                tokio::task::spawn_blocking(move || runtime.release_group(group, &reason)).await;
        }
        self.unsubscribe(group);
    }

    fn unsubscribe(&self, group: LogGroupId) {
        self.subscriptions.lock().remove(&group.0);
    }

    /// What the syncer of a group served here calls when its log fails.
    fn hand_back(self: &Arc<Self>) -> HandBack {
        let node = Arc::downgrade(self);
        Arc::new(move |group, fenced, reason: &str| {
            if let Some(node) = node.upgrade() {
                node.failed.lock().push((group, fenced, reason.to_owned()));
                node.wake.notify_one();
            }
        })
    }
}
