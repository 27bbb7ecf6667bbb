//! Expiry of idle instances (`#[stateful_function(expire_after = "30d")]`).
//!
//! Instances are never scanned: each has at most one expiry timer (its
//! timer under [`TimerKey::Expiry`]), armed when its state is written and
//! it has none. When it fires, the instance is removed if its state has not
//! changed for its time to live, or the timer is armed again for the rest.
//! A timer that fires for a type that no longer has a time to live (or is
//! not registered) is dropped and the state kept. Like every timer it is
//! stored by due time: instances that expire next month cost no memory now.

use super::{effects::Effects, state_machine::ShardCore};
use crate::{
    Address,
    protocol::{
        envelope::{Outgoing, Provenance},
        ids::TimerSlot,
        record::{Entry, InvocationRecord, TimerEntry, TimerKey},
    },
    shard::effects::{Batch, RunEnv},
};

impl ShardCore {
    /// Arms the (single) expiry timer of an instance: its timer under
    /// [`TimerKey::Expiry`].
    pub(super) fn arm_expiry(
        &mut self,
        target: Address,
        due_ms: u64,
        effects: &mut Effects,
        record: &mut InvocationRecord,
    ) {
        let entry = self.expiry_timer(target, due_ms);
        self.arm_timer(entry, effects, record);
    }

    fn expiry_timer(&mut self, target: Address, due_ms: u64) -> TimerEntry {
        TimerEntry {
            id: self.timers.next_id(),
            due_ms,
            outgoing: Outgoing {
                target,
                message: Vec::new(),
                delay: None,
                reply_to: None,
                guard: None,
                attempt: 0,
                provenance: Provenance::default(),
            },
            key: Some(TimerKey::Expiry),
            every_ms: None,
        }
    }

    /// An expiry timer fired (it is out of the table already): removes the
    /// instance if its state has not changed for its time to live, or arms
    /// the timer again for the rest.
    pub(super) fn expire(
        &mut self,
        env: &RunEnv<'_>,
        timer: TimerSlot,
        target: Address,
        batch: &mut Batch,
    ) {
        let ttl = env
            .registry
            .get(target.type_name())
            .map(|f| f.expire_after_ms())
            .unwrap_or(0);
        if ttl == 0 {
            // Armed by a build whose type had `expire_after`, fired in one
            // without it, or without the type: nothing says the instance
            // is idle, so it stays. The timer is gone from memory (the next
            // checkpoint deletes it); no record: after a crash before that,
            // replay arms it again and it is dropped again.
            tracing::info!(%target, "dropping an expiry timer of a type without `expire_after`");
            return;
        }
        let written = match self.states.get(&target) {
            Ok(Some(bytes)) => crate::function::state_written_ms(bytes),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(%target, error = %e, "cannot read a state to expire it; retrying later");
                Some(env.now_ms)
            }
        };
        let rearm = match written {
            Some(written) if written.saturating_add(ttl) > env.now_ms => {
                let entry = self.expiry_timer(target.clone(), written.saturating_add(ttl));
                let slot = entry.slot();
                if self.timers.arm(entry.clone()) {
                    batch.effects.timers.push(crate::timers::TimerArm {
                        due_ms: slot.due_ms,
                        shard: self.id,
                        timer: slot.id,
                    });
                }
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
}
