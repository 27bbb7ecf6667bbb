//! One invocation, in protocol order: dedup (by channel watermark for a
//! message from a function, by idempotency key for a client call), run the
//! handler, then build its log record and effects (state, sends, timers,
//! egress, the stored reply, the reply to the caller).

use std::time::Duration;

use super::{
    dead_letters::Undelivered,
    effects::{Batch, RunEnv},
    state_machine::ShardCore,
};
use crate::{
    Context, Error,
    protocol::{
        channel::Admit,
        envelope::{Envelope, Origin, Outgoing, ReplyRoute, ReplySender},
        record::{Entry, Input, InvocationRecord, StoredReply},
    },
    registry::{ErasedFunction, Outcome},
};

impl ShardCore {
    pub(super) fn invoke(&mut self, env: &RunEnv<'_>, envelope: Envelope, batch: &mut Batch) {
        let Envelope {
            target,
            message,
            origin,
            reply_to,
            guard,
        } = envelope;
        let reply_to = reply_to.map(|route| *route);
        let (key, mut reply_tx, input, enqueue, attempt) = match origin {
            Origin::Client {
                key,
                reply,
                enqueue,
            } => (key, reply, Input::Client, enqueue, 0),
            Origin::Function {
                source,
                seq,
                attempt,
            } => match self.channels.admit(source, seq) {
                Admit::Next => {
                    batch.effects.acks.push((source, seq));
                    (None, None, Input::Function { source, seq }, None, attempt)
                }
                Admit::Duplicate { watermark } => {
                    tracing::trace!(%target, %source, %seq, "dropping a duplicate message");
                    batch.stats.duplicate += 1;
                    // Applied before (the watermark is durable once this
                    // batch is): acked again, so the sender prunes a re-sent
                    // outbox instead of re-sending it at every recovery.
                    batch.effects.acks.push((source, watermark));
                    return;
                }
                Admit::Gap { watermark } => {
                    // An earlier message on this channel has not arrived: the
                    // sender re-sends everything it holds for this shard.
                    tracing::debug!(%target, %source, %seq, %watermark, "gap: asking for a re-send");
                    if self.channels.ask_resend(source, env.now_ms) {
                        batch.effects.resend_requests.push((source, self.id));
                    }
                    return;
                }
            },
        };
        // A failed message from a function is retried: its bytes move into
        // the retry only on that path (nothing is copied on success).
        let retry = matches!(input, Input::Function { .. }).then_some(attempt);
        let undelivered = |message: Vec<u8>,
                           reply_to: Option<ReplyRoute>,
                           retryable: bool|
         -> Option<Undelivered> {
            retry.map(|attempt| Undelivered {
                message,
                reply_to,
                attempt,
                retryable,
            })
        };
        let mut record = InvocationRecord {
            target: target.clone(),
            input,
            state: None,
            sent: Vec::new(),
            timers: Vec::new(),
            reply: None,
            egress: Vec::new(),
            dead_letter: None,
            disarmed: None,
        };
        // A reply that races its request's timeout runs only while the
        // timeout is pending, and disarms it; once the timeout has fired
        // (the handler got `Err(Timeout)`), the reply is dropped. Either way
        // its sequence number is consumed.
        if let Some(timer) = guard {
            if self.timers.remove(timer).is_none() {
                tracing::debug!(%target, %timer, "dropping a reply that came after its request's timeout");
                batch.stats.duplicate += 1;
                self.push_record(batch, Entry::Invocation(record));
                return;
            }
            record.disarmed = Some(timer);
        }
        let function = match env.registry.get(target.type_name()) {
            Ok(f) => f,
            Err(e) => {
                // The registry is this build's: a retry meets the same one.
                let undelivered = undelivered(message, reply_to, false);
                return self.fail(env, batch, reply_tx, record, e, undelivered);
            }
        };
        if let Some(key) = &key {
            match self.idempotency.get(&target, key, env.now_ms) {
                Ok(None) => {}
                Ok(Some(stored)) => {
                    let answer = match function.handler_of(&message) {
                        // Under its name, or a name it had (`renamed_from`).
                        Ok(info) if info.answers_to(&stored.handler) => Ok(stored.reply),
                        Ok(_) => Err(Error::IdempotencyKeyReused {
                            function: target.type_name().to_owned(),
                            id: target.id().to_owned(),
                            key: key.clone(),
                            previous_handler: stored.handler,
                        }),
                        Err(e) => Err(e),
                    };
                    if let Some(tx) = reply_tx.take() {
                        batch.effects.replies.push((tx, answer));
                    }
                    batch.stats.duplicate += 1;
                    return;
                }
                Err(e) => {
                    let undelivered = undelivered(message, reply_to, true);
                    return self.fail(env, batch, reply_tx, record, e, undelivered);
                }
            }
        }
        if let Some(delay) = enqueue {
            let call = Enqueued {
                target,
                message,
                delay,
                key,
                reply_tx,
            };
            return self.enqueue(env, function.as_ref(), call, record, batch);
        }
        let mut ctx = Context::new(target.clone(), env.now_ms);
        // One span per invocation; cheap when no subscriber listens at debug.
        let span = tracing::debug_span!(
            "invoke",
            function = target.type_name(),
            id = target.id(),
            handler = tracing::field::Empty,
            shard = self.id.0,
            outcome = tracing::field::Empty,
        );
        let _entered = span.enter();
        let invocation = match self.states.get(&target) {
            Ok(state) => function.invoke(state, &message, &mut ctx),
            Err(e) => {
                span.record("outcome", "failed");
                let undelivered = undelivered(message, reply_to, true);
                return self.fail(env, batch, reply_tx, record, e, undelivered);
            }
        };
        if let Some(handler) = invocation.handler {
            span.record("handler", handler);
        }
        span.record(
            "outcome",
            match &invocation.outcome {
                Outcome::Applied { .. } => "applied",
                Outcome::Rejected { .. } => "rejected",
                Outcome::Failed(_) => "failed",
            },
        );
        let mut rejected = false;
        let reply = match invocation.outcome {
            Outcome::Applied { reply, new_state } => {
                batch.stats.applied += 1;
                if let Some(state) = new_state {
                    if self.durable {
                        record.state = Some(state.clone());
                    }
                    self.states.put(target.clone(), state);
                    let ttl = function.expire_after_ms();
                    if ttl > 0 && !self.expiry_armed.contains(&target) {
                        self.arm_expiry(
                            target.clone(),
                            env.now_ms.saturating_add(ttl),
                            &mut batch.effects,
                            &mut record,
                        );
                    }
                }
                for outgoing in ctx.take_outgoing() {
                    self.send(env.now_ms, outgoing, &mut batch.effects, &mut record);
                }
                for (log, bytes) in ctx.take_emitted() {
                    self.emit(log, bytes, env.now_ms, &mut batch.effects, &mut record);
                }
                reply
            }
            Outcome::Rejected { reply, error } => {
                batch.stats.rejected += 1;
                rejected = true;
                tracing::debug!(%target, handler = invocation.handler, %error, "handler returned Err");
                reply
            }
            Outcome::Failed(e) => {
                // No handler: the message itself does not decode, which no
                // retry changes.
                let retryable = invocation.handler.is_some();
                let undelivered = undelivered(message, reply_to, retryable);
                return self.fail(env, batch, reply_tx, record, e, undelivered);
            }
        };
        if let Some(route) = reply_to {
            let fallible = function
                .handler_of(&message)
                .is_ok_and(|info| info.fallible);
            let outcome = route
                .prefix
                .is_some()
                .then(|| crate::request::outcome_of_reply(&reply, fallible, rejected));
            self.route_reply(
                env,
                route,
                outcome.as_deref().unwrap_or(&reply),
                batch,
                &mut record,
            );
        }
        if let (Some(key), Some(handler)) = (key, invocation.handler) {
            let stored = StoredReply {
                key,
                handler: handler.to_owned(),
                reply: reply.clone(),
                at_ms: env.now_ms,
            };
            if self.durable {
                record.reply = Some(stored.clone());
            }
            self.idempotency.insert(target, stored, env.now_ms);
        }
        if let Some(tx) = reply_tx {
            batch.effects.replies.push((tx, Ok(reply)));
        }
        // A read, or a keyless call that changed nothing, has nothing to
        // replay; a function message always has (its sequence number).
        if !record.is_empty() {
            self.push_record(batch, Entry::Invocation(record));
        }
    }

