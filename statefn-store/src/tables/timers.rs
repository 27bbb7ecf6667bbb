//! The timer table: a shard's durable timers by due time, and the timers
//! each instance holds under a key.
//!
//! - Due index: `1`, the due time (big-endian unix milliseconds), the timer
//!   id (big-endian `u64`) → the timer. Keys sort by due time, so the
//!   runtime loads only the timers due next and reads on from there.
//! - Key index: `2`, the state key of the instance, `0xff`, the timer's key
//!   → its due time and id (16 bytes, as in the due index). `0xff` never
//!   occurs in UTF-8, so the split is unambiguous.
//! - Legacy (data directories written before the due index): the timer id
//!   (big-endian `u64`) → the timer. Ids start at 1 and stay below 2^56, so
//!   these keys start with a `0` byte and never meet the two indexes. They
//!   are read once, at open, and moved to the due index by the next
//!   checkpoint.

use super::{ShardBatch, ShardTables, state};
use crate::StoreError;
use crate::state::Table;

/// Tag of the due index.
const DUE: u8 = 1;
/// Tag of the key index.
const KEYED: u8 = 2;

/// Where a timer sits in the due index: `(due time, timer id)`.
pub type DueSlot = (u64, u64);

/// The due-index key of a timer.
fn due_key(due_ms: u64, id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(17);
    key.push(DUE);
    key.extend_from_slice(&due_ms.to_be_bytes());
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The due time and id of a due-index key.
fn parse_due_key(key: &[u8]) -> Option<DueSlot> {
    let (&tag, rest) = key.split_first()?;
    let (due, rest) = rest.split_first_chunk::<8>()?;
    let (id, rest) = rest.split_first_chunk::<8>()?;
    (tag == DUE && rest.is_empty()).then_some((u64::from_be_bytes(*due), u64::from_be_bytes(*id)))
}

/// The key-index key of the timer `timer_key` of an instance.
fn keyed_key(type_name: &str, id: &str, timer_key: &[u8]) -> Vec<u8> {
    let state_key = state::key(type_name, id);
    let mut key = Vec::with_capacity(2 + state_key.len() + timer_key.len());
    key.push(KEYED);
    key.extend_from_slice(&state_key);
    key.push(0xff);
    key.extend_from_slice(timer_key);
    key
}

/// A slot as the key index stores it.
fn slot_bytes((due_ms, id): DueSlot) -> Vec<u8> {
    let mut value = Vec::with_capacity(16);
    value.extend_from_slice(&due_ms.to_be_bytes());
    value.extend_from_slice(&id.to_be_bytes());
    value
}

impl ShardTables {
    /// Timers due in `[from, until_ms)`, `from` being a `(due, id)` slot,
    /// in due order, at most `limit`: `(slot, timer)`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] on a read failure.
    pub fn timers_due(
        &self,
        from: DueSlot,
        until_ms: u64,
        limit: usize,
    ) -> Result<Vec<(DueSlot, Vec<u8>)>, StoreError> {
        let rows = self.store.scan_range(
            self.shard.0,
            Table::Timer,
            &due_key(from.0, from.1),
            &due_key(until_ms, 0),
            limit,
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|(key, value)| Some((parse_due_key(&key)?, value)))
            .collect())
    }

    /// The slot of the timer instance `id` of `type_name` holds under
    /// `timer_key`, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] on a read failure; [`StoreError::KeyTooLong`];
    /// [`StoreError::Corrupt`] if the stored slot is not 16 bytes.
    pub fn timer_slot(
        &self,
        type_name: &str,
        id: &str,
        timer_key: &[u8],
    ) -> Result<Option<DueSlot>, StoreError> {
        let Some(value) = self.get(Table::Timer, &keyed_key(type_name, id, timer_key))? else {
            return Ok(None);
        };
        let corrupt = || StoreError::Corrupt {
            what: format!("the slot of timer key {timer_key:?} of `{type_name}/{id}`"),
            reason: format!("it is {} bytes, not 16", value.len()),
        };
        let (due, rest) = value.split_first_chunk::<8>().ok_or_else(corrupt)?;
        let id = <[u8; 8]>::try_from(rest).map_err(|_| corrupt())?;
        Ok(Some((u64::from_be_bytes(*due), u64::from_be_bytes(id))))
    }

    /// The timer stored in `slot` of the due index, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] on a read failure.
    pub fn timer_at(&self, (due_ms, id): DueSlot) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(Table::Timer, &due_key(due_ms, id))
    }

    /// Every key instance `id` of `type_name` holds a timer under, with the
    /// timer's slot: `(timer key, slot)`, in key order. Timer keys never
    /// start with `0xff`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] on a read failure; [`StoreError::KeyTooLong`];
    /// [`StoreError::Corrupt`] if a stored slot is not 16 bytes.
    pub fn timer_keys(
        &self,
        type_name: &str,
        id: &str,
    ) -> Result<Vec<(Vec<u8>, DueSlot)>, StoreError> {
        let from = keyed_key(type_name, id, &[]);
        let until = keyed_key(type_name, id, &[0xff]);
        let rows = self
            .store
            .scan_range(self.shard.0, Table::Timer, &from, &until, usize::MAX)?;
        rows.into_iter()
            .map(|(key, value)| {
                let timer_key = key.get(from.len()..).unwrap_or_default().to_vec();
                let corrupt = || StoreError::Corrupt {
                    what: format!("the slot of timer key {timer_key:?} of `{type_name}/{id}`"),
                    reason: format!("it is {} bytes, not 16", value.len()),
                };
                let (due, rest) = value.split_first_chunk::<8>().ok_or_else(corrupt)?;
                let slot_id = <[u8; 8]>::try_from(rest).map_err(|_| corrupt())?;
                Ok((
                    timer_key,
                    (u64::from_be_bytes(*due), u64::from_be_bytes(slot_id)),
                ))
            })
            .collect()
    }

    /// Every timer stored by id, the layout before the due index:
    /// `(id, timer)`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fjall`] on a read failure.
    pub fn legacy_timers(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let rows = self
            .store
            .scan_range(self.shard.0, Table::Timer, &[], &[DUE], usize::MAX)?;
        Ok(rows
            .into_iter()
            .filter_map(|(key, value)| {
                let id = <[u8; 8]>::try_from(key.as_slice()).ok()?;
                Some((u64::from_be_bytes(id), value))
            })
            .collect())
    }
}

