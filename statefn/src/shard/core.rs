//! The shard's state machine: runs invocations, builds their log records and
//! effects, replays records on recovery, and freezes checkpoints.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::{
    Batch, Effects, RunEnv,
    checkpoint::CheckpointJob,
    tables::{IdempotencyTable, Persisted, StateTable},
};
use crate::{
    Context, Error,
    envelope::{Envelope, Mail, Origin, Outgoing, ReplySender},
    record::{
        DeadLetterEntry, Emitted, Entry, Input, InvocationRecord, Sent, ShardRecord, StoredReply,
        TimerEntry, encode,
    },
    registry::Outcome,
};

/// A shard's metadata as of a checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ShardMeta {
    /// Every record of this shard up to this LSN is reflected in the store.
    pub(crate) checkpoint_lsn: u64,
    pub(crate) next_timer: u64,
    pub(crate) next_seq: Vec<(u16, u64)>,
    pub(crate) watermarks: Vec<(u16, u64)>,
    pub(crate) next_egress: u64,
    #[serde(default)]
    pub(crate) next_dead_letter: u64,
}

/// How messages from functions that fail are retried before they become
/// dead letters.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use statefn::RetryPolicy;
///
/// let policy = RetryPolicy { max_attempts: 5, ..RetryPolicy::default() };
/// assert_eq!(policy.initial_backoff, Duration::from_millis(100));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Deliveries in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles on each one.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, failed_attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(failed_attempts.saturating_sub(1).min(20));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// How a shard core is configured.
#[derive(Debug, Clone)]
pub(crate) struct CoreConfig {
    pub(crate) shards: u16,
    pub(crate) cache_bytes: usize,
    pub(crate) idempotency_retention: Duration,
    /// Freeze a checkpoint once this many state bytes changed.
    pub(crate) checkpoint_dirty_bytes: usize,
    pub(crate) checkpoint_interval: Duration,
    pub(crate) retry: RetryPolicy,
}

#[derive(Debug)]
pub(crate) struct CheckpointState {
    pub(crate) in_flight: bool,
    pub(crate) requested: bool,
    pub(crate) lsn: u64,
    /// When the last checkpoint was frozen, on the runtime's clock (set at
    /// the first batch).
    last_ms: Option<u64>,
}

/// Only the worker running the shard (or its recovery) touches this.
#[derive(Debug)]
pub(crate) struct ShardCore {
    pub(crate) id: u16,
    /// Bumped by every recovery: batches of an older core are refused.
    pub(crate) epoch: u64,
    config: CoreConfig,
    /// Whether records are built (durable mode).
    durable: bool,
    pub(crate) states: StateTable,
    idempotency: IdempotencyTable,
    pub(crate) timers: BTreeMap<u64, TimerEntry>,
    timers_removed: Vec<u64>,
    next_timer: u64,
    next_seq: HashMap<u16, u64>,
    watermarks: HashMap<u16, u64>,
    /// Sent but not known to be durably applied by the receiver.
    pub(crate) outbox: BTreeMap<(u16, u64), Sent>,
    outbox_removed: Vec<(u16, u64)>,
    /// Emitted egress records not yet known to be appended.
    pub(crate) pending_egress: BTreeMap<u64, Emitted>,
    egress_removed: Vec<u64>,
    next_egress: u64,
    /// Instances with an armed expiry timer.
    expiry_armed: std::collections::HashSet<crate::Address>,
    /// Messages that failed every attempt, by id.
    pub(crate) dead_letters: BTreeMap<u64, DeadLetterEntry>,
    dead_letters_removed: Vec<u64>,
    next_dead_letter: u64,
    pub(crate) checkpoint: CheckpointState,
}

/// Prune acknowledged outbox entries once it holds this many.
const OUTBOX_PRUNE_AT: usize = 4096;

