//! The commit seam: where a shard's batch goes before its effects are released.

use crate::shard::Effects;

/// Commits a shard's batch. The in-memory journal commits at once; the
/// durable one appends the batch to the shard's write-ahead log and holds the
/// effects back until `fdatasync` returns.
pub(crate) trait Journal: Send + std::fmt::Debug {
    /// Commits the batch whose effects are in `effects`. Effects that may be
    /// released right away stay in `effects` for the caller to release.
    fn commit(&mut self, effects: &mut Effects);
}

/// Keeps nothing: state lives only in the shard's memory.
#[derive(Debug, Default)]
pub(crate) struct InMemoryJournal;

impl Journal for InMemoryJournal {
    fn commit(&mut self, _effects: &mut Effects) {}
}
