//! The log record: what one invocation committed, as appended to its log
//! group's log, and the values checkpoints keep (`[version][postcard]`).
//!
//! Replaying records never runs handlers: a record holds the invocation's
//! results (new state, sent messages, timers, stored reply), so replay is
//! deterministic whatever the handler code does today.
//!
//! These types are the on-disk format: a field added, removed or reordered
//! changes what older records mean (postcard is not self-describing, and
//! `#[serde(default)]` does nothing for it), so any change bumps
//! [`RECORD_VERSION`] and keeps a reader of the old one. The golden bytes in
//! `protocol/golden.rs` fail first; `docs/formats.md` keeps the history.

use serde::{Deserialize, Serialize};

use super::{
    envelope::{Outgoing, ReplyRoute},
    ids::{DeadLetterSeq, Seq, ShardId, TimerId},
    record_v1 as v1,
};
pub(crate) use crate::egress::Emitted;
use crate::{Address, Error, error::StorageError};

/// The record format this build writes; a newer one is refused on replay.
///
/// 1. Every data directory format until request/reply could fail (the
///    types of `record_v1.rs`, read into these). The message bytes they
///    hold are opaque here: what they mean is the data directory format's
///    (positional in format 1, named in 2).
/// 2. Requests carry a correlation and a timeout: a reply route has the
///    reply message's prefix and the caller's timeout timer (`guard`), a
///    message (`Sent`, a timer's `Outgoing`) the timer its reply races,
///    and an invocation record the timer its reply disarmed.
pub(crate) const RECORD_VERSION: u8 = 2;

/// One shard's record in a (shared) log group.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ShardRecord {
    pub(crate) shard: ShardId,
    pub(crate) entry: Entry,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Entry {
    /// A handler ran (or a message from a function was consumed without effect).
    Invocation(InvocationRecord),
    /// A timer fired: it is removed and its message sent, atomically.
    TimerFired { timer: TimerId, sent: Sent },
    /// A dead letter was dropped, or replayed as `resent`.
    DeadLetterResolved {
        id: DeadLetterSeq,
        resent: Option<Sent>,
    },
    /// An expiry timer fired: the instance was removed, or (written since)
    /// its timer was armed again as `rearm`.
    Expired {
        timer: TimerId,
        target: Address,
        rearm: Option<TimerEntry>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct InvocationRecord {
    pub(crate) target: Address,
    pub(crate) input: Input,
    /// The new state; `None` when unchanged.
    pub(crate) state: Option<Vec<u8>>,
    pub(crate) sent: Vec<Sent>,
    pub(crate) timers: Vec<TimerEntry>,
    /// The reply stored for an idempotency key.
    pub(crate) reply: Option<StoredReply>,
    /// Records for egress logs.
    pub(crate) egress: Vec<Emitted>,
    /// A message from a function that failed its last allowed attempt.
    pub(crate) dead_letter: Option<Box<DeadLetterEntry>>,
    /// The timeout timer of the request this reply answers, removed because
    /// the reply came first (since record version 2).
    pub(crate) disarmed: Option<TimerId>,
}

/// A message that failed every allowed attempt, kept until replayed or dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeadLetterEntry {
    pub(crate) id: DeadLetterSeq,
    pub(crate) target: Address,
    pub(crate) message: Vec<u8>,
    pub(crate) reply_to: Option<ReplyRoute>,
    pub(crate) error: String,
    pub(crate) attempts: u32,
    pub(crate) at_ms: u64,
}

impl Versioned for ShardRecord {
    fn from_v1(bytes: &[u8]) -> postcard::Result<Self> {
        postcard::from_bytes::<v1::ShardRecord>(bytes).map(Into::into)
    }
}

impl Versioned for Sent {
    fn from_v1(bytes: &[u8]) -> postcard::Result<Self> {
        postcard::from_bytes::<v1::Sent>(bytes).map(Into::into)
    }
}

impl Versioned for TimerEntry {
    fn from_v1(bytes: &[u8]) -> postcard::Result<Self> {
        postcard::from_bytes::<v1::TimerEntry>(bytes).map(Into::into)
    }
}

impl Versioned for DeadLetterEntry {
    fn from_v1(bytes: &[u8]) -> postcard::Result<Self> {
        postcard::from_bytes::<v1::DeadLetterEntry>(bytes).map(Into::into)
    }
}

impl Versioned for StoredReply {}
impl Versioned for Emitted {}
impl Versioned for crate::shard::freeze::ShardMeta {}
impl Versioned for super::ids::EgressSeq {}
impl Versioned for u64 {}

impl InvocationRecord {
    /// Whether replaying it would change nothing.
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self.input, Input::Client)
            && self.state.is_none()
            && self.sent.is_empty()
            && self.timers.is_empty()
            && self.reply.is_none()
            && self.egress.is_empty()
            && self.dead_letter.is_none()
            && self.disarmed.is_none()
    }
}