    /// A request's reply goes back as a message to the caller's handler:
    /// `reply` is the outcome's bytes (see `request.rs`) appended to the
    /// route's prefix, or for a route of record version 1 the callee's
    /// plain return value.
    pub(super) fn route_reply(
        &mut self,
        env: &RunEnv<'_>,
        route: ReplyRoute,
        reply: &[u8],
        batch: &mut Batch,
        record: &mut InvocationRecord,
    ) {
        let message = match &route.prefix {
            Some(prefix) => Ok([prefix.as_slice(), reply].concat()),
            None => env
                .registry
                .get(route.to.type_name())
                .and_then(|f| f.reply_message(&route.handler, reply)),
        };
        match message {
            Ok(message) => {
                let outgoing = Outgoing {
                    target: route.to,
                    message,
                    delay: None,
                    reply_to: None,
                    guard: route.guard,
                    attempt: 0,
                };
                if let Some(sent) = self.deliver(outgoing, &mut batch.effects) {
                    record.sent.push(sent);
                }
            }
            Err(e) => {
                tracing::error!(target = %record.target, error = %e, "cannot route a reply; it is dropped");
            }
        }
    }

    /// A client's `send`: the message is committed as a message from this
    /// shard to the target (or a timer), and the caller is answered once that
    /// is durable. The handler runs later.
    fn enqueue(
        &mut self,
        env: &RunEnv<'_>,
        function: &dyn ErasedFunction,
        call: Enqueued,
        mut record: InvocationRecord,
        batch: &mut Batch,
    ) {
        let Enqueued {
            target,
            message,
            delay,
            key,
            reply_tx,
        } = call;
        let info = match function.handler_of(&message) {
            Ok(info) => info,
            Err(e) => return self.fail(env, batch, reply_tx, record, e, None),
        };
        let outgoing = Outgoing {
            target: target.clone(),
            message,
            delay: Some(delay),
            reply_to: None,
            guard: None,
            attempt: 0,
        };
        self.send(env.now_ms, outgoing, &mut batch.effects, &mut record);
        let reply = Vec::new();
        if let Some(key) = key {
            let stored = StoredReply {
                key,
                handler: info.name.to_owned(),
                reply: reply.clone(),
                at_ms: env.now_ms,
            };
            record.reply = Some(stored.clone());
            self.idempotency.insert(target, stored, env.now_ms);
        }
        if let Some(tx) = reply_tx {
            batch.effects.replies.push((tx, Ok(reply)));
        }
        self.push_record(batch, Entry::Invocation(record));
    }
}

/// A client's durable send, not yet sequenced.
struct Enqueued {
    target: crate::Address,
    message: Vec<u8>,
    delay: Duration,
    key: Option<String>,
    reply_tx: Option<ReplySender>,
}
