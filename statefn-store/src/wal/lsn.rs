//! [`Lsn`]: the position of a record in a shard's log.

use std::fmt;

/// Log sequence number: the position of one record in a shard's log.
///
/// LSNs start at 1 and grow by one per record, with no gaps, so "all records
/// up to `n`" is a single number. `Lsn(0)` means "before the first record",
/// for example a checkpoint of an empty shard.
///
/// # Examples
///
/// ```
/// use statefn_store::wal::Lsn;
///
/// let first = Lsn::FIRST;
/// assert_eq!(first.next(), Lsn(2));
/// assert!(Lsn(1) < Lsn(2));
/// assert_eq!(Lsn(7).to_string(), "7");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
