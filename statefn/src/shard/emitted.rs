//! Egress sequencing: a record a handler emits is numbered in its shard's
//! egress sequence and kept (in the log, then in checkpoints) until the
//! appender has stored it, so that after a restart it is submitted again
//! and the appender, which drops what it has seen, stores it once.

use super::{effects::Effects, state_machine::ShardCore, tracked::Tracked};
use crate::protocol::{
    ids::EgressSeq,
    record::{Emitted, InvocationRecord},
};

/// Emitted records not yet known appended, with the next sequence.
#[derive(Debug)]
pub(crate) struct EmittedTable {
    pending: Tracked<EgressSeq, Emitted>,
    next: EgressSeq,
}

impl EmittedTable {
    pub(crate) fn new(durable: bool) -> Self {
        EmittedTable {
            pending: Tracked::new(durable),
            next: EgressSeq(1),
        }
    }

    /// Pending records restored from a checkpoint, numbering on from `next`.
    pub(crate) fn restore(&mut self, next: EgressSeq, pending: Vec<Emitted>) {
        self.next = next.max(EgressSeq(1));
        self.pending
            .restore(pending.into_iter().map(|e| (e.seq, e)));
    }

    /// Replay: a record emitted by a committed invocation.
    pub(crate) fn replay_emitted(&mut self, emitted: Emitted) {
        self.next = self.next.max(emitted.seq.next());
        self.pending.insert(emitted.seq, emitted);
    }

    /// Forgets the records the appender has stored (up to `appended`).
    pub(crate) fn appended(&mut self, appended: EgressSeq) {
        let done: Vec<EgressSeq> = self
            .pending
            .range(..=appended)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in done {
            self.pending.remove(seq);
        }
    }

    /// The next sequence (for a checkpoint).
    pub(crate) fn next(&self) -> EgressSeq {
        self.next
    }

    /// Records not yet known appended.
    pub(crate) fn pending(&self) -> impl Iterator<Item = &Emitted> {
        self.pending.values()
    }

    pub(crate) fn take_removed(&mut self) -> Vec<EgressSeq> {
        self.pending.take_removed()
    }

    /// The checkpoint that took the removals was written, or failed.
    pub(crate) fn checkpoint_finished(&mut self, written: bool) {
        self.pending.checkpoint_finished(written);
    }
}

impl ShardCore {
    /// Numbers an egress record in this shard's sequence.
    pub(super) fn emit(
        &mut self,
        log: String,
        record: Vec<u8>,
        now_ms: u64,
        effects: &mut Effects,
        invocation: &mut InvocationRecord,
    ) {
        let emitted = Emitted {
            shard: self.id,
            seq: self.emitted.next,
            log,
            record,
            at_ms: now_ms,
        };
        self.emitted.next = emitted.seq.next();
        if self.durable {
            self.emitted.pending.insert(emitted.seq, emitted.clone());
            invocation.egress.push(emitted.clone());
        }
        effects.egress.push(emitted);
    }
}
