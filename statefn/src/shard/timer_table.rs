//! A shard's durable timers: delayed messages, keyed timers and expiry
//! checks. A timer's message lives here (and in the log), not in the timer
//! service, so a wake-up lost in a crash is armed again on recovery and the
//! message is sent once: its removal and its send share one record.
//!
//! Timers scale like states: the store keeps them by due time
//! (`statefn-store`'s timer table), and memory holds only
//!
//! - the **window**: every timer due before the horizon, the ones due
//!   next, about [`CoreConfig::timers_in_memory`](super::CoreConfig) of
//!   them, which the timer service is armed with; when it runs low as they
//!   fire (or are cancelled), the timers due next are read from the store
//!   ([`refill`](TimerTable::refill)), and the horizon moves on;
//! - the **changes** since the last checkpoint (armed, removed, the key
//!   index), which the next checkpoint writes: a checkpoint writes what
//!   changed, not every timer;
//! - nothing else: a million timers due next month cost no memory.
//!
//! In memory mode there is no store: every timer is in the window.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use statefn_store::ShardTables;

use crate::{
    Address, Error,
    error::StorageError,
    protocol::{
        ids::{TimerId, TimerSlot},
        record::{TimerEntry, TimerKey, decode},
    },
};

/// The id of the refill wake-up: never a timer's (ids start at 1).
pub(crate) const REFILL: TimerId = TimerId(0);

/// What changed since a freeze: timers armed (`Some`) or removed (`None`),
/// and the key index (`None`: no timer under that key any more).
#[derive(Debug, Default)]
pub(crate) struct TimerChanges {
    pub(crate) timers: BTreeMap<TimerSlot, Option<TimerEntry>>,
    pub(crate) keys: HashMap<(Address, TimerKey), Option<TimerSlot>>,
    /// Timers of the layout before the due index, moved by this checkpoint.
    pub(crate) legacy_removed: Vec<TimerId>,
    bytes: usize,
}

impl TimerChanges {
    fn set_timer(&mut self, slot: TimerSlot, entry: Option<TimerEntry>) {
        self.bytes += entry.as_ref().map_or(0, |e| e.outgoing.message.len()) + 64;
        self.timers.insert(slot, entry);
    }

    fn set_key(&mut self, owner: Address, key: TimerKey, slot: Option<TimerSlot>) {
        self.bytes += owner.id().len() + 64;
        self.keys.insert((owner, key), slot);
    }
}

/// A shard's timers: the window in memory, the changes not yet
/// checkpointed, and the store.
#[derive(Debug)]
pub(crate) struct TimerTable {
    next: TimerId,
    /// Every live timer due before `horizon`, in firing order.
    window: BTreeMap<TimerSlot, TimerEntry>,
    /// Every timer due before it is in `window` (in memory mode: all).
    horizon: u64,
    /// The most timers the window takes in one refill.
    window_limit: usize,
    /// Changes since the last freeze. In memory mode only `keys` is used:
    /// it is the whole key index.
    dirty: TimerChanges,
    /// Changes a checkpoint is writing; reads see them until it is done.
    frozen: Option<Arc<TimerChanges>>,
    /// The last refill stopped short of its time span for lack of room:
    /// the window takes more as soon as it is half empty.
    limited: bool,
    /// When the refill wake-up is armed, if it is.
    wake_ms: Option<u64>,
    persisted: Option<ShardTables>,
}

/// What a refill changed in the timer service.
#[derive(Debug, Default)]
pub(crate) struct Refilled {
    /// Timers now in the window, to arm.
    pub(crate) armed: Vec<TimerSlot>,
    /// The refill wake-up to arm, and the one it replaces.
    pub(crate) wake: Option<u64>,
    pub(crate) old_wake: Option<u64>,
}

