//! One invocation, in protocol order: dedup (by channel watermark for a
//! message from a function, by idempotency key for a client call), run the
//! handler, then build its log record and effects (state, sends, timers,
//! egress, the stored reply, the reply to the caller).

use std::time::Duration;

use super::{
    dead_letters::Undelivered,
    effects::{Batch, RunEnv},
    state_machine::ShardCore,
    timer_ops::FiredTimer,
};
use crate::{
    Address, Context, Error, InvocationId, TraceContext,
    metrics::{Counted, UNKNOWN},
    protocol::{
        channel::Admit,
        envelope::{Envelope, Origin, Outgoing, Provenance, ReplyRoute, ReplySender},
        record::{
            Entry, Input, InvocationOutcome, InvocationRecord, StoredReply, TimerEntry, TimerKey,
        },
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
            provenance,
        } = envelope;
        let mut fired = None;
        let (key, mut reply_tx, input, enqueue, attempt) = match origin {
            Origin::Client {
                key,
                reply,
                enqueue,
            } => (key, reply, Input::Client, enqueue, 0),
            Origin::Timer {
                timer,
                key,
                every_ms,
                attempt,
            } => {
                // Kept for its next run or a retry (a copy per run).
                fired = Some(FiredTimer {
                    slot: timer,
                    key: key.clone(),
                    every_ms,
                    attempt,
                    message: message.clone(),
                    provenance: Provenance::default(),
                });
                (None, None, Input::Timer { timer, key }, None, attempt)
            }
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
                    let (function, handler) = env.registry.labels_of(&target, &message);
                    batch.stats.count(function, handler, Counted::Duplicate);
                    // Applied before (the watermark is durable once this
                    // batch is): acked again, so the sender prunes a re-sent
                    // outbox instead of re-sending it at every recovery.
                    batch.effects.acks.push((source, watermark));
                    return;
                }
                Admit::Gap { watermark } => {
                    // An earlier message on this channel has not arrived: the
                    // sender re-sends what it holds for this shard from the
                    // first one missing.
                    tracing::debug!(%target, %source, %seq, %watermark, "gap: asking for a re-send");
                    if self.channels.ask_resend(source, env.now_ms) {
                        batch
                            .effects
                            .resend_requests
                            .push((source, self.id, watermark.next()));
                    }
                    return;
                }
            },
        };
        // A failed message from a function is retried: its bytes move into
        // the retry only on that path (nothing is copied on success). A
        // failed keyed timer is retried under its key (`timer_failed`).
        let retry = matches!(input, Input::Function { .. }).then_some(attempt);
        let invocation_id = self.invocation_id(&input, key.as_deref(), &provenance, env.now_ms);
        // A retry keeps the message's sender and invocation id.
        let undelivered = |message: Vec<u8>,
                           reply_to: Option<Box<ReplyRoute>>,
                           caller: Option<Address>,
                           invocation: InvocationId,
                           retryable: bool|
         -> Option<Undelivered> {
            retry.map(|attempt| Undelivered {
                message,
                reply_to: reply_to.map(|route| *route),
                attempt,
                retryable,
                provenance: Provenance {
                    caller,
                    invocation: Some(Box::new(invocation)),
                    trace: provenance.trace,
                },
            })
        };
        let mut record = InvocationRecord {
            target: target.clone(),
            input,
            state: None,
            sent: Vec::new(),
            timers: Vec::new(),
            cancelled: Vec::new(),
            reply: None,
            egress: Vec::new(),
            dead_letter: None,
        };
        // `retryable`: whether another attempt could succeed; `labels`: the
        // (function, handler) it counts under.
        macro_rules! fail {
            ($error:expr, $retryable:expr, $labels:expr) => {{
                let (error, retryable) = ($error, $retryable);
                let (function_label, handler_label) = $labels;
                batch
                    .stats
                    .count(function_label, handler_label, Counted::Failed);
                return match fired {
                    Some(mut fired) => {
                        // A retry of a failed keyed timer is the same
                        // invocation (set here only: boxing the id costs an
                        // allocation, which a run that succeeds never needs).
                        fired.provenance = Provenance {
                            caller: provenance.caller.clone(),
                            invocation: Some(Box::new(invocation_id.clone())),
                            trace: None,
                        };
                        self.timer_failed(env, batch, record, error, fired, retryable)
                    }
                    None => {
                        let undelivered = undelivered(
                            message,
                            reply_to,
                            provenance.caller.clone(),
                            invocation_id.clone(),
                            retryable,
                        );
                        self.fail(env, batch, reply_tx, record, error, undelivered)
                    }
                };
            }};
        }
        let function = match env.registry.get(target.type_name()) {
            Ok(f) => f,
            // The registry is this build's: a retry meets the same one.
            Err(e) => fail!(e, false, (UNKNOWN, UNKNOWN)),
        };
        let function_name = function.type_name();
        if let Some(key) = &key {
            match self.idempotency.get(&target, key, env.now_ms) {
                Ok(None) => {}
                Ok(Some(stored)) => {
                    let handler = function.handler_of(&message);
                    let label = handler.as_ref().map_or(UNKNOWN, |h| h.name);
                    let answer = match handler {
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
                    batch.stats.count(function_name, label, Counted::Duplicate);
                    return;
                }
                Err(e) => fail!(e, true, (function_name, UNKNOWN)),
            }
        }
        // A reply that races its request's timeout runs only while the
        // timeout is pending, and cancels it; once the timeout has fired
        // (the handler got `Err(Timeout)`), the reply is dropped. Either way
        // its sequence number is consumed.
        if let Some(timer) = guard {
            let key = TimerKey::Reply(timer);
            match self.timers.slot_of_key(&target, &key) {
                Ok(Some(slot)) => {
                    self.cancel_keyed(&target, &key, slot, &mut batch.effects, &mut record);
                }
                Ok(None) => {
                    // Its timeout fired (the handler got `Err(Timeout)`), or
                    // an operator deleted the instance with its timers: in
                    // neither case may the reply run, nor bring a deleted
                    // instance back. It leaves a trace.
                    let (function, handler) = env.registry.labels_of(&target, &message);
                    tracing::info!(
                        %target,
                        handler,
                        %timer,
                        "dropped a reply: its request's timeout had fired, or the instance was \
                         deleted since it sent the request"
                    );
                    metrics::counter!(
                        crate::metrics::LATE_REPLIES_DROPPED,
                        "function" => function,
                        "handler" => handler,
                    )
                    .increment(1);
                    batch.stats.count(function, handler, Counted::Duplicate);
                    self.push_record(batch, Entry::Invocation(record));
                    return;
                }
                Err(e) => fail!(e, true, (function_name, UNKNOWN)),
            }
        }
        if let Some(delay) = enqueue {
            let call = Enqueued {
                target,
                message,
                delay,
                key,
                reply_tx,
                trace: provenance.trace,
            };
            return self.enqueue(env, function.as_ref(), call, record, batch);
        }
        // The invocation's own span continues the trace its message carries.
        let trace = provenance
            .trace
            .map(|parent| parent.child(span_id_of(&target, &invocation_id)));
        let mut ctx = Context::new(target.clone(), env.now_ms);
        ctx.set_resources(env.resources.cloned());
        // One span per invocation; cheap when no subscriber listens at debug.
        let span = tracing::debug_span!(
            "invoke",
            function = target.type_name(),
            id = target.id(),
            handler = tracing::field::Empty,
            shard = self.id.0,
            outcome = tracing::field::Empty,
            invocation_id = tracing::field::Empty,
            caller = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
            parent_span_id = tracing::field::Empty,
        );
        if !span.is_disabled() {
            span.record("invocation_id", tracing::field::display(&invocation_id));
            if let Some(caller) = &provenance.caller {
                span.record("caller", tracing::field::display(caller));
            }
            if let (Some(parent), Some(own)) = (provenance.trace, trace) {
                span.record("trace_id", own.trace_id_hex());
                span.record("span_id", own.span_id_hex());
                span.record("parent_span_id", parent.span_id_hex());
            }
        }
        let _entered = span.enter();
        ctx.set_origin(provenance.caller.clone(), invocation_id.clone(), trace);
        ctx.set_state_buffer(self.states.take_buffer());
        let (invocation, existed) = match self.states.get(&target) {
            Ok(state) => {
                let existed = state.is_some();
                (function.invoke(state, &message, &mut ctx), existed)
            }
            Err(e) => {
                span.record("outcome", "failed");
                fail!(e, true, (function_name, UNKNOWN));
            }
        };
        let handler_name = invocation.handler.unwrap_or(UNKNOWN);
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
                let ttl = function.expire_after_ms();
                // An instance written for the first time has no expiry
                // timer; an older one is looked up (a type may have gained
                // `expire_after` since it was written).
                let expiry = (ttl > 0 && new_state.is_some()).then_some(TimerKey::Expiry);
                let ops = ctx.take_timer_ops();
                let look_up = expiry.clone().filter(|_| existed);
                // Read before anything changes: a failed read fails the
                // invocation cleanly.
                let mut slots = match self.key_slots(&target, &ops, look_up) {
                    Ok(slots) => slots,
                    Err(e) => fail!(e, true, (function_name, handler_name)),
                };
                batch
                    .stats
                    .count(function_name, handler_name, Counted::Applied);
                if let Some(state) = new_state {
                    if self.durable {
                        record.state = Some(state.clone());
                    }
                    self.states.put(&target, state);
                }
                if let Some(expiry) = expiry
                    && slots.remove(&expiry).flatten().is_none()
                {
                    self.arm_expiry(
                        target.clone(),
                        env.now_ms.saturating_add(ttl),
                        &mut batch.effects,
                        &mut record,
                    );
                }
                for outgoing in ctx.take_outgoing() {
                    self.send(env.now_ms, outgoing, &mut batch.effects, &mut record);
                }
                for (log, bytes) in ctx.take_emitted() {
                    self.emit(log, bytes, env.now_ms, &mut batch.effects, &mut record);
                }
                self.apply_timer_ops(&target, ops, &mut slots, &mut batch.effects, &mut record);
                if let Some(fired) = &fired {
                    self.rearm_periodic(env, fired, &slots, &mut batch.effects, &mut record);
                }
                reply
            }
            Outcome::Rejected { reply, error } => {
                batch
                    .stats
                    .count(function_name, handler_name, Counted::Rejected);
                rejected = true;
                tracing::debug!(%target, handler = invocation.handler, %error, "handler returned Err");
                if let Some(fired) = &fired {
                    let slots = Default::default();
                    self.rearm_periodic(env, fired, &slots, &mut batch.effects, &mut record);
                }
                reply
            }
            Outcome::Failed(e) => {
                // No handler: the message itself does not decode, which no
                // retry changes.
                let retryable = invocation.handler.is_some();
                fail!(e, retryable, (function_name, handler_name))
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
            let reply = outcome.as_deref().unwrap_or(&reply);
            self.route_reply(env, *route, reply, trace, batch, &mut record);
        }
        // An enqueued invocation ran: its outcome is kept for its client.
        if let (Some(handler), Some(enqueued)) = (
            invocation.handler,
            enqueued_key(&provenance, &target).filter(|_| key.is_none()),
        ) {
            let outcome = InvocationOutcome::Done(reply.clone());
            let at_ms = env.now_ms;
            self.keep_outcome(&target, enqueued, handler, outcome, at_ms, &mut record);
            batch
                .effects
                .settled
                .push((target.clone(), enqueued.to_owned()));
        }
        if let (Some(key), Some(handler)) = (key, invocation.handler) {
            let stored = StoredReply {
                key,
                handler: handler.to_owned(),
                reply: reply.clone(),
                at_ms: env.now_ms,
                outcome: None,
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
        // replay; a function message or a timer always has (its sequence
        // number, its removal).
        if !record.is_empty() {
            self.push_record(batch, Entry::Invocation(record));
        }
    }

    /// The invocation's id: carried by the message (a retry, a replayed
    /// dead letter, an enqueued call), else its channel position for a
    /// message from a function, its key for a client call with one, its
    /// slot for a keyed timer's run, or a new one made of the shard, the
    /// time and a counter.
    fn invocation_id(
        &mut self,
        input: &Input,
        key: Option<&str>,
        provenance: &Provenance,
        now_ms: u64,
    ) -> InvocationId {
        if let Some(id) = &provenance.invocation {
            return InvocationId::clone(id);
        }
        match (input, key) {
            (Input::Function { source, seq }, _) => InvocationId::message(source.0, seq.0),
            (Input::Client, Some(key)) => InvocationId::from_key(key),
            (Input::Client, None) => {
                self.calls = self.calls.wrapping_add(1);
                InvocationId::call(self.id.0, now_ms, self.calls)
            }
            (Input::Timer { timer, .. }, _) => {
                InvocationId::timer(self.id.0, timer.due_ms, timer.id.0)
            }
        }
    }

    /// Stores what became of the enqueued invocation `key` of `target`
    /// (for `Runtime::invocation`), under its key, as part of `record`.
    pub(super) fn keep_outcome(
        &mut self,
        target: &Address,
        key: &str,
        handler: &str,
        outcome: InvocationOutcome,
        now_ms: u64,
        record: &mut InvocationRecord,
    ) {
        let stored = StoredReply {
            key: key.to_owned(),
            handler: handler.to_owned(),
            // What enqueueing it answered (a retry of the enqueue).
            reply: Vec::new(),
            at_ms: now_ms,
            outcome: Some(outcome),
        };
        if self.durable {
            record.reply = Some(stored.clone());
        }
        self.idempotency.insert(target.clone(), stored, now_ms);
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
        trace: Option<TraceContext>,
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
                    // The reply comes from the instance that was asked.
                    provenance: Provenance {
                        caller: Some(record.target.clone()),
                        invocation: None,
                        trace,
                    },
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
            trace,
        } = call;
        let info = match function.handler_of(&message) {
            Ok(info) => info,
            Err(e) => {
                batch
                    .stats
                    .count(function.type_name(), UNKNOWN, Counted::Failed);
                return self.fail(env, batch, reply_tx, record, e, None);
            }
        };
        match key.clone().filter(|_| !delay.is_zero()) {
            // A delayed invocation is its target's timer under its key, so
            // that its id can cancel it (`Runtime::cancel_invocation`).
            Some(invocation) => {
                let timer_key = TimerKey::Invocation(invocation.clone());
                let mut slots = match self.key_slots(&target, &[], Some(timer_key.clone())) {
                    Ok(slots) => slots,
                    Err(e) => {
                        batch
                            .stats
                            .count(function.type_name(), info.name, Counted::Failed);
                        return self.fail(env, batch, reply_tx, record, e, None);
                    }
                };
                // Its key outlived the stored reply (retention): the new
                // invocation takes its place.
                if let Some(slot) = slots.remove(&timer_key).flatten() {
                    self.cancel_keyed(&target, &timer_key, slot, &mut batch.effects, &mut record);
                }
                let entry = TimerEntry {
                    id: self.timers.next_id(),
                    due_ms: env
                        .now_ms
                        .saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
                    outgoing: Outgoing {
                        target: target.clone(),
                        message,
                        delay: None,
                        reply_to: None,
                        guard: None,
                        attempt: 0,
                        provenance: Provenance {
                            caller: None,
                            invocation: Some(Box::new(InvocationId::enqueued(
                                target.clone(),
                                invocation,
                            ))),
                            trace,
                        },
                    },
                    key: Some(timer_key),
                    every_ms: None,
                };
                self.arm_timer(entry, &mut batch.effects, &mut record);
            }
            None => {
                // Its id is the one its client was given.
                let outgoing = Outgoing {
                    target: target.clone(),
                    message,
                    delay: Some(delay),
                    reply_to: None,
                    guard: None,
                    attempt: 0,
                    provenance: Provenance {
                        caller: None,
                        invocation: key
                            .as_deref()
                            .map(|key| Box::new(InvocationId::enqueued(target.clone(), key))),
                        trace,
                    },
                };
                self.send(env.now_ms, outgoing, &mut batch.effects, &mut record);
            }
        }
        let reply = Vec::new();
        if let Some(key) = key {
            let stored = StoredReply {
                key,
                handler: info.name.to_owned(),
                reply: reply.clone(),
                at_ms: env.now_ms,
                // Followed by `Runtime::invocation` until it has run.
                outcome: Some(InvocationOutcome::Pending),
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
    trace: Option<TraceContext>,
}

/// The span id of an invocation in a trace: derived from its address and
/// invocation id, so a re-delivery names the same span.
fn span_id_of(target: &Address, id: &InvocationId) -> u64 {
    let mut hash: u64 = 0x8422_2325_cbf2_9ce4;
    for part in [target.type_name().as_bytes(), b"\0", target.id().as_bytes()] {
        for byte in part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    id.stable_hash(hash)
}

/// The key of the enqueued invocation a message continues, if it is one of
/// `target`'s (`/send`, `Call::send`): its outcome is stored under it.
pub(super) fn enqueued_key<'p>(provenance: &'p Provenance, target: &Address) -> Option<&'p str> {
    let id = provenance.invocation.as_ref()?;
    (id.target() == Some(target)).then(|| id.key()).flatten()
}
