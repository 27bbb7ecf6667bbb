//! The state table: the instance states of one shard.
//!
//! Reads look in the dirty set (changed since the last checkpoint), then the
//! frozen set (being written by a checkpoint), then the cache, then the
//! store. Only the cache is bounded and evicts; dirty and frozen entries are
//! the only copy of state not yet checkpointed, so they stay until it is.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use foldhash::HashMap;

use lru::LruCache;
use statefn_store::ShardTables;

use crate::{Address, Error, error::StorageError};

/// A set handed to a checkpoint: shared with the checkpointer, read by the
/// shard until the checkpoint is written. Hashed with foldhash (seeded per
/// map, as hashbrown's default): the default SipHash was 5-6% of a durable
/// call's instructions with the registry's lookups.
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
    /// Where states are persisted (absent in memory mode).
    persisted: Option<ShardTables>,
    hits: u64,
    misses: u64,
    /// An empty buffer left by a replaced state, for the next one.
    spare: Vec<u8>,
}

/// The largest buffer kept for the next state: a replaced state larger than
/// this goes back to the allocator.
const MAX_SPARE_BUFFER: usize = 4096;

impl StateTable {
    pub(crate) fn new(persisted: Option<ShardTables>, cache_limit: usize) -> Self {
        StateTable {
            dirty: HashMap::default(),
            dirty_bytes: 0,
            frozen: None,
            cache: LruCache::unbounded(),
            cache_bytes: 0,
            cache_limit,
            persisted,
            hits: 0,
            misses: 0,
            spare: Vec::new(),
        }
    }

    /// The state of `address`, `None` for an instance never written.
    pub(crate) fn get(&mut self, address: &Address) -> Result<Option<&[u8]>, Error> {
        // One lookup per set (issue 14: the address was hashed twice here).
        if let Some(state) = self.dirty.get(address) {
            return Ok(state.as_deref());
        }
        if let Some(state) = self.frozen.as_ref().and_then(|f| f.get(address)) {
            return Ok(state.as_deref());
        }
        if !self.cache.is_empty() && self.cache.contains(address) {
            self.hits += 1;
            return Ok(self.cache.get(address).map(Vec::as_slice));
        }
        let Some(persisted) = &self.persisted else {
            return Ok(None);
        };
        self.misses += 1;
        let stored =
            persisted
                .state(address.type_name(), address.id())
                .map_err(StorageError::store(format!(
                    "reading a state of shard {}",
                    persisted.shard()
                )))?;
        let Some(bytes) = stored else {
            return Ok(None);
        };
        self.cache_bytes += entry_bytes(address, &bytes);
        self.cache.put(address.clone(), bytes);
        // By field: the dirty and frozen sets are still borrowed above.
        evict(&mut self.cache, &mut self.cache_bytes, self.cache_limit);
        Ok(self.cache.peek(address).map(Vec::as_slice))
    }

    /// The ids of `type_name`'s instances after `after`, at most `limit`, in
    /// byte order: the store's, overlaid with the changes not yet
    /// checkpointed (new instances in, deleted ones out).
    pub(crate) fn ids(
        &self,
        type_name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        // id -> exists, for the changes not in the store yet (dirty wins).
        let mut overlay: BTreeMap<&str, bool> = BTreeMap::new();
        let frozen = self.frozen.as_deref().into_iter().flatten();
        for (address, state) in frozen.chain(&self.dirty) {
            if address.type_name() == type_name && after.is_none_or(|a| address.id() > a) {
                overlay.insert(address.id(), state.is_some());
            }
        }
        let deleted = overlay.values().filter(|exists| !**exists).count();
        let mut ids: BTreeSet<String> = BTreeSet::new();
        if let Some(persisted) = &self.persisted {
            // Enough stored ids that `limit` remain once deleted ones go.
            let want = limit.saturating_add(deleted);
            let stored =
                persisted
                    .state_ids(type_name, after, want)
                    .map_err(StorageError::store(format!(
                        "listing the states of shard {}",
                        persisted.shard()
                    )))?;
            // A full page: ids past its last one were not looked at.
            let bound = (stored.len() == want)
                .then(|| stored.last().cloned())
                .flatten();
            ids.extend(stored);
            ids.extend(
                overlay
                    .iter()
                    .filter(|(id, exists)| **exists && bound.as_deref().is_none_or(|b| **id <= b))
                    .map(|(id, _)| (*id).to_owned()),
            );
        } else {
            ids.extend(
                overlay
                    .iter()
                    .filter(|(_, exists)| **exists)
                    .map(|(id, _)| (*id).to_owned()),
            );
        }
        ids.retain(|id| overlay.get(id.as_str()) != Some(&false));
        Ok(ids.into_iter().take(limit).collect())
    }

