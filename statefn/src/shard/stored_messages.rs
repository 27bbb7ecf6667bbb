//! The messages a recovered shard holds (timers, outbox entries, dead
//! letters), checked against this build's functions before the shard
//! serves: the shard's half of opening a data directory (the other half,
//! making the result durable, is `commit/stored_messages.rs`).
//!
//! - [`upgrade_positional_messages`](ShardCore::upgrade_positional_messages):
//!   the one-time upgrade of a data directory of format 1, whose messages
//!   name their handler by position.
//! - [`set_aside_undecodable_timers`](ShardCore::set_aside_undecodable_timers):
//!   a timer whose message no longer decodes (its handler was removed, its
//!   arguments changed, its function is not registered) becomes a dead
//!   letter at open, with the reason, instead of failing when it is due,
//!   perhaps months later.
//!
//! - [`undecodable_keyed_timers`](ShardCore::undecodable_keyed_timers):
//!   cluster mode, a node taking a log group over: the one-time keyed
//!   timers whose message does not decode, which it fires at once so that
//!   they become dead letters through the group's log (see
//!   `runtime/groups.rs`).
//!
//! An outbox entry is not set aside here: it holds a sequence number on its
//! channel, so only its receiver may consume it (in order); one that does
//! not decode is a dead letter there on its first delivery.

use std::sync::Arc;

use super::state_machine::ShardCore;
use crate::{
    Address,
    protocol::{
        ids::{Seq, ShardId, TimerId},
        record::DeadLetterEntry,
    },
    registry::Registry,
    wire::MessageError,
};

/// A stored message that the format-1 upgrade cannot convert.
#[derive(Debug)]
pub(crate) struct Unconvertible {
    /// Which message, for the error: "timer 7 of shard 3 (for `Acct/x`)".
    pub(crate) what: String,
    pub(crate) error: Arc<MessageError>,
}

