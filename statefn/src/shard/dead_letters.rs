//! Failed messages from functions: retried with backoff ([`RetryPolicy`]),
//! then kept as dead letters until an operator replays or drops them.
//!
//! A failed message has consumed its sequence number (durably), so the
//! messages behind it on its channel go on; a retry is a new message (a
//! durable timer), and a replayed dead letter arrives after the later ones.

use std::time::Duration;

use super::{
    effects::{Batch, Effects},
    state_machine::ShardCore,
    tracked::Tracked,
};
use crate::{
    Error,
    protocol::{
        envelope::{Outgoing, Provenance, ReplyRoute, ReplySender},
        ids::DeadLetterSeq,
        record::{DeadLetterEntry, Entry, InvocationOutcome, InvocationRecord},
    },
    shard::effects::RunEnv,
};

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
    pub(crate) fn backoff(&self, failed_attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(failed_attempts.saturating_sub(1).min(20));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// A message from a function that failed: its bytes, its reply route, the
/// attempts it had, and whether another attempt could go otherwise.
#[derive(Debug)]
pub(super) struct Undelivered {
    pub(super) message: Vec<u8>,
    pub(super) reply_to: Option<ReplyRoute>,
    pub(super) attempt: u32,
    /// `false` when the message cannot run in this build at all (it does
    /// not decode, or its function is not registered): it is a dead letter
    /// at once, since every retry would fail alike.
    pub(super) retryable: bool,
    /// Who sent it and the invocation it continues (kept by a retry).
    pub(super) provenance: Provenance,
}

/// Why a message became a dead letter: its last error, after how many
/// attempts, and when; and its provenance (kept for a replay).
#[derive(Debug)]
pub(super) struct GaveUp<'a> {
    pub(super) error: &'a Error,
    pub(super) attempts: u32,
    pub(super) at_ms: u64,
    pub(super) provenance: Provenance,
}

/// A change to a shard's dead letters, for the listing to apply once the
/// batch that made it is durable (operators see only durable letters).
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per dead letter kept or resolved, which is rare; moved once into the listing"
)]
pub(crate) enum DeadLetterChange {
    Kept(DeadLetterEntry),
    Resolved(DeadLetterSeq),
}

/// Dead letters by number, with the next number to give.
#[derive(Debug)]
pub(crate) struct DeadLetterTable {
    letters: Tracked<DeadLetterSeq, DeadLetterEntry>,
    next: DeadLetterSeq,
}

impl DeadLetterTable {
    pub(crate) fn new(durable: bool) -> Self {
        DeadLetterTable {
            letters: Tracked::new(durable),
            next: DeadLetterSeq(1),
        }
    }

    /// Letters restored from a checkpoint, numbering on from `next`.
    pub(crate) fn restore(&mut self, next: DeadLetterSeq, letters: Vec<DeadLetterEntry>) {
        self.next = next.max(DeadLetterSeq(1));
        self.letters.restore(letters.into_iter().map(|l| (l.id, l)));
    }

    /// Replay: a letter kept by a committed record.
    pub(crate) fn replay_kept(&mut self, letter: DeadLetterEntry) {
        self.next = self.next.max(letter.id.next());
        self.letters.insert(letter.id, letter);
    }

    /// Replay: a letter replayed or dropped.
    pub(crate) fn replay_resolved(&mut self, id: DeadLetterSeq) {
        self.letters.forget(id);
    }

    /// The letters, oldest first.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &DeadLetterEntry> {
        self.letters.values()
    }

    /// The next number (for a checkpoint).
    pub(crate) fn next(&self) -> DeadLetterSeq {
        self.next
    }

    /// Keeps a letter under the next number, which it returns.
    pub(crate) fn keep(&mut self, mut letter: DeadLetterEntry) -> DeadLetterSeq {
        letter.id = self.next;
        self.next = letter.id.next();
        self.letters.insert(letter.id, letter.clone());
        letter.id
    }

    /// Replaces a kept letter (same number).
    pub(crate) fn replace(&mut self, letter: DeadLetterEntry) {
        self.letters.insert(letter.id, letter);
    }

    pub(crate) fn take_removed(&mut self) -> Vec<DeadLetterSeq> {
        self.letters.take_removed()
    }

    /// The checkpoint that took the removals was written, or failed.
    pub(crate) fn checkpoint_finished(&mut self, written: bool) {
        self.letters.checkpoint_finished(written);
    }
}

