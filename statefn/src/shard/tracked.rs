//! [`Tracked`]: a keyed table whose removals are remembered until the next
//! checkpoint writes them (as deletes) to the store.
//!
//! Timers, the outbox, pending egress records and dead letters are such
//! tables: small, written whole at each checkpoint, with the keys removed
//! since the last one deleted in the same store batch. A checkpoint's
//! removals are kept until it is written: if it fails, the next one deletes
//! them, or the store would keep a fired timer or a dropped dead letter
//! past a checkpoint whose position covers their removal.

use std::collections::BTreeMap;

/// Entries by key, plus the keys removed since the last freeze.
#[derive(Debug)]
pub(crate) struct Tracked<K, V> {
    entries: BTreeMap<K, V>,
    removed: Vec<K>,
    /// The removals a checkpoint being written deletes.
    checkpointing: Vec<K>,
    /// Whether removals are remembered: only a durable shard checkpoints, so
    /// in memory they would only pile up.
    track: bool,
}

impl<K: Ord + Copy, V> Tracked<K, V> {
    /// An empty table; `durable`: remember removals for checkpoints.
    pub(crate) fn new(durable: bool) -> Self {
        Tracked {
            entries: BTreeMap::new(),
            removed: Vec::new(),
            checkpointing: Vec::new(),
            track: durable,
        }
    }

    /// Replaces the entries (a core restored from a checkpoint).
    pub(crate) fn restore(&mut self, entries: impl IntoIterator<Item = (K, V)>) {
        self.entries = entries.into_iter().collect();
    }

    pub(crate) fn insert(&mut self, key: K, value: V) {
        self.entries.insert(key, value);
    }

    /// Removes `key`, remembering the removal only if it was there.
    pub(crate) fn remove(&mut self, key: K) -> Option<V> {
        let value = self.entries.remove(&key);
        if value.is_some() && self.track {
            self.removed.push(key);
        }
        value
    }

    /// Removes `key` and remembers the removal whether or not it was there:
    /// replay, where the store may hold it although memory does not.
    pub(crate) fn forget(&mut self, key: K) {
        self.entries.remove(&key);
        if self.track {
            self.removed.push(key);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.keys()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.values()
    }

    pub(crate) fn range(
        &self,
        range: impl std::ops::RangeBounds<K>,
    ) -> impl Iterator<Item = (&K, &V)> {
        self.entries.range(range)
    }

    /// The removals since the last call, for a checkpoint to delete; kept
    /// until [`checkpoint_finished`](Self::checkpoint_finished).
    pub(crate) fn take_removed(&mut self) -> Vec<K> {
        let removed = std::mem::take(&mut self.removed);
        self.checkpointing.extend_from_slice(&removed);
        removed
    }

    /// The checkpoint that took the removals was written, or (`!written`)
    /// failed: then the next one takes them again.
    pub(crate) fn checkpoint_finished(&mut self, written: bool) {
        let taken = std::mem::take(&mut self.checkpointing);
        if !written {
            self.removed.splice(..0, taken);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_are_remembered_once_and_only_when_durable() {
        let mut table = Tracked::new(true);
        table.insert(1, "a");
        table.insert(2, "b");
        assert_eq!(table.remove(1), Some("a"));
        assert_eq!(table.remove(9), None);
        table.forget(7);
        assert_eq!(table.take_removed(), vec![1, 7]);
        assert!(table.take_removed().is_empty());
        table.checkpoint_finished(true);
        // Taken by a checkpoint that fails: the next one takes them again,
        // before the newer removals.
        table.remove(2);
        assert_eq!(table.take_removed(), vec![2]);
        table.insert(3, "c");
        table.remove(3);
        table.checkpoint_finished(false);
        assert_eq!(table.take_removed(), vec![2, 3]);
        table.checkpoint_finished(true);
        assert!(table.take_removed().is_empty());
        let mut memory = Tracked::new(false);
        memory.insert(1, "a");
        memory.remove(1);
        memory.forget(2);
        assert!(memory.take_removed().is_empty());
    }
}
