//! An operator deletes an instance (`DELETE /admin/state/{type}/{id}`,
//! `Runtime::delete_instance`): its state and every timer aimed at it go in
//! one log record, so a recovery never brings either back.

use super::{effects::Batch, state_machine::ShardCore};
use crate::{
    Address,
    protocol::{envelope::ReplySender, ids::TimerId, record::Entry},
};

impl ShardCore {
    /// Deletes `target`'s state and pending timers; replies `[1]` if there
    /// was anything, `[0]` if not. The reply goes once the batch committed.
    pub(super) fn delete_instance(
        &mut self,
        target: Address,
        reply: ReplySender,
        batch: &mut Batch,
    ) {
        let had_state = match self.states.get(&target) {
            Ok(state) => state.is_some(),
            Err(e) => {
                batch.effects.replies.push((reply, Err(e)));
                return;
            }
        };
        let timers: Vec<TimerId> = self
            .timers
            .entries()
            .filter(|t| t.outgoing.target == target)
            .map(|t| t.id)
            .collect();
        for timer in &timers {
            // An armed timer that fires later finds nothing and does nothing.
            self.timers.remove(*timer);
        }
        self.expiry_armed.remove(&target);
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
