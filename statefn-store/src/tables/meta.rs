//! A shard's checkpoint metadata (its log position, channel sequences and
//! watermarks...), one value under the key `shard`.

use super::{ShardBatch, ShardTables};
use crate::StoreError;
use crate::state::Table;

/// The key of a shard's metadata. Part of the on-disk format.
const KEY: &[u8] = b"shard";

impl ShardTables {
    /// The shard's metadata as of its last checkpoint (`None`: never
    /// checkpointed).
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] on a read failure.
    pub fn meta(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(Table::Meta, KEY)
    }
}

impl ShardBatch {
    /// Stores the shard's metadata.
    pub fn put_meta(&mut self, meta: Vec<u8>) {
        self.push(Table::Meta, KEY.to_vec(), Some(meta));
    }
}
