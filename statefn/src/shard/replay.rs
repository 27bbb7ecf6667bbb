//! Recovery's half of the state machine: a committed record is applied to
//! the core without running any handler, because a record holds results
//! (state, sent messages, timers, the stored reply), not inputs. Replaying
//! the records an invocation wrote must leave the core as the invocation
//! did (the state machine's unit tests check it).

use super::state_machine::ShardCore;
use crate::protocol::record::{Entry, Input, Sent};

impl ShardCore {
    /// Re-applies a committed record (recovery): no handler runs.
    pub(crate) fn replay(&mut self, entry: Entry, now_ms: u64) {
        match entry {
            Entry::Invocation(r) => {
                if let Input::Function { source, seq } = r.input {
                    self.channels.replay_applied(source, seq);
                }
                if let Some(state) = r.state {
                    self.states.put(r.target.clone(), state);
                }
                for sent in r.sent {
                    self.replay_sent(sent);
                }
                for timer in r.timers {
                    if timer.expiry {
                        self.expiry_armed.insert(timer.outgoing.target.clone());
                    }
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
                // The reply came before its timeout, which it disarmed.
                if let Some(timer) = r.disarmed {
                    self.timers.replay_fired(timer);
                }
            }
            Entry::TimerFired { timer, sent } => {
                self.timers.replay_fired(timer);
                self.replay_sent(sent);
            }
            Entry::Expired {
                timer,
                target,
                rearm,
            } => {
                self.timers.replay_fired(timer);
                self.expiry_armed.remove(&target);
                match rearm {
                    Some(entry) => {
                        self.expiry_armed.insert(target);
                        self.timers.replay_armed(entry);
                    }
                    None => self.states.delete(target),
                }
            }
            Entry::DeadLetterResolved { id, resent } => {
                self.dead_letters.replay_resolved(id);
                if let Some(sent) = resent {
                    self.replay_sent(sent);
                }
            }
        }
    }

    fn replay_sent(&mut self, sent: Sent) {
        self.channels.replay_sent(sent.dest, sent.seq);
        self.outbox.insert(sent);
    }
}
