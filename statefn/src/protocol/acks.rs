//! Acks: which messages each receiver has durably applied.
//!
//! A receiver's commit applies message `seq` from `source` and moves its
//! watermark; only once that commit is durable does the commit path publish
//! the ack here ([`AckMatrix::publish`]), and only then may the sender prune
//! the message from its [outbox](super::outbox). Acks live in memory: after
//! a restart nothing is acked, so senders re-send their outboxes and the
//! receivers' watermarks drop the duplicates.

use std::sync::atomic::{AtomicU64, Ordering};

use super::ids::{Seq, ShardId};

/// `acked[source * shards + dest]`: the highest sequence from `source` that
/// `dest` has durably applied.
#[derive(Debug)]
pub(crate) struct AckMatrix {
    shards: usize,
    acked: Vec<AtomicU64>,
}

impl AckMatrix {
    pub(crate) fn new(shards: u16) -> Self {
        let shards = usize::from(shards);
        AckMatrix {
            shards,
            acked: (0..shards * shards).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn cell(&self, source: ShardId, dest: ShardId) -> Option<&AtomicU64> {
        self.acked.get(source.index() * self.shards + dest.index())
    }

    /// Records that `dest` has durably applied these messages: call it only
    /// once the commit that applied them is durable.
    pub(crate) fn publish(&self, dest: ShardId, acks: &[(ShardId, Seq)]) {
        for &(source, seq) in acks {
            if let Some(cell) = self.cell(source, dest) {
                cell.fetch_max(seq.0, Ordering::AcqRel);
            }
        }
    }

    /// The highest sequence from `source` that `dest` has durably applied.
    pub(crate) fn acked(&self, source: ShardId, dest: ShardId) -> Seq {
        Seq(self
            .cell(source, dest)
            .map_or(0, |cell| cell.load(Ordering::Acquire)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_only_move_forward_per_channel() {
        let acks = AckMatrix::new(3);
        acks.publish(ShardId(1), &[(ShardId(0), Seq(5)), (ShardId(2), Seq(1))]);
        acks.publish(ShardId(1), &[(ShardId(0), Seq(3))]);
        assert_eq!(acks.acked(ShardId(0), ShardId(1)), Seq(5));
        assert_eq!(acks.acked(ShardId(2), ShardId(1)), Seq(1));
        assert_eq!(acks.acked(ShardId(1), ShardId(0)), Seq(0));
    }
}
