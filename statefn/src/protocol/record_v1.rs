//! The reader of record format 1: the types whose layout version 2 changed,
//! frozen as version 1 wrote them (field for field, in order), and their
//! upgrade to today's as they are read ([`Stored::from_v1`]).
//!
//! Version 1 timers had no keys and were known by their id: an expiry flag
//! becomes the expiry key, and a record that names a timer by its id
//! (`TimerFired`, `Expired`) reads as `Entry::TimerFiredV1` /
//! `Entry::ExpiredV1`, whose slot replay finds. Version 1 messages had no
//! [`Provenance`]: they read as sent by no instance (`Context::caller` is
//! `None`) and start a new invocation when delivered (their id is their
//! channel position). Version 1 reply routes had no prefix and no timeout
//! (the reply is the callee's plain return value), and stored replies no
//! outcome (a call that ran at once).
//!
//! Never change these types: their bytes are on disk (the golden bytes
//! `RECORDS_V1` in `protocol/golden.rs`, `tests/fixtures/bank-data-v1` and
//! `tests/fixtures/data-v2` pin them).
//!
//! [`Stored::from_v1`]: super::record::Stored::from_v1

use std::time::Duration;

use serde::Deserialize;

use super::{
    envelope::{self, Outgoing as OutgoingV2, Provenance},
    ids::{DeadLetterSeq, Seq, ShardId, TimerId},
    record::{self as v2, Emitted, Input, TimerKey},
};
use crate::Address;

#[derive(Deserialize)]
pub(super) struct ShardRecord {
    shard: ShardId,
    entry: Entry,
}

#[derive(Deserialize)]
enum Entry {
    Invocation(InvocationRecord),
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
        rearm: Option<TimerEntry>,
    },
}

#[derive(Deserialize)]
struct InvocationRecord {
    target: Address,
    input: Input,
    state: Option<Vec<u8>>,
    sent: Vec<Sent>,
    timers: Vec<TimerEntry>,
    reply: Option<StoredReply>,
    egress: Vec<Emitted>,
    dead_letter: Option<Box<DeadLetterEntry>>,
}

/// A reply route: the caller's handler, which takes the callee's value as
/// its only argument.
#[derive(Deserialize)]
struct ReplyRoute {
    to: Address,
    handler: String,
}

#[derive(Deserialize)]
pub(super) struct StoredReply {
    key: String,
    handler: String,
    reply: Vec<u8>,
    at_ms: u64,
}

#[derive(Deserialize)]
pub(super) struct DeadLetterEntry {
    id: DeadLetterSeq,
    target: Address,
    message: Vec<u8>,
    reply_to: Option<ReplyRoute>,
    error: String,
    attempts: u32,
    at_ms: u64,
}

#[derive(Deserialize)]
pub(super) struct Sent {
    dest: ShardId,
    seq: Seq,
    target: Address,
    message: Vec<u8>,
    reply_to: Option<ReplyRoute>,
    attempt: u32,
}

/// A durable timer before timers had keys: a message, or (`expiry`) an
/// instance's expiry check.
#[derive(Deserialize)]
pub(super) struct TimerEntry {
    id: TimerId,
    due_ms: u64,
    outgoing: Outgoing,
    expiry: bool,
}

#[derive(Deserialize)]
struct Outgoing {
    target: Address,
    message: Vec<u8>,
    delay: Option<Duration>,
    reply_to: Option<ReplyRoute>,
    attempt: u32,
}

impl ShardRecord {
    /// The same record today; a timer named by its id stays so
    /// (`Entry::TimerFiredV1`, `Entry::ExpiredV1`): replay finds its slot.
    pub(super) fn upgrade(self) -> v2::ShardRecord {
        let entry = match self.entry {
            Entry::Invocation(i) => v2::Entry::Invocation(v2::InvocationRecord {
                target: i.target,
                input: i.input,
                state: i.state,
                sent: i.sent.into_iter().map(Into::into).collect(),
                timers: i.timers.into_iter().map(TimerEntry::upgrade).collect(),
                cancelled: Vec::new(),
                reply: i.reply.map(Into::into),
                egress: i.egress,
                dead_letter: i.dead_letter.map(|l| Box::new((*l).into())),
            }),
            Entry::TimerFired { timer, sent } => v2::Entry::TimerFiredV1 {
                timer,
                sent: sent.into(),
            },
            Entry::DeadLetterResolved { id, resent } => v2::Entry::DeadLetterResolved {
                id,
                resent: resent.map(Into::into),
            },
            Entry::Expired {
                timer,
                target,
                rearm,
            } => v2::Entry::ExpiredV1 {
                timer,
                target,
                rearm: rearm.map(TimerEntry::upgrade),
            },
        };
        v2::ShardRecord {
            shard: self.shard,
            entry,
        }
    }
}

impl From<DeadLetterEntry> for v2::DeadLetterEntry {
    fn from(l: DeadLetterEntry) -> Self {
        v2::DeadLetterEntry {
            id: l.id,
            target: l.target,
            message: l.message,
            reply_to: l.reply_to.map(Into::into),
            error: l.error,
            attempts: l.attempts,
            at_ms: l.at_ms,
            provenance: Provenance::default(),
        }
    }
}

impl From<Sent> for v2::Sent {
    fn from(s: Sent) -> Self {
        v2::Sent {
            dest: s.dest,
            seq: s.seq,
            target: s.target,
            message: s.message,
            reply_to: s.reply_to.map(Into::into),
            guard: None,
            attempt: s.attempt,
            provenance: Provenance::default(),
        }
    }
}

impl TimerEntry {
    /// The same timer today: an expiry check is the instance's timer under
    /// [`TimerKey::Expiry`]; a message has no key.
    pub(super) fn upgrade(self) -> v2::TimerEntry {
        v2::TimerEntry {
            id: self.id,
            due_ms: self.due_ms,
            outgoing: OutgoingV2 {
                target: self.outgoing.target,
                message: self.outgoing.message,
                delay: self.outgoing.delay,
                reply_to: self.outgoing.reply_to.map(Into::into),
                guard: None,
                attempt: self.outgoing.attempt,
                provenance: Provenance::default(),
            },
            key: self.expiry.then_some(TimerKey::Expiry),
            every_ms: None,
        }
    }
}

impl From<ReplyRoute> for envelope::ReplyRoute {
    fn from(r: ReplyRoute) -> Self {
        envelope::ReplyRoute {
            to: r.to,
            handler: r.handler,
            prefix: None,
            guard: None,
            timeout: None,
        }
    }
}

impl From<StoredReply> for v2::StoredReply {
    fn from(r: StoredReply) -> Self {
        v2::StoredReply {
            key: r.key,
            handler: r.handler,
            reply: r.reply,
            at_ms: r.at_ms,
            outcome: None,
        }
    }
}
