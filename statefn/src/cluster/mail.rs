//! Messages between functions on different nodes, their acks, and re-send
//! requests: the same protocol as between shards of one process, carried by
//! core NATS.
//!
//! - After the sender's commit, a message to a shard served elsewhere is
//!   published on the `mail` subject of the receiver's log group; the
//!   receiver's owner queues it like local mail (its watermark drops
//!   duplicates; a gap waits for a re-send).
//! - After the receiver's commit is durable, acks for senders served
//!   elsewhere are published on the `ack` subject of the *sender's* group.
//! - Core NATS can lose any of these (nobody subscribed during a takeover),
//!   so the sender keeps every unacknowledged message in its outbox, and
//!   this node re-sends a channel's outbox when it has seen no ack progress
//!   for `retransmit_after` (at most once per that time per channel).
//! - A node that takes a group over asks every shard to re-send to the
//!   group's shards (`resend` subject of the sender's group).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_nats::Subscriber;
use bytes::Bytes;
use futures::StreamExt;

use super::{
    node::ClusterNode,
    wire::{self, AckMessage, MailMessage, ResendMessage},
};
use crate::{
    protocol::{
        envelope::{Envelope, Mail},
        ids::{LogGroupId, Seq, ShardId},
    },
    runtime::transport::{ClusterTransport, RemoteCall},
};

/// One publish, queued for the publishing task (which keeps their order).
#[derive(Debug)]
pub(crate) struct Outbound {
    subject: String,
    payload: Bytes,
}

/// A channel with messages sent to another node and not yet acknowledged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unacked {
    /// The highest sequence sent.
    sent: Seq,
    /// The highest ack seen when it last moved.
    acked: Seq,
    /// When the ack last moved (or the first unacked message left).
    progress: Instant,
    /// When the outbox was last re-sent.
    resent: Option<Instant>,
}

impl ClusterNode {
    fn queue(&self, subject: String, payload: Vec<u8>) {
        let _ = self.outbound.send(Outbound {
            subject,
            payload: payload.into(),
        });
    }

    /// Publishes what the transport queued, in order.
    pub(super) async fn publish_outbound(
        self: Arc<Self>,
        mut outbound: tokio::sync::mpsc::UnboundedReceiver<Outbound>,
    ) {
        while let Some(Outbound { subject, payload }) = outbound.recv().await {
            if let Err(error) = self.client.publish(subject, payload).await {
                tracing::debug!(%error, "a message to another node was not sent; it will be again");
            }
        }
    }

    /// Takes messages, acks and re-send requests for `group`'s shards.
    pub(super) async fn subscribe_mail(self: &Arc<Self>, group: LogGroupId) {
        let subjects = [
            self.names.mail(group),
            self.names.ack(group),
            self.names.resend(group),
        ];
        let mut subscribers: Vec<Subscriber> = Vec::with_capacity(3);
        for subject in subjects {
            match self.client.subscribe(subject.clone()).await {
                Ok(subscriber) => subscribers.push(subscriber),
                Err(error) => {
                    tracing::error!(%group, subject, %error, "cannot subscribe; messages for the group arrive by re-send only");
                }
            }
        }
        let _ = self.client.flush().await;
        let node = Arc::clone(self);
        let task = self.handle.spawn(async move {
            let mut all = futures::stream::select_all(subscribers);
            while let Some(message) = all.next().await {
                node.received(message.subject.as_str(), &message.payload);
            }
        });
        self.subscriptions.lock().entry(group.0).or_default().mail = Some(task);
    }

    fn received(&self, subject: &str, payload: &[u8]) {
        let Some(runtime) = self.runtime() else {
            return;
        };
        if subject.ends_with(".mail") {
            let Ok(mail) = wire::from_bytes::<MailMessage>(payload) else {
                return;
            };
            let (dest, envelope) = mail.into_envelope();
            // Never route it out again: only a shard served here takes it.
            if dest.0 < self.shards && !runtime.is_remote(dest) {
                runtime.enqueue(dest, Mail::Invoke(envelope));
            }
        } else if subject.ends_with(".ack") {
            if let Ok(ack) = wire::from_bytes::<AckMessage>(payload) {
                runtime.acks_arrived(ack.dest, &ack.acks);
            }
        } else if subject.ends_with(".resend")
            && let Ok(resend) = wire::from_bytes::<ResendMessage>(payload)
            && resend.source.0 < self.shards
            && !runtime.is_remote(resend.source)
        {
            runtime.enqueue(
                resend.source,
                Mail::Resend {
                    dest: resend.dest,
                    from: None,
                },
            );
        }
    }

    /// Re-sends the outbox of channels whose acks stopped moving.
    pub(super) async fn retransmit(self: Arc<Self>) {
        let every = (self.config.retransmit_after / 2).max(Duration::from_millis(20));
        loop {
            tokio::time::sleep(every).await;
            let Some(runtime) = self.runtime() else {
                continue;
            };
            let now = Instant::now();
            let after = self.config.retransmit_after;
            let mut resend = Vec::new();
            self.unacked.lock().retain(|&(source, dest), channel| {
                let acked = runtime.acked(source, dest);
                if acked >= channel.sent || runtime.is_remote(source) {
                    return false;
                }
                if acked > channel.acked {
                    channel.acked = acked;
                    channel.progress = now;
                    return true;
                }
                let quiet = now.duration_since(channel.progress) >= after;
                let due = channel
                    .resent
                    .is_none_or(|at| now.duration_since(at) >= after);
                if quiet && due {
                    channel.resent = Some(now);
                    resend.push((source, dest));
                }
                true
            });
            for (source, dest) in resend {
                tracing::debug!(%source, %dest, "no ack for a while: re-sending the outbox");
                runtime.enqueue(source, Mail::Resend { dest, from: None });
            }
        }
    }
}

impl ClusterTransport for ClusterNode {
    fn forward_call(&self, shard: ShardId, call: RemoteCall) {
        match self.this.upgrade() {
            Some(node) => node.forward(shard, call),
            None => {
                let _ = call.reply.send(Err(crate::Error::ShuttingDown));
            }
        }
    }

    fn send_mail(&self, dest: ShardId, envelope: Envelope) {
        let Some(mail) = MailMessage::of(dest, envelope) else {
            return;
        };
        let (source, seq) = (mail.source, mail.seq);
        let subject = self.names.mail(self.group_of(dest));
        self.queue(subject, wire::to_bytes(&mail));
        let now = Instant::now();
        let mut unacked = self.unacked.lock();
        let channel = unacked.entry((source, dest)).or_insert(Unacked {
            sent: seq,
            acked: Seq(0),
            progress: now,
            resent: None,
        });
        channel.sent = channel.sent.max(seq);
    }

    fn send_acks(&self, dest: ShardId, acks: Vec<(ShardId, Seq)>) {
        let mut by_group: std::collections::BTreeMap<LogGroupId, Vec<(ShardId, Seq)>> =
            std::collections::BTreeMap::new();
        for (source, seq) in acks {
            by_group
                .entry(self.group_of(source))
                .or_default()
                .push((source, seq));
        }
        for (group, acks) in by_group {
            self.queue(
                self.names.ack(group),
                wire::to_bytes(&AckMessage { dest, acks }),
            );
        }
    }

    fn request_resend(&self, source: ShardId, dest: ShardId) {
        let subject = self.names.resend(self.group_of(source));
        self.queue(subject, wire::to_bytes(&ResendMessage { source, dest }));
    }
}