impl ShardCore {
    /// A failed invocation commits nothing. A client gets the error. A
    /// message from a function has its sequence number consumed (durably)
    /// and is retried later as a timer, or after its last attempt becomes a
    /// dead letter: either way the messages behind it go on.
    pub(super) fn fail(
        &mut self,
        env: &RunEnv<'_>,
        batch: &mut Batch,
        reply: Option<ReplySender>,
        mut record: InvocationRecord,
        error: Error,
        undelivered: Option<Undelivered>,
    ) {
        let target = record.target.clone();
        if let Some(tx) = reply {
            batch.effects.replies.push((tx, Err(error)));
            return;
        }
        let Some(Undelivered {
            message,
            reply_to,
            attempt,
            retryable,
            provenance,
        }) = undelivered
        else {
            return;
        };
        let attempts = attempt + 1;
        let policy = self.config.retry;
        if retryable && attempts < policy.max_attempts {
            let delay = policy.backoff(attempts);
            tracing::warn!(%target, %error, attempts, ?delay, "a message from another function failed; retrying");
            let retry = Outgoing {
                target: target.clone(),
                message,
                delay: Some(delay),
                reply_to,
                guard: None,
                attempt: attempts,
                provenance,
            };
            self.send(env.now_ms, retry, &mut batch.effects, &mut record);
        } else {
            tracing::error!(%target, %error, attempts, "a message from another function failed every attempt; it is now a dead letter");
            // A request's caller hears of it, once: the letter keeps no
            // route, so replaying it sends no second answer.
            let reply_to = match reply_to {
                Some(route) if route.prefix.is_some() => {
                    let outcome = crate::request::outcome_callee_failed(&error.to_string());
                    self.route_reply(env, route, &outcome, None, batch, &mut record);
                    None
                }
                other => other,
            };
            let gave_up = GaveUp {
                error: &error,
                attempts,
                at_ms: env.now_ms,
                provenance,
            };
            self.keep_dead_letter(
                env,
                gave_up,
                message,
                reply_to,
                &mut batch.effects,
                &mut record,
            );
        }
        self.push_record(batch, Entry::Invocation(record));
    }

    /// Keeps the message of the invocation of `record` as a dead letter.
    /// An enqueued invocation's client learns that it failed
    /// (`Runtime::invocation`).
    pub(super) fn keep_dead_letter(
        &mut self,
        env: &RunEnv<'_>,
        GaveUp {
            error,
            attempts,
            at_ms,
            provenance,
        }: GaveUp<'_>,
        message: Vec<u8>,
        reply_to: Option<ReplyRoute>,
        effects: &mut Effects,
        record: &mut InvocationRecord,
    ) {
        if let Some(key) = super::invocation::enqueued_key(&provenance, &record.target) {
            let target = record.target.clone();
            let (_, handler) = env.registry.labels_of(&target, &message);
            let outcome = InvocationOutcome::Failed(error.to_string());
            self.keep_outcome(&target, key, handler, outcome, at_ms, record);
            effects.settled.push((target, key.to_owned()));
        }
        let letter = DeadLetterEntry {
            id: self.dead_letters.next,
            target: record.target.clone(),
            message,
            reply_to,
            error: error.to_string(),
            attempts,
            at_ms,
            provenance,
        };
        if self.durable {
            record.dead_letter = Some(Box::new(letter.clone()));
        }
        effects
            .dead_letters
            .push((self.id, DeadLetterChange::Kept(letter.clone())));
        self.dead_letters.keep(letter);
    }

    /// Delivers dead letter `id` again (`replay`: as a new message, with a
    /// fresh set of attempts) or drops it, durably either way.
    pub(super) fn resolve_dead_letter(
        &mut self,
        id: DeadLetterSeq,
        replay: bool,
        reply: ReplySender,
        batch: &mut Batch,
    ) {
        let Some(letter) = self.dead_letters.letters.remove(id) else {
            let error = Error::UnknownDeadLetter {
                id: format!("{}-{id}", self.id),
            };
            batch.effects.replies.push((reply, Err(error)));
            return;
        };
        let resent = replay.then(|| {
            let outgoing = Outgoing {
                target: letter.target,
                message: letter.message,
                delay: None,
                reply_to: letter.reply_to,
                guard: None,
                attempt: 0,
                provenance: letter.provenance,
            };
            self.deliver(outgoing, &mut batch.effects)
        });
        batch.effects.replies.push((reply, Ok(Vec::new())));
        batch
            .effects
            .dead_letters
            .push((self.id, DeadLetterChange::Resolved(id)));
        self.push_record(
            batch,
            Entry::DeadLetterResolved {
                id,
                resent: resent.flatten(),
            },
        );
    }
}
