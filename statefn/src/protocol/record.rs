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
//!
//! Every value written through [`encode`] carries the version, also those
//! whose layout did not change (idempotency entries, checkpoint metadata,
//! egress rows): [`Stored`] says how each reads an older version.

use serde::{Deserialize, Serialize};

pub(crate) use super::envelope::Provenance;
use super::{
    envelope::{Outgoing, ReplyRoute},
    ids::{DeadLetterSeq, Seq, ShardId, TimerId, TimerSlot},
    record_v1,
};
pub(crate) use crate::egress::Emitted;
use crate::{Address, Error, error::StorageError};

/// The record format this build writes; a newer one is refused on replay.
///
/// 1. Timers without keys, known by their id; messages without their
///    provenance (data directory formats 1 and 2 until keyed timers and
///    `Context::caller`). Read by [`Stored::from_v1`]
///    (`protocol/record_v1.rs` keeps those types, frozen).
/// 2. Timers have keys (`TimerKey`: a named timer, a delayed invocation,
///    the expiry check) and periods; records name a timer by its slot
///    (due time, id), and an invocation lists the keyed timers it removed.
///    Messages (`Outgoing`, `Sent`, dead letters) carry their
///    [`Provenance`]: the sending instance and the invocation they continue
///    (issue 13: `Context::caller`, `Context::invocation_id`). A new entry
///    kind, [`Entry::Deleted`] (`Runtime::delete_instance`).
///    Requests carry a correlation and a timeout: a [`ReplyRoute`] has the
///    reply message's prefix and the caller's timeout timer (`guard`, a
///    keyed timer under [`TimerKey::Reply`]); a reply (`Outgoing`, `Sent`)
///    names the timer it races. A [`StoredReply`] keeps what became of an
///    enqueued invocation ([`InvocationOutcome`], `Runtime::invocation`).
///
/// The message bytes the records hold are opaque here: what they mean is
/// the data directory format's (positional in format 1, named in 2).
pub(crate) const RECORD_VERSION: u8 = 2;

/// One shard's record in a (shared) log group.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ShardRecord {
    pub(crate) shard: ShardId,
    pub(crate) entry: Entry,
}

/// What a record did.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Entry {
    /// A handler ran (or a message from a function was consumed without
    /// effect), or a client cancelled a delayed invocation.
    Invocation(InvocationRecord),
    /// A timer without a key fired: it is removed and its message sent,
    /// atomically.
    TimerFired { timer: TimerSlot, sent: Sent },
    /// A dead letter was dropped, or replayed as `resent`.
    DeadLetterResolved {
        id: DeadLetterSeq,
        resent: Option<Sent>,
    },
    /// An expiry timer fired: the instance was removed, or its timer was
    /// armed again as `rearm`.
    Expired {
        timer: TimerSlot,
        target: Address,
        rearm: Option<TimerEntry>,
    },
    /// Since version 2: an operator deleted the instance: its state and
    /// its timers (`(key, slot)`: named timers, delayed invocations, its
    /// expiry check).
    Deleted {
        target: Address,
        timers: Vec<(TimerKey, TimerSlot)>,
    },
    // The variants read from version 1 stay last: `serde(skip)` variants
    // must not shift the index of a written one.
    /// Read from record version 1 only, never written: a timer without a
    /// key fired, named by its id (replay finds its slot).
    #[serde(skip)]
    TimerFiredV1 { timer: TimerId, sent: Sent },
    /// Read from record version 1 only, never written: an expiry timer
    /// fired, named by its id.
    #[serde(skip)]
    ExpiredV1 {
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
    /// Timers armed, after the ones in `cancelled` were removed.
    pub(crate) timers: Vec<TimerEntry>,
    /// Keyed timers of `target` removed (cancelled, or replaced by one in
    /// `timers`).
    pub(crate) cancelled: Vec<(TimerKey, TimerSlot)>,
    /// The reply stored for an idempotency key.
    pub(crate) reply: Option<StoredReply>,
    /// Records for egress logs.
    pub(crate) egress: Vec<Emitted>,
    /// A message from a function that failed its last allowed attempt.
    pub(crate) dead_letter: Option<Box<DeadLetterEntry>>,
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
    /// Since version 2: its sender and invocation, kept for a replay.
    pub(crate) provenance: Provenance,
}

