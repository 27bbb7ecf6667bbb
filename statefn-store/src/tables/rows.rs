//! Every row of one shard, as a whole: what a cluster snapshot copies from
//! one node's store to another's. Rows are `(table code, key, value)`; the
//! codes are part of the snapshot format (docs/formats.md), never renumber.

use fjall::Readable;

use super::{ShardBatch, ShardTables};
use crate::StoreError;
use crate::state::{Table, keys_prefix};

/// One stored row of a shard: its table's [code](ShardTables::rows), its
/// key (without the shard prefix) and its value.
pub type ShardRow = (u8, Vec<u8>, Vec<u8>);

impl Table {
    /// The table's code in snapshots.
    const fn code(self) -> u8 {
        match self {
            Table::State => 0,
            Table::Idempotency => 1,
            Table::Timer => 2,
            Table::Outbox => 3,
            Table::Meta => 4,
            Table::Egress => 5,
            Table::DeadLetter => 6,
        }
    }

    fn of_code(code: u8) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.code() == code)
    }
}

impl ShardTables {
    /// Every row of every table of this shard, as of one consistent point
    /// (a checkpoint is all in or all out), in table then key order.
    ///
    /// Table codes: 0 state, 1 idempotency, 2 timer, 3 outbox, 4 meta,
    /// 5 pending egress, 6 dead letter.
    ///
    /// ```
    /// use statefn_store::{ShardId, StateStore};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = StateStore::open(dir.path())?;
    /// let mut batch = store.shard(ShardId(1)).batch();
    /// batch.put_state("Counter", "a", Some(b"1".to_vec()));
    /// batch.put_meta(b"meta".to_vec());
    /// batch.commit()?;
    /// let rows = store.shard(ShardId(1)).rows()?;
    /// assert_eq!(rows.len(), 2);
    ///
    /// // Another store (another node) takes them over.
    /// let other_dir = tempfile::tempdir()?;
    /// let other = StateStore::open(other_dir.path())?;
    /// other.shard(ShardId(1)).replace_rows(rows)?;
    /// assert_eq!(other.shard(ShardId(1)).state("Counter", "a")?, Some(b"1".to_vec()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] on a read failure.
    pub fn rows(&self) -> Result<Vec<ShardRow>, StoreError> {
        self.store.rows(self.shard.0)
    }

    /// Replaces every row of this shard by `rows` (from [`rows`](Self::rows)
    /// on another store), atomically.
    ///
    /// # Durability
    ///
    /// Fsynced before it returns: after a crash the shard holds either its
    /// old rows or the new ones.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] for an unknown table code (before anything is
    /// written); [`StoreError::Fjall`] if the write or the fsync fails.
    pub fn replace_rows(&self, rows: Vec<ShardRow>) -> Result<(), StoreError> {
        let mut batch: ShardBatch = self.batch();
        for table in Table::ALL {
            for (key, _) in self.store.scan(self.shard.0, table)? {
                batch.push(table, key, None);
            }
        }
        for (code, key, value) in rows {
            let table = Table::of_code(code).ok_or_else(|| StoreError::Corrupt {
                what: "a snapshot row".into(),
                reason: format!("unknown table code {code}"),
            })?;
            batch.push(table, key, Some(value));
        }
        batch.commit()
    }
}

impl crate::StateStore {
    /// See [`ShardTables::rows`]: one fjall snapshot across the tables.
    fn rows(&self, shard: u16) -> Result<Vec<ShardRow>, StoreError> {
        let snapshot = self.database().snapshot();
        let mut rows = Vec::new();
        for table in Table::ALL {
            for guard in snapshot.prefix(self.keyspace_of(table), keys_prefix(shard)) {
                let (key, value) = guard
                    .into_inner()
                    .map_err(StoreError::fjall("reading a shard's rows"))?;
                let key = key.get(2..).unwrap_or_default().to_vec();
                rows.push((table.code(), key, value.to_vec()));
            }
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use crate::{ShardId, StateStore};

    #[test]
    fn replacing_a_shards_rows_drops_its_old_ones_and_leaves_other_shards_alone() {
        let (a, b) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let (from, to) = (
            StateStore::open(a.path()).expect("open"),
            StateStore::open(b.path()).expect("open"),
        );
        let mut batch = from.shard(ShardId(1)).batch();
        batch.put_state("T", "new", Some(b"1".to_vec()));
        batch.put_outbox(ShardId(2), 7, b"sent".to_vec());
        batch.put_meta(b"meta".to_vec());
        batch.commit().expect("commit");
        let mut batch = to.shard(ShardId(1)).batch();
        batch.put_state("T", "old", Some(b"0".to_vec()));
        batch.put_timer(5, 1, b"timer".to_vec());
        batch.commit().expect("commit");
        let mut batch = to.shard(ShardId(2)).batch();
        batch.put_state("T", "other", Some(b"2".to_vec()));
        batch.commit().expect("commit");

        let rows = from.shard(ShardId(1)).rows().expect("rows");
        to.shard(ShardId(1))
            .replace_rows(rows.clone())
            .expect("replace");
        assert_eq!(to.shard(ShardId(1)).rows().expect("rows"), rows);
        assert_eq!(to.shard(ShardId(1)).state("T", "old").expect("read"), None);
        assert!(
            to.shard(ShardId(1))
                .timers_due((0, 0), u64::MAX, 10)
                .expect("read")
                .is_empty()
        );
        assert_eq!(
            to.shard(ShardId(2)).state("T", "other").expect("read"),
            Some(b"2".to_vec())
        );
        assert!(
            to.shard(ShardId(1))
                .replace_rows(vec![(99, b"k".to_vec(), Vec::new())])
                .is_err(),
            "an unknown table code"
        );
        assert_eq!(
            to.shard(ShardId(1)).rows().expect("rows"),
            rows,
            "nothing written"
        );
    }
}
