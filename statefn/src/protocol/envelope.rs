//! What travels through shard mailboxes: [`Mail`], and the [`Envelope`]
//! of a message with its [`Origin`], which decides how a duplicate is
//! recognised (ingress: by idempotency key; between functions: by channel
//! sequence, see [`channel`](super::channel)).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::{
    ids::{DeadLetterSeq, Seq, ShardId, TimerId, TimerSlot},
    record::TimerKey,
};
use crate::{Address, Error, InvocationId, TraceContext};

/// Where a client's reply goes.
pub(crate) type ReplySender = oneshot::Sender<Result<Vec<u8>, Error>>;

/// One item in a shard's mailbox.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "almost all mail is `Invoke`: boxing it would add an allocation per message \
              to save space on the rare others"
)]
pub(crate) enum Mail {
    /// Invoke a handler.
    Invoke(Envelope),
    /// One of this shard's timers is due (or, id 0, the refill wake-up:
    /// load the timers due next).
    TimerDue { timer: TimerSlot },
    /// Re-send the outbox entries for shard `dest` (it recovered and may
    /// have lost messages it had not committed, or it saw a gap on the
    /// channel from this shard, or its full mailbox refused some).
    ///
    /// `from: None`: every unacknowledged entry (after a recovery).
    /// `from: Some(seq)`: the entries from `seq` on, at most one chunk of
    /// about half the receiver's mailbox bound; if more are left, the chunk
    /// is followed by [`Mail::ResendMore`] so that the receiver asks for the
    /// next chunk once it has handled this one. So a long overload re-sends
    /// each entry about once, not the whole backlog every round.
    Resend { dest: ShardId, from: Option<Seq> },
    /// To the receiver of a re-send chunk, queued behind the chunk: sender
    /// `source` holds more for it from `next` on. Handled, it asks `source`
    /// for them (the chunk before it is handled by then); dropped if the
    /// mailbox refused part of the chunk (that refusal asks again).
    ResendMore { source: ShardId, next: Seq },
    /// Freeze a checkpoint at the end of this batch.
    Checkpoint,
    /// Nothing to do but run a batch (e.g. to take a finished checkpoint).
    Wake,
    /// Replay (deliver again) or drop one of this shard's dead letters.
    DeadLetter {
        id: DeadLetterSeq,
        replay: bool,
        reply: ReplySender,
    },
    /// Cancel the delayed client invocation `key` of `target` before it
    /// runs; the reply says whether there was one.
    CancelInvocation {
        target: Address,
        key: String,
        reply: ReplySender,
    },
    /// What became of the enqueued invocation `key` of `target`: answered
    /// with the postcard bytes of `(Option<StoredReply>, bool)`, its key's
    /// stored reply and whether it is a pending delayed invocation.
    InvocationStatus {
        target: Address,
        key: String,
        reply: ReplySender,
    },
    /// Delete an instance's state and its timers (an operator's request);
    /// the reply is `[1]` if there was anything to delete, `[0]` if not.
    Delete { target: Address, reply: ReplySender },
}

/// A message to one instance, with where it came from.
#[derive(Debug)]
pub(crate) struct Envelope {
    pub(crate) target: Address,
    /// The encoded message enum of the target's function type.
    pub(crate) message: Vec<u8>,
    pub(crate) origin: Origin,
    /// For requests: the caller's handler that receives the reply. Boxed:
    /// a route is rare and large (112 bytes), and every call moves its
    /// envelope several times (issue 14).
    pub(crate) reply_to: Option<Box<ReplyRoute>>,
    /// For a reply to a request with a timeout: the caller's timeout timer
    /// (its key, [`TimerKey::Reply`]). The reply runs only if that timer is
    /// still pending (and cancels it); otherwise the timeout won and the
    /// reply is dropped.
    pub(crate) guard: Option<TimerId>,
    /// Who sent it (a function), the invocation it continues, its trace.
    pub(crate) provenance: Provenance,
}

