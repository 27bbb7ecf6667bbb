//! An operator deletes an instance (`DELETE /admin/state/{type}/{id}`,
//! `Runtime::delete_instance`): its state and its timers (the keyed ones:
//! `ctx.timer` timers, delayed invocations enqueued for it, its expiry
//! check) go in one log record, so a recovery never brings either back.
//!
//! A message on its way to the instance is not its own: a `send_after`
//! from another instance is a timer of its sender (on the sender's shard),
//! and arrives, to start from `Default`.
//!
//! The timeouts of requests the instance sent (`TimerKey::Reply`) are its
//! keyed timers, so they go too: the timeout never fires, and the reply
//! finds no pending request and is dropped with a trace (`invocation.rs`),
//! as one that came after its timeout. A reply to a request without a
//! timeout carries no guard: it arrives as any message.

use super::{effects::Batch, state_machine::ShardCore};
use crate::{
    Address,
    protocol::{envelope::ReplySender, record::Entry},
    timers::TimerArm,
};

impl ShardCore {
    /// Deletes `target`'s state and timers; replies `[1]` if there was
    /// anything, `[0]` if not. The reply goes once the batch committed.
    pub(super) fn delete_instance(
        &mut self,
        target: Address,
        reply: ReplySender,
        batch: &mut Batch,
    ) {
        // Read before anything changes: a failed read deletes nothing.
        let read = self
            .states
            .get(&target)
            .map(|state| state.is_some())
            .and_then(|had_state| Ok((had_state, self.timers.keys_of(&target)?)));
        let (had_state, timers) = match read {
            Ok(read) => read,
            Err(e) => {
                batch.effects.replies.push((reply, Err(e)));
                return;
            }
        };
        for (key, slot) in &timers {
            // An armed wake-up that comes later finds nothing and does nothing.
            self.timers.remove_keyed(&target, key, *slot);
            batch.effects.timers_cancelled.push(TimerArm {
                due_ms: slot.due_ms,
                shard: self.id,
                timer: slot.id,
            });
        }
        let existed = had_state || !timers.is_empty();
        if existed {
            self.states.delete(target.clone());
            self.push_record(batch, Entry::Deleted { target, timers });
        }
        batch
            .effects
            .replies
            .push((reply, Ok(vec![u8::from(existed)])));
    }
}
