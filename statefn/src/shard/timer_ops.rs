//! Timers as the state machine runs them: a due timer fires (a message, a
//! keyed timer's handler, an expiry check), handlers set and cancel their
//! instance's keyed timers, a client cancels a delayed invocation, and the
//! window of timers in memory follows the clock
//! ([`timer_table`](super::timer_table)).
//!
//! A keyed timer runs its handler in the same step that removes it, as one
//! record: there is no message in between. So a cancel (or a replacement)
//! that runs before that step wins, even when the timer was already due and
//! its wake-up queued behind the cancel; one that runs after it finds the
//! timer gone.

use super::{
    effects::{Batch, Effects, RunEnv},
    state_machine::ShardCore,
    timer_table::REFILL,
};
use crate::{
    Address, Error,
    context::TimerOp,
    protocol::{
        envelope::{Envelope, Origin, Outgoing, Provenance, ReplySender},
        ids::TimerSlot,
        record::{Entry, Input, InvocationRecord, TimerEntry, TimerKey},
    },
    timers::TimerArm,
};

/// The keys an invocation touches, and the slot each holds as it goes
/// (foldhash, not SipHash: built for every invocation, usually empty).
pub(super) type KeySlots = foldhash::HashMap<TimerKey, Option<TimerSlot>>;

impl ShardCore {
    fn arm_of(&self, slot: TimerSlot) -> TimerArm {
        TimerArm {
            due_ms: slot.due_ms,
            shard: self.id,
            timer: slot.id,
        }
    }

    /// Arms a timer set by the invocation of `record`: stored with the
    /// record, and in the timer service if it is due soon.
    pub(super) fn arm_timer(
        &mut self,
        entry: TimerEntry,
        effects: &mut Effects,
        record: &mut InvocationRecord,
    ) {
        if self.durable {
            record.timers.push(entry.clone());
        }
        let slot = entry.slot();
        if self.timers.arm(entry) {
            effects.timers.push(self.arm_of(slot));
        }
        let (evicted, wake) = self.timers.shrink();
        for slot in evicted {
            effects.timers_cancelled.push(self.arm_of(slot));
        }
        if let Some(wake) = wake {
            effects
                .timers_cancelled
                .push(self.arm_of(refill_slot(wake)));
        }
    }

    /// Removes the timer `owner` holds in `slot` under `key` (cancelled or
    /// about to be replaced), as part of the invocation of `record`.
    pub(super) fn cancel_keyed(
        &mut self,
        owner: &Address,
        key: &TimerKey,
        slot: TimerSlot,
        effects: &mut Effects,
        record: &mut InvocationRecord,
    ) {
        self.timers.remove_keyed(owner, key, slot);
        // Armed by this same invocation, it never existed outside it.
        match record.timers.iter().position(|t| t.slot() == slot) {
            Some(i) => {
                record.timers.remove(i);
            }
            None if self.durable => record.cancelled.push((key.clone(), slot)),
            None => {}
        }
        let arm = self.arm_of(slot);
        match effects.timers.iter().position(|a| *a == arm) {
            Some(i) => {
                effects.timers.remove(i);
            }
            None => effects.timers_cancelled.push(arm),
        }
    }

    /// The slots of the keys `ops` touch (and `also`), read before the
    /// invocation changes anything: a store read that fails then fails
    /// the invocation cleanly.
    pub(super) fn key_slots(
        &self,
        owner: &Address,
        ops: &[TimerOp],
        also: Option<TimerKey>,
    ) -> Result<KeySlots, Error> {
        let mut slots = KeySlots::default();
        if ops.is_empty() && also.is_none() {
            // Most invocations touch no timer.
            return Ok(slots);
        }
        let keys = ops
            .iter()
            .map(|op| match op {
                TimerOp::Set { key, .. } | TimerOp::Cancel { key } => TimerKey::Named(key.clone()),
            })
            .chain(also);
        for key in keys {
            if let std::collections::hash_map::Entry::Vacant(vacant) = slots.entry(key) {
                let slot = self.timers.slot_of_key(owner, vacant.key())?;
                vacant.insert(slot);
            }
        }
        Ok(slots)
    }

    /// Applies a handler's timer changes to its instance `owner`, in order.
    pub(super) fn apply_timer_ops(
        &mut self,
        owner: &Address,
        ops: Vec<TimerOp>,
        slots: &mut KeySlots,
        effects: &mut Effects,
        record: &mut InvocationRecord,
    ) {
        for op in ops {
            let (key, set) = match op {
                TimerOp::Set {
                    key,
                    due_ms,
                    every_ms,
                    message,
                } => (key, Some((due_ms, every_ms, message))),
                TimerOp::Cancel { key } => (key, None),
            };
            let key = TimerKey::Named(key);
            if let Some(slot) = slots.get(&key).copied().flatten() {
                self.cancel_keyed(owner, &key, slot, effects, record);
            }
            let new = set.map(|(due_ms, every_ms, message)| {
                let entry = TimerEntry {
                    id: self.timers.next_id(),
                    due_ms,
                    // Set by the instance itself: it is the caller.
                    outgoing: outgoing(owner.clone(), message, 0, set_by(owner)),
                    key: Some(key.clone()),
                    every_ms,
                };
                let slot = entry.slot();
                self.arm_timer(entry, effects, record);
                slot
            });
            slots.insert(key, new);
        }
    }

