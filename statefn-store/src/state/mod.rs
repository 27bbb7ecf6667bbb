//! The fjall-backed state store, shared by all shards.
//!
//! Written only at checkpoints: the write-ahead log is the durable record of
//! every commit, so fjall's own journal is not flushed per write (that would
//! pay for durability twice). A checkpoint calls
//! [`StateStore::apply`] with `sync: true`, which fsyncs before returning.

mod error;
mod keys;
mod table;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

pub use error::StoreError;
pub(crate) use table::Table;

/// The shard prefix of every stored key (for whole-shard reads).
pub(crate) fn keys_prefix(shard: u16) -> [u8; keys::PREFIX_LEN] {
    keys::prefix(shard)
}

use crate::ShardId;
use crate::tables::{EgressTables, ShardTables};

/// Maximum value length fjall accepts.
const MAX_VALUE: usize = u32::MAX as usize;

/// One entry returned by a scan: `(key, value)`, the key without the shard
/// prefix.
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// One write of a batch: `(table, key, Some(value))` puts, `None` deletes.
pub(crate) type TableWrite = (Table, Vec<u8>, Option<Vec<u8>>);

/// Durable key-value state of all shards, one fjall keyspace per table.
///
/// Its tables are reached through [`shard`](Self::shard) (one shard's
/// tables) and [`egress`](Self::egress) (the global egress logs); keys are
/// namespaced by shard, so shards never see each other's entries. Cloning
/// is cheap (an `Arc`); every method may block on disk I/O, so call it from
/// plain threads, not from async executor workers.
///
/// # Examples
///
/// ```
/// use statefn_store::{ShardId, StateStore};
///
/// let dir = tempfile::tempdir()?;
/// let store = StateStore::open(dir.path())?;
/// let mut batch = store.shard(ShardId(3)).batch();
/// batch.put_state("Counter", "1", Some(b"42".to_vec()));
/// batch.put_meta(7u64.to_be_bytes().to_vec());
/// batch.commit()?;
/// assert_eq!(store.shard(ShardId(3)).state("Counter", "1")?, Some(b"42".to_vec()));
/// assert_eq!(store.shard(ShardId(4)).state("Counter", "1")?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct StateStore {
    inner: Arc<Inner>,
}

/// fjall's journal bound (its minimum): what a reopen replays at most.
const MAX_JOURNALING_BYTES: u64 = 64 << 20;

struct Inner {
    db: Database,
    /// Indexed by [`Table::index`].
    keyspaces: Vec<Keyspace>,
}

impl fmt::Debug for StateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateStore")
            .field("keyspaces", &Table::ALL)
            .finish_non_exhaustive()
    }
}