impl TimerTable {
    /// An empty table; `persisted`: where its timers are stored (durable
    /// mode); `window_limit`: the most timers a refill brings into memory.
    pub(crate) fn new(persisted: Option<ShardTables>, window_limit: usize) -> Self {
        TimerTable {
            next: TimerId(1),
            window: BTreeMap::new(),
            horizon: if persisted.is_some() { 0 } else { u64::MAX },
            window_limit: window_limit.max(1),
            dirty: TimerChanges::default(),
            frozen: None,
            limited: false,
            wake_ms: None,
            persisted,
        }
    }

    fn durable(&self) -> bool {
        self.persisted.is_some()
    }

    /// A core restored from a checkpoint: ids go on from `next`. Timers of
    /// the layout before the due index become changes, so that the next
    /// checkpoint moves them. The window opens with the first
    /// [`refill`](Self::refill), after the log is replayed.
    pub(crate) fn restore(&mut self, next: TimerId) -> Result<(), Error> {
        self.next = next.max(TimerId(1));
        let Some(persisted) = &self.persisted else {
            return Ok(());
        };
        let legacy = persisted
            .legacy_timers()
            .map_err(StorageError::store(format!(
                "reading the timers of shard {}",
                persisted.shard()
            )))?;
        for (id, bytes) in legacy {
            let timer: TimerEntry = decode(&bytes, "a timer")?;
            self.dirty.legacy_removed.push(TimerId(id));
            self.replay_armed(timer);
        }
        Ok(())
    }

    /// Takes the next id.
    pub(crate) fn next_id(&mut self) -> TimerId {
        let id = self.next;
        self.next = id.next();
        id
    }

    /// The next id to give (for a checkpoint).
    pub(crate) fn next(&self) -> TimerId {
        self.next
    }

    /// Arms a timer (under its key, if it has one: the caller removed the
    /// one it replaces). Returns whether it is in the window, i.e. whether
    /// the timer service must be armed with it.
    pub(crate) fn arm(&mut self, entry: TimerEntry) -> bool {
        let slot = entry.slot();
        if let Some(key) = &entry.key {
            self.set_key(entry.outgoing.target.clone(), key.clone(), Some(slot));
        }
        if self.durable() {
            self.dirty.set_timer(slot, Some(entry.clone()));
        }
        if slot.due_ms < self.horizon {
            self.window.insert(slot, entry);
            true
        } else {
            false
        }
    }

    /// Removes the timer in `slot` that is due: `None` if it is not there
    /// any more (cancelled or replaced after its wake-up was queued). Its
    /// key, if it has one, now holds nothing.
    pub(crate) fn take_due(&mut self, slot: TimerSlot) -> Option<TimerEntry> {
        let entry = self.window.remove(&slot)?;
        if self.durable() {
            self.dirty.set_timer(slot, None);
        }
        if let Some(key) = &entry.key {
            self.set_key(entry.outgoing.target.clone(), key.clone(), None);
        }
        Some(entry)
    }

    /// Removes the timer `owner` holds in `slot` under `key` (cancelled or
    /// replaced), wherever it is: in the window, or only in the store.
    pub(crate) fn remove_keyed(&mut self, owner: &Address, key: &TimerKey, slot: TimerSlot) {
        self.window.remove(&slot);
        if self.durable() {
            self.dirty.set_timer(slot, None);
        }
        self.set_key(owner.clone(), key.clone(), None);
    }

    /// The slot of the timer `owner` holds under `key`, if any.
    pub(crate) fn slot_of_key(
        &self,
        owner: &Address,
        key: &TimerKey,
    ) -> Result<Option<TimerSlot>, Error> {
        let probe = (owner.clone(), key.clone());
        if let Some(slot) = self.dirty.keys.get(&probe) {
            return Ok(*slot);
        }
        if let Some(slot) = self.frozen.as_ref().and_then(|f| f.keys.get(&probe)) {
            return Ok(*slot);
        }
        let Some(persisted) = &self.persisted else {
            return Ok(None);
        };
        let stored = persisted
            .timer_slot(owner.type_name(), owner.id(), &key.stored())
            .map_err(StorageError::store(format!(
                "reading a timer key of shard {}",
                persisted.shard()
            )))?;
        Ok(stored.map(TimerSlot::from_stored))
    }

