//! Ingress dedup, the first step of the protocol: a client call with an
//! idempotency key is applied at most once per (instance, key). The reply is
//! stored in the same commit as the state change, and a retry within the
//! retention period is answered from it without running the handler.
//!
//! The table is dirty/frozen like the [state table](crate::shard::state_table):
//! entries go to the store with the shard's checkpoints, and the store's
//! expiry index lets checkpoints sweep old ones in bounded steps.

use std::{collections::HashMap, sync::Arc};

use statefn_store::ShardTables;

use super::record::{StoredReply, decode};
use crate::{Address, Error, error::StorageError, shard::state_table::Frozen};

/// The longest idempotency key, in bytes. A key is stored with its reply
/// and written into every checkpoint of its shard until it expires, and the
/// store limits the size of a key: HTTP's `Idempotency-Key` header and the
/// Rust API are held to this one limit.
///
/// # Examples
///
/// ```
/// assert_eq!(statefn::MAX_IDEMPOTENCY_KEY_LEN, 256);
/// ```
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;

/// Checks a client's idempotency key: 1 to [`MAX_IDEMPOTENCY_KEY_LEN`]
/// printable ASCII characters, no spaces (what an HTTP header carries as
/// is). Every way in (the Rust API, HTTP) checks with this.
pub(crate) fn check_key(key: &str) -> Result<(), Error> {
    let reason = if key.is_empty() {
        "it is empty".to_owned()
    } else if key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        format!("it is {} bytes long", key.len())
    } else if !key.bytes().all(|b| b.is_ascii_graphic()) {
        "it holds a space, a control or a non-ASCII character".to_owned()
    } else {
        return Ok(());
    };
    Err(Error::InvalidIdempotencyKey { reason })
}

/// Idempotency entries: `(address, key) -> stored reply`.
#[derive(Debug)]
pub(crate) struct IdempotencyTable {
    dirty: HashMap<(Address, String), StoredReply>,
    frozen: Option<Frozen<(Address, String), StoredReply>>,
    persisted: Option<ShardTables>,
    retention_ms: u64,
    inserts_since_gc: usize,
}

/// In memory mode, expired entries are swept after this many inserts.
const MEMORY_GC_EVERY: usize = 4096;

impl IdempotencyTable {
    pub(crate) fn new(persisted: Option<ShardTables>, retention_ms: u64) -> Self {
        IdempotencyTable {
            dirty: HashMap::new(),
            frozen: None,
            persisted,
            retention_ms,
            inserts_since_gc: 0,
        }
    }

    /// The stored reply, if the key was used within the retention period.
    pub(crate) fn get(
        &self,
        address: &Address,
        key: &str,
        now_ms: u64,
    ) -> Result<Option<StoredReply>, Error> {
        let probe = (address.clone(), key.to_owned());
        let found = if let Some(r) = self.dirty.get(&probe) {
            Some(r.clone())
        } else if let Some(r) = self.frozen.as_ref().and_then(|f| f.get(&probe)) {
            Some(r.clone())
        } else if let Some(persisted) = &self.persisted {
            let stored = persisted
                .idempotency(address.type_name(), address.id(), key)
                .map_err(StorageError::store(format!(
                    "reading an idempotency entry of shard {}",
                    persisted.shard()
                )))?;
            match stored {
                Some(bytes) => Some(decode(&bytes, "an idempotency entry")?),
                None => None,
            }
        } else {
            None
        };
        Ok(found.filter(|r| r.at_ms.saturating_add(self.retention_ms) > now_ms))
    }

    pub(crate) fn insert(&mut self, address: Address, reply: StoredReply, now_ms: u64) {
        self.dirty.insert((address, reply.key.clone()), reply);
        self.inserts_since_gc += 1;
        if self.persisted.is_none() && self.inserts_since_gc >= MEMORY_GC_EVERY {
            self.inserts_since_gc = 0;
            let cutoff = now_ms.saturating_sub(self.retention_ms);
            self.dirty.retain(|_, r| r.at_ms >= cutoff);
        }
    }

    pub(crate) fn freeze(&mut self) -> Frozen<(Address, String), StoredReply> {
        let frozen = Arc::new(std::mem::take(&mut self.dirty));
        self.frozen = Some(Arc::clone(&frozen));
        frozen
    }

    pub(crate) fn checkpointed(&mut self) {
        self.frozen = None;
    }

    pub(crate) fn unfreeze(&mut self) {
        if let Some(frozen) = self.frozen.take() {
            for (k, v) in frozen.iter() {
                self.dirty.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }

    pub(crate) fn retention_ms(&self) -> u64 {
        self.retention_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(id: &str) -> Address {
        Address::new("T", id).expect("valid")
    }

    #[test]
    fn expired_idempotency_entries_are_not_answered() {
        let mut table = IdempotencyTable::new(None, 1_000);
        let reply = StoredReply {
            key: "k".into(),
            handler: "h".into(),
            reply: vec![],
            at_ms: 10_000,
            outcome: None,
        };
        table.insert(addr("a"), reply, 10_000);
        assert!(table.get(&addr("a"), "k", 10_500).expect("ok").is_some());
        assert!(table.get(&addr("a"), "k", 11_000).expect("ok").is_none());
    }
}
