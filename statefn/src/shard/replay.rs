//! Recovery's half of the state machine: a committed record is applied to
//! the core without running any handler, because a record holds results
//! (state, sent messages, timers, the stored reply), not inputs. Replaying
//! the records an invocation wrote must leave the core as the invocation
//! did (the state machine's unit tests check it).

use super::state_machine::ShardCore;
use crate::protocol::record::{Entry, Input, InvocationRecord, Sent, TimerKey};

impl ShardCore {
    /// Re-applies a committed record (recovery): no handler runs.
    pub(crate) fn replay(&mut self, entry: Entry, now_ms: u64) {
        match entry {
            Entry::Invocation(r) => self.replay_invocation(r, now_ms),
            Entry::TimerFired { timer, sent } => {
                self.timers.replay_removed(timer, None);
                self.replay_sent(sent);
            }
            Entry::TimerFiredV1 { timer, sent } => {
                if let Some(slot) = self.timers.slot_of_id(timer) {
                    self.timers.replay_removed(slot, None);
                }
                self.replay_sent(sent);
            }
            Entry::Expired {
                timer,
                target,
                rearm,
            } => {
                self.timers
                    .replay_removed(timer, Some((&target, &TimerKey::Expiry)));
                match rearm {
                    Some(entry) => self.timers.replay_armed(entry),
                    None => self.states.delete(target),
                }
            }
            Entry::ExpiredV1 {
                timer,
                target,
                rearm,
            } => {
                if let Some(slot) = self.timers.slot_of_id(timer) {
                    self.timers
                        .replay_removed(slot, Some((&target, &TimerKey::Expiry)));
                }
                match rearm {
                    Some(entry) => self.timers.replay_armed(entry),
                    None => self.states.delete(target),
                }
            }
            Entry::Deleted { target, timers } => {
                for (key, slot) in &timers {
                    self.timers.replay_removed(*slot, Some((&target, key)));
                }
                self.states.delete(target);
            }
            Entry::DeadLetterResolved { id, resent } => {
                self.dead_letters.replay_resolved(id);
                if let Some(sent) = resent {
                    self.replay_sent(sent);
                }
            }
        }
    }

    /// In the order the invocation did it: its input (a timer that fired
    /// is removed), its state, its sends, the timers it removed, then the
    /// ones it armed.
    fn replay_invocation(&mut self, r: InvocationRecord, now_ms: u64) {
        match &r.input {
            Input::Function { source, seq } => self.channels.replay_applied(*source, *seq),
            Input::Timer { timer, key } => {
                self.timers.replay_removed(*timer, Some((&r.target, key)));
            }
            Input::Client => {}
        }
        if let Some(state) = r.state {
            self.states.put(&r.target, state);
        }
        for sent in r.sent {
            self.replay_sent(sent);
        }
        for (key, slot) in &r.cancelled {
            self.timers.replay_removed(*slot, Some((&r.target, key)));
        }
        for timer in r.timers {
            self.timers.replay_armed(timer);
        }
        if let Some(reply) = r.reply {
            self.idempotency.insert(r.target, reply, now_ms);
        }
        for emitted in r.egress {
            self.emitted.replay_emitted(emitted);
        }
        if let Some(letter) = r.dead_letter.map(|l| *l) {
            self.dead_letters.replay_kept(letter);
        }
    }

    fn replay_sent(&mut self, sent: Sent) {
        self.channels.replay_sent(sent.dest, sent.seq);
        self.outbox.insert(sent);
    }
}
