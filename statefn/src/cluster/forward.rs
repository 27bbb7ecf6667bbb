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
//! What a forwarding caller is told:
//! - **no responders**, or an owner that no longer serves the group: nobody
//!   took the call; it is tried again (the owners table is changing) until
//!   `forward_budget` is spent, then 503 "not sent", which is true;
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
    wire::{self, CallReply, CallRequest, WireError},
};
use crate::{
    Error,
    protocol::ids::{LogGroupId, ShardId},
    runtime::transport::RemoteCall,
};

/// Forwarded calls queue-subscribe under this group name.
const OWNERS_QUEUE: &str = "owner";

/// How long a caller waits between tries while nobody serves the group.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

impl ClusterNode {
    /// Forwards `call` to the node serving `shard` (in the background).
    pub(super) fn forward(self: &Arc<Self>, shard: ShardId, call: RemoteCall) {
        let node = Arc::clone(self);
        self.handle.spawn(async move {
            let RemoteCall {
                target,
                message,
                key,
                enqueue,
                reply,
            } = call;
            let request = CallRequest {
                target,
                message,
                key,
                enqueue_ms: enqueue.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            };
            let result = node.request(shard, wire::to_bytes(&request).into()).await;
            metrics::counter!(crate::metrics::CLUSTER_FORWARDED).increment(1);
            let _ = reply.send(result);
        });
    }

    async fn request(&self, shard: ShardId, payload: Bytes) -> Result<Vec<u8>, Error> {
        let group = self.group_of(shard);
        let deadline = Instant::now() + self.config.forward_budget;
        let not_sent = |why: &str| Error::Unavailable {
            shard: shard.0,
            reason: format!(
                "no node serves log group {group} right now ({why}; a failover or handoff may be in progress); the call was not sent"
            ),
            retry_after: Duration::from_secs(1),
        };
        loop {
            let Some((owner, _)) = self.owners.get(group) else {
                if Instant::now() + RETRY_PAUSE >= deadline {
                    return Err(not_sent("it has no owner yet"));
                }
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            };
            let subject = self.names.call(group, &owner.node);
            let request = async_nats::Request::new()
                .payload(payload.clone())
                .timeout(Some(self.config.forward_timeout));
            let why = match self.client.send_request(subject, request).await {
                Ok(message) => match wire::from_bytes::<CallReply>(&message.payload) {
                    Ok(CallReply::Reply(reply)) => return Ok(reply),
                    Ok(CallReply::Failed(WireError::ShuttingDown)) => "its owner is shutting down",
                    Ok(CallReply::Failed(error)) => return Err(error.into_error()),
                    Ok(CallReply::NotServed) => "its owner just gave it up",
                    Err(error) => {
                        return Err(Error::Cluster(super::ClusterError::Remote {
                            message: format!(
                                "an undecodable answer from the group's owner: {error}"
                            ),
                        }));
                    }
                },
                Err(error) => match error.kind() {
                    RequestErrorKind::NoResponders => "no node answers for it",
                    RequestErrorKind::TimedOut => {
                        return Err(Error::Unavailable {
                            shard: shard.0,
                            reason: format!(
                                "the node serving log group {group} did not answer within {:?}; the call may or may not have been applied: retry it with the same idempotency key to find out without applying it twice",
                                self.config.forward_timeout
                            ),
                            retry_after: Duration::from_secs(1),
                        });
                    }
                    RequestErrorKind::Other
                    | RequestErrorKind::InvalidSubject
                    | RequestErrorKind::MaxPayloadExceeded => {
                        return Err(Error::Unavailable {
                            shard: shard.0,
                            reason: format!(
                                "forwarding to the node serving log group {group} failed ({error}); the call may or may not have been applied: retry it with the same idempotency key"
                            ),
                            retry_after: Duration::from_secs(1),
                        });
                    }
                },
            };
            if Instant::now() + RETRY_PAUSE >= deadline {
                return Err(not_sent(why));
            }
            tokio::time::sleep(RETRY_PAUSE).await;
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
                Err(_) => CallReply::Failed(WireError::ShuttingDown),
            },
            Err(error) => CallReply::Failed(WireError::from(&error)),
        }
    }
}
