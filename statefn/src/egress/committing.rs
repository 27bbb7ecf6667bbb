//! Egress records on their way through the commit path. They count against
//! the egress queue's bound from the moment their batch is handed to the
//! commit path, not only once the appender has them: otherwise every batch
//! a worker runs while an earlier batch is being committed passes the
//! bound's check, and all their records reach the appender's queue at once.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use super::{Emitted, weight};

/// Bytes of egress records in batches handed to the commit path whose
/// records are not queued for the appender yet.
#[derive(Debug, Default)]
pub(crate) struct Committing(Arc<AtomicU64>);

impl Committing {
    /// The bytes counted now.
    pub(crate) fn bytes(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Counts `records` until the returned reservation is dropped (`None`:
    /// no records).
    pub(crate) fn reserve(&self, records: &[Emitted]) -> Option<Reservation> {
        let bytes = records
            .iter()
            .map(|r| weight(r).1)
            .fold(0, u64::saturating_add);
        if bytes == 0 {
            return None;
        }
        self.0.fetch_add(bytes, Ordering::AcqRel);
        Some(Reservation {
            counter: Arc::clone(&self.0),
            bytes,
        })
    }
}

/// One batch's egress records, counted while its commit is in flight.
/// Dropped when its records are queued for the appender (after they were
/// counted there) or when the batch is refused (its records stay with the
/// shard): a batch cannot leave the commit path and stay counted.
#[derive(Debug)]
pub(crate) struct Reservation {
    counter: Arc<AtomicU64>,
    bytes: u64,
}

impl Reservation {
    /// One reservation for the records of both: a group commit releases
    /// all its batches' effects at once ([`Effects::absorb`]), so their
    /// records stop counting here together. Both count on the runtime's one
    /// counter.
    ///
    /// [`Effects::absorb`]: crate::shard::effects::Effects::absorb
    pub(crate) fn join(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (Some(mut a), Some(mut b)) => {
                debug_assert!(
                    Arc::ptr_eq(&a.counter, &b.counter),
                    "one runtime, one counter"
                );
                a.bytes += std::mem::take(&mut b.bytes);
                Some(a)
            }
            (a, b) => a.or(b),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ids::{EgressSeq, ShardId};

    #[test]
    fn a_reservation_counts_its_records_until_dropped() {
        let committing = Committing::default();
        assert!(committing.reserve(&[]).is_none());
        let record = Emitted {
            shard: ShardId(0),
            seq: EgressSeq(1),
            log: "l".into(),
            record: vec![0; 100],
            at_ms: 0,
        };
        let one = weight(&record).1;
        let first = committing.reserve(std::slice::from_ref(&record));
        let both = committing.reserve(&[record.clone(), record]);
        assert_eq!(committing.bytes(), 3 * one);
        drop(first);
        assert_eq!(committing.bytes(), 2 * one);
        drop(both);
        assert_eq!(committing.bytes(), 0);
    }
}