    /// Every key `owner` holds a timer under, with the timer's slot: the
    /// store's key index, overlaid by the changes not yet in it.
    pub(crate) fn keys_of(&self, owner: &Address) -> Result<Vec<(TimerKey, TimerSlot)>, Error> {
        let mut keys = std::collections::BTreeMap::new();
        if let Some(persisted) = &self.persisted {
            let stored = persisted
                .timer_keys(owner.type_name(), owner.id())
                .map_err(StorageError::store(format!(
                    "reading the timer keys of shard {}",
                    persisted.shard()
                )))?;
            for (bytes, slot) in stored {
                let key = TimerKey::from_stored(&bytes).ok_or_else(|| StorageError::Corrupt {
                    what: format!("a timer key of `{owner}`"),
                    reason: format!("{bytes:?} is not a timer key"),
                })?;
                keys.insert(key, Some(TimerSlot::from_stored(slot)));
            }
        }
        let changes = self.frozen.iter().map(Arc::as_ref).chain([&self.dirty]);
        for changes in changes {
            for ((held_by, key), slot) in &changes.keys {
                if held_by == owner {
                    keys.insert(key.clone(), *slot);
                }
            }
        }
        Ok(keys
            .into_iter()
            .filter_map(|(key, slot)| Some((key, slot?)))
            .collect())
    }

    /// The live timer in `slot`, wherever it is (`None`: there is none).
    pub(crate) fn entry_at(&self, slot: TimerSlot) -> Result<Option<TimerEntry>, Error> {
        if let Some(entry) = self.window.get(&slot) {
            return Ok(Some(entry.clone()));
        }
        if let Some(change) = self.dirty.timers.get(&slot) {
            return Ok(change.clone());
        }
        if let Some(change) = self.frozen.as_ref().and_then(|f| f.timers.get(&slot)) {
            return Ok(change.clone());
        }
        let Some(persisted) = &self.persisted else {
            return Ok(None);
        };
        let bytes = persisted
            .timer_at(slot.stored())
            .map_err(StorageError::store(format!(
                "reading a timer of shard {}",
                persisted.shard()
            )))?;
        bytes.map(|b| decode(&b, "a timer")).transpose()
    }

    fn set_key(&mut self, owner: Address, key: TimerKey, slot: Option<TimerSlot>) {
        if self.durable() {
            self.dirty.set_key(owner, key, slot);
        } else if let Some(slot) = slot {
            self.dirty.keys.insert((owner, key), Some(slot));
        } else {
            self.dirty.keys.remove(&(owner, key));
        }
    }

    /// Replay: a timer armed by a committed record.
    pub(crate) fn replay_armed(&mut self, timer: TimerEntry) {
        self.next = self.next.max(timer.id.next());
        self.arm(timer);
    }

    /// Replay: the timer in `slot` fired or was removed; `key`: the key
    /// its owner held it under.
    pub(crate) fn replay_removed(&mut self, slot: TimerSlot, key: Option<(&Address, &TimerKey)>) {
        self.window.remove(&slot);
        if self.durable() {
            self.dirty.set_timer(slot, None);
        }
        if let Some((owner, key)) = key {
            self.set_key(owner.clone(), key.clone(), None);
        }
    }

    /// The slot of timer `id`, for records written before records named
    /// slots: such a timer was armed by a record replayed before it or read
    /// from the layout before the due index, so it is among the changes.
    pub(crate) fn slot_of_id(&self, id: TimerId) -> Option<TimerSlot> {
        let in_changes = |changes: &TimerChanges| {
            changes
                .timers
                .iter()
                .find(|(slot, entry)| slot.id == id && entry.is_some())
                .map(|(slot, _)| *slot)
        };
        self.window
            .keys()
            .find(|slot| slot.id == id)
            .copied()
            .or_else(|| in_changes(&self.dirty))
            .or_else(|| self.frozen.as_deref().and_then(in_changes))
    }