/// Where the invocation's input came from: how duplicates are recognised.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Input {
    Client,
    Function { source: ShardId, seq: Seq },
}

/// A message sequenced on a (source shard, destination shard) channel. Kept
/// in the sender's outbox until the receiver has durably applied it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sent {
    pub(crate) dest: ShardId,
    pub(crate) seq: Seq,
    pub(crate) target: Address,
    pub(crate) message: Vec<u8>,
    pub(crate) reply_to: Option<ReplyRoute>,
    /// For a reply: the timer it races (since record version 2).
    pub(crate) guard: Option<TimerId>,
    pub(crate) attempt: u32,
}

/// A durable timer: its message is sent once when due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TimerEntry {
    pub(crate) id: TimerId,
    pub(crate) due_ms: u64,
    pub(crate) outgoing: Outgoing,
    /// An expiry check of `outgoing.target` rather than a message.
    pub(crate) expiry: bool,
}

/// The reply to an idempotent client call, answered again on a retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredReply {
    pub(crate) key: String,
    pub(crate) handler: String,
    pub(crate) reply: Vec<u8>,
    pub(crate) at_ms: u64,
}

/// `[version][postcard]`.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    let mut out = vec![RECORD_VERSION];
    postcard::to_io(value, &mut out).map_err(|e| Error::Encode {
        what: "a log record".into(),
        reason: e.to_string(),
    })?;
    Ok(out)
}

/// A stored value: readable in every record version this build knows.
pub(crate) trait Versioned: for<'de> Deserialize<'de> {
    /// Reads the postcard bytes of record version 1 (the same as version
    /// 2's unless the type changed).
    fn from_v1(bytes: &[u8]) -> postcard::Result<Self> {
        postcard::from_bytes(bytes)
    }
}

/// Decodes `[version][postcard]`; `what` names the value in errors.
pub(crate) fn decode<T: Versioned>(bytes: &[u8], what: &str) -> Result<T, Error> {
    let corrupt = |e: postcard::Error| -> Error {
        StorageError::Corrupt {
            what: what.to_owned(),
            reason: e.to_string(),
        }
        .into()
    };
    match bytes.split_first() {
        Some((&RECORD_VERSION, rest)) => postcard::from_bytes(rest).map_err(corrupt),
        Some((1, rest)) => T::from_v1(rest).map_err(corrupt),
        Some((&version, _)) if version > RECORD_VERSION => Err(StorageError::NewerFormat {
            what: what.to_owned(),
            found: version,
            supported: RECORD_VERSION,
        }
        .into()),
        _ => Err(StorageError::Corrupt {
            what: what.to_owned(),
            reason: "it has no valid format version".to_owned(),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_newer_versions_are_refused() {
        let record = ShardRecord {
            shard: ShardId(3),
            entry: Entry::TimerFired {
                timer: TimerId(9),
                sent: Sent {
                    dest: ShardId(1),
                    seq: Seq(2),
                    target: Address::new("A", "x").expect("valid"),
                    message: vec![1, 2],
                    reply_to: None,
                    guard: None,
                    attempt: 0,
                },
            },
        };
        let mut bytes = encode(&record).expect("encodes");
        let back: ShardRecord = decode(&bytes, "a record").expect("decodes");
        assert_eq!(back.shard, ShardId(3));
        bytes[0] = RECORD_VERSION + 1;
        let err = decode::<ShardRecord>(&bytes, "a record").expect_err("newer");
        assert!(err.to_string().contains("newer statefn"), "{err}");
    }
}
