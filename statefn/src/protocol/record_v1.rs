//! Record version 1: log records and timers as written before timers had
//! keys and were stored by due time. Frozen here so that older logs and
//! checkpoints still read ([`Stored::from_v1`]), upgraded to the current
//! shapes as they are read.
//!
//! Never change these types: their bytes are on disk (the golden bytes of
//! version 1 in `protocol/golden.rs` and the fixtures pin them).

use serde::{Deserialize, Serialize};

use super::{
    envelope::Outgoing,
    ids::{DeadLetterSeq, ShardId, TimerId},
    record::{
        DeadLetterEntry, Emitted, Entry, Input, InvocationRecord, Sent, ShardRecord, Stored,
        StoredReply, TimerEntry, TimerKey,
    },
};
use crate::Address;

/// A log record of version 1.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ShardRecordV1 {
    pub(crate) shard: ShardId,
    pub(crate) entry: EntryV1,
}

/// What a record of version 1 did.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum EntryV1 {
    Invocation(InvocationRecordV1),
    TimerFired {
        timer: TimerId,
        sent: Sent,
    },
    DeadLetterResolved {
        id: DeadLetterSeq,
        resent: Option<Sent>,
    },
    Expired {
        timer: TimerId,
        target: Address,
        rearm: Option<TimerEntryV1>,
    },
}

impl ShardRecordV1 {
    /// The same record today; a timer named by its id stays so
    /// (`Entry::TimerFiredV1`, `Entry::ExpiredV1`): replay finds its slot.
    pub(crate) fn upgrade(self) -> ShardRecord {
        let entry = match self.entry {
            EntryV1::Invocation(r) => Entry::Invocation(r.upgrade()),
            EntryV1::TimerFired { timer, sent } => Entry::TimerFiredV1 { timer, sent },
            EntryV1::DeadLetterResolved { id, resent } => Entry::DeadLetterResolved { id, resent },
            EntryV1::Expired {
                timer,
                target,
                rearm,
            } => Entry::ExpiredV1 {
                timer,
                target,
                rearm: rearm.map(TimerEntryV1::upgrade),
            },
        };
        ShardRecord {
            shard: self.shard,
            entry,
        }
    }
}

impl Stored for ShardRecord {
    fn from_v1(bytes: &[u8]) -> postcard::Result<Self> {
        postcard::from_bytes::<ShardRecordV1>(bytes).map(ShardRecordV1::upgrade)
    }
}

impl Stored for TimerEntry {
    fn from_v1(bytes: &[u8]) -> postcard::Result<Self> {
        postcard::from_bytes::<TimerEntryV1>(bytes).map(TimerEntryV1::upgrade)
    }
}

/// An invocation record of version 1: no timer keys, nothing cancelled.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct InvocationRecordV1 {
    pub(crate) target: Address,
    pub(crate) input: Input,
    pub(crate) state: Option<Vec<u8>>,
    pub(crate) sent: Vec<Sent>,
    pub(crate) timers: Vec<TimerEntryV1>,
    pub(crate) reply: Option<StoredReply>,
    pub(crate) egress: Vec<Emitted>,
    pub(crate) dead_letter: Option<Box<DeadLetterEntry>>,
}

/// A durable timer before timers had keys: a message, or (`expiry`) an
/// instance's expiry check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TimerEntryV1 {
    pub(crate) id: TimerId,
    pub(crate) due_ms: u64,
    pub(crate) outgoing: Outgoing,
    pub(crate) expiry: bool,
}

impl TimerEntryV1 {
    /// The same timer today: an expiry check is the instance's timer under
    /// [`TimerKey::Expiry`].
    pub(crate) fn upgrade(self) -> TimerEntry {
        TimerEntry {
            id: self.id,
            due_ms: self.due_ms,
            outgoing: self.outgoing,
            key: self.expiry.then_some(TimerKey::Expiry),
            every_ms: None,
        }
    }
}

impl InvocationRecordV1 {
    /// The same record today: it cancelled nothing.
    pub(crate) fn upgrade(self) -> InvocationRecord {
        InvocationRecord {
            target: self.target,
            input: self.input,
            state: self.state,
            sent: self.sent,
            timers: self.timers.into_iter().map(TimerEntryV1::upgrade).collect(),
            cancelled: Vec::new(),
            reply: self.reply,
            egress: self.egress,
            dead_letter: self.dead_letter,
        }
    }
}
