//! A shard's emitted egress records that the appender has not yet stored in
//! the global egress logs, by the shard's egress sequence (big-endian `u64`).
//! After a restart the shard submits them again.

use super::{ShardBatch, ShardTables, be_u64};
use crate::StoreError;
use crate::state::Table;

impl ShardTables {
    /// Every emitted record not yet known appended, by sequence.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] on a read failure.
    pub fn pending_egress(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        self.values(Table::Egress)
    }
}

impl ShardBatch {
    /// Stores emitted record `seq`.
    pub fn put_pending_egress(&mut self, seq: u64, record: Vec<u8>) {
        self.push(Table::Egress, be_u64(seq), Some(record));
    }

    /// Deletes emitted record `seq` (the appender stored it).
    pub fn delete_pending_egress(&mut self, seq: u64) {
        self.push(Table::Egress, be_u64(seq), None);
    }
}