    /// Records a new state (part of the current batch). The state it
    /// replaces in the dirty set keeps its buffer for the next state
    /// ([`take_buffer`](Self::take_buffer)) instead of going back to the
    /// allocator (issue 14).
    ///
    /// The address is hashed once for a dirty instance (the usual case of a
    /// busy one) and cloned only when it enters the set.
    pub(crate) fn put(&mut self, address: &Address, state: Vec<u8>) {
        // The cache is empty in memory mode: no lookup there.
        if !self.cache.is_empty()
            && let Some(old) = self.cache.pop(address)
        {
            self.cache_bytes -= entry_bytes(address, &old);
        }
        self.dirty_bytes += entry_bytes(address, &state);
        let old = match self.dirty.get_mut(address) {
            Some(slot) => slot.replace(state),
            None => self.dirty.insert(address.clone(), Some(state)).flatten(),
        };
        if let Some(mut old) = old {
            self.dirty_bytes -= entry_bytes(address, &old);
            if old.capacity() <= MAX_SPARE_BUFFER && old.capacity() > self.spare.capacity() {
                old.clear();
                self.spare = old;
            }
        }
    }

    /// An empty buffer for the next state to be encoded into: the one a
    /// replaced state left (see [`put`](Self::put)), or a new one.
    pub(crate) fn take_buffer(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.spare)
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

    /// Cache (hits, misses) since the last call.
    pub(crate) fn take_cache_stats(&mut self) -> (u64, u64) {
        (
            std::mem::take(&mut self.hits),
            std::mem::take(&mut self.misses),
        )
    }

    /// Evicts least recently used entries down to the limit, but never the
    /// most recent one: a state larger than the whole cache must still be
    /// readable right after it was loaded.
    fn evict(&mut self) {
        evict(&mut self.cache, &mut self.cache_bytes, self.cache_limit);
    }
}

/// [`StateTable::evict`] on the cache's fields.
fn evict(cache: &mut LruCache<Address, Vec<u8>>, cache_bytes: &mut usize, limit: usize) {
    while *cache_bytes > limit && cache.len() > 1 {
        match cache.pop_lru() {
            Some((address, state)) => *cache_bytes -= entry_bytes(&address, &state),
            None => break,
        }
    }
}

fn entry_bytes(address: &Address, state: &[u8]) -> usize {
    // Key, value and roughly the map's own overhead per entry.
    address.type_name().len() + address.id().len() + state.len() + 64
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
            table.put(&addr(&format!("{i}")), vec![0; 100]);
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
        table.put(&addr("big"), vec![7; 1_000]);
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
        table.put(&addr("a"), vec![1]);
        table.freeze();
        table.put(&addr("a"), vec![2]);
        table.unfreeze();
        assert_eq!(table.get(&addr("a")).expect("ok"), Some(&[2][..]));
    }

    /// A replaced dirty state leaves its buffer for the next state (not a
    /// frozen one: the checkpoint still reads it; not an oversized one).
    #[test]
    fn a_replaced_state_leaves_its_buffer_for_the_next() {
        let mut table = StateTable::new(None, 1_000);
        table.put(&addr("a"), Vec::with_capacity(64));
        assert_eq!(table.take_buffer().capacity(), 0, "nothing replaced yet");
        table.put(&addr("a"), vec![1]);
        let buffer = table.take_buffer();
        assert_eq!((buffer.len(), buffer.capacity()), (0, 64));
        assert_eq!(table.take_buffer().capacity(), 0, "taken once");
        table.freeze();
        table.put(&addr("a"), vec![2]);
        assert_eq!(table.take_buffer().capacity(), 0, "the frozen one stays");
        table.put(&addr("a"), Vec::with_capacity(MAX_SPARE_BUFFER + 1));
        assert_eq!(table.take_buffer().capacity(), 1, "the one it replaced");
        table.put(&addr("a"), vec![3]);
        assert_eq!(table.take_buffer().capacity(), 0, "too large to keep");
        assert_eq!(table.get(&addr("a")).expect("ok"), Some(&[3][..]));
    }
}
