//! The runtime's tables, one module per table: their keys and what they
//! hold, in the style of a schema. Values are opaque bytes (`statefn`
//! decides what they mean); the keys, and so the on-disk layout, are here.
//!
//! | table | key | value | module |
//! | --- | --- | --- | --- |
//! | state | type name, `0`, id | an instance's state | [`state`] |
//! | idempotency | `0`, state key, `0xff`, client key | the stored reply | [`idempotency`] |
//! | idempotency (expiry index) | `1`, time (BE u64), primary key | empty | [`idempotency`] |
//! | timer (due index) | `1`, due time (BE u64), timer id (BE u64) | a durable timer | [`timers`] |
//! | timer (key index) | `2`, state key, `0xff`, timer key | its due time and id | [`timers`] |
//! | outbox | destination shard (BE u16), sequence (BE u64) | an unacknowledged message | [`outbox`] |
//! | egress (per shard) | sequence (BE u64) | an emitted record not yet appended | [`emitted`] |
//! | dead letter | id (BE u64) | a message that failed every attempt | [`dead_letters`] |
//! | meta | `shard` | the shard's checkpoint metadata | [`meta`] |
//! | egress logs (global) | log name, `0`, offset (BE u64) | an appended record | [`egress`] |
//!
//! Every per-shard key is stored behind its shard's prefix (big-endian
//! `u16`). The global egress logs live behind prefix `0xffff`, which no shard
//! has: a data directory has at most 65,535 shards, numbered from 0.

pub(crate) mod dead_letters;
pub(crate) mod egress;
pub(crate) mod emitted;
pub(crate) mod idempotency;
pub(crate) mod meta;
pub(crate) mod outbox;
pub(crate) mod rows;
pub(crate) mod state;
pub(crate) mod timers;

use crate::state::{Table, TableWrite};
use crate::{ShardId, StateStore, StoreError};

pub use self::egress::{EgressBatch, EgressTables};
pub use self::rows::ShardRow;
pub use self::timers::DueSlot;

/// Reads one shard's tables.
///
/// # Examples
///
/// ```
/// use statefn_store::{ShardId, StateStore};
///
/// let dir = tempfile::tempdir()?;
/// let store = StateStore::open(dir.path())?;
/// let shard = store.shard(ShardId(3));
/// let mut batch = shard.batch();
/// batch.put_state("Counter", "a", Some(b"42".to_vec()));
/// batch.put_timer(1_000, 7, b"timer".to_vec());
/// batch.commit()?;
/// assert_eq!(shard.state("Counter", "a")?, Some(b"42".to_vec()));
/// assert_eq!(shard.timers_due((0, 0), 2_000, 10)?, vec![((1_000, 7), b"timer".to_vec())]);
/// assert_eq!(store.shard(ShardId(4)).state("Counter", "a")?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ShardTables {
    store: StateStore,
    shard: ShardId,
}

impl ShardTables {
    pub(crate) fn new(store: StateStore, shard: ShardId) -> Self {
        ShardTables { store, shard }
    }

    /// The shard.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// A batch of writes to this shard's tables.
    pub fn batch(&self) -> ShardBatch {
        ShardBatch {
            store: self.store.clone(),
            shard: self.shard,
            writes: Vec::new(),
        }
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get(self.shard.0, table, key)
    }

    /// Every value of `table`, in key order.
    fn values(&self, table: Table) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self
            .store
            .scan(self.shard.0, table)?
            .into_iter()
            .map(|(_, value)| value)
            .collect())
    }
}

/// Writes to one shard's tables, applied atomically by [`commit`](Self::commit).
#[derive(Debug)]
#[must_use = "nothing is written until the batch is committed"]
pub struct ShardBatch {
    store: StateStore,
    shard: ShardId,
    writes: Vec<TableWrite>,
}

impl ShardBatch {
    fn push(&mut self, table: Table, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.writes.push((table, key, value));
    }

    /// How many keys the batch writes or deletes.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// How many bytes the batch writes: keys and values, a delete counting
    /// its key.
    pub fn bytes(&self) -> usize {
        self.writes
            .iter()
            .map(|(_, key, value)| key.len() + value.as_ref().map_or(0, Vec::len))
            .sum()
    }

    /// Whether the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Applies every write atomically and fsyncs.
    ///
    /// # Durability
    ///
    /// When this returns `Ok`, the whole batch (and every earlier one)
    /// survives a crash; after a crash either all of it is visible or none.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] if the write or the fsync fails;
    /// [`StoreError::KeyTooLong`] / [`StoreError::ValueTooLarge`] before
    /// anything is written.
    pub fn commit(self) -> Result<(), StoreError> {
        self.store.apply(self.shard.0, self.writes, true)
    }
}

/// Big-endian `u64` key bytes: keys sort in number order.
pub(crate) fn be_u64(n: u64) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}
