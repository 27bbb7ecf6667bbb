//! A shard's two keyed tables: instance states and idempotency entries.
//!
//! Reads look in the dirty set (changed since the last checkpoint), then the
//! frozen set (being written by a checkpoint), then the cache, then fjall.
//! Only the cache is bounded and evicts; dirty and frozen entries are the
//! only copy of state not yet checkpointed, so they stay until it is.

use std::{collections::HashMap, sync::Arc};

use lru::LruCache;
use statefn_store::ShardTables;

use crate::{Address, Error, record::StoredReply};

/// Where a shard's tables are persisted (absent in memory mode).
#[derive(Debug, Clone)]
pub(crate) struct Persisted {
    pub(crate) tables: ShardTables,
}

impl Persisted {
    fn storage(&self) -> impl FnOnce(statefn_store::StoreError) -> Error + '_ {
        move |e| Error::Storage(format!("reading shard {}: {e}", self.tables.shard()))
    }

    fn state(&self, address: &Address) -> Result<Option<Vec<u8>>, Error> {
        self.tables
            .state(address.type_name(), address.id())
            .map_err(self.storage())
    }

    fn idempotency(&self, address: &Address, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.tables
            .idempotency(address.type_name(), address.id(), key)
            .map_err(self.storage())
    }
}

pub(crate) type Frozen<K, V> = Arc<HashMap<K, V>>;

/// Instance states.
#[derive(Debug)]
pub(crate) struct StateTable {
    /// `None` is a deletion (an expired instance) not yet checkpointed.
    dirty: HashMap<Address, Option<Vec<u8>>>,
    dirty_bytes: usize,
    frozen: Option<Frozen<Address, Option<Vec<u8>>>>,
    cache: LruCache<Address, Vec<u8>>,
    cache_bytes: usize,
    cache_limit: usize,
    persisted: Option<Persisted>,
    hits: u64,
    misses: u64,
}

impl StateTable {
    pub(crate) fn new(persisted: Option<Persisted>, cache_limit: usize) -> Self {
        StateTable {
            dirty: HashMap::new(),
            dirty_bytes: 0,
            frozen: None,
            cache: LruCache::unbounded(),
            cache_bytes: 0,
            cache_limit,
            persisted,
            hits: 0,
            misses: 0,
        }
    }

    /// The state of `address`, `None` for an instance never written.
    pub(crate) fn get(&mut self, address: &Address) -> Result<Option<&[u8]>, Error> {
        if self.dirty.contains_key(address) {
            return Ok(self.dirty.get(address).and_then(Option::as_deref));
        }
        if self
            .frozen
            .as_ref()
            .is_some_and(|f| f.contains_key(address))
        {
            return Ok(self
                .frozen
                .as_ref()
                .and_then(|f| f.get(address))
                .and_then(Option::as_deref));
        }
        if self.cache.contains(address) {
            self.hits += 1;
            return Ok(self.cache.get(address).map(Vec::as_slice));
        }
        let Some(persisted) = &self.persisted else {
            return Ok(None);
        };
        self.misses += 1;
        let Some(bytes) = persisted.state(address)? else {
            return Ok(None);
        };
        self.cache_bytes += entry_bytes(address, &bytes);
        self.cache.put(address.clone(), bytes);
        self.evict();
        Ok(self.cache.peek(address).map(Vec::as_slice))
    }

    /// Records a new state (part of the current batch).
    pub(crate) fn put(&mut self, address: Address, state: Vec<u8>) {
        if let Some(old) = self.cache.pop(&address) {
            self.cache_bytes -= entry_bytes(&address, &old);
        }
        self.dirty_bytes += entry_bytes(&address, &state);
        if let Some(Some(old)) = self.dirty.insert(address.clone(), Some(state)) {
            self.dirty_bytes -= entry_bytes(&address, &old);
        }
    }

    /// Records that the instance is gone (part of the current batch).
    pub(crate) fn delete(&mut self, address: Address) {
        if let Some(old) = self.cache.pop(&address) {
            self.cache_bytes -= entry_bytes(&address, &old);
        }
        self.dirty_bytes += entry_bytes(&address, &[]);
        if let Some(Some(old)) = self.dirty.insert(address.clone(), None) {
            self.dirty_bytes -= entry_bytes(&address, &old);
        }
    }

    /// Bytes changed since the last freeze (a checkpoint trigger).
    pub(crate) fn dirty_bytes(&self) -> usize {
        self.dirty_bytes
    }

    /// Hands the dirty set to a checkpoint; reads still see it.
    pub(crate) fn freeze(&mut self) -> Frozen<Address, Option<Vec<u8>>> {
        let frozen = Arc::new(std::mem::take(&mut self.dirty));
        self.dirty_bytes = 0;
        self.frozen = Some(Arc::clone(&frozen));
        frozen
    }

