//! The egress logs: global (not per shard) logs of records that functions
//! emitted, read by offset.
//!
//! Stored behind prefix `0xffff`, a shard id no data directory has:
//! - records: table `egress`, key: log name, `0`, offset (big-endian `u64`);
//! - each log's next offset: table `meta`, key `next/<log>`;
//! - per shard, the highest egress sequence appended: table `meta`, key
//!   `shard/<shard, 5 digits>`.
//!
//! Log names never hold a zero byte (`statefn` checks them), so one log's
//! records are contiguous and in offset order.

use crate::state::{Table, TableWrite};
use crate::{ShardId, StateStore, StoreError};

/// The prefix of the global rows: no shard has this id.
const GLOBAL: u16 = u16::MAX;

const NEXT_PREFIX: &[u8] = b"next/";

/// `log`, a zero byte, `offset`.
fn record_key(log: &str, offset: u64) -> Vec<u8> {
    let mut key = record_prefix(log);
    key.extend_from_slice(&offset.to_be_bytes());
    key
}

fn record_prefix(log: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(log.len() + 9);
    key.extend_from_slice(log.as_bytes());
    key.push(0);
    key
}

fn next_key(log: &str) -> Vec<u8> {
    format!("next/{log}").into_bytes()
}

fn appended_key(shard: ShardId) -> Vec<u8> {
    format!("shard/{:05}", shard.0).into_bytes()
}

/// Reads and writes the egress logs.
///
/// # Examples
///
/// ```
/// use statefn_store::{ShardId, StateStore};
///
/// let dir = tempfile::tempdir()?;
/// let egress = StateStore::open(dir.path())?.egress();
/// let mut batch = egress.batch();
/// batch.put_record("orders", 0, b"first".to_vec());
/// batch.put_record("orders", 1, b"second".to_vec());
/// batch.put_next_offset("orders", b"2".to_vec());
/// batch.put_appended(ShardId(3), b"7".to_vec());
/// batch.commit()?;
/// assert_eq!(egress.records("orders", 1, 10)?, vec![(1, b"second".to_vec())]);
/// assert_eq!(egress.next_offsets()?, vec![("orders".to_owned(), b"2".to_vec())]);
/// assert_eq!(egress.appended(ShardId(3))?, Some(b"7".to_vec()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct EgressTables {
    store: StateStore,
}

impl EgressTables {
    pub(crate) fn new(store: StateStore) -> Self {
        EgressTables { store }
    }

    /// What was stored with [`EgressBatch::put_appended`] for `shard`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] on a read failure.
    pub fn appended(&self, shard: ShardId) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get(GLOBAL, Table::Meta, &appended_key(shard))
    }

    /// Every log's stored next offset, by log name.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] on a read failure.
    pub fn next_offsets(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let rows = self
            .store
            .scan_from(GLOBAL, Table::Meta, NEXT_PREFIX, usize::MAX)?;
        Ok(rows
            .into_iter()
            .map_while(|(key, value)| {
                let log = key.strip_prefix(NEXT_PREFIX)?;
                Some((String::from_utf8_lossy(log).into_owned(), value))
            })
            .collect())
    }

    /// Up to `limit` records of `log` from offset `from` on, as (offset,
    /// value), in offset order.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] on a read failure; [`StoreError::KeyTooLong`]
    /// for a log name near 64 KiB.
    pub fn records(
        &self,
        log: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let prefix = record_prefix(log);
        let rows = self
            .store
            .scan_from(GLOBAL, Table::Egress, &record_key(log, from), limit)?;
        Ok(rows
            .into_iter()
            .map_while(|(key, value)| {
                let offset = key.strip_prefix(prefix.as_slice())?;
                let offset = <[u8; 8]>::try_from(offset).ok()?;
                Some((u64::from_be_bytes(offset), value))
            })
            .collect())
    }

    /// A batch of writes to the egress logs.
    pub fn batch(&self) -> EgressBatch {
        EgressBatch {
            store: self.store.clone(),
            writes: Vec::new(),
        }
    }
}

/// Writes to the egress logs, applied atomically.
#[derive(Debug)]
#[must_use = "nothing is written until the batch is committed"]
pub struct EgressBatch {
    store: StateStore,
    writes: Vec<TableWrite>,
}

impl EgressBatch {
    /// Stores record `offset` of `log`.
    pub fn put_record(&mut self, log: &str, offset: u64, record: Vec<u8>) {
        self.writes
            .push((Table::Egress, record_key(log, offset), Some(record)));
    }

    /// Deletes record `offset` of `log` (past its retention).
    pub fn delete_record(&mut self, log: &str, offset: u64) {
        self.writes
            .push((Table::Egress, record_key(log, offset), None));
    }

    /// Stores `log`'s next offset.
    pub fn put_next_offset(&mut self, log: &str, next: Vec<u8>) {
        self.writes.push((Table::Meta, next_key(log), Some(next)));
    }

    /// Stores how far `shard`'s records were appended.
    pub fn put_appended(&mut self, shard: ShardId, appended: Vec<u8>) {
        self.writes
            .push((Table::Meta, appended_key(shard), Some(appended)));
    }

    /// Whether the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Applies every write atomically and fsyncs.
    ///
    /// # Durability
    ///
    /// When this returns `Ok`, the batch survives a crash.
    ///
    /// # Errors
    ///
    /// As [`ShardBatch::commit`](super::ShardBatch::commit).
    pub fn commit(self) -> Result<(), StoreError> {
        self.store.apply(GLOBAL, self.writes, true)
    }

    /// Applies every write atomically without an fsync (for deletions).
    ///
    /// # Durability
    ///
    /// Visible at once; durable with the next [`commit`](Self::commit) or
    /// checkpoint.
    ///
    /// # Errors
    ///
    /// As [`commit`](Self::commit).
    pub fn commit_buffered(self) -> Result<(), StoreError> {
        self.store.apply(GLOBAL, self.writes, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_those_of_the_first_format() {
        assert_eq!(record_key("a", 1), b"a\0\0\0\0\0\0\0\0\x01");
        assert_eq!(next_key("orders"), b"next/orders");
        assert_eq!(appended_key(ShardId(7)), b"shard/00007");
    }
}
