//! Messages a handler sends: now, sequenced on their channel and kept in
//! the outbox until acknowledged, or later, as a durable timer.

use super::{effects::Effects, state_machine::ShardCore};
use crate::{
    protocol::{
        envelope::{Outgoing, Provenance},
        ids::{Seq, ShardId},
        outbox::envelope_of,
        record::{InvocationRecord, Sent, TimerEntry, TimerKey},
    },
    shard::{
        effects::{Batch, RunEnv},
        mailbox::message_weight,
    },
};

impl ShardCore {
    /// A message sent by a handler: now, or as a durable timer. A request
    /// with a timeout also arms the timer that answers it with
    /// `Err(RequestFailed::Timeout)`: a keyed timer of the caller under
    /// [`TimerKey::Reply`], which its reply cancels if it comes first (see
    /// `invocation.rs`).
    pub(super) fn send(
        &mut self,
        now_ms: u64,
        mut outgoing: Outgoing,
        effects: &mut Effects,
        record: &mut InvocationRecord,
    ) {
        if let Some(route) = &mut outgoing.reply_to
            && let (Some(timeout), Some(prefix)) = (route.timeout.take(), &route.prefix)
        {
            let mut message = prefix.clone();
            message.extend_from_slice(&crate::request::outcome_timeout());
            let id = self.timers.next_id();
            let entry = TimerEntry {
                id,
                due_ms: now_ms
                    .saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
                outgoing: Outgoing {
                    target: route.to.clone(),
                    message,
                    delay: None,
                    reply_to: None,
                    guard: None,
                    attempt: 0,
                    // The caller's own timer: it continues nothing.
                    provenance: Provenance {
                        caller: Some(route.to.clone()),
                        invocation: None,
                        trace: None,
                    },
                },
                key: Some(TimerKey::Reply(id)),
                every_ms: None,
            };
            route.guard = Some(id);
            self.arm_timer(entry, effects, record);
        }
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
            guard: outgoing.guard,
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

    /// Delivers `dest`'s outbox entries again (its watermark drops what it
    /// has): after it recovered (`from: None`), every entry it has not
    /// acknowledged; asked from a sequence (a gap, a full mailbox, the
    /// marker of an earlier chunk), the entries from there, at most one
    /// chunk of [`resend_chunk_bytes`](super::CoreConfig::resend_chunk_bytes)
    /// (at least one entry), then [`Mail::ResendMore`] if more are left.
    ///
    /// What `dest` has acknowledged is left out: it is applied there, and a
    /// receiver whose mailbox is full would spend its room on it. So is what
    /// it has queued (below `from`), and the rest past one chunk: a long
    /// overload re-sends each entry about once, not the backlog per round.
    ///
    /// [`Mail::ResendMore`]: crate::protocol::envelope::Mail::ResendMore
    pub(super) fn resend(
        &mut self,
        env: &RunEnv<'_>,
        dest: ShardId,
        from: Option<Seq>,
        batch: &mut Batch,
    ) {
        let first = (env.acked)(dest).next().max(from.unwrap_or_default());
        let chunk = from.map(|_| self.config.resend_chunk_bytes);
        let mut bytes = 0u64;
        for sent in self.outbox.to(dest, first) {
            if let Some(chunk) = chunk {
                let weight = message_weight(&sent.message, &sent.target);
                if bytes > 0 && bytes.saturating_add(weight) > chunk {
                    batch.effects.resend_more.push((self.id, dest, sent.seq));
                    break;
                }
                bytes = bytes.saturating_add(weight);
            }
            batch
                .effects
                .deliveries
                .push(envelope_of(sent.clone(), self.id));
        }
    }

    /// The chunk of a re-send from `source` is handled (it was queued
    /// before this marker): ask for the rest, from `next` or past what is
    /// applied, whichever is later.
    pub(super) fn ask_for_more(&mut self, source: ShardId, next: Seq, batch: &mut Batch) {
        let from = next.max(self.channels.watermark(source).next());
        batch.effects.resend_requests.push((source, self.id, from));
    }
}
