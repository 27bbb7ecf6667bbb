//! A shard's durable timers: delayed messages, keyed timers and expiry
//! checks. A timer's message lives here (and in the log), not in the timer
//! service, so a wake-up lost in a crash is armed again on recovery and the
//! message is sent once: its removal and its send share one record.
//!
//! Timers scale like states: the store keeps them by due time
//! (`statefn-store`'s timer table), and memory holds only
//!
//! - the **window**: every timer due before the horizon, at most
//!   [`CoreConfig::timers_in_memory`](super::CoreConfig) of them, which the
//!   timer service is armed with; the horizon moves on as they fire, and the
//!   timers due next are read from the store
//!   ([`refill`](TimerTable::refill));
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
        record::{TimerEntry, TimerEntryV1, TimerKey, decode},
    },
};

/// How far ahead of now the window reaches at most: timers due later are
/// read from the store as their time comes.
pub(crate) const WINDOW_MS: u64 = 5 * 60 * 1000;

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
            let timer: TimerEntryV1 = decode(&bytes, "a timer")?;
            self.dirty.legacy_removed.push(TimerId(id));
            self.replay_armed(timer.upgrade());
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

    /// Whether the window should take the timers due next now: its last
    /// refill ran out of room, and it is less than half full.
    pub(crate) fn wants_refill(&self) -> bool {
        self.limited && self.window.len() < self.window_limit / 2
    }

    /// Moves the horizon on: reads the timers due before `now_ms +
    /// WINDOW_MS` (at most as many as the window has room for) from the
    /// store and the changes, and says what to arm.
    pub(crate) fn refill(&mut self, now_ms: u64) -> Result<Refilled, Error> {
        let mut refilled = Refilled::default();
        let Some(persisted) = self.persisted.clone() else {
            return Ok(refilled);
        };
        let target = now_ms.saturating_add(WINDOW_MS);
        let room = self.window_limit.saturating_sub(self.window.len());
        if room > 0 && self.horizon < target {
            let from = TimerSlot {
                due_ms: self.horizon,
                id: TimerId(0),
            };
            let doing = || format!("reading the timers of shard {}", persisted.shard());
            let mut rows = persisted
                .timers_due(from.stored(), target, room.saturating_add(1))
                .map_err(StorageError::store(doing()))?;
            // More than there is room for: stop before the first one left
            // out, but always past at least one due time.
            let mut until = target;
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
            refilled.armed = self
                .window
                .range(from..end)
                .map(|(slot, _)| *slot)
                .collect();
            self.horizon = until;
        }
        self.limited = self.horizon < target;
        // A window that spans its time is refilled when half of it has
        // passed; one that ran out of room, as its timers fire.
        let wake = (!self.limited).then(|| {
            self.horizon
                .saturating_sub(WINDOW_MS / 2)
                .max(now_ms.saturating_add(1))
        });
        if self.wake_ms != wake {
            refilled.old_wake = std::mem::replace(&mut self.wake_ms, wake);
            refilled.wake = wake;
        }
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
