//! Record version 1, read only: the stored types as they were before a
//! reply route carried a correlation and a timeout (`record.rs`,
//! `RECORD_VERSION`), and how each becomes today's. The types that did not
//! change are today's own.
//!
//! A version-1 reply route has no prefix: its reply is delivered as before
//! (the callee's return value as the reply handler's only argument), and it
//! has no timeout.

use serde::Deserialize;

use super::{
    envelope,
    ids::{DeadLetterSeq, Seq, ShardId, TimerId},
    record::{self, Emitted, Input, StoredReply},
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
    delay: Option<std::time::Duration>,
    reply_to: Option<ReplyRoute>,
    attempt: u32,
}

#[derive(Deserialize)]
struct ReplyRoute {
    to: Address,
    handler: String,
}

impl From<ShardRecord> for record::ShardRecord {
    fn from(r: ShardRecord) -> Self {
        record::ShardRecord {
            shard: r.shard,
            entry: r.entry.into(),
        }
    }
}

impl From<Entry> for record::Entry {
    fn from(e: Entry) -> Self {
        match e {
            Entry::Invocation(r) => record::Entry::Invocation(r.into()),
            Entry::TimerFired { timer, sent } => record::Entry::TimerFired {
                timer,
                sent: sent.into(),
            },
            Entry::DeadLetterResolved { id, resent } => record::Entry::DeadLetterResolved {
                id,
                resent: resent.map(Into::into),
            },
            Entry::Expired {
                timer,
                target,
                rearm,
            } => record::Entry::Expired {
                timer,
                target,
                rearm: rearm.map(Into::into),
            },
        }
    }
}

impl From<InvocationRecord> for record::InvocationRecord {
    fn from(r: InvocationRecord) -> Self {
        record::InvocationRecord {
            target: r.target,
            input: r.input,
            state: r.state,
            sent: r.sent.into_iter().map(Into::into).collect(),
            timers: r.timers.into_iter().map(Into::into).collect(),
            reply: r.reply,
            egress: r.egress,
            dead_letter: r.dead_letter.map(|l| Box::new((*l).into())),
            disarmed: None,
        }
    }
}

impl From<DeadLetterEntry> for record::DeadLetterEntry {
    fn from(l: DeadLetterEntry) -> Self {
        record::DeadLetterEntry {
            id: l.id,
            target: l.target,
            message: l.message,
            reply_to: l.reply_to.map(Into::into),
            error: l.error,
            attempts: l.attempts,
            at_ms: l.at_ms,
        }
    }
}

impl From<Sent> for record::Sent {
    fn from(s: Sent) -> Self {
        record::Sent {
            dest: s.dest,
            seq: s.seq,
            target: s.target,
            message: s.message,
            reply_to: s.reply_to.map(Into::into),
            guard: None,
            attempt: s.attempt,
        }
    }
}

impl From<TimerEntry> for record::TimerEntry {
    fn from(t: TimerEntry) -> Self {
        record::TimerEntry {
            id: t.id,
            due_ms: t.due_ms,
            outgoing: t.outgoing.into(),
            expiry: t.expiry,
        }
    }
}

impl From<Outgoing> for envelope::Outgoing {
    fn from(o: Outgoing) -> Self {
        envelope::Outgoing {
            target: o.target,
            message: o.message,
            delay: o.delay,
            reply_to: o.reply_to.map(Into::into),
            guard: None,
            attempt: o.attempt,
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