    /// The live timers held in memory: the window and the changes not yet
    /// in the store (after [`restore`](Self::restore) and replay, every
    /// timer of the layout before the due index and every one the replayed
    /// log armed). Timers only in the store are not read.
    pub(crate) fn held(&self) -> BTreeMap<TimerSlot, TimerEntry> {
        let mut held = BTreeMap::new();
        let changes = self.frozen.iter().map(Arc::as_ref).chain([&self.dirty]);
        for changes in changes {
            for (slot, entry) in &changes.timers {
                match entry {
                    Some(entry) => held.insert(*slot, entry.clone()),
                    None => held.remove(slot),
                };
            }
        }
        for (slot, entry) in &self.window {
            held.insert(*slot, entry.clone());
        }
        held
    }

    /// Replaces a held timer by `entry` (same slot, same key): its message
    /// was rewritten.
    pub(crate) fn replace(&mut self, entry: TimerEntry) {
        let slot = entry.slot();
        if let Some(held) = self.window.get_mut(&slot) {
            *held = entry.clone();
        }
        if self.durable() {
            self.dirty.set_timer(slot, Some(entry));
        }
    }

    /// Removes the timer in `slot`, wherever it is, and its key.
    pub(crate) fn remove(&mut self, entry: &TimerEntry) {
        let slot = entry.slot();
        self.window.remove(&slot);
        if self.durable() {
            self.dirty.set_timer(slot, None);
        }
        if let Some(key) = &entry.key {
            self.set_key(entry.outgoing.target.clone(), key.clone(), None);
        }
    }

    /// Whether the window should take the timers due next now: its last
    /// refill ran out of room, and it is less than half full.
    pub(crate) fn wants_refill(&self) -> bool {
        self.limited && self.window.len() < self.window_limit / 2
    }

    /// Moves the horizon on: reads the timers due next from the store and
    /// the changes, as many as the window has room for, and says which to
    /// arm. When they all fit, the horizon is the end of time: every timer
    /// is in memory, and timers armed later join the window (up to twice
    /// its limit, see [`shrink`](Self::shrink)). Nothing is read on a
    /// clock: only when the window runs low ([`wants_refill`](Self::wants_refill)).
    pub(crate) fn refill(&mut self) -> Result<Refilled, Error> {
        let mut refilled = Refilled::default();
        let Some(persisted) = self.persisted.clone() else {
            return Ok(refilled);
        };
        let room = self.window_limit.saturating_sub(self.window.len());
        if room == 0 || self.horizon == u64::MAX {
            return Ok(refilled);
        }
        let from = TimerSlot {
            due_ms: self.horizon,
            id: TimerId(0),
        };
        let doing = || format!("reading the timers of shard {}", persisted.shard());
        let mut rows = persisted
            .timers_due(from.stored(), u64::MAX, room.saturating_add(1))
            .map_err(StorageError::store(doing()))?;
        // More than there is room for: stop before the first one left out,
        // but always past at least one due time.
        let mut until = u64::MAX;
        if rows.len() > room
            && let Some(&((first_left_out, _), _)) = rows.get(room)
        {
            if first_left_out > self.horizon {
                until = first_left_out;
                rows.truncate(room);
                rows.retain(|((due, _), _)| *due < until);
            } else {
                until = self.horizon.saturating_add(1);
                rows = persisted
                    .timers_due(from.stored(), until, usize::MAX)
                    .map_err(StorageError::store(doing()))?;
            }
        }
        let end = TimerSlot {
            due_ms: until,
            id: TimerId(0),
        };
        for (slot, bytes) in rows {
            let entry: TimerEntry = decode(&bytes, "a timer")?;
            self.window.insert(TimerSlot::from_stored(slot), entry);
        }
        // The changes not yet in the store win over it, newest last.
        let changes = self.frozen.iter().map(Arc::as_ref).chain([&self.dirty]);
        for changes in changes {
            for (slot, entry) in changes.timers.range(from..end) {
                match entry {
                    Some(entry) => self.window.insert(*slot, entry.clone()),
                    None => self.window.remove(slot),
                };
            }
        }
        self.horizon = until;
        self.limited = until < u64::MAX;
        // Changes not yet checkpointed may be many: keep the bound.
        let _ = self.shrink();
        refilled.armed = self.window.range(from..).map(|(slot, _)| *slot).collect();
        Ok(refilled)
    }

