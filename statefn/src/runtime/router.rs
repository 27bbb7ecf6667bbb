//! Mail to shards. A client call is refused at once when its shard is
//! recovering (`Unavailable`) or its mailbox is full (`Overloaded`): the
//! caller retries. Mail from functions, timers and the runtime itself is
//! already committed by its sender and queues, except that in durable mode a
//! full mailbox leaves messages from functions with their senders, who
//! re-send them when asked (`shard/mailbox.rs`). In cluster mode, calls
//! and mail for a shard another node serves go to that node
//! ([`transport`](super::transport)).

use std::{sync::atomic::Ordering, time::Duration};

use tokio::sync::oneshot;

use super::RuntimeInner;
use crate::{
    Address, Error, TraceContext,
    protocol::{
        envelope::{Envelope, Mail, Origin, Provenance},
        idempotency,
        ids::ShardId,
    },
    shard::{Queued, Shard},
};

impl RuntimeInner {
    /// Queues a client call; the receiver resolves to the encoded reply.
    #[cfg(test)]
    pub(crate) fn submit_call(
        &self,
        target: Address,
        message: Vec<u8>,
        key: Option<String>,
    ) -> Result<oneshot::Receiver<Result<Vec<u8>, Error>>, Error> {
        self.submit(target, message, key, None, None)
    }

    /// Queues a client call, or (with `enqueue`) a durable send.
    pub(crate) fn submit(
        &self,
        target: Address,
        message: Vec<u8>,
        key: Option<String>,
        enqueue: Option<Duration>,
        trace: Option<TraceContext>,
    ) -> Result<oneshot::Receiver<Result<Vec<u8>, Error>>, Error> {
        // A closing runtime refuses the call in `submit_registered`.
        self.registry.get(target.type_name())?;
        let shard = target.shard_id(self.shard_count());
        self.submit_registered(target, shard, message, key, enqueue, trace)
    }

    /// [`submit`](Self::submit) of a call whose function type is known to
    /// be registered: a typed handle looks it up once, when it is made (the
    /// registry does not change once the runtime is open), not at every
    /// call (a hash of the type name, ~90 instructions of an in-memory
    /// call; issue 14). `shard` is the target's (a handle computes it once
    /// too: the shard count is fixed for the runtime's life).
    pub(crate) fn submit_registered(
        &self,
        target: Address,
        shard: ShardId,
        message: Vec<u8>,
        key: Option<String>,
        enqueue: Option<Duration>,
        trace: Option<TraceContext>,
    ) -> Result<oneshot::Receiver<Result<Vec<u8>, Error>>, Error> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(Error::ShuttingDown);
        }
        if let Some(key) = &key {
            idempotency::check_key(key)?;
        }
        let (tx, rx) = oneshot::channel();
        #[cfg(feature = "cluster")]
        if let Some(transport) = self.transport()
            && self.is_remote(shard)
        {
            use super::transport::{CallKind, RemoteCall};
            let call = RemoteCall {
                kind: CallKind::Invoke,
                target,
                message,
                key,
                enqueue,
                reply: tx,
            };
            transport.forward_call(shard, call);
            return Ok(rx);
        }
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
                guard: None,
                provenance: Provenance {
                    trace,
                    ..Provenance::default()
                },
            }),
        )?;
        Ok(rx)
    }

    /// A call another node forwarded here: queued like a local one, or
    /// `None` if this node does not serve its shard (any more).
    #[cfg(feature = "cluster")]
    #[expect(
        clippy::type_complexity,
        reason = "the reply channel of a call, as `submit` has it"
    )]
    pub(crate) fn submit_forwarded(
        &self,
        kind: super::transport::CallKind,
        target: Address,
        message: Vec<u8>,
        key: Option<String>,
        enqueue: Option<Duration>,
    ) -> Result<Option<oneshot::Receiver<Result<Vec<u8>, Error>>>, Error> {
        use super::transport::CallKind;
        if self.closing.load(Ordering::SeqCst) {
            return Err(Error::ShuttingDown);
        }
        self.registry.get(target.type_name())?;
        let shard = target.shard_id(self.shard_count());
        if self.is_remote(shard) {
            return Ok(None);
        }
        let (tx, rx) = oneshot::channel();
        // An invocation's status or cancel: mail to the shard, as on the
        // node that asked (`runtime/invocations.rs`).
        let ask = |key: Option<String>| key.unwrap_or_default();
        match kind {
            CallKind::Invoke => {}
            CallKind::InvocationStatus => {
                let (target, key, reply) = (target, ask(key), tx);
                self.enqueue(shard, Mail::InvocationStatus { target, key, reply });
                return Ok(Some(rx));
            }
            CallKind::CancelInvocation => {
                let (target, key, reply) = (target, ask(key), tx);
                self.enqueue(shard, Mail::CancelInvocation { target, key, reply });
                return Ok(Some(rx));
            }
        }
        let origin = Origin::Client {
            key,
            reply: Some(tx),
            enqueue,
        };
        let envelope = Envelope {
            target,
            message,
            origin,
            reply_to: None,
            guard: None,
            // A forwarded call starts a new invocation here; its trace
            // context does not cross nodes yet.
            provenance: Provenance::default(),
        };
        self.enqueue_call(shard, Mail::Invoke(envelope))?;
        Ok(Some(rx))
    }

    #[inline]
    fn enqueue_call(&self, shard: ShardId, mail: Mail) -> Result<(), Error> {
        let Some(target) = self.shard(shard) else {
            return Err(Error::ShuttingDown);
        };
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        match target.try_enqueue_call(mail, self.mailbox_capacity) {
            Ok(schedule) => {
                if schedule {
                    self.scheduler.push(shard);
                }
                Ok(())
            }
            Err(e) => {
                self.finished(1);
                Err(e)
            }
        }
    }

    pub(crate) fn shard_count(&self) -> u16 {
        u16::try_from(self.shards.len()).unwrap_or(u16::MAX)
    }

    /// Every shard's id.
    pub(crate) fn shard_ids(&self) -> impl Iterator<Item = ShardId> + use<> {
        (0..self.shard_count()).map(ShardId)
    }

    pub(crate) fn shard(&self, shard: ShardId) -> Option<&Shard> {
        self.shards.get(shard.index())
    }

    /// Queues mail that is already committed (from a function, a timer, the
    /// runtime): it always queues, except a message from a function past
    /// its shard's bound in durable mode, which its sender re-sends later
    /// (`shard/mailbox.rs`).
    pub(crate) fn enqueue(&self, shard: ShardId, mail: Mail) {
        let Some(target) = self.shard(shard) else {
            return;
        };
        #[cfg(feature = "cluster")]
        if let Some(transport) = self.transport()
            && target.is_remote()
        {
            return self.route_remote(transport, shard, mail);
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        match target.enqueue(mail, self.function_mail_bytes) {
            Queued::Schedule => self.scheduler.push(shard),
            Queued::Waiting => {}
            Queued::Dropped => self.finished(1),
            Queued::Refused => {
                metrics::counter!(crate::metrics::FUNCTION_MAIL_REFUSED, "shard" => shard.to_string())
                    .increment(1);
                self.finished(1);
            }
        }
    }

    pub(crate) fn request_checkpoint(&self, shard: ShardId) {
        self.enqueue(shard, Mail::Checkpoint);
    }
}