    /// The frozen set is in fjall: its entries become clean cache entries.
    pub(crate) fn checkpointed(&mut self) {
        let Some(frozen) = self.frozen.take() else {
            return;
        };
        let entries = Arc::try_unwrap(frozen).unwrap_or_else(|shared| (*shared).clone());
        for (address, state) in entries {
            if let Some(state) = state
                && !self.dirty.contains_key(&address)
            {
                self.cache_bytes += entry_bytes(&address, &state);
                if let Some(old) = self.cache.put(address.clone(), state) {
                    self.cache_bytes -= entry_bytes(&address, &old);
                }
            }
        }
        self.evict();
    }

    /// The checkpoint failed: its entries are dirty again (unless newer).
    pub(crate) fn unfreeze(&mut self) {
        let Some(frozen) = self.frozen.take() else {
            return;
        };
        let entries = Arc::try_unwrap(frozen).unwrap_or_else(|shared| (*shared).clone());
        for (address, state) in entries {
            if !self.dirty.contains_key(&address) {
                self.dirty_bytes += entry_bytes(&address, state.as_deref().unwrap_or_default());
                self.dirty.insert(address, state);
            }
        }
    }

    /// Evicts least recently used entries down to the limit, but never the
    /// most recent one: a state larger than the whole cache must still be
    /// readable right after it was loaded.
    /// Cache (hits, misses) since the last call.
    pub(crate) fn take_cache_stats(&mut self) -> (u64, u64) {
        (
            std::mem::take(&mut self.hits),
            std::mem::take(&mut self.misses),
        )
    }

    fn evict(&mut self) {
        while self.cache_bytes > self.cache_limit && self.cache.len() > 1 {
            match self.cache.pop_lru() {
                Some((address, state)) => self.cache_bytes -= entry_bytes(&address, &state),
                None => break,
            }
        }
    }
}

fn entry_bytes(address: &Address, state: &[u8]) -> usize {
    // Key, value and roughly the map's own overhead per entry.
    address.type_name().len() + address.id().len() + state.len() + 64
}

/// Idempotency entries: `(address, key) -> stored reply`.
#[derive(Debug)]
pub(crate) struct IdempotencyTable {
    dirty: HashMap<(Address, String), StoredReply>,
    frozen: Option<Frozen<(Address, String), StoredReply>>,
    persisted: Option<Persisted>,
    retention_ms: u64,
    inserts_since_gc: usize,
}

/// In memory mode, expired entries are swept after this many inserts.
const MEMORY_GC_EVERY: usize = 4096;

impl IdempotencyTable {
    pub(crate) fn new(persisted: Option<Persisted>, retention_ms: u64) -> Self {
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
            match persisted.idempotency(address, key)? {
                Some(bytes) => Some(crate::record::decode(&bytes, "an idempotency entry")?),
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
    fn cache_is_bounded_but_dirty_and_frozen_are_not() {
        let mut table = StateTable::new(None, 1_000);
        for i in 0..100 {
            table.put(addr(&format!("{i}")), vec![0; 100]);
        }
        // In memory mode everything is dirty: nothing may be evicted.
        for i in 0..100 {
            assert!(table.get(&addr(&format!("{i}"))).expect("ok").is_some());
        }
        table.freeze();
        table.checkpointed();
        assert!(table.cache_bytes <= 1_000, "cache over its limit");
        assert!(table.cache.len() < 100);
    }

    #[test]
    fn a_state_larger_than_the_cache_is_still_read() {
        let mut table = StateTable::new(None, 10);
        table.put(addr("big"), vec![7; 1_000]);
        table.freeze();
        table.checkpointed();
        assert_eq!(
            table.get(&addr("big")).expect("ok").map(<[u8]>::len),
            Some(1_000)
        );
    }

    #[test]
    fn unfreeze_keeps_newer_writes() {
        let mut table = StateTable::new(None, 1_000);
        table.put(addr("a"), vec![1]);
        table.freeze();
        table.put(addr("a"), vec![2]);
        table.unfreeze();
        assert_eq!(table.get(&addr("a")).expect("ok"), Some(&[2][..]));
    }

    #[test]
    fn expired_idempotency_entries_are_not_answered() {
        let mut table = IdempotencyTable::new(None, 1_000);
        let reply = StoredReply {
            key: "k".into(),
            handler: "h".into(),
            reply: vec![],
            at_ms: 10_000,
        };
        table.insert(addr("a"), reply, 10_000);
        assert!(table.get(&addr("a"), "k", 10_500).expect("ok").is_some());
        assert!(table.get(&addr("a"), "k", 11_000).expect("ok").is_none());
    }
}
