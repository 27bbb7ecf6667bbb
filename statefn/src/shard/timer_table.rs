//! A shard's durable timers: delayed messages and expiry checks, by id. A
//! timer's message lives here (and in the log), not in the timer service,
//! so a wake-up lost in a crash is armed again on recovery and the message
//! is sent once: its removal and its send share one record.

use super::{effects::RunEnv, state_machine::ShardCore, tracked::Tracked};
use crate::{
    protocol::{
        ids::TimerId,
        record::{Entry, TimerEntry},
    },
    shard::effects::Batch,
    timers::TimerArm,
};

/// Armed timers, with the next id to give.
#[derive(Debug)]
pub(crate) struct TimerTable {
    timers: Tracked<TimerId, TimerEntry>,
    next: TimerId,
}

impl TimerTable {
    pub(crate) fn new(durable: bool) -> Self {
        TimerTable {
            timers: Tracked::new(durable),
            next: TimerId(1),
        }
    }

    /// Timers restored from a checkpoint, ids going on from `next`.
    pub(crate) fn restore(&mut self, next: TimerId, timers: Vec<TimerEntry>) {
        self.next = next.max(TimerId(1));
        self.timers.restore(timers.into_iter().map(|t| (t.id, t)));
    }

    /// Takes the next id.
    pub(crate) fn next_id(&mut self) -> TimerId {
        let id = self.next;
        self.next = id.next();
        id
    }

    /// The next id to give (for a checkpoint).
    pub(crate) fn next(&self) -> TimerId {
        self.next
    }

    pub(crate) fn insert(&mut self, timer: TimerEntry) {
        self.timers.insert(timer.id, timer);
    }

    /// Replay: a timer armed by a committed record.
    pub(crate) fn replay_armed(&mut self, timer: TimerEntry) {
        self.next = self.next.max(timer.id.next());
        self.timers.insert(timer.id, timer);
    }

    pub(crate) fn remove(&mut self, id: TimerId) -> Option<TimerEntry> {
        self.timers.remove(id)
    }

    /// Replay: a timer fired.
    pub(crate) fn replay_fired(&mut self, id: TimerId) {
        self.timers.forget(id);
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = &TimerEntry> {
        self.timers.values()
    }

    /// What to arm in the timer service for each timer of `shard`.
    pub(crate) fn arms(&self, shard: crate::protocol::ids::ShardId) -> Vec<TimerArm> {
        self.timers
            .values()
            .map(|t| TimerArm {
                due_ms: t.due_ms,
                shard,
                timer: t.id,
            })
            .collect()
    }

    pub(crate) fn take_removed(&mut self) -> Vec<TimerId> {
        self.timers.take_removed()
    }

    /// The checkpoint that took the removals was written, or failed.
    pub(crate) fn checkpoint_finished(&mut self, written: bool) {
        self.timers.checkpoint_finished(written);
    }
}

impl ShardCore {
    /// Timer `timer` is due: it fires once (its removal and its send share
    /// one record), or runs its instance's expiry check.
    pub(super) fn timer_due(&mut self, env: &RunEnv<'_>, timer: TimerId, batch: &mut Batch) {
        let Some(entry) = self.timers.remove(timer) else {
            return;
        };
        if entry.expiry {
            self.expire(env, timer, entry.outgoing.target, batch);
        } else if let Some(sent) = self.deliver(entry.outgoing, &mut batch.effects) {
            self.push_record(batch, Entry::TimerFired { timer, sent });
        }
    }
}
