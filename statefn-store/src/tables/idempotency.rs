//! The idempotency table: a client call's stored reply by `(instance, key)`,
//! and an index by time for the expiry sweep.
//!
//! - Primary key: `0`, the state key of the instance, `0xff`, the client's
//!   key (`0xff` never occurs in UTF-8, so the split is unambiguous).
//! - Index key: `1`, the time the reply was stored (big-endian unix
//!   milliseconds, so keys sort by age), the primary key; empty value.

use super::{ShardBatch, ShardTables, state};
use crate::StoreError;
use crate::state::{Table, TableWrite};

/// The primary key of an idempotency entry.
pub(crate) fn primary_key(type_name: &str, id: &str, client_key: &str) -> Vec<u8> {
    let state_key = state::key(type_name, id);
    let mut out = Vec::with_capacity(2 + state_key.len() + client_key.len());
    out.push(0);
    out.extend_from_slice(&state_key);
    out.push(0xff);
    out.extend_from_slice(client_key.as_bytes());
    out
}

/// The expiry index key of an entry stored at `at_ms`.
pub(crate) fn index_key(at_ms: u64, primary: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + primary.len());
    out.push(1);
    out.extend_from_slice(&at_ms.to_be_bytes());
    out.extend_from_slice(primary);
    out
}

/// Splits an index key into its time and primary key.
fn parse_index_key(key: &[u8]) -> Option<(u64, &[u8])> {
    let (tag, rest) = key.split_first()?;
    let (at, primary) = rest.split_first_chunk::<8>()?;
    (*tag == 1).then_some((u64::from_be_bytes(*at), primary))
}

impl ShardTables {
    /// The reply stored for `client_key` on instance `id` of `type_name`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] on a read failure; [`StoreError::KeyTooLong`].
    pub fn idempotency(
        &self,
        type_name: &str,
        id: &str,
        client_key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(Table::Idempotency, &primary_key(type_name, id, client_key))
    }

    /// Deletes up to `limit` entries stored before `cutoff_ms`, oldest
    /// first, with their index entries; returns how many. A sweep is spread
    /// over calls rather than done at once. `stored_at` reads the time a
    /// stored value was stored (the caller owns the value's format): a key
    /// stored again after its old entry expired keeps its newer reply, and
    /// only the stale index entry goes.
    ///
    /// # Durability
    ///
    /// The deletions are visible at once and durable with the next
    /// committed [`ShardBatch`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] on a read or write failure.
    pub fn sweep_idempotency(
        &self,
        cutoff_ms: u64,
        limit: usize,
        stored_at: impl Fn(&[u8]) -> Option<u64>,
    ) -> Result<usize, StoreError> {
        let index = self
            .store
            .scan_from(self.shard.0, Table::Idempotency, &[1], limit)?;
        let mut deletes: Vec<TableWrite> = Vec::new();
        let mut swept = 0;
        for (key, _) in index {
            let Some((at_ms, primary)) = parse_index_key(&key) else {
                continue;
            };
            if at_ms >= cutoff_ms {
                break;
            }
            // The key may have been used again since (after its retention):
            // its primary then holds a newer reply, under a newer index
            // entry. Only this index entry is stale.
            let current = self.get(Table::Idempotency, primary)?;
            let newer = current
                .as_deref()
                .and_then(&stored_at)
                .is_some_and(|stored| stored >= cutoff_ms);
            if current.is_some() && !newer {
                deletes.push((Table::Idempotency, primary.to_vec(), None));
                swept += 1;
            }
            deletes.push((Table::Idempotency, key, None));
        }
        if !deletes.is_empty() {
            self.store.apply(self.shard.0, deletes, false)?;
        }
        Ok(swept)
    }
}

impl ShardBatch {
    /// Stores a reply for `client_key` on an instance, stored at `at_ms`
    /// (the expiry sweep goes by it).
    pub fn put_idempotency(
        &mut self,
        type_name: &str,
        id: &str,
        client_key: &str,
        at_ms: u64,
        reply: Vec<u8>,
    ) {
        let primary = primary_key(type_name, id, client_key);
        self.push(
            Table::Idempotency,
            index_key(at_ms, &primary),
            Some(Vec::new()),
        );
        self.push(Table::Idempotency, primary, Some(reply));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_sort_by_time_and_parse_back() {
        let primary = primary_key("T", "a", "k");
        assert_eq!(primary, b"\0T\0a\xffk");
        let early = index_key(5, &primary);
        let late = index_key(300, &primary);
        assert!(early < late);
        assert_eq!(parse_index_key(&late), Some((300, primary.as_slice())));
        assert_eq!(parse_index_key(&primary), None);
    }

    /// The stored time of a test value: its first 8 bytes.
    fn stored_at(value: &[u8]) -> Option<u64> {
        Some(u64::from_be_bytes(value.get(..8)?.try_into().ok()?))
    }

    fn value(at_ms: u64, reply: &[u8]) -> Vec<u8> {
        let mut out = at_ms.to_be_bytes().to_vec();
        out.extend_from_slice(reply);
        out
    }

    /// A key used again after its retention stores a newer reply: the sweep
    /// of the old entry's index must not delete it (exactly-once review #7).
    #[test]
    fn the_sweep_keeps_a_reply_stored_again_after_its_old_entry_expired() {
        let dir = tempfile::tempdir().unwrap();
        let tables = crate::StateStore::open(dir.path())
            .unwrap()
            .shard(crate::ShardId(2));
        for (at_ms, reply) in [(100, b"old"), (5_000, b"new")] {
            let mut batch = tables.batch();
            batch.put_idempotency("T", "a", "k", at_ms, value(at_ms, reply));
            batch.commit().unwrap();
        }
        let mut batch = tables.batch();
        batch.put_idempotency("T", "a", "gone", 200, value(200, b"x"));
        batch.commit().unwrap();

        let swept = tables.sweep_idempotency(1_000, 100, stored_at).unwrap();
        assert_eq!(swept, 1, "only `gone` expired");
        assert_eq!(
            tables.idempotency("T", "a", "k").unwrap(),
            Some(value(5_000, b"new"))
        );
        assert_eq!(tables.idempotency("T", "a", "gone").unwrap(), None);
        // Its stale index entry is gone too: a later sweep finds nothing
        // before the newer entry's time.
        assert_eq!(tables.sweep_idempotency(1_000, 100, stored_at).unwrap(), 0);
        assert_eq!(tables.sweep_idempotency(6_000, 100, stored_at).unwrap(), 1);
        assert_eq!(tables.idempotency("T", "a", "k").unwrap(), None);
    }
}