impl ShardCore {
    /// Converts every positional message this shard holds to a named
    /// message of this build's handler at that position (see
    /// [`named_from_positional`](crate::wire::named_from_positional)). A
    /// message already named is left as it is, so running it twice (a crash
    /// before the upgrade was recorded) changes nothing more. Returns how
    /// many messages changed.
    ///
    /// # Errors
    ///
    /// The first message that cannot be converted (its function is not
    /// registered, or no handler at its position takes its arguments); the
    /// core is then left half-converted and must not be used.
    pub(crate) fn upgrade_positional_messages(
        &mut self,
        registry: &Registry,
    ) -> Result<usize, Unconvertible> {
        let shard = self.id;
        let mut changed = 0;
        let convert = |what: &dyn Fn() -> String, target: &Address, message: &[u8]| {
            registry
                .upgrade_positional(target.type_name(), message)
                .map_err(|error| Unconvertible {
                    what: what(),
                    error: Arc::new(error),
                })
        };
        // A data directory of format 1 keeps its timers in the layout before
        // the due index: all of them are held in memory after recovery.
        let timers: Vec<_> = self
            .timers
            .held()
            .into_values()
            .filter(|t| !t.is_expiry())
            .collect();
        for mut timer in timers {
            let what = || {
                format!(
                    "timer {} of shard {shard} (for `{}`)",
                    timer.id, timer.outgoing.target
                )
            };
            if let Some(named) = convert(&what, &timer.outgoing.target, &timer.outgoing.message)? {
                timer.outgoing.message = named;
                self.timers.replace(timer);
                changed += 1;
            }
        }
        let outbox: Vec<_> = self.outbox.entries().cloned().collect();
        for mut sent in outbox {
            let what = || {
                format!(
                    "outbox entry {} to shard {} of shard {shard} (for `{}`)",
                    sent.seq, sent.dest, sent.target
                )
            };
            if let Some(named) = convert(&what, &sent.target, &sent.message)? {
                sent.message = named;
                self.outbox.insert(sent);
                changed += 1;
            }
        }
        let letters: Vec<_> = self.dead_letters.entries().cloned().collect();
        for mut letter in letters {
            let what = || {
                format!(
                    "dead letter {shard}-{} (for `{}`)",
                    letter.id, letter.target
                )
            };
            if let Some(named) = convert(&what, &letter.target, &letter.message)? {
                letter.message = named;
                self.dead_letters.replace(letter);
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// The one-time keyed timers held in memory (a handler's `ctx.timer`,
    /// a request's timeout, a delayed client call) whose message does not
    /// decode with this build's functions, with the reason.
    ///
    /// Such a timer runs a handler of its own instance: fired now, it
    /// becomes a dead letter in the same record that removes it (its
    /// message cannot run in this build, so nothing is applied early), and
    /// that record is in the log, which every node reads. Timers without a
    /// key deliver a message to an instance that may be served elsewhere
    /// by another build, and periodic ones run again: both are left to
    /// their due time.
    #[cfg(feature = "cluster")]
    pub(crate) fn undecodable_keyed_timers(
        &self,
        registry: &Registry,
    ) -> Vec<(crate::protocol::ids::TimerSlot, MessageError)> {
        self.timers
            .held()
            .into_iter()
            .filter(|(_, t)| !t.is_expiry() && t.key.is_some() && t.every_ms.is_none())
            .filter_map(|(slot, t)| {
                let error = registry
                    .validate(t.outgoing.target.type_name(), &t.outgoing.message)
                    .err()?;
                Some((slot, error))
            })
            .collect()
    }

    /// Moves every timer held in memory whose message does not decode with
    /// this build's functions to the dead letters, with the reason (which
    /// names the function and the handler, and what to do). Expiry timers
    /// carry no message and are skipped. Returns the timers moved.
    ///
    /// Timers only in the store (due later than the window) are not read
    /// here: opening does not scan millions of timers. One of them that
    /// does not decode becomes a dead letter when it is due (its delivery
    /// fails to decode, which no retry changes).
    pub(crate) fn set_aside_undecodable_timers(
        &mut self,
        registry: &Registry,
        now_ms: u64,
    ) -> Vec<TimerId> {
        let undecodable: Vec<_> = self
            .timers
            .held()
            .into_values()
            .filter(|t| !t.is_expiry())
            .filter_map(|t| {
                let target = &t.outgoing.target;
                let error = registry
                    .validate(target.type_name(), &t.outgoing.message)
                    .err()?;
                Some((t, error))
            })
            .collect();
        let mut moved = Vec::with_capacity(undecodable.len());
        for (timer, error) in undecodable {
            self.timers.remove(&timer);
            let (id, due_ms) = (timer.id, timer.due_ms);
            let reason = format!(
                "a timer due at {due_ms} (unix ms) was set aside when the runtime opened, \
                 because this build cannot decode its message: {error}; once a build can, \
                 replay this dead letter (it is delivered at once)"
            );
            tracing::warn!(shard = %self.id, target = %timer.outgoing.target, %error, "a stored timer no longer decodes; it is a dead letter now");
            self.dead_letters.keep(DeadLetterEntry {
                id: self.dead_letters.next(),
                target: timer.outgoing.target,
                message: timer.outgoing.message,
                reply_to: timer.outgoing.reply_to,
                error: reason,
                attempts: timer.outgoing.attempt,
                at_ms: now_ms,
                provenance: timer.outgoing.provenance,
            });
            moved.push(id);
        }
        moved
    }

    /// The last sequence this shard applied from each sender (its channel
    /// watermarks).
    pub(crate) fn applied(&self) -> Vec<(ShardId, Seq)> {
        self.channels.watermarks()
    }

    /// The outbox entries not yet applied by their receivers (`applied(dest)`:
    /// the last sequence `dest` applied from this shard) whose message does
    /// not decode: each will be a dead letter at its receiver.
    pub(crate) fn undecodable_outbox(
        &self,
        registry: &Registry,
        applied: impl Fn(ShardId) -> Seq,
    ) -> Vec<(Address, MessageError)> {
        self.outbox
            .entries()
            .filter(|sent| sent.seq > applied(sent.dest))
            .filter_map(|sent| {
                let error = registry
                    .validate(sent.target.type_name(), &sent.message)
                    .err()?;
                Some((sent.target.clone(), error))
            })
            .collect()
    }
}