impl InvocationRecord {
    /// Whether replaying it would change nothing.
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self.input, Input::Client)
            && self.state.is_none()
            && self.sent.is_empty()
            && self.timers.is_empty()
            && self.cancelled.is_empty()
            && self.reply.is_none()
            && self.egress.is_empty()
            && self.dead_letter.is_none()
    }
}

/// Where the invocation's input came from: how duplicates are recognised.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Input {
    Client,
    Function {
        source: ShardId,
        seq: Seq,
    },
    /// The target's timer `key` fired: its removal and its handler's
    /// effects are one record, so it runs once.
    Timer {
        timer: TimerSlot,
        key: TimerKey,
    },
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
    /// Since version 2: for a reply, the timer it races (see
    /// [`Envelope::guard`](super::envelope::Envelope::guard)).
    pub(crate) guard: Option<TimerId>,
    pub(crate) attempt: u32,
    /// Since version 2.
    pub(crate) provenance: Provenance,
}

/// A durable timer: its message is sent once when due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TimerEntry {
    pub(crate) id: TimerId,
    pub(crate) due_ms: u64,
    pub(crate) outgoing: Outgoing,
    /// The key its instance (`outgoing.target`) holds it under: a keyed
    /// timer replaces the one it had under that key, and runs its handler
    /// directly when due (no message in between that a cancel could miss).
    pub(crate) key: Option<TimerKey>,
    /// A periodic timer is armed again this long after each due time.
    pub(crate) every_ms: Option<u64>,
}

impl TimerEntry {
    /// Where it sits in its shard.
    pub(crate) fn slot(&self) -> TimerSlot {
        TimerSlot {
            due_ms: self.due_ms,
            id: self.id,
        }
    }

    /// Whether it is an instance's expiry check rather than a message.
    pub(crate) fn is_expiry(&self) -> bool {
        self.key == Some(TimerKey::Expiry)
    }
}

/// What an instance holds a timer under: at most one timer per key and
/// instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum TimerKey {
    /// `ctx.timer::<T>(key)`.
    Named(String),
    /// A delayed client invocation (`/send?delay=`), by its idempotency key.
    Invocation(String),
    /// The instance's expiry check (`expire_after`).
    Expiry,
    /// The timeout of a request this instance sent (`ctx.request(..)
    /// .timeout(d)`): its handler gets `Err(RequestFailed::Timeout)` unless
    /// the reply comes first and cancels it. Named by its own timer id.
    Reply(TimerId),
}

impl TimerKey {
    /// The key's bytes in the store's key index (its kind, then its text).
    pub(crate) fn stored(&self) -> Vec<u8> {
        let (kind, text) = match self {
            TimerKey::Named(key) => (b'n', key.as_str()),
            TimerKey::Invocation(key) => (b'i', key.as_str()),
            TimerKey::Expiry => (b'e', ""),
            TimerKey::Reply(id) => {
                let mut out = vec![b'r'];
                out.extend_from_slice(&id.0.to_be_bytes());
                return out;
            }
        };
        let mut out = Vec::with_capacity(1 + text.len());
        out.push(kind);
        out.extend_from_slice(text.as_bytes());
        out
    }

    /// The key of bytes [`stored`](Self::stored) wrote; `None` if they are
    /// not such a key.
    pub(crate) fn from_stored(bytes: &[u8]) -> Option<Self> {
        let (&kind, text) = bytes.split_first()?;
        if kind == b'r' {
            return Some(TimerKey::Reply(TimerId(u64::from_be_bytes(
                text.try_into().ok()?,
            ))));
        }
        let text = std::str::from_utf8(text).ok()?;
        match kind {
            b'n' => Some(TimerKey::Named(text.to_owned())),
            b'i' => Some(TimerKey::Invocation(text.to_owned())),
            b'e' if text.is_empty() => Some(TimerKey::Expiry),
            _ => None,
        }
    }
}

/// The reply to an idempotent client call, answered again on a retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredReply {
    pub(crate) key: String,
    pub(crate) handler: String,
    pub(crate) reply: Vec<u8>,
    /// When it was stored (retention counts from it).
    pub(crate) at_ms: u64,
    /// Since version 2: for an enqueued invocation (`/send`,
    /// `Call::send`), what became of it; `reply` is then the enqueue's
    /// answer. `None`: the reply of a call that ran at once.
    pub(crate) outcome: Option<InvocationOutcome>,
}

