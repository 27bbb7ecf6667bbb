//! The reader of record format 1: the types whose layout version 2 changed,
//! frozen as version 1 wrote them (field for field, in order), and their
//! conversion to today's. Version 1 messages had no [`Provenance`]: they
//! read as sent by no instance (`Context::caller` is `None`) and start a new
//! invocation when delivered (their id is their channel position).
//!
//! Never change these types: `tests/fixtures/bank-data-v1` (read by
//! `tests/tests/format_compat.rs`) holds records they must read.

use std::time::Duration;

use serde::Deserialize;

use super::{
    envelope::{Outgoing as OutgoingV2, Provenance, ReplyRoute},
    ids::{DeadLetterSeq, Seq, ShardId, TimerId},
    record::{self as v2, Emitted, Input, StoredReply},
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

impl From<ShardRecord> for v2::ShardRecord {
    fn from(r: ShardRecord) -> Self {
        let entry = match r.entry {
            Entry::Invocation(i) => v2::Entry::Invocation(v2::InvocationRecord {
                target: i.target,
                input: i.input,
                state: i.state,
                sent: i.sent.into_iter().map(Into::into).collect(),
                timers: i.timers.into_iter().map(Into::into).collect(),
                reply: i.reply,
                egress: i.egress,
                dead_letter: i.dead_letter.map(|l| Box::new((*l).into())),
            }),
            Entry::TimerFired { timer, sent } => v2::Entry::TimerFired {
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
            } => v2::Entry::Expired {
                timer,
                target,
                rearm: rearm.map(Into::into),
            },
        };
        v2::ShardRecord {
            shard: r.shard,
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
            reply_to: l.reply_to,
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
            reply_to: s.reply_to,
            attempt: s.attempt,
            provenance: Provenance::default(),
        }
    }
}

impl From<TimerEntry> for v2::TimerEntry {
    fn from(t: TimerEntry) -> Self {
        v2::TimerEntry {
            id: t.id,
            due_ms: t.due_ms,
            outgoing: OutgoingV2 {
                target: t.outgoing.target,
                message: t.outgoing.message,
                delay: t.outgoing.delay,
                reply_to: t.outgoing.reply_to,
                attempt: t.outgoing.attempt,
                provenance: Provenance::default(),
            },
            expiry: t.expiry,
        }
    }
}
