//! The identifiers the store's layout and logs are keyed by: [`ShardId`],
//! [`LogGroupId`], [`Lsn`] and [`Epoch`].
//!
//! Each is a newtype over the integer it always was, so a shard cannot be
//! passed where a log group is expected, nor a log position where an epoch
//! is. They serialize as that integer (`#[serde(transparent)]`), so records
//! that hold them have the bytes of the bare integers.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Log sequence number: the position of one record in its log group's log.
///
/// Positions grow with every record, so "all records up to `n`" is a single
/// number. They are **not necessarily dense**: a replicated log's control
/// records (fences) take positions too, so a writer must use the position
/// [`CommitLog::append`](crate::CommitLog::append) returns rather than
/// count. The local write-ahead log happens to number its records 1, 2, 3...
/// `Lsn(0)` means "before the first record", for example the checkpoint of
/// an empty shard.
///
/// # Examples
///
/// ```
/// use statefn_store::Lsn;
///
/// let first = Lsn::FIRST;
/// assert_eq!(first.next(), Lsn(2));
/// assert!(Lsn(1) < Lsn(2));
/// assert_eq!(Lsn(7).to_string(), "7");
/// ```
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The LSN of the first record ever written to a log.
    pub const FIRST: Lsn = Lsn(1);

    /// The LSN right after this one.
    #[must_use]
    pub const fn next(self) -> Lsn {
        Lsn(self.0 + 1)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A writer generation of one log group's log.
///
/// Every time a log group is (re)opened for writing, its writer gets a new,
/// higher epoch; a log refuses appends from an older epoch once a newer
/// writer has fenced it. The shards recovered under a writer carry its epoch,
/// so batches built by a core of an earlier generation are refused too.
///
/// # Examples
///
/// ```
/// use statefn_store::Epoch;
///
/// assert!(Epoch(1).next() > Epoch(1));
/// assert_eq!(Epoch(3).to_string(), "3");
/// ```
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The epoch after this one.
    #[must_use]
    pub const fn next(self) -> Epoch {
        Epoch(self.0 + 1)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A shard: a single-writer unit of state, whose keys are prefixed by it in
/// every per-shard table.
///
/// # Examples
///
/// ```
/// use statefn_store::ShardId;
///
/// assert_eq!(ShardId(3).to_string(), "3");
/// assert_eq!(ShardId(3).index(), 3);
/// ```
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ShardId(pub u16);

impl ShardId {
    /// The shard's index in a list of all shards.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A log group: shards that share one physical log (one fsync, or one
/// replicated stream, commits all of them). Shard `s` of a data directory
/// with `n` groups is in group `s % n`.
///
/// # Examples
///
/// ```
/// use statefn_store::{LogGroupId, ShardId};
///
/// assert_eq!(LogGroupId::of(ShardId(5), 2), LogGroupId(1));
/// assert_eq!(LogGroupId(1).to_string(), "1");
/// ```
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct LogGroupId(pub u16);

impl LogGroupId {
    /// The group of `shard` when there are `groups` log groups (at least 1).
    pub const fn of(shard: ShardId, groups: u16) -> LogGroupId {
        LogGroupId(shard.0 % if groups == 0 { 1 } else { groups })
    }

    /// The group's index in a list of all groups.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for LogGroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