    /// Timer `slot` is due: it fires once (its removal and its effects
    /// share one record), or it is the refill wake-up.
    pub(super) fn timer_due(&mut self, env: &RunEnv<'_>, slot: TimerSlot, batch: &mut Batch) {
        if slot.id == REFILL {
            if self.timers.is_wake(slot.due_ms) {
                self.refill_timers(env.now_ms, &mut batch.effects);
            }
            return;
        }
        let Some(entry) = self.timers.take_due(slot) else {
            // Cancelled or replaced after its wake-up was queued.
            return;
        };
        let TimerEntry {
            outgoing,
            key,
            every_ms,
            ..
        } = entry;
        match key {
            Some(TimerKey::Expiry) => self.expire(env, slot, outgoing.target, batch),
            Some(key) => {
                let attempt = outgoing.attempt;
                let envelope = Envelope {
                    target: outgoing.target,
                    message: outgoing.message,
                    origin: Origin::Timer {
                        timer: slot,
                        key,
                        every_ms,
                        attempt,
                    },
                    reply_to: outgoing.reply_to.map(Box::new),
                    guard: outgoing.guard,
                    provenance: outgoing.provenance,
                };
                self.invoke(env, envelope, batch);
            }
            None => {
                if let Some(sent) = self.deliver(outgoing, &mut batch.effects) {
                    self.push_record(batch, Entry::TimerFired { timer: slot, sent });
                }
            }
        }
    }

    /// A keyed timer's handler ran (`Ok` or `Err`): a periodic one is armed
    /// again for its next due time after now, unless the handler set or
    /// cancelled its key itself.
    pub(super) fn rearm_periodic(
        &mut self,
        env: &RunEnv<'_>,
        fired: &FiredTimer,
        slots: &KeySlots,
        effects: &mut Effects,
        record: &mut InvocationRecord,
    ) {
        let Some(every_ms) = fired.every_ms.filter(|&e| e > 0) else {
            return;
        };
        if slots.contains_key(&fired.key) {
            return;
        }
        // The first due time after now: runs missed while the runtime was
        // down are not made up.
        let late = env.now_ms.saturating_sub(fired.slot.due_ms);
        let periods = late / every_ms + 1;
        let due_ms = fired
            .slot
            .due_ms
            .saturating_add(periods.saturating_mul(every_ms));
        let entry = TimerEntry {
            id: self.timers.next_id(),
            due_ms,
            // A new run: a new invocation.
            outgoing: outgoing(
                record.target.clone(),
                fired.message.clone(),
                0,
                set_by(&record.target),
            ),
            key: Some(fired.key.clone()),
            every_ms: Some(every_ms),
        };
        self.arm_timer(entry, effects, record);
    }

    /// A keyed timer's handler failed (panicked, or its message did not
    /// decode). A one-time timer is retried under its key with backoff
    /// (`retryable`: unless no retry could succeed), then kept as a dead
    /// letter; a periodic one goes on with its next run. Either way its run
    /// is recorded, so it is not repeated.
    pub(super) fn timer_failed(
        &mut self,
        env: &RunEnv<'_>,
        batch: &mut Batch,
        mut record: InvocationRecord,
        error: Error,
        fired: FiredTimer,
        retryable: bool,
    ) {
        let target = record.target.clone();
        if fired.every_ms.is_some() {
            tracing::warn!(%target, %error, "a periodic timer's handler failed; it runs again at its next time");
            self.rearm_periodic(
                env,
                &fired,
                &KeySlots::default(),
                &mut batch.effects,
                &mut record,
            );
        } else {
            let attempts = fired.attempt + 1;
            let policy = self.config.retry;
            if retryable && attempts < policy.max_attempts {
                let delay = policy.backoff(attempts);
                tracing::warn!(%target, %error, attempts, ?delay, "a timer's handler failed; retrying");
                let entry = TimerEntry {
                    id: self.timers.next_id(),
                    due_ms: env
                        .now_ms
                        .saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
                    // A retry: the same invocation.
                    outgoing: outgoing(target, fired.message, attempts, fired.provenance),
                    key: Some(fired.key),
                    every_ms: None,
                };
                self.arm_timer(entry, &mut batch.effects, &mut record);
            } else {
                tracing::error!(%target, %error, attempts, "a timer's handler failed every attempt; it is now a dead letter");
                let gave_up = super::dead_letters::GaveUp {
                    error: &error,
                    attempts,
                    at_ms: env.now_ms,
                    provenance: fired.provenance,
                };
                self.keep_dead_letter(
                    env,
                    gave_up,
                    fired.message,
                    None,
                    &mut batch.effects,
                    &mut record,
                );
            }
        }
        self.push_record(batch, Entry::Invocation(record));
    }