impl ShardCore {
    /// An empty core (in memory mode, or a new data directory).
    pub(crate) fn new(
        id: u16,
        epoch: u64,
        config: CoreConfig,
        persisted: Option<Persisted>,
    ) -> Self {
        let retention = u64::try_from(config.idempotency_retention.as_millis()).unwrap_or(u64::MAX);
        ShardCore {
            id,
            epoch,
            durable: persisted.is_some(),
            states: StateTable::new(persisted.clone(), config.cache_bytes),
            idempotency: IdempotencyTable::new(persisted, retention),
            config,
            timers: BTreeMap::new(),
            timers_removed: Vec::new(),
            next_timer: 1,
            next_seq: HashMap::new(),
            watermarks: HashMap::new(),
            outbox: BTreeMap::new(),
            outbox_removed: Vec::new(),
            pending_egress: BTreeMap::new(),
            egress_removed: Vec::new(),
            next_egress: 1,
            expiry_armed: std::collections::HashSet::new(),
            dead_letters: BTreeMap::new(),
            dead_letters_removed: Vec::new(),
            next_dead_letter: 1,
            checkpoint: CheckpointState {
                in_flight: false,
                requested: false,
                lsn: 0,
                last_ms: None,
            },
        }
    }

    /// A core restored from a checkpoint (replay of the log follows).
    pub(crate) fn restored(
        mut self,
        meta: ShardMeta,
        timers: Vec<TimerEntry>,
        outbox: Vec<Sent>,
        egress: Vec<Emitted>,
        dead_letters: Vec<DeadLetterEntry>,
    ) -> Self {
        self.checkpoint.lsn = meta.checkpoint_lsn;
        self.next_dead_letter = meta.next_dead_letter.max(1);
        self.dead_letters = dead_letters.into_iter().map(|d| (d.id, d)).collect();
        self.next_egress = meta.next_egress.max(1);
        self.pending_egress = egress.into_iter().map(|e| (e.seq, e)).collect();
        self.next_timer = meta.next_timer.max(1);
        self.next_seq = meta.next_seq.into_iter().collect();
        self.watermarks = meta.watermarks.into_iter().collect();
        self.expiry_armed = timers
            .iter()
            .filter(|t| t.expiry)
            .map(|t| t.outgoing.target.clone())
            .collect();
        self.timers = timers.into_iter().map(|t| (t.id, t)).collect();
        self.outbox = outbox.into_iter().map(|s| ((s.dest, s.seq), s)).collect();
        self
    }

    pub(crate) fn handle(&mut self, env: &RunEnv<'_>, mail: Mail, batch: &mut Batch) {
        batch.effects.finished += 1;
        match mail {
            Mail::Invoke(envelope) => self.invoke(env, envelope, batch),
            Mail::TimerDue { timer } => {
                // Fires once: removal and send share one record.
                let Some(entry) = self.timers.remove(&timer) else {
                    return;
                };
                self.timers_removed.push(timer);
                if entry.expiry {
                    self.expire(env, timer, entry.outgoing.target, batch);
                } else if let Some(sent) = self.deliver(entry.outgoing, &mut batch.effects) {
                    self.push_record(batch, Entry::TimerFired { timer, sent });
                }
            }
            Mail::Resend { dest } => {
                for sent in self
                    .outbox
                    .range((dest, 0)..=(dest, u64::MAX))
                    .map(|(_, s)| s)
                {
                    batch
                        .effects
                        .deliveries
                        .push(envelope_of(sent.clone(), self.id));
                }
            }
            Mail::Checkpoint => self.checkpoint.requested = true,
            Mail::Wake => {}
            Mail::DeadLetter { id, replay, reply } => {
                let Some(letter) = self.dead_letters.remove(&id) else {
                    let error = Error::UnknownDeadLetter {
                        id: format!("{}-{id}", self.id),
                    };
                    batch.effects.replies.push((reply, Err(error)));
                    return;
                };
                self.dead_letters_removed.push(id);
                let resent = replay.then(|| {
                    let outgoing = Outgoing {
                        target: letter.target,
                        message: letter.message,
                        delay: None,
                        reply_to: letter.reply_to,
                        attempt: 0,
                    };
                    self.deliver(outgoing, &mut batch.effects)
                });
                batch.effects.replies.push((reply, Ok(Vec::new())));
                self.push_record(
                    batch,
                    Entry::DeadLetterResolved {
                        id,
                        resent: resent.flatten(),
                    },
                );
            }
        }
    }

