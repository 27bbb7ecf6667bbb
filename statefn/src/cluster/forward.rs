//! Forwarding: any node answers any call.
//!
//! A call for a shard another node serves becomes a NATS request on the
//! call subject of the shard's log group and of the node the owners table
//! names for it. That node subscribes to it only while it serves the group
//! (in a queue group, so that a request reaches one subscription); it
//! submits the call locally and answers with the reply or the error a local
//! caller would have seen. A deposed owner that still listens (a paused
//! process keeps its subscriptions until NATS drops it, minutes later) is
//! not named, so it gets no calls. Idempotency is the owner's: a retry with
//! the same key, on any node, is answered from the stored reply.
//!
//! Questions about an enqueued invocation (its status, a cancel) travel
//! the same way: the node serving the instance answers them.
//!
//! What a forwarding caller is told:
//! - **no responders**, or an owner that no longer serves the group: nobody
//!   took the call; it is tried again (the owners table is changing) until
//!   `forward_budget` is spent, then 503 "not sent", which is true;
//! - **the owner dies, or the owners table moves the group, while it holds
//!   the call** (a SIGKILL between the forward and the answer, a paused
//!   node, a node shutting down): a call with an idempotency key (and a
//!   status query) is sent again to the next owner, which answers a call
//!   the old owner committed from its stored reply, so it applies once; a
//!   call without a key is refused with 503 "may or may not have been
//!   applied" once its holder is dead (a live old owner still answers it:
//!   it commits it or refuses it as not committed). Before this, such a
//!   call waited `forward_timeout` (30 s);
//! - **the owner goes away holding the call** (its runtime shuts down or
//!   stops with the call queued or in its commit path, and it says so): it
//!   may have committed it, so the same: a keyed call is sent again to the
//!   next owner, a keyless one is refused with 503 "may or may not have been
//!   applied" (before, it was taken for "not accepted" and sent again);
//! - **no answer for 5 s** to a call with a key (or a status question):
//!   core NATS may have lost the request or the answer (a NATS server died
//!   while they were on their way; under a quorum loss such calls waited
//!   out `forward_timeout`), so it is asked again, with its key, of the
//!   owner the table names: it applies once;
//! - **no answer within `forward_timeout`**: the call may or may not have
//!   been applied; 503 that says so and asks for a retry with the same
//!   idempotency key.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_nats::{RequestErrorKind, Subscriber};
use bytes::Bytes;
use futures::StreamExt;

use super::{
    node::ClusterNode,
    wire::{self, CallReply, CallRequest, Owner, WireError},
};
use crate::{
    Error,
    protocol::ids::{LogGroupId, ShardId},
    runtime::transport::RemoteCall,
};

/// Forwarded calls queue-subscribe under this group name.
const OWNERS_QUEUE: &str = "owner";

/// How long a caller waits between tries while nobody serves the group
/// (unless the owners table changes sooner).
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// A repeatable call (keyed, or a status question) not answered this long
/// is asked again, with its key, of the group's owner: core NATS may have
/// lost the request or the answer (a NATS server killed while they were
/// on their way), and nothing else would tell. The owner answers the
/// repeat from the stored reply, or with the outcome of the first (a
/// duplicate waits behind it), so it applies once.
const REASK_AFTER: Duration = Duration::from_secs(5);

