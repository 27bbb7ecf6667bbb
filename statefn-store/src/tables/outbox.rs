//! The outbox table: messages a shard sent that their receivers have not yet
//! durably applied, by (destination shard, sequence on that channel), both
//! big-endian so a channel's messages are contiguous and in order.

use super::{ShardBatch, ShardTables};
use crate::state::Table;
use crate::{ShardId, StoreError};

/// The key of a message to `dest` with sequence `seq`.
pub(crate) fn key(dest: ShardId, seq: u64) -> Vec<u8> {
    let mut key = dest.0.to_be_bytes().to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

impl ShardTables {
    /// Every unacknowledged message, by destination then sequence.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] on a read failure.
    pub fn outbox(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        self.values(Table::Outbox)
    }
}

impl ShardBatch {
    /// Stores a message to `dest` with sequence `seq`.
    pub fn put_outbox(&mut self, dest: ShardId, seq: u64, message: Vec<u8>) {
        self.push(Table::Outbox, key(dest, seq), Some(message));
    }

    /// Deletes a message (its receiver applied it).
    pub fn delete_outbox(&mut self, dest: ShardId, seq: u64) {
        self.push(Table::Outbox, key(dest, seq), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_is_contiguous_and_ordered() {
        assert!(key(ShardId(1), u64::MAX) < key(ShardId(2), 0));
        assert!(key(ShardId(1), 9) < key(ShardId(1), 10));
    }
}
