//! Epoch fencing: a batch built by a shard's core from before a recovery
//! must not commit.
//!
//! Every (re)build of a log group's shards gives their cores the epoch of
//! the log's new writer ([`Epoch`]). A batch carries its core's epoch, and
//! the group's syncer commits only batches of each shard's current epoch: a
//! batch a worker built on the old core while the group was recovering is
//! refused (its callers are told to retry), never appended after the
//! recovered state.

use std::collections::BTreeMap;

use super::ids::{Epoch, ShardId};

/// The current epoch of each shard of a log group. (An ordered map: a seeded
/// test run must not depend on hashing.)
#[derive(Debug, Default)]
pub(crate) struct ShardEpochs {
    epochs: BTreeMap<ShardId, Epoch>,
}

impl ShardEpochs {
    /// Whether a batch of `shard` built at `epoch` may commit.
    pub(crate) fn admits(&self, shard: ShardId, epoch: Epoch) -> bool {
        self.epochs.get(&shard) == Some(&epoch)
    }

    /// `shard`'s core is now the one of `epoch`.
    pub(crate) fn set(&mut self, shard: ShardId, epoch: Epoch) {
        self.epochs.insert(shard, epoch);
    }

    /// The epoch for the group's next writer: above every current one.
    pub(crate) fn next(&self) -> Epoch {
        self.epochs
            .values()
            .max()
            .copied()
            .unwrap_or_default()
            .next()
    }

    /// The group's shards.
    pub(crate) fn shards(&self) -> impl Iterator<Item = ShardId> + '_ {
        self.epochs.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_current_epoch_commits() {
        let mut epochs = ShardEpochs::default();
        epochs.set(ShardId(0), Epoch(1));
        epochs.set(ShardId(2), Epoch(1));
        assert!(epochs.admits(ShardId(0), Epoch(1)));
        assert_eq!(epochs.next(), Epoch(2));
        epochs.set(ShardId(0), Epoch(2));
        assert!(!epochs.admits(ShardId(0), Epoch(1)));
        assert!(!epochs.admits(ShardId(1), Epoch(2)), "not in this group");
        assert_eq!(
            epochs.shards().collect::<Vec<_>>(),
            vec![ShardId(0), ShardId(2)]
        );
    }
}
