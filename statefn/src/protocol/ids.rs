//! The protocol's identifiers, each its own type: a shard is not a log
//! group, a channel sequence is not a log position, a timer id is not a
//! dead-letter number.
//!
//! [`ShardId`], [`LogGroupId`], [`Lsn`] and [`Epoch`] belong to the storage
//! layout and come from `statefn-store`; the others are the runtime's. All
//! serialize as their bare integer (`#[serde(transparent)]`), so log records
//! and checkpoints hold the same bytes as when they were plain `u16`/`u64`.

use std::fmt;

use serde::{Deserialize, Serialize};
pub(crate) use statefn_store::{Epoch, LogGroupId, Lsn, ShardId};

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub(crate) struct $name(pub(crate) u64);

        impl $name {
            /// The one after this one.
            pub(crate) const fn next(self) -> Self {
                Self(self.0 + 1)
            }
        }

        impl crate::protocol::record::Stored for $name {}

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id! {
    /// A message's number on its channel, the (source shard, destination
    /// shard) pair: 1, 2, 3... with no gaps. `Seq(0)` means "none yet", the
    /// watermark of a channel nothing came through.
    Seq
}

id! {
    /// A durable timer's id in its shard: 1, 2, 3... in the order they were
    /// armed.
    TimerId
}

id! {
    /// A dead letter's number in its shard (the `17` of `"3-17"`).
    DeadLetterSeq
}

id! {
    /// An egress record's number in the sequence of the shard that emitted
    /// it (the `17` of its id `s3-17`): the appender drops what it has seen.
    EgressSeq
}

/// Where a durable timer sits in its shard: its due time, then its id. Timers
/// fire, and are stored, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct TimerSlot {
    /// Unix milliseconds on the runtime's clock.
    pub(crate) due_ms: u64,
    pub(crate) id: TimerId,
}

impl TimerSlot {
    /// The slot as the store keys it.
    pub(crate) fn stored(self) -> statefn_store::DueSlot {
        (self.due_ms, self.id.0)
    }

    /// A slot the store read.
    pub(crate) fn from_stored((due_ms, id): statefn_store::DueSlot) -> Self {
        TimerSlot {
            due_ms,
            id: TimerId(id),
        }
    }
}