    /// A client cancels its delayed invocation `key` of `target`: answered
    /// `Ok` once the removal is durable; [`Error::InvocationNotPending`] if
    /// it was enqueued (its key's stored reply says so) but is no longer
    /// pending; else [`Error::UnknownInvocation`].
    pub(super) fn cancel_invocation(
        &mut self,
        env: &RunEnv<'_>,
        target: Address,
        key: String,
        reply: ReplySender,
        batch: &mut Batch,
    ) {
        let timer_key = TimerKey::Invocation(key.clone());
        let slot = match self.timers.slot_of_key(&target, &timer_key) {
            Ok(Some(slot)) => slot,
            Ok(None) => {
                let error = match self.idempotency.get(&target, &key, env.now_ms) {
                    Ok(Some(_)) => Error::InvocationNotPending { id: key },
                    Ok(None) => Error::UnknownInvocation { id: key },
                    Err(e) => e,
                };
                batch.effects.replies.push((reply, Err(error)));
                return;
            }
            Err(e) => {
                batch.effects.replies.push((reply, Err(e)));
                return;
            }
        };
        let mut record = InvocationRecord {
            target: target.clone(),
            input: Input::Client,
            state: None,
            sent: Vec::new(),
            timers: Vec::new(),
            cancelled: Vec::new(),
            reply: None,
            egress: Vec::new(),
            dead_letter: None,
        };
        // Its client can see that it was cancelled (`Runtime::invocation`),
        // under the handler name its enqueue stored.
        let handler = match self.idempotency.get(&target, &key, env.now_ms) {
            Ok(Some(stored)) => stored.handler,
            _ => match self.timers.entry_at(slot) {
                Ok(Some(entry)) => env
                    .registry
                    .labels_of(&target, &entry.outgoing.message)
                    .1
                    .to_owned(),
                _ => String::new(),
            },
        };
        self.cancel_keyed(&target, &timer_key, slot, &mut batch.effects, &mut record);
        let outcome = crate::protocol::record::InvocationOutcome::Cancelled;
        self.keep_outcome(&target, &key, &handler, outcome, env.now_ms, &mut record);
        batch.effects.settled.push((target, key));
        batch.effects.replies.push((reply, Ok(Vec::new())));
        self.push_record(batch, Entry::Invocation(record));
    }

    /// Reads the timers due next if the window ran low (timers fired or
    /// were cancelled): after every mail.
    pub(super) fn refill_if_low(&mut self, now_ms: u64, effects: &mut Effects) {
        if self.timers.wants_refill() {
            self.refill_timers(now_ms, effects);
        }
    }

    /// Moves the window on (it ran low, or the retry wake-up after a failed
    /// read).
    fn refill_timers(&mut self, now_ms: u64, effects: &mut Effects) {
        let refilled = match self.timers.refill() {
            Ok(refilled) => refilled,
            Err(e) => {
                tracing::warn!(shard = %self.id, error = %e, "cannot read the timers due next; retrying in a second");
                let at = now_ms.saturating_add(1_000);
                if let Some(old) = self.timers.set_wake(at) {
                    effects.timers_cancelled.push(self.arm_of(refill_slot(old)));
                }
                effects.timers.push(self.arm_of(refill_slot(at)));
                return;
            }
        };
        for slot in refilled.armed {
            effects.timers.push(self.arm_of(slot));
        }
        if let Some(old) = refilled.old_wake {
            effects.timers_cancelled.push(self.arm_of(refill_slot(old)));
        }
        if let Some(wake) = refilled.wake {
            effects.timers.push(self.arm_of(refill_slot(wake)));
        }
    }

    /// What the timer service must hold for this shard (after a recovery).
    pub(crate) fn timer_arms(&self) -> Vec<TimerArm> {
        let (window, wake) = self.timers.armed();
        window
            .into_iter()
            .chain(wake.map(refill_slot))
            .map(|slot| self.arm_of(slot))
            .collect()
    }
}

/// A keyed timer whose handler is running.
#[derive(Debug)]
pub(super) struct FiredTimer {
    pub(super) slot: TimerSlot,
    pub(super) key: TimerKey,
    pub(super) every_ms: Option<u64>,
    pub(super) attempt: u32,
    pub(super) message: Vec<u8>,
    /// What a retry of its run carries: its caller and its invocation id.
    pub(super) provenance: Provenance,
}

/// The refill wake-up due at `at`.
fn refill_slot(at: u64) -> TimerSlot {
    TimerSlot {
        due_ms: at,
        id: REFILL,
    }
}

/// A timer's message to `target`.
fn outgoing(target: Address, message: Vec<u8>, attempt: u32, provenance: Provenance) -> Outgoing {
    Outgoing {
        target,
        message,
        delay: None,
        reply_to: None,
        guard: None,
        attempt,
        provenance,
    }
}

/// The provenance of a keyed timer `owner` set: itself as the caller, and
/// a new invocation when it runs.
fn set_by(owner: &Address) -> Provenance {
    Provenance {
        caller: Some(owner.clone()),
        invocation: None,
        trace: None,
    }
}
