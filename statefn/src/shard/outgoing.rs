//! Messages a handler sends: now, sequenced on their channel and kept in
//! the outbox until acknowledged, or later, as a durable timer.

use super::{effects::Effects, state_machine::ShardCore};
use crate::{
    protocol::{
        envelope::Outgoing,
        ids::ShardId,
        outbox::envelope_of,
        record::{InvocationRecord, Sent, TimerEntry},
    },
    shard::effects::{Batch, RunEnv},
};

impl ShardCore {
    /// A message sent by a handler: now, or as a durable timer.
    pub(super) fn send(
        &mut self,
        now_ms: u64,
        outgoing: Outgoing,
        effects: &mut Effects,
        record: &mut InvocationRecord,
    ) {
        match outgoing.delay {
            Some(delay) if !delay.is_zero() => {
                let due_ms =
                    now_ms.saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
                let entry = TimerEntry {
                    id: self.timers.next_id(),
                    due_ms,
                    outgoing: Outgoing {
                        delay: None,
                        ..outgoing
                    },
                    key: None,
                    every_ms: None,
                };
                self.arm_timer(entry, effects, record);
            }
            _ => {
                if let Some(sent) = self.deliver(outgoing, effects) {
                    record.sent.push(sent);
                }
            }
        }
    }

    /// Sequences a message on its (this shard, destination shard) channel
    /// and hands it to the effects. Returns the outbox entry in durable mode.
    pub(super) fn deliver(&mut self, outgoing: Outgoing, effects: &mut Effects) -> Option<Sent> {
        let dest = outgoing.target.shard_id(self.config.shards);
        let sent = Sent {
            dest,
            seq: self.channels.sequence(dest),
            target: outgoing.target,
            message: outgoing.message,
            reply_to: outgoing.reply_to,
            attempt: outgoing.attempt,
            provenance: outgoing.provenance,
        };
        if self.durable {
            self.outbox.insert(sent.clone());
            effects.deliveries.push(envelope_of(sent.clone(), self.id));
            Some(sent)
        } else {
            effects.deliveries.push(envelope_of(sent, self.id));
            None
        }
    }

    /// `dest` recovered and may have lost what it had not committed: deliver
    /// its outbox entries again (its watermark drops what it has).
    ///
    /// What `dest` has acknowledged is left out: it is applied there, and a
    /// receiver whose mailbox is full would spend its room on it.
    pub(super) fn resend(&mut self, env: &RunEnv<'_>, dest: ShardId, batch: &mut Batch) {
        let acked = (env.acked)(dest);
        for sent in self.outbox.to(dest).filter(|sent| sent.seq > acked) {
            batch
                .effects
                .deliveries
                .push(envelope_of(sent.clone(), self.id));
        }
    }
}
