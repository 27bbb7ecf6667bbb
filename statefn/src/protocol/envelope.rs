//! What travels through shard mailboxes: [`Mail`], and the [`Envelope`]
//! of a message with its [`Origin`], which decides how a duplicate is
//! recognised (ingress: by idempotency key; between functions: by channel
//! sequence, see [`channel`](super::channel)).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::ids::{DeadLetterSeq, Seq, ShardId, TimerId};
use crate::{Address, Error};

/// Where a client's reply goes.
pub(crate) type ReplySender = oneshot::Sender<Result<Vec<u8>, Error>>;

/// One item in a shard's mailbox.
#[derive(Debug)]
pub(crate) enum Mail {
    /// Invoke a handler.
    Invoke(Envelope),
    /// One of this shard's timers is due.
    TimerDue { timer: TimerId },
    /// Re-send the outbox entries for shard `dest` (it recovered and may
    /// have lost messages it had not committed, or it saw a gap on the
    /// channel from this shard).
    Resend { dest: ShardId },
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
}

/// A message to one instance, with where it came from.
#[derive(Debug)]
pub(crate) struct Envelope {
    pub(crate) target: Address,
    /// The encoded message enum of the target's function type.
    pub(crate) message: Vec<u8>,
    pub(crate) origin: Origin,
    /// For requests: the caller's handler that receives the reply (boxed:
    /// most messages have none, and mail stays small).
    pub(crate) reply_to: Option<Box<ReplyRoute>>,
    /// For a reply to a request with a timeout: the caller's timeout timer.
    /// The reply runs only if that timer is still pending (and disarms it);
    /// otherwise the timeout won and the reply is dropped.
    pub(crate) guard: Option<TimerId>,
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
    /// The caller's timeout timer, set when the request is sent (see
    /// [`Envelope::guard`]).
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
}
