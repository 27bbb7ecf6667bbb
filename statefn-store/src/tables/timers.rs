//! The timer table: a shard's durable timers by id (big-endian `u64`, so
//! they load in the order they were made).

use super::{ShardBatch, ShardTables, be_u64};
use crate::StoreError;
use crate::state::Table;

impl ShardTables {
    /// Every stored timer, by id.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] on a read failure.
    pub fn timers(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        self.values(Table::Timer)
    }
}

impl ShardBatch {
    /// Stores timer `id`.
    pub fn put_timer(&mut self, id: u64, timer: Vec<u8>) {
        self.push(Table::Timer, be_u64(id), Some(timer));
    }

    /// Deletes timer `id` (it fired).
    pub fn delete_timer(&mut self, id: u64) {
        self.push(Table::Timer, be_u64(id), None);
    }
}
