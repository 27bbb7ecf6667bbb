//! Traffic for shards served by another node (cluster mode): the seam
//! between the runtime and `crate::cluster`.
//!
//! The router, the release of committed batches, the acks and the re-send
//! requests ask one question, "is this shard served here?" (its status is
//! not [`Remote`](crate::shard::Status::Remote)), and hand what is not to a
//! [`ClusterTransport`]. A runtime without one (single-node mode, the
//! default) serves every shard and never looks: its hot paths are the same.

use std::{fmt, time::Duration};

use super::RuntimeInner;
use crate::{
    Address, Error,
    protocol::{
        envelope::{Envelope, Mail, Origin, ReplySender},
        ids::{Seq, ShardId},
    },
};

/// A client call for a shard served elsewhere, with where its reply goes.
#[derive(Debug)]
pub(crate) struct RemoteCall {
    pub(crate) kind: CallKind,
    pub(crate) target: Address,
    /// The message (empty for an invocation's status or cancel).
    pub(crate) message: Vec<u8>,
    /// The call's idempotency key, or the key of the invocation asked about.
    pub(crate) key: Option<String>,
    pub(crate) enqueue: Option<Duration>,
    pub(crate) reply: ReplySender,
}

/// What a [`RemoteCall`] asks of the node serving its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum CallKind {
    /// Run (or, with `enqueue`, enqueue) the message.
    Invoke,
    /// What became of the enqueued invocation `key` ([`Mail::InvocationStatus`]).
    InvocationStatus,
    /// Cancel the delayed invocation `key` ([`Mail::CancelInvocation`]).
    CancelInvocation,
}

impl RemoteCall {
    /// Whether sending it again to another node is harmless: a call with an
    /// idempotency key (the group's owner answers a repeat from the stored
    /// reply) or a status query. A cancel is not (a repeat of one that was
    /// applied says "not pending").
    pub(crate) fn can_repeat(kind: CallKind, key: Option<&str>) -> bool {
        match kind {
            CallKind::Invoke => key.is_some(),
            CallKind::InvocationStatus => true,
            CallKind::CancelInvocation => false,
        }
    }
}

/// Carries what leaves this node: implemented by the cluster layer.
///
/// Every method returns at once (the transport works in the background)
/// and may lose what it is given: function messages stay in their senders'
/// outboxes until acknowledged, and a lost ack or re-send request is
/// repeated by the retransmission the transport runs.
pub(crate) trait ClusterTransport: Send + Sync + fmt::Debug {
    /// Forwards a client call to the node serving `shard`; the reply (or a
    /// 503-style [`Error::Unavailable`]) goes to `call.reply`.
    fn forward_call(&self, shard: ShardId, call: RemoteCall);
    /// Delivers a committed message from a function to `dest`'s node.
    fn send_mail(&self, dest: ShardId, envelope: Envelope);
    /// Tells the nodes serving the sources that `dest` durably applied
    /// these messages.
    fn send_acks(&self, dest: ShardId, acks: Vec<(ShardId, Seq)>);
    /// Asks the node serving `source` to re-send its outbox for `dest`.
    fn request_resend(&self, source: ShardId, dest: ShardId);
}

impl RuntimeInner {
    /// The cluster transport, in cluster mode.
    pub(crate) fn transport(&self) -> Option<&dyn ClusterTransport> {
        self.cluster
            .get()
            .map(|node| node.as_ref() as &dyn ClusterTransport)
    }

    /// Whether `shard` is served by another node.
    pub(crate) fn is_remote(&self, shard: ShardId) -> bool {
        self.shard(shard).is_some_and(|s| s.is_remote())
    }

    /// Sends mail for a shard served elsewhere: messages and re-send
    /// requests cross; timer wake-ups, checkpoint requests and wakes belong
    /// to whichever node serves the shard and are dropped.
    pub(super) fn route_remote(
        &self,
        transport: &dyn ClusterTransport,
        shard: ShardId,
        mail: Mail,
    ) {
        match mail {
            Mail::Invoke(envelope) => match envelope.origin {
                Origin::Function { .. } => transport.send_mail(shard, envelope),
                Origin::Client {
                    key,
                    reply: Some(reply),
                    enqueue,
                } => transport.forward_call(
                    shard,
                    RemoteCall {
                        kind: CallKind::Invoke,
                        target: envelope.target,
                        message: envelope.message,
                        key,
                        enqueue,
                        reply,
                    },
                ),
                // A timer runs on its own shard: never routed.
                Origin::Client { reply: None, .. } | Origin::Timer { .. } => {}
            },
            // Across nodes a re-send is of everything unacknowledged (the
            // request carries no position); the next chunk marker of a
            // local re-send is for a local receiver only.
            Mail::Resend { dest, .. } => transport.request_resend(shard, dest),
            Mail::ResendMore { .. } => {}
            Mail::DeadLetter { reply, .. } => {
                let _ = reply.send(Err(Error::Unavailable {
                    shard: shard.0,
                    reason: "another node serves this shard; manage its dead letters there".into(),
                    retry_after: Duration::from_secs(1),
                }));
            }
            // Asked of the node serving the instance, like a call.
            Mail::CancelInvocation { target, key, reply } => transport.forward_call(
                shard,
                RemoteCall {
                    kind: CallKind::CancelInvocation,
                    target,
                    message: Vec::new(),
                    key: Some(key),
                    enqueue: None,
                    reply,
                },
            ),
            Mail::InvocationStatus { target, key, reply } => transport.forward_call(
                shard,
                RemoteCall {
                    kind: CallKind::InvocationStatus,
                    target,
                    message: Vec::new(),
                    key: Some(key),
                    enqueue: None,
                    reply,
                },
            ),
            Mail::Delete { reply, .. } => {
                let _ = reply.send(Err(Error::Unavailable {
                    shard: shard.0,
                    reason: "another node serves this shard; delete the instance there".into(),
                    retry_after: Duration::from_secs(1),
                }));
            }
            Mail::TimerDue { .. } | Mail::Checkpoint | Mail::Wake => {}
        }
    }

    /// Acks from another node: `dest` durably applied these messages.
    pub(crate) fn acks_arrived(&self, dest: ShardId, acks: &[(ShardId, Seq)]) {
        self.acks.publish(dest, acks);
    }

    /// The highest sequence from `source` that `dest` has durably applied,
    /// as far as this node knows.
    pub(crate) fn acked(&self, source: ShardId, dest: ShardId) -> Seq {
        self.acks.acked(source, dest)
    }
}