/// Who sent an envelope, which decides how duplicates are recognised.
#[derive(Debug)]
pub(crate) enum Origin {
    /// A client call: duplicates share the idempotency key; a call without
    /// one is never recognised as a duplicate.
    Client {
        key: Option<String>,
        reply: Option<ReplySender>,
        /// Only enqueue the message durably (after this delay) and answer at
        /// once; the handler runs later, like a message from a function.
        enqueue: Option<Duration>,
    },
    /// A message from a function, sent when the sender's invocation committed:
    /// duplicates share `(source shard, sequence)`.
    Function {
        source: ShardId,
        seq: Seq,
        attempt: u32,
    },
    /// A keyed timer of the target fired (it was removed when its due mail
    /// was taken, so it runs once); `every_ms`: periodic.
    Timer {
        timer: TimerSlot,
        key: TimerKey,
        every_ms: Option<u64>,
        attempt: u32,
    },
}

/// Where the reply to a request goes: one of the caller's own handlers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReplyRoute {
    pub(crate) to: Address,
    pub(crate) handler: String,
    /// The reply message up to its last argument (its header, then the
    /// correlation value if any): the callee appends the outcome's bytes
    /// (`Result<T, RequestFailed<E>>`, see `request.rs`). `None` in a route
    /// of record version 1, whose reply is the callee's plain return value,
    /// decoded as the handler's only argument.
    pub(crate) prefix: Option<Vec<u8>>,
    /// The caller's timeout timer (its key, [`TimerKey::Reply`]), set when
    /// the request is sent (see [`Envelope::guard`]).
    pub(crate) guard: Option<TimerId>,
    /// Not stored: the request's timeout, from `Context` to the caller's
    /// shard, which turns it into `guard` when it sends the request.
    #[serde(skip)]
    pub(crate) timeout: Option<Duration>,
}

/// A message a handler sent through its `Context`, released on commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Outgoing {
    pub(crate) target: Address,
    pub(crate) message: Vec<u8>,
    pub(crate) delay: Option<Duration>,
    pub(crate) reply_to: Option<ReplyRoute>,
    /// For a reply: the timer it races (see [`Envelope::guard`]).
    pub(crate) guard: Option<TimerId>,
    /// Deliveries of this message that failed before (poison-message retries).
    pub(crate) attempt: u32,
    /// Record format 2: who sent it, and the invocation it continues.
    pub(crate) provenance: Provenance,
}

/// Where a message comes from, beyond its channel position: what the
/// receiving handler sees as [`Context::caller`](crate::Context::caller),
/// [`Context::invocation_id`](crate::Context::invocation_id) and its trace
/// parent.
///
/// `caller` and `invocation` are stored with the message (record format 2,
/// see [`record`](super::record)): a re-delivery after a crash names the
/// same caller and invocation. `trace` is kept in memory only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Provenance {
    /// The instance whose handler sent it; `None` for a client's enqueued
    /// call and for the runtime's own messages.
    pub(crate) caller: Option<Address>,
    /// The invocation it continues (a retry, a replayed dead letter, an
    /// enqueued call: the id its client was given); `None`: a new
    /// invocation, named by the message's channel position (or a keyed
    /// timer's slot) when it is delivered. Boxed: it is rare and an id is
    /// 56 bytes, which every mail of a shard would carry (issue 14); a box
    /// is encoded as what it holds, so the record format is unchanged.
    pub(crate) invocation: Option<Box<InvocationId>>,
    /// The sending invocation's trace context (not stored).
    #[serde(skip)]
    pub(crate) trace: Option<TraceContext>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every client call moves its mail several times on its way to the
    /// handler (into the mailbox, out of it, into the invocation), so what
    /// an `Envelope` carries inline is what most messages use: the rare
    /// large parts (a request's reply route, an invocation id carried on)
    /// are boxed. It was 400 bytes (issue 14).
    #[test]
    fn a_mail_carries_its_rare_parts_boxed() {
        use std::mem::size_of;
        assert_eq!(size_of::<Option<Box<ReplyRoute>>>(), 8);
        assert!(size_of::<Provenance>() <= 72, "{}", size_of::<Provenance>());
        assert!(size_of::<Mail>() <= 224, "{}", size_of::<Mail>());
    }
}
