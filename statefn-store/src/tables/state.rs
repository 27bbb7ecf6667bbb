//! The state table: an instance's state by `(type name, id)`.
//!
//! Key: the type name, a zero byte, the id. Type names never hold a zero
//! byte, so `("A", "bc")` and `("Ab", "c")` differ.

use super::{ShardBatch, ShardTables};
use crate::StoreError;
use crate::state::Table;

/// The key of an instance's state.
pub(crate) fn key(type_name: &str, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(type_name.len() + 1 + id.len());
    key.extend_from_slice(type_name.as_bytes());
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

impl ShardTables {
    /// The stored state of instance `id` of `type_name`, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] on a read failure; [`StoreError::KeyTooLong`].
    pub fn state(&self, type_name: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(Table::State, &key(type_name, id))
    }
}

impl ShardBatch {
    /// Writes an instance's state, or deletes it (`None`).
    pub fn put_state(&mut self, type_name: &str, id: &str, state: Option<Vec<u8>>) {
        self.push(Table::State, key(type_name, id), state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_keys_do_not_collide() {
        assert_ne!(key("A", "bc"), key("Ab", "c"));
        assert_eq!(key("A", "bc"), b"A\0bc");
    }
}