impl StateStore {
    /// Opens (or creates) the store in `dir`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] if fjall cannot open or recover the database.
    pub fn open(dir: &Path) -> Result<StateStore, StoreError> {
        // Manual journal persistence: commits are not even flushed to the OS
        // per batch; the write-ahead log already holds them durably.
        let db = Database::builder(dir)
            .manual_journal_persist(true)
            // fjall replays its journals into memtables when it opens: with
            // the default 512 MiB that took 28 s after 10M states were
            // checkpointed. Flushing memtables once the journals reach the
            // minimum bounds that replay (crash or clean restart alike).
            .max_journaling_size(MAX_JOURNALING_BYTES)
            .open()
            .map_err(StoreError::fjall("opening the database"))?;
        let keyspaces = Table::ALL
            .iter()
            .map(|table| {
                db.keyspace(table.keyspace_name(), || keyspace_options(*table))
                    .map_err(StoreError::fjall("opening a keyspace"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StateStore {
            inner: Arc::new(Inner { db, keyspaces }),
        })
    }

    /// The tables of `shard`.
    pub fn shard(&self, shard: ShardId) -> ShardTables {
        ShardTables::new(self.clone(), shard)
    }

    /// The global egress logs.
    pub fn egress(&self) -> EgressTables {
        EgressTables::new(self.clone())
    }

    /// The value of `key` in `table` for `shard`, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] on a read failure; [`StoreError::KeyTooLong`].
    pub(crate) fn get(
        &self,
        shard: u16,
        table: Table,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let stored = keys::stored_key(shard, key)?;
        let value = self
            .keyspace(table)
            .get(stored)
            .map_err(StoreError::fjall("reading a key"))?;
        Ok(value.map(|v| v.to_vec()))
    }

    /// All entries of one shard in one table, in key order (for recovery:
    /// timers, outbox, meta...).
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] on a read failure.
    pub(crate) fn scan(&self, shard: u16, table: Table) -> Result<Vec<Entry>, StoreError> {
        self.keyspace(table)
            .prefix(keys::prefix(shard))
            .map(|guard| {
                let (key, value) = guard
                    .into_inner()
                    .map_err(StoreError::fjall("scanning a table"))?;
                Ok((keys::caller_key(&key), value.to_vec()))
            })
            .collect()
    }

    /// Entries of one shard in one table with key `>= from`, at most `limit`,
    /// in key order (for paging egress logs, dead letters, expiry scans).
    /// To get the next page, pass the last key with a `0` byte appended.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] on a read failure; [`StoreError::KeyTooLong`].
    pub(crate) fn scan_from(
        &self,
        shard: u16,
        table: Table,
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let start = keys::stored_key(shard, from)?;
        let prefix = keys::prefix(shard);
        let mut out = Vec::with_capacity(limit.min(1024));
        if limit == 0 {
            return Ok(out);
        }
        for guard in self.keyspace(table).range(start..) {
            let (key, value) = guard
                .into_inner()
                .map_err(StoreError::fjall("scanning a table"))?;
            if !key.starts_with(&prefix) {
                break;
            }
            out.push((keys::caller_key(&key), value.to_vec()));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Entries of one shard in one table with key in `[from, until)`, at
    /// most `limit`, in key order (for reading timers by due time).
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] on a read failure; [`StoreError::KeyTooLong`].
    pub(crate) fn scan_range(
        &self,
        shard: u16,
        table: Table,
        from: &[u8],
        until: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let start = keys::stored_key(shard, from)?;
        let end = keys::stored_key(shard, until)?;
        let mut out = Vec::new();
        if limit == 0 || start >= end {
            return Ok(out);
        }
        for guard in self.keyspace(table).range(start..end) {
            let (key, value) = guard
                .into_inner()
                .map_err(StoreError::fjall("scanning a table"))?;
            out.push((keys::caller_key(&key), value.to_vec()));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Applies puts (`Some`) and deletes (`None`) for `shard` atomically, in
    /// one fjall batch: after a crash either all of them are visible or none.
    ///
    /// # Durability
    ///
    /// With `sync: true` the batch (and every earlier one) is fsynced before
    /// this returns. With `sync: false` it is visible to readers at once but
    /// may be lost in a crash until a later `apply(.., true)`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] if the write or the fsync fails;
    /// [`StoreError::KeyTooLong`] / [`StoreError::ValueTooLarge`] before
    /// anything is written.
    pub(crate) fn apply(
        &self,
        shard: u16,
        writes: Vec<TableWrite>,
        sync: bool,
    ) -> Result<(), StoreError> {
        let mut batch = self.inner.db.batch();
        for (table, key, value) in writes {
            let key = keys::stored_key(shard, &key)?;
            let keyspace = self.keyspace(table);
            match value {
                Some(value) if value.len() > MAX_VALUE => {
                    return Err(StoreError::ValueTooLarge {
                        len: value.len(),
                        max: MAX_VALUE,
                    });
                }
                Some(value) => batch.insert(keyspace, key, value),
                None => batch.remove(keyspace, key),
            }
        }
        batch
            .commit()
            .map_err(StoreError::fjall("committing a batch"))?;
        if sync {
            self.inner
                .db
                .persist(PersistMode::SyncAll)
                .map_err(StoreError::fjall("syncing the journal"))?;
        }
        Ok(())
    }

    /// The database, for reads across keyspaces at one point.
    pub(crate) fn database(&self) -> &Database {
        &self.inner.db
    }

    /// The keyspace of `table`.
    pub(crate) fn keyspace_of(&self, table: Table) -> &Keyspace {
        self.keyspace(table)
    }

    #[expect(
        clippy::expect_used,
        reason = "invariant: `open` made one keyspace per table, in `Table::ALL` order"
    )]
    fn keyspace(&self, table: Table) -> &Keyspace {
        self.inner
            .keyspaces
            .get(table.index())
            .expect("one keyspace per table")
    }
}

/// Keyspace options per table. The state and idempotency tables answer point
/// lookups for keys that mostly do not exist (a new instance, a new key):
/// their bloom filters and indexes stay pinned in memory at every level
/// (about 10 bits per key), because fjall's default pins them only in the
/// first levels, and a filter evicted from the block cache is read back from
/// disk on every such lookup (measured: populating 10M instances collapsed
/// from ~90k/s to ~1k/s at 5.7M).
fn keyspace_options(table: Table) -> KeyspaceCreateOptions {
    match table {
        Table::State | Table::Idempotency => KeyspaceCreateOptions::default()
            .filter_block_pinning_policy(fjall::config::PinningPolicy::all(true))
            .index_block_pinning_policy(fjall::config::PinningPolicy::all(true)),
        _ => KeyspaceCreateOptions::default(),
    }
}