    /// Whether `due_ms` is the refill wake-up armed now (an older one is
    /// stale).
    pub(crate) fn is_wake(&self, due_ms: u64) -> bool {
        self.wake_ms == Some(due_ms)
    }

    /// Arms the refill wake-up at `at` (after a failed refill); returns the
    /// one it replaces.
    pub(crate) fn set_wake(&mut self, at: u64) -> Option<u64> {
        self.wake_ms.replace(at)
    }

    /// Keeps the window within twice its limit when timers due soon are
    /// armed faster than they fire: the latest leave memory (they are in
    /// the store or the changes) and the horizon comes back to them.
    /// Returns the slots to drop from the timer service, and the refill
    /// wake-up to drop (the window refills as it empties instead).
    pub(crate) fn shrink(&mut self) -> (Vec<TimerSlot>, Option<u64>) {
        if !self.durable() || self.window.len() <= self.window_limit.saturating_mul(2) {
            return (Vec::new(), None);
        }
        let mut evicted = Vec::new();
        while self.window.len() > self.window_limit {
            let Some((slot, _)) = self.window.pop_last() else {
                break;
            };
            evicted.push(slot);
        }
        // Every timer due at the new horizon leaves too.
        if let Some(horizon) = evicted.last().map(|s| s.due_ms) {
            while let Some(entry) = self.window.last_entry()
                && entry.key().due_ms >= horizon
            {
                evicted.push(entry.remove_entry().0);
            }
            self.horizon = horizon;
        }
        self.limited = true;
        (evicted, self.wake_ms.take())
    }

    /// What the timer service must hold for this shard: the window and the
    /// refill wake-up (after a recovery).
    pub(crate) fn armed(&self) -> (Vec<TimerSlot>, Option<u64>) {
        (self.window.keys().copied().collect(), self.wake_ms)
    }

    /// The timers in the window.
    #[cfg(test)]
    pub(crate) fn window(&self) -> impl Iterator<Item = &TimerEntry> {
        self.window.values()
    }

    /// Bytes of changes since the last freeze (a checkpoint trigger).
    pub(crate) fn dirty_bytes(&self) -> usize {
        if self.durable() { self.dirty.bytes } else { 0 }
    }

    /// Hands the changes to a checkpoint; reads still see them.
    pub(crate) fn freeze(&mut self) -> Arc<TimerChanges> {
        let frozen = Arc::new(std::mem::take(&mut self.dirty));
        self.frozen = Some(Arc::clone(&frozen));
        frozen
    }

    /// The frozen changes are in the store.
    pub(crate) fn checkpointed(&mut self) {
        self.frozen = None;
    }

    /// The checkpoint failed: its changes are changes again (unless newer
    /// ones replaced them), removals and legacy moves included.
    pub(crate) fn unfreeze(&mut self) {
        let Some(frozen) = self.frozen.take() else {
            return;
        };
        let frozen = Arc::try_unwrap(frozen).unwrap_or_else(|shared| TimerChanges {
            timers: shared.timers.clone(),
            keys: shared.keys.clone(),
            legacy_removed: shared.legacy_removed.clone(),
            bytes: shared.bytes,
        });
        for (slot, entry) in frozen.timers {
            if !self.dirty.timers.contains_key(&slot) {
                self.dirty.set_timer(slot, entry);
            }
        }
        for ((owner, key), slot) in frozen.keys {
            if !self.dirty.keys.contains_key(&(owner.clone(), key.clone())) {
                self.dirty.set_key(owner, key, slot);
            }
        }
        let mut legacy = frozen.legacy_removed;
        legacy.append(&mut self.dirty.legacy_removed);
        self.dirty.legacy_removed = legacy;
    }
}