/// How one try at a group's owner ended.
enum Sent {
    /// With an answer to give the caller.
    Answered(Result<Vec<u8>, Error>),
    /// Nobody took the call (no responders, the owner gave the group up or
    /// is shutting down): it was not applied; try again.
    NotTaken(&'static str),
    /// The owner died, went away or the group moved while it held a
    /// repeatable call: send it again to the next owner. Why.
    Abandoned(&'static str),
    /// Its holder died while it held a call that cannot be repeated: why.
    Lost(String),
    /// A repeatable call not answered in [`REASK_AFTER`]: ask again.
    Unanswered,
}

impl ClusterNode {
    /// Forwards `call` to the node serving `shard` (in the background).
    pub(super) fn forward(self: &Arc<Self>, shard: ShardId, call: RemoteCall) {
        let node = Arc::clone(self);
        self.handle.spawn(async move {
            let RemoteCall {
                kind,
                target,
                message,
                key,
                enqueue,
                reply,
            } = call;
            let repeatable = RemoteCall::can_repeat(kind, key.as_deref());
            let request = CallRequest {
                target,
                message,
                key,
                enqueue_ms: enqueue.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                kind,
            };
            let payload = wire::to_bytes(&request).into();
            let result = node.request(shard, payload, repeatable).await;
            metrics::counter!(crate::metrics::CLUSTER_FORWARDED).increment(1);
            let _ = reply.send(result);
        });
    }

    /// Sends a forwarded call to the owner of `shard`'s group and waits for
    /// its answer; see the module docs for what the caller is told.
    /// `repeatable`: the call may be sent again to a new owner.
    async fn request(
        &self,
        shard: ShardId,
        payload: Bytes,
        repeatable: bool,
    ) -> Result<Vec<u8>, Error> {
        let group = self.group_of(shard);
        let mut deadline = Instant::now() + self.config.forward_budget;
        // No answer to any try by then: the outcome is unknown.
        let mut give_up = None;
        let mut changes = self.owners.routing_changes();
        // Whether a node has (or had) the call: a later refusal cannot say
        // it was not applied.
        let mut delivered = false;
        loop {
            changes.borrow_and_update();
            let why = match self.owners.get(group) {
                None => "it has no owner yet",
                Some((owner, _)) if !self.membership.is_live(&owner.node) => {
                    "its owner stopped answering and no node took it over yet"
                }
                Some((owner, _)) => match self
                    .send_once(
                        shard,
                        &owner,
                        payload.clone(),
                        repeatable,
                        *give_up
                            .get_or_insert_with(|| Instant::now() + self.config.forward_timeout),
                        &mut changes,
                    )
                    .await
                {
                    Sent::Answered(result) => return result,
                    Sent::NotTaken(why) => why,
                    Sent::Abandoned(why) => {
                        // Sent again to the next owner, within a new budget.
                        delivered = true;
                        deadline = Instant::now() + self.config.forward_budget;
                        give_up = None;
                        why
                    }
                    Sent::Unanswered => {
                        // Asked again at once, by the same deadline.
                        delivered = true;
                        deadline = Instant::now() + self.config.forward_budget;
                        continue;
                    }
                    Sent::Lost(why) => {
                        return Err(Error::Unavailable {
                            shard: shard.0,
                            reason: format!(
                                "{why} while it held the call for log group {group}; the call had no idempotency key, so it was not sent again: it may or may not have been applied (send calls with an Idempotency-Key to retry them safely)"
                            ),
                            retry_after: Duration::from_secs(1),
                        });
                    }
                },
            };
            if Instant::now() + RETRY_PAUSE >= deadline {
                let reason = if delivered {
                    format!(
                        "the owner of log group {group} changed while it held the call, and no node serves the group now ({why}); the call may or may not have been applied: retry it with the same idempotency key to find out without applying it twice"
                    )
                } else {
                    format!(
                        "no node serves log group {group} right now ({why}; a failover or handoff may be in progress); the call was not sent, so it was not applied: retry it"
                    )
                };
                return Err(Error::Unavailable {
                    shard: shard.0,
                    reason,
                    retry_after: Duration::from_secs(1),
                });
            }
            // Wait for the owners table to change, or try again shortly.
            if let Ok(Err(_)) = tokio::time::timeout(RETRY_PAUSE, changes.changed()).await {
                // No more changes (the node is going away): just pause.
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }

    /// One try at `owner`, answered by `give_up` at the latest. While it
    /// waits, an owners table that moves the group elsewhere, or an owner
    /// that dies, ends the wait: a repeatable call is abandoned (to be sent
    /// to the next owner), another one is refused once its holder is dead
    /// (a live old owner still answers it: it commits it or refuses it as
    /// not committed). A repeatable call is also asked again after
    /// [`REASK_AFTER`].
    async fn send_once(
        &self,
        shard: ShardId,
        owner: &Owner,
        payload: Bytes,
        repeatable: bool,
        give_up: Instant,
        changes: &mut tokio::sync::watch::Receiver<u64>,
    ) -> Sent {
        let group = self.group_of(shard);
        let subject = self.names.call(group, &owner.node);
        let left = give_up.saturating_duration_since(Instant::now());
        let request = async_nats::Request::new()
            .payload(payload)
            .timeout(Some(left.max(Duration::from_millis(1))));
        let request = self.client.send_request(subject, request);
        tokio::pin!(request);
        let reask = tokio::time::sleep(REASK_AFTER);
        tokio::pin!(reask);
        let may_reask = repeatable && left > REASK_AFTER;
        let answer = loop {
            tokio::select! {
                biased;
                answer = &mut request => break answer,
                () = &mut reask, if may_reask => return Sent::Unanswered,
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The node is going away: only the answer is left.
                        break request.await;
                    }
                    let dead = !self.membership.is_live(&owner.node);
                    let moved = self.owners.get(group).is_none_or(|(now, _)| now != *owner);
                    if repeatable && (dead || moved) {
                        return Sent::Abandoned("its owner changed while it held the call");
                    }
                    if dead {
                        return Sent::Lost(format!("node {} stopped answering (no heartbeat for {:?})", owner.node, self.config.failure_timeout));
                    }
                }
            }
        };
        match answer {
            Ok(message) => match wire::from_bytes::<CallReply>(&message.payload) {
                Ok(CallReply::Reply(reply)) => Sent::Answered(Ok(reply)),
                Ok(CallReply::Failed(WireError::ShuttingDown)) => {
                    Sent::NotTaken("its owner is shutting down")
                }
                Ok(CallReply::Failed(error)) => Sent::Answered(Err(error.into_error())),
                Ok(CallReply::NotServed) => Sent::NotTaken("its owner just gave it up"),
                Ok(CallReply::Dropped) if repeatable => {
                    Sent::Abandoned("its owner went away while it held the call")
                }
                Ok(CallReply::Dropped) => Sent::Lost(format!(
                    "node {} went away (shutting down or stopped)",
                    owner.node
                )),
                Err(error) => Sent::Answered(Err(Error::Cluster(super::ClusterError::Remote {
                    message: format!("an undecodable answer from the group's owner: {error}"),
                }))),
            },
            Err(error) => match error.kind() {
                RequestErrorKind::NoResponders => Sent::NotTaken("no node answers for it"),
                RequestErrorKind::TimedOut => Sent::Answered(Err(Error::Unavailable {
                    shard: shard.0,
                    reason: format!(
                        "node {} serving log group {group} did not answer within {:?}; the call may or may not have been applied: retry it with the same idempotency key to find out without applying it twice",
                        owner.node, self.config.forward_timeout
                    ),
                    retry_after: Duration::from_secs(1),
                })),
                RequestErrorKind::Other
                | RequestErrorKind::InvalidSubject
                | RequestErrorKind::MaxPayloadExceeded => Sent::Answered(Err(Error::Unavailable {
                    shard: shard.0,
                    reason: format!(
                        "forwarding to node {} serving log group {group} failed ({error}); the call may or may not have been applied: retry it with the same idempotency key",
                        owner.node
                    ),
                    retry_after: Duration::from_secs(1),
                })),
            },
        }
    }

    /// Takes forwarded calls for `group` (it serves now).
    pub(super) async fn subscribe_calls(self: &Arc<Self>, group: LogGroupId) {
        let subject = self.names.call(group, &self.config.node_id);
        let subscriber = match self
            .client
            .queue_subscribe(subject, OWNERS_QUEUE.into())
            .await
        {
            Ok(subscriber) => subscriber,
            Err(error) => {
                tracing::error!(%group, %error, "cannot take forwarded calls");
                return;
            }
        };
        let _ = self.client.flush().await;
        let task = self.handle.spawn(Arc::clone(self).serve_calls(subscriber));
        self.subscriptions.lock().entry(group.0).or_default().call = Some(task);
    }

    async fn serve_calls(self: Arc<Self>, mut calls: Subscriber) {
        while let Some(message) = calls.next().await {
            let Some(reply_to) = message.reply else {
                continue;
            };
            let node = Arc::clone(&self);
            self.handle.spawn(async move {
                let answer = node.answer(&message.payload).await;
                let payload = wire::to_bytes(&answer);
                if let Err(error) = node.client.publish(reply_to, payload.into()).await {
                    tracing::debug!(%error, "the answer to a forwarded call was not sent");
                }
            });
        }
    }

    /// Runs a forwarded call here, as a local one.
    async fn answer(&self, payload: &[u8]) -> CallReply {
        let request: CallRequest = match wire::from_bytes(payload) {
            Ok(request) => request,
            Err(error) => {
                return CallReply::Failed(WireError::Other {
                    message: format!("an undecodable forwarded call: {error}"),
                });
            }
        };
        let Some(runtime) = self.runtime() else {
            return CallReply::Failed(WireError::ShuttingDown);
        };
        let submitted = runtime.submit_forwarded(
            request.kind,
            request.target,
            request.message,
            request.key,
            request.enqueue_ms.map(Duration::from_millis),
        );
        drop(runtime);
        match submitted {
            Ok(None) => CallReply::NotServed,
            Ok(Some(rx)) => match rx.await {
                Ok(Ok(reply)) => CallReply::Reply(reply),
                Ok(Err(error)) => CallReply::Failed(WireError::from(&error)),
                // The runtime went away holding the call (shutting down, or
                // stopped without a shutdown): it may have committed it.
                Err(_) => CallReply::Dropped,
            },
            Err(error) => CallReply::Failed(WireError::from(&error)),
        }
    }
}
