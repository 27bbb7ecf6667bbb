//! What became of an enqueued invocation (`Runtime::invocation`, `GET
//! /v1/invocations/{id}`): its key's stored reply, which holds its outcome
//! once it ran (`InvocationOutcome`, written by the invocation's own
//! record), and whether it is still a pending delayed invocation.
//!
//! Answered through the batch's replies, so a client sees an outcome only
//! once the record that stored it is durable.

use super::{
    effects::{Batch, RunEnv},
    state_machine::ShardCore,
};
use crate::{
    Address, Error,
    protocol::{envelope::ReplySender, record::TimerKey},
};

impl ShardCore {
    /// Answers the postcard bytes of `(Option<StoredReply>, bool)`: the
    /// stored reply of `key` on `target` (within the retention), and
    /// whether a delayed invocation is pending under that key.
    pub(super) fn invocation_status(
        &mut self,
        env: &RunEnv<'_>,
        target: Address,
        key: String,
        reply: ReplySender,
        batch: &mut Batch,
    ) {
        let answer = self
            .idempotency
            .get(&target, &key, env.now_ms)
            .and_then(|stored| {
                let pending = self
                    .timers
                    .slot_of_key(&target, &TimerKey::Invocation(key))?
                    .is_some();
                postcard::to_stdvec(&(stored, pending)).map_err(|e| Error::Encode {
                    what: "an invocation's status".into(),
                    reason: e.to_string(),
                })
            });
        batch.effects.replies.push((reply, answer));
    }
}
