//! The dead-letter table: messages that failed every attempt, by id
//! (big-endian `u64`: oldest first).

use super::{ShardBatch, ShardTables, be_u64};
use crate::StoreError;
use crate::state::Table;

impl ShardTables {
    /// Every dead letter, oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] on a read failure.
    pub fn dead_letters(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        self.values(Table::DeadLetter)
    }
}

impl ShardBatch {
    /// Stores dead letter `id`.
    pub fn put_dead_letter(&mut self, id: u64, letter: Vec<u8>) {
        self.push(Table::DeadLetter, be_u64(id), Some(letter));
    }

    /// Deletes dead letter `id` (replayed or dropped).
    pub fn delete_dead_letter(&mut self, id: u64) {
        self.push(Table::DeadLetter, be_u64(id), None);
    }
}
