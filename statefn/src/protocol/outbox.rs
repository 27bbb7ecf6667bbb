//! The outbox: messages a shard sent that their receivers have not yet
//! durably applied.
//!
//! A message is in its sender's commit (log record, then checkpoint) until
//! the receiver's ack says it is applied and durable there ([`acks`]); then
//! the sender prunes it. After either side recovers, the sender re-sends
//! what is left on the channel (`runtime/resend.rs`), and the
//! receiver's watermark drops what it had already applied.
//!
//! [`acks`]: super::acks

use super::{
    envelope::{Envelope, Origin},
    ids::{Seq, ShardId},
    record::Sent,
};
use crate::shard::tracked::Tracked;

/// Prune acknowledged entries once the outbox holds this many (a checkpoint
/// always prunes).
const PRUNE_AT: usize = 4096;

/// Sent but not known to be durably applied, by (destination, sequence).
#[derive(Debug)]
pub(crate) struct Outbox {
    entries: Tracked<(ShardId, Seq), Sent>,
}

impl Outbox {
    pub(crate) fn new(durable: bool) -> Self {
        Outbox {
            entries: Tracked::new(durable),
        }
    }

    /// Entries restored from a checkpoint.
    pub(crate) fn restore(&mut self, sent: Vec<Sent>) {
        self.entries
            .restore(sent.into_iter().map(|s| ((s.dest, s.seq), s)));
    }

    pub(crate) fn insert(&mut self, sent: Sent) {
        self.entries.insert((sent.dest, sent.seq), sent);
    }

    /// Drops the entries the receivers have durably applied (`acked(dest)`
    /// is the highest sequence `dest` applied from this shard); unless
    /// `force`, only once the outbox is large.
    pub(crate) fn prune(&mut self, acked: &dyn Fn(ShardId) -> Seq, force: bool) {
        if !force && self.entries.len() < PRUNE_AT {
            return;
        }
        let applied: Vec<(ShardId, Seq)> = self
            .entries
            .keys()
            .filter(|(dest, seq)| *seq <= acked(*dest))
            .copied()
            .collect();
        for key in applied {
            self.entries.remove(key);
        }
    }

    /// The entries for `dest` from sequence `first` on, in sequence order:
    /// what a re-send delivers.
    pub(crate) fn to(&self, dest: ShardId, first: Seq) -> impl Iterator<Item = &Sent> {
        self.entries
            .range((dest, first)..=(dest, Seq(u64::MAX)))
            .map(|(_, sent)| sent)
    }

    /// Every entry.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &Sent> {
        self.entries.values()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Removals since the last checkpoint.
    pub(crate) fn take_removed(&mut self) -> Vec<(ShardId, Seq)> {
        self.entries.take_removed()
    }

    /// The checkpoint that took the removals was written, or failed.
    pub(crate) fn checkpoint_finished(&mut self, written: bool) {
        self.entries.checkpoint_finished(written);
    }
}

/// The envelope that delivers an outbox entry from `source`.
pub(crate) fn envelope_of(sent: Sent, source: ShardId) -> Envelope {
    Envelope {
        target: sent.target,
        message: sent.message,
        origin: Origin::Function {
            source,
            seq: sent.seq,
            attempt: sent.attempt,
        },
        reply_to: sent.reply_to.map(Box::new),
        guard: sent.guard,
        provenance: sent.provenance,
    }
}