#[cfg(test)]
mod tests {
    use statefn_store::StateStore;

    use super::*;
    use crate::protocol::envelope::Outgoing;

    fn timer(id: u64, due_ms: u64, owner: &str) -> TimerEntry {
        TimerEntry {
            id: TimerId(id),
            due_ms,
            outgoing: Outgoing {
                target: Address::new("T", owner).expect("valid"),
                message: vec![1, 2, 3],
                delay: None,
                reply_to: None,
                guard: None,
                attempt: 0,
                provenance: Default::default(),
            },
            key: Some(TimerKey::Named("k".into())),
            every_ms: None,
        }
    }

    /// Writes what `table` froze, as the checkpointer does.
    fn checkpoint(table: &mut TimerTable, tables: &ShardTables) -> usize {
        let changes = table.freeze();
        let mut batch = tables.batch();
        for (slot, timer) in &changes.timers {
            match timer {
                Some(t) => batch.put_timer(
                    slot.due_ms,
                    slot.id.0,
                    crate::protocol::record::encode(t).expect("encodes"),
                ),
                None => batch.delete_timer(slot.due_ms, slot.id.0),
            }
        }
        for ((owner, key), slot) in &changes.keys {
            batch.put_timer_slot(
                owner.type_name(),
                owner.id(),
                &key.stored(),
                slot.map(|s| s.stored()),
            );
        }
        batch.commit().expect("commits");
        table.checkpointed();
        changes.timers.len()
    }

    #[test]
    fn a_checkpoint_writes_the_timers_that_changed_and_memory_holds_only_the_window() {
        const N: u64 = 1_000;
        const LIMIT: usize = 16;
        let dir = tempfile::tempdir().expect("temp dir");
        let store = StateStore::open(dir.path()).expect("store");
        let tables = store.shard(statefn_store::ShardId(0));
        let now = 1_000_000;
        let mut table = TimerTable::new(Some(tables.clone()), LIMIT);
        table.refill().expect("opens");
        // Due one a second from now on: most are past the window.
        for i in 1..=N {
            table.arm(timer(i, now + i * 1_000, &format!("i{i}")));
        }
        assert_eq!(checkpoint(&mut table, &tables), 1_000);
        table.arm(timer(N + 1, now + 10, "late"));
        assert_eq!(
            checkpoint(&mut table, &tables),
            1,
            "only the new timer is written"
        );

        // A table reopened over the store holds at most the window, and
        // fires every timer once, in due order, as the window moves on.
        let mut reopened = TimerTable::new(Some(tables), LIMIT);
        reopened.restore(TimerId(N + 2)).expect("restores");
        let mut armed: std::collections::BTreeSet<TimerSlot> = reopened
            .refill()
            .expect("refills")
            .armed
            .into_iter()
            .collect();
        let mut fired = Vec::new();
        let mut most_held = 0;
        while let Some(slot) = armed.pop_first() {
            most_held = most_held.max(reopened.window.len());
            let entry = reopened.take_due(slot).expect("a due timer is there once");
            fired.push(entry.slot());
            if reopened.wants_refill() {
                armed.extend(reopened.refill().expect("refills").armed);
            }
        }
        assert!(most_held <= LIMIT, "held {most_held} timers at once");
        assert_eq!(fired.len(), 1_001);
        assert!(
            fired.windows(2).all(|w| w[0] < w[1]),
            "due order, no repeat"
        );
    }
}