/// What became of an enqueued invocation, stored under its key
/// (`Runtime::invocation`, `GET /v1/invocations/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum InvocationOutcome {
    /// Enqueued (now, or as a delayed invocation); not run yet.
    Pending,
    /// Its handler ran: its reply (for a fallible handler, the `Result`).
    Done(Vec<u8>),
    /// It failed every attempt and became a dead letter (the error).
    Failed(String),
    /// A client cancelled it before it ran.
    Cancelled,
}

/// Room for a typical invocation record, so that encoding one allocates
/// once rather than regrowing the buffer as postcard writes into it.
const RECORD_CAPACITY: usize = 128;

/// `[version][postcard]`.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(RECORD_CAPACITY);
    out.push(RECORD_VERSION);
    postcard::to_io(value, &mut out).map_err(|e| Error::Encode {
        what: "a log record".into(),
        reason: e.to_string(),
    })?;
    Ok(out)
}

/// A value stored through [`encode`], and how it reads the bytes of an
/// older [`RECORD_VERSION`].
pub(crate) trait Stored: for<'de> Deserialize<'de> {
    /// Decodes the postcard bytes of a version-1 value (the default: the
    /// layout did not change).
    fn from_v1(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

impl Stored for u64 {}
impl Stored for StoredReply {
    fn from_v1(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes::<record_v1::StoredReply>(bytes).map(Into::into)
    }
}
impl Stored for Emitted {}
impl Stored for ShardRecord {
    fn from_v1(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes::<record_v1::ShardRecord>(bytes).map(record_v1::ShardRecord::upgrade)
    }
}
impl Stored for Sent {
    fn from_v1(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes::<record_v1::Sent>(bytes).map(Into::into)
    }
}
impl Stored for TimerEntry {
    fn from_v1(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes::<record_v1::TimerEntry>(bytes).map(record_v1::TimerEntry::upgrade)
    }
}
impl Stored for DeadLetterEntry {
    fn from_v1(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes::<record_v1::DeadLetterEntry>(bytes).map(Into::into)
    }
}

/// Decodes `[version][postcard]` (this version or an older one it reads);
/// `what` names the value in errors.
pub(crate) fn decode<T: Stored>(bytes: &[u8], what: &str) -> Result<T, Error> {
    let corrupt = |e: postcard::Error| -> Error {
        StorageError::Corrupt {
            what: what.to_owned(),
            reason: e.to_string(),
        }
        .into()
    };
    match bytes.split_first() {
        Some((&RECORD_VERSION, rest)) => postcard::from_bytes(rest).map_err(corrupt),
        Some((&1, rest)) => T::from_v1(rest).map_err(corrupt),
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
                timer: TimerSlot {
                    due_ms: 5,
                    id: TimerId(9),
                },
                sent: Sent {
                    dest: ShardId(1),
                    seq: Seq(2),
                    target: Address::new("A", "x").expect("valid"),
                    message: vec![1, 2],
                    // Every field set apart from its default, so that one
                    // the encoding lost would show.
                    reply_to: Some(crate::protocol::envelope::ReplyRoute {
                        to: Address::new("B", "y").expect("valid"),
                        handler: "done".into(),
                        prefix: Some(vec![3]),
                        guard: Some(TimerId(5)),
                        timeout: None,
                    }),
                    guard: Some(TimerId(7)),
                    attempt: 4,
                    provenance: Provenance {
                        caller: Some(Address::new("C", "z").expect("valid")),
                        invocation: Some(Box::new(crate::InvocationId::enqueued(
                            Address::new("A", "x").expect("valid"),
                            "key-1",
                        ))),
                        trace: None,
                    },
                },
            },
        };
        let mut bytes = encode(&record).expect("encodes");
        let back: ShardRecord = decode(&bytes, "a record").expect("decodes");
        // The whole record, field by field (the types have no `PartialEq`;
        // their `Debug` shows every field).
        assert_eq!(format!("{back:?}"), format!("{record:?}"));
        bytes[0] = RECORD_VERSION + 1;
        let err = decode::<ShardRecord>(&bytes, "a record").expect_err("newer");
        assert!(err.to_string().contains("newer statefn"), "{err}");
    }
}