impl ShardBatch {
    /// Stores timer `id`, due at `due_ms`.
    pub fn put_timer(&mut self, due_ms: u64, id: u64, timer: Vec<u8>) {
        self.push(Table::Timer, due_key(due_ms, id), Some(timer));
    }

    /// Deletes timer `id`, due at `due_ms` (it fired or was cancelled).
    pub fn delete_timer(&mut self, due_ms: u64, id: u64) {
        self.push(Table::Timer, due_key(due_ms, id), None);
    }

    /// Records that instance `id` of `type_name` holds the timer in `slot`
    /// under `timer_key`, or (`None`) no timer under it.
    pub fn put_timer_slot(
        &mut self,
        type_name: &str,
        id: &str,
        timer_key: &[u8],
        slot: Option<DueSlot>,
    ) {
        self.push(
            Table::Timer,
            keyed_key(type_name, id, timer_key),
            slot.map(slot_bytes),
        );
    }

    /// Deletes a timer stored by id, the layout before the due index.
    pub fn delete_legacy_timer(&mut self, id: u64) {
        self.push(Table::Timer, id.to_be_bytes().to_vec(), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ShardId, StateStore};

    #[test]
    fn due_keys_sort_by_time_then_id_and_parse_back() {
        assert!(due_key(5, 9) < due_key(6, 1));
        assert!(due_key(5, 1) < due_key(5, 2));
        assert_eq!(parse_due_key(&due_key(7, 3)), Some((7, 3)));
        assert_eq!(parse_due_key(&keyed_key("T", "a", b"k")), None);
        assert_eq!(keyed_key("T", "a", b"k"), b"\x02T\0a\xffk");
    }

    #[test]
    fn an_instances_timer_keys_are_listed_and_only_its_own()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = StateStore::open(dir.path())?;
        let shard = store.shard(ShardId(1));
        let mut batch = shard.batch();
        batch.put_timer(20, 4, vec![4]);
        batch.put_timer_slot("T", "a", b"nidle", Some((20, 4)));
        batch.put_timer_slot("T", "a", b"e", Some((30, 5)));
        // Neighbours: a longer id, another type.
        batch.put_timer_slot("T", "ab", b"nidle", Some((40, 6)));
        batch.put_timer_slot("U", "a", b"nidle", Some((50, 7)));
        batch.commit()?;
        assert_eq!(
            shard.timer_keys("T", "a")?,
            vec![(b"e".to_vec(), (30, 5)), (b"nidle".to_vec(), (20, 4))]
        );
        assert_eq!(shard.timer_at((20, 4))?, Some(vec![4]));
        assert_eq!(shard.timer_at((20, 5))?, None);
        Ok(())
    }

    #[test]
    fn a_range_read_stops_at_its_end_and_the_layouts_stay_apart()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = StateStore::open(dir.path())?;
        let shard = store.shard(ShardId(1));
        let mut batch = shard.batch();
        for (due, id) in [(30, 3), (10, 1), (20, 2), (20, 4)] {
            batch.put_timer(due, id, vec![u8::try_from(id).unwrap_or(0)]);
        }
        batch.put_timer_slot("T", "a", b"idle", Some((20, 4)));
        batch.delete_legacy_timer(99);
        store
            .shard(ShardId(2))
            .batch()
            .commit()
            .and_then(|()| batch.commit())?;
        let mut legacy = shard.batch();
        legacy.push(
            Table::Timer,
            42u64.to_be_bytes().to_vec(),
            Some(b"old".to_vec()),
        );
        legacy.commit()?;

        let due = shard.timers_due((0, 0), 30, 10)?;
        let slots: Vec<DueSlot> = due.iter().map(|(slot, _)| *slot).collect();
        assert_eq!(slots, vec![(10, 1), (20, 2), (20, 4)]);
        assert_eq!(shard.timers_due((20, 3), 31, 1)?.len(), 1);
        assert_eq!(shard.timers_due((20, 3), 31, 1)?[0].0, (20, 4));
        assert_eq!(shard.timer_slot("T", "a", b"idle")?, Some((20, 4)));
        assert_eq!(shard.timer_slot("T", "a", b"other")?, None);
        assert_eq!(shard.legacy_timers()?, vec![(42, b"old".to_vec())]);
        assert!(
            store
                .shard(ShardId(2))
                .timers_due((0, 0), u64::MAX, 10)?
                .is_empty()
        );

        let mut clear = shard.batch();
        clear.delete_timer(20, 4);
        clear.put_timer_slot("T", "a", b"idle", None);
        clear.delete_legacy_timer(42);
        clear.commit()?;
        assert_eq!(shard.timers_due((0, 0), u64::MAX, 10)?.len(), 3);
        assert_eq!(shard.timer_slot("T", "a", b"idle")?, None);
        assert!(shard.legacy_timers()?.is_empty());
        Ok(())
    }
}
