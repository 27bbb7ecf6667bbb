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

    /// The ids of the stored instances of `type_name` after `after` (all
    /// from the first when `None`), at most `limit`, in byte order: a page
    /// of a listing whose cursor is the last id of the previous page.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] on a read failure; [`StoreError::KeyTooLong`].
    pub fn state_ids(
        &self,
        type_name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let prefix = key(type_name, "");
        let from = match after {
            // The smallest key above `after`'s.
            Some(after) => {
                let mut from = key(type_name, after);
                from.push(0);
                from
            }
            None => prefix.clone(),
        };
        Ok(self
            .store
            .scan_from(self.shard.0, Table::State, &from, limit)?
            .into_iter()
            .take_while(|(key, _)| key.starts_with(&prefix))
            .filter_map(|(key, _)| {
                let id = key.get(prefix.len()..)?;
                String::from_utf8(id.to_vec()).ok()
            })
            .collect())
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
    fn state_ids_page_through_one_type_only() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = crate::StateStore::open(dir.path())?;
        let shard = store.shard(crate::ShardId(1));
        let mut batch = shard.batch();
        for (t, id) in [("A", "a"), ("A", "b"), ("A", "c"), ("Ab", "x"), ("B", "a")] {
            batch.put_state(t, id, Some(vec![1]));
        }
        batch.commit()?;
        assert_eq!(shard.state_ids("A", None, 2)?, ["a", "b"]);
        assert_eq!(shard.state_ids("A", Some("b"), 2)?, ["c"]);
        assert_eq!(shard.state_ids("A", Some("c"), 2)?, Vec::<String>::new());
        assert_eq!(shard.state_ids("Ab", None, 10)?, ["x"]);
        assert_eq!(
            store.shard(crate::ShardId(2)).state_ids("A", None, 10)?,
            Vec::<String>::new()
        );
        Ok(())
    }

    #[test]
    fn state_keys_do_not_collide() {
        assert_ne!(key("A", "bc"), key("Ab", "c"));
        assert_eq!(key("A", "bc"), b"A\0bc");
    }
}
