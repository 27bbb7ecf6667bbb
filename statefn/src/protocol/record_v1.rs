//! Log records and timers as written before timers had keys and were
//! stored by due time: frozen here so that older logs and checkpoints still
//! read, and upgraded to the current shapes as they are replayed.
//!
//! Never change these types: their bytes are on disk.

use serde::{Deserialize, Serialize};

use super::{
    envelope::Outgoing,
    ids::TimerId,
    record::{
        DeadLetterEntry, Emitted, Input, InvocationRecord, Sent, StoredReply, TimerEntry, TimerKey,
    },
};
use crate::Address;

/// An invocation record before timers had keys (the `Entry::InvocationV1`
/// variant).
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