    fn invoke(&mut self, env: &RunEnv<'_>, envelope: Envelope, batch: &mut Batch) {
        let Envelope {
            target,
            message,
            origin,
            reply_to,
        } = envelope;
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
            } => {
                let watermark = self.watermarks.get(&source).copied().unwrap_or(0);
                if seq <= watermark {
                    tracing::trace!(%target, source, seq, "dropping a duplicate message");
                    batch.stats.duplicate += 1;
                    return;
                }
                if seq > watermark + 1 {
                    // An earlier message on this channel was lost with a failed
                    // batch; the sender re-sends everything after the watermark.
                    tracing::debug!(%target, source, seq, watermark, "gap: waiting for a re-send");
                    return;
                }
                self.watermarks.insert(source, seq);
                batch.effects.acks.push((source, seq));
                (None, None, Input::Function { source, seq }, None, attempt)
            }
        };
        // What a failed message from a function needs for a retry.
        // A failed message from a function is retried (moved into the retry
        // only on that path: nothing is copied when the handler succeeds).
        let retry = matches!(input, Input::Function { .. }).then_some(attempt);
        let mut record = InvocationRecord {
            target: target.clone(),
            input,
            state: None,
            sent: Vec::new(),
            timers: Vec::new(),
            reply: None,
            egress: Vec::new(),
            dead_letter: None,
        };
        let function = match env.registry.get(target.type_name()) {
            Ok(f) => f,
            Err(e) => {
                return self.fail(
                    env,
                    batch,
                    reply_tx,
                    record,
                    e,
                    retry.map(|a| (message, reply_to, a)),
                );
            }
        };
        if let Some(key) = &key {
            match self.idempotency.get(&target, key, env.now_ms) {
                Ok(None) => {}
                Ok(Some(stored)) => {
                    let answer = match function.handler_of(&message) {
                        Ok(info) if info.name == stored.handler => Ok(stored.reply),
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
                    return self.fail(
                        env,
                        batch,
                        reply_tx,
                        record,
                        e,
                        retry.map(|a| (message, reply_to, a)),
                    );
                }
            }
        }
        if let Some(delay) = enqueue {
            return self.enqueue(
                env,
                function.as_ref(),
                target,
                message,
                delay,
                key,
                reply_tx,
                record,
                batch,
            );
        }
        let mut ctx = Context::new(target.clone(), env.now_ms);
        // One span per invocation; cheap when no subscriber listens at debug.
        let span = tracing::debug_span!(
            "invoke",
            function = target.type_name(),
            id = target.id(),
            handler = tracing::field::Empty,
            shard = self.id,
            outcome = tracing::field::Empty,
        );
        let _entered = span.enter();
        let invocation = match self.states.get(&target) {
            Ok(state) => function.invoke(state, &message, &mut ctx),
            Err(e) => {
                span.record("outcome", "failed");
                return self.fail(
                    env,
                    batch,
                    reply_tx,
                    record,
                    e,
                    retry.map(|a| (message, reply_to, a)),
                );
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
                            env.now_ms + ttl,
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
                tracing::debug!(%target, handler = invocation.handler, %error, "handler returned Err");
                reply
            }
            Outcome::Failed(e) => {
                return self.fail(
                    env,
                    batch,
                    reply_tx,
                    record,
                    e,
                    retry.map(|a| (message, reply_to, a)),
                );
            }
        };
        if let Some(route) = reply_to {
            match env
                .registry
                .get(route.to.type_name())
                .and_then(|f| f.reply_message(&route.handler, &reply))
            {
                Ok(message) => {
                    let outgoing = Outgoing {
                        target: route.to,
                        message,
                        delay: None,
                        reply_to: None,
                        attempt: 0,
                    };
                    if let Some(sent) = self.deliver(outgoing, &mut batch.effects) {
                        record.sent.push(sent);
                    }
                }
                Err(e) => {
                    tracing::error!(%target, error = %e, "cannot route a reply; it is dropped")
                }
            }
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

    /// A client's `send`: the message is committed as a message from this
    /// shard to the target (or a timer), and the caller is answered once that
    /// is durable. The handler runs later.
    #[allow(clippy::too_many_arguments)]
    fn enqueue(
        &mut self,
        env: &RunEnv<'_>,
        function: &dyn crate::registry::ErasedFunction,
        target: crate::Address,
        message: Vec<u8>,
        delay: Duration,
        key: Option<String>,
        reply_tx: Option<ReplySender>,
        mut record: InvocationRecord,
        batch: &mut Batch,
    ) {
        let info = match function.handler_of(&message) {
            Ok(info) => info,
            Err(e) => return self.fail(env, batch, reply_tx, record, e, None),
        };
        let outgoing = Outgoing {
            target: target.clone(),
            message,
            delay: Some(delay),
            reply_to: None,
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

    /// A failed invocation commits nothing. A client gets the error. A
    /// message from a function has its sequence number consumed (durably)
    /// and is retried later as a timer, or after its last attempt becomes a
    /// dead letter: either way the messages behind it go on.
    fn fail(
        &mut self,
        env: &RunEnv<'_>,
        batch: &mut Batch,
        reply: Option<ReplySender>,
        mut record: InvocationRecord,
        error: Error,
        undelivered: Option<(Vec<u8>, Option<crate::envelope::ReplyRoute>, u32)>,
    ) {
        let target = record.target.clone();
        batch.stats.failed += 1;
        if let Some(tx) = reply {
            batch.effects.replies.push((tx, Err(error)));
            return;
        }
        let Some((message, reply_to, attempt)) = undelivered else {
            return;
        };
        let attempts = attempt + 1;
        let policy = self.config.retry;
        if attempts < policy.max_attempts {
            let delay = policy.backoff(attempts);
            tracing::warn!(%target, %error, attempts, ?delay, "a message from another function failed; retrying");
            let retry = Outgoing {
                target: target.clone(),
                message,
                delay: Some(delay),
                reply_to,
                attempt: attempts,
            };
            self.send(env.now_ms, retry, &mut batch.effects, &mut record);
        } else {
            tracing::error!(%target, %error, attempts, "a message from another function failed every attempt; it is now a dead letter");
            let letter = DeadLetterEntry {
                id: self.next_dead_letter,
                target,
                message,
                reply_to,
                error: error.to_string(),
                attempts,
                at_ms: env.now_ms,
            };
            self.next_dead_letter += 1;
            if self.durable {
                record.dead_letter = Some(Box::new(letter.clone()));
            }
            self.dead_letters.insert(letter.id, letter);
        }
        self.push_record(batch, Entry::Invocation(record));
    }

    fn push_record(&self, batch: &mut Batch, entry: Entry) {
        if !self.durable {
            return;
        }
        match encode(&ShardRecord {
            shard: self.id,
            entry,
        }) {
            Ok(bytes) => batch.records.push(bytes),
            Err(e) => tracing::error!(error = %e, "cannot encode a log record"),
        }
    }

    /// A message sent by a handler: now, or as a durable timer.
    fn send(
        &mut self,
        now_ms: u64,
        outgoing: Outgoing,
        effects: &mut Effects,
        record: &mut InvocationRecord,
    ) {
        match outgoing.delay {
            Some(delay) if !delay.is_zero() => {
                let id = self.next_timer;
                self.next_timer += 1;
                let due_ms =
                    now_ms.saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
                let entry = TimerEntry {
                    id,
                    due_ms,
                    outgoing: Outgoing {
                        delay: None,
                        ..outgoing
                    },
                    expiry: false,
                };
                effects.timers.push((due_ms, self.id, id));
                if self.durable {
                    record.timers.push(entry.clone());
                }
                self.timers.insert(id, entry);
            }
            _ => {
                if let Some(sent) = self.deliver(outgoing, effects) {
                    record.sent.push(sent);
                }
            }
        }
    }

    /// Arms the (single) expiry timer of an instance.
    fn arm_expiry(
        &mut self,
        target: crate::Address,
        due_ms: u64,
        effects: &mut Effects,
        record: &mut InvocationRecord,
    ) {
        let entry = self.expiry_timer(target, due_ms);
        effects.timers.push((due_ms, self.id, entry.id));
        if self.durable {
            record.timers.push(entry.clone());
        }
        self.expiry_armed.insert(entry.outgoing.target.clone());
        self.timers.insert(entry.id, entry);
    }

    fn expiry_timer(&mut self, target: crate::Address, due_ms: u64) -> TimerEntry {
        let id = self.next_timer;
        self.next_timer += 1;
        TimerEntry {
            id,
            due_ms,
            outgoing: Outgoing {
                target,
                message: Vec::new(),
                delay: None,
                reply_to: None,
                attempt: 0,
            },
            expiry: true,
        }
    }

    /// An expiry timer fired: removes the instance if its state has not
    /// changed for its time to live, or arms the timer again for the rest.
    /// Instances are never scanned: each has at most one timer.
    fn expire(&mut self, env: &RunEnv<'_>, timer: u64, target: crate::Address, batch: &mut Batch) {
        self.expiry_armed.remove(&target);
        let ttl = env
            .registry
            .get(target.type_name())
            .map(|f| f.expire_after_ms())
            .unwrap_or(0);
        let written = match self.states.get(&target) {
            Ok(Some(bytes)) => crate::function::state_written_ms(bytes),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(%target, error = %e, "cannot read a state to expire it; retrying later");
                Some(env.now_ms)
            }
        };
        let rearm = match written {
            Some(written) if ttl > 0 && written.saturating_add(ttl) > env.now_ms => {
                let entry = self.expiry_timer(target.clone(), written + ttl);
                batch.effects.timers.push((entry.due_ms, self.id, entry.id));
                self.expiry_armed.insert(target.clone());
                self.timers.insert(entry.id, entry.clone());
                Some(entry)
            }
            Some(_) => {
                tracing::debug!(%target, "instance expired");
                self.states.delete(target.clone());
                None
            }
            None => None,
        };
        self.push_record(
            batch,
            Entry::Expired {
                timer,
                target,
                rearm,
            },
        );
    }

    /// Numbers an egress record in this shard's sequence.
    fn emit(
        &mut self,
        log: String,
        record: Vec<u8>,
        now_ms: u64,
        effects: &mut Effects,
        invocation: &mut InvocationRecord,
    ) {
        let emitted = Emitted {
            shard: self.id,
            seq: self.next_egress,
            log,
            record,
            at_ms: now_ms,
        };
        self.next_egress += 1;
        if self.durable {
            self.pending_egress.insert(emitted.seq, emitted.clone());
            invocation.egress.push(emitted.clone());
        }
        effects.egress.push(emitted);
    }

    /// Sequences a message on its (this shard, destination shard) channel.
    /// Returns the outbox entry in durable mode.
    fn deliver(&mut self, outgoing: Outgoing, effects: &mut Effects) -> Option<Sent> {
        let dest = outgoing.target.shard(self.config.shards);
        let seq = self.next_seq.entry(dest).or_insert(0);
        *seq += 1;
        let sent = Sent {
            dest,
            seq: *seq,
            target: outgoing.target,
            message: outgoing.message,
            reply_to: outgoing.reply_to,
            attempt: outgoing.attempt,
        };
        if self.durable {
            self.outbox.insert((dest, sent.seq), sent.clone());
            effects.deliveries.push(envelope_of(sent.clone(), self.id));
            Some(sent)
        } else {
            effects.deliveries.push(envelope_of(sent, self.id));
            None
        }
    }

    /// Re-applies a committed record (recovery): no handler runs.
    pub(crate) fn replay(&mut self, entry: Entry, now_ms: u64) {
        match entry {
            Entry::Invocation(r) => {
                if let Input::Function { source, seq } = r.input {
                    let w = self.watermarks.entry(source).or_insert(0);
                    *w = (*w).max(seq);
                }
                if let Some(state) = r.state {
                    self.states.put(r.target.clone(), state);
                }
                for sent in r.sent {
                    self.replay_sent(sent);
                }
                for timer in r.timers {
                    self.next_timer = self.next_timer.max(timer.id + 1);
                    if timer.expiry {
                        self.expiry_armed.insert(timer.outgoing.target.clone());
                    }
                    self.timers.insert(timer.id, timer);
                }
                if let Some(reply) = r.reply {
                    self.idempotency.insert(r.target, reply, now_ms);
                }
                for emitted in r.egress {
                    self.next_egress = self.next_egress.max(emitted.seq + 1);
                    self.pending_egress.insert(emitted.seq, emitted);
                }
                if let Some(letter) = r.dead_letter.map(|l| *l) {
                    self.next_dead_letter = self.next_dead_letter.max(letter.id + 1);
                    self.dead_letters.insert(letter.id, letter);
                }
            }
            Entry::TimerFired { timer, sent } => {
                self.timers.remove(&timer);
                self.timers_removed.push(timer);
                self.replay_sent(sent);
            }
            Entry::Expired {
                timer,
                target,
                rearm,
            } => {
                self.timers.remove(&timer);
                self.timers_removed.push(timer);
                self.expiry_armed.remove(&target);
                match rearm {
                    Some(entry) => {
                        self.next_timer = self.next_timer.max(entry.id + 1);
                        self.expiry_armed.insert(target);
                        self.timers.insert(entry.id, entry);
                    }
                    None => self.states.delete(target),
                }
            }
            Entry::DeadLetterResolved { id, resent } => {
                self.dead_letters.remove(&id);
                self.dead_letters_removed.push(id);
                if let Some(sent) = resent {
                    self.replay_sent(sent);
                }
            }
        }
    }

    fn replay_sent(&mut self, sent: Sent) {
        let next = self.next_seq.entry(sent.dest).or_insert(0);
        *next = (*next).max(sent.seq);
        self.outbox.insert((sent.dest, sent.seq), sent);
    }

    /// Drops outbox entries the receivers have durably applied.
    pub(crate) fn prune_outbox(&mut self, acked: &dyn Fn(u16) -> u64, force: bool) {
        if !force && self.outbox.len() < OUTBOX_PRUNE_AT {
            return;
        }
        let removed: Vec<(u16, u64)> = self
            .outbox
            .keys()
            .filter(|(dest, seq)| *seq <= acked(*dest))
            .copied()
            .collect();
        for key in &removed {
            self.outbox.remove(key);
        }
        self.outbox_removed.extend(removed);
    }

    /// Whether to freeze a checkpoint at the end of this batch.
    pub(crate) fn wants_checkpoint(&mut self, now_ms: u64) -> bool {
        let last_ms = *self.checkpoint.last_ms.get_or_insert(now_ms);
        if !self.durable || self.checkpoint.in_flight {
            return false;
        }
        self.checkpoint.requested
            || self.states.dirty_bytes() >= self.config.checkpoint_dirty_bytes
            || (self.states.dirty_bytes() > 0
                && Duration::from_millis(now_ms.saturating_sub(last_ms))
                    >= self.config.checkpoint_interval)
    }

    /// Freezes the dirty sets and metadata into a checkpoint job; the shard
    /// goes on processing while it is written.
    pub(crate) fn freeze(
        &mut self,
        acked: &dyn Fn(u16) -> u64,
        egress_appended: u64,
        now_ms: u64,
    ) -> CheckpointJob {
        self.prune_outbox(acked, true);
        let appended: Vec<u64> = self
            .pending_egress
            .range(..=egress_appended)
            .map(|(s, _)| *s)
            .collect();
        for seq in appended {
            self.pending_egress.remove(&seq);
            self.egress_removed.push(seq);
        }
        self.checkpoint.in_flight = true;
        self.checkpoint.requested = false;
        self.checkpoint.last_ms = Some(now_ms);
        CheckpointJob {
            shard: self.id,
            epoch: self.epoch,
            lsn: 0,
            states: self.states.freeze(),
            idempotency: self.idempotency.freeze(),
            meta: ShardMeta {
                checkpoint_lsn: 0,
                next_timer: self.next_timer,
                next_seq: self.next_seq.iter().map(|(k, v)| (*k, *v)).collect(),
                watermarks: self.watermarks.iter().map(|(k, v)| (*k, *v)).collect(),
                next_egress: self.next_egress,
                next_dead_letter: self.next_dead_letter,
            },
            dead_letters: self.dead_letters.values().cloned().collect(),
            dead_letters_removed: std::mem::take(&mut self.dead_letters_removed),
            egress: self.pending_egress.values().cloned().collect(),
            egress_removed: std::mem::take(&mut self.egress_removed),
            timers: self.timers.values().cloned().collect(),
            timers_removed: std::mem::take(&mut self.timers_removed),
            outbox: self.outbox.values().cloned().collect(),
            outbox_removed: std::mem::take(&mut self.outbox_removed),
            idempotency_retention_ms: self.idempotency.retention_ms(),
        }
    }

    /// The checkpoint frozen last has been written (`Some(lsn)`) or failed.
    pub(crate) fn checkpoint_finished(&mut self, epoch: u64, lsn: Option<u64>) {
        if epoch != self.epoch || !self.checkpoint.in_flight {
            return;
        }
        self.checkpoint.in_flight = false;
        match lsn {
            Some(lsn) => {
                self.checkpoint.lsn = lsn;
                self.states.checkpointed();
                self.idempotency.checkpointed();
            }
            None => {
                self.states.unfreeze();
                self.idempotency.unfreeze();
                self.checkpoint.requested = true;
            }
        }
    }
}

/// The envelope that delivers an outbox entry.
pub(crate) fn envelope_of(sent: Sent, source: u16) -> Envelope {
    Envelope {
        target: sent.target,
        message: sent.message,
        origin: Origin::Function {
            source,
            seq: sent.seq,
            attempt: sent.attempt,
        },
        reply_to: sent.reply_to,
    }
}
