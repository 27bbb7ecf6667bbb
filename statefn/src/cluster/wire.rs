//! What travels between nodes over core NATS, postcard-encoded: forwarded
//! calls and their replies (errors included, so a forwarded call fails with
//! the same [`Error`] and HTTP status as a local one), messages between
//! functions, acks and re-send requests. Heartbeats and the owners table
//! are JSON, for operators reading them with the `nats` tool.

use std::time::Duration;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::ClusterError;
use crate::{
    Address, Error,
    protocol::{
        envelope::{Envelope, Origin, Provenance, ReplyRoute},
        ids::{Seq, ShardId, TimerId},
    },
    runtime::transport::CallKind,
};

/// A client call forwarded to the owner of its log group.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CallRequest {
    pub(crate) target: Address,
    pub(crate) message: Vec<u8>,
    pub(crate) key: Option<String>,
    /// Enqueue the message after this delay instead of running it now.
    pub(crate) enqueue_ms: Option<u64>,
    /// A call, or a question about an enqueued invocation (`key`).
    pub(crate) kind: CallKind,
}

/// The owner's answer to a [`CallRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum CallReply {
    /// The encoded reply.
    Reply(Vec<u8>),
    /// The call failed as a local one would have.
    Failed(WireError),
    /// This node does not serve the call's group (any more): not accepted.
    NotServed,
    /// This node took the call, then went away (it is shutting down or
    /// stopped) without its outcome: the call may or may not have been
    /// applied. (Last: older nodes decode the variants before it.)
    Dropped,
}

/// A committed message from a function, to the receiver's group.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MailMessage {
    pub(crate) dest: ShardId,
    pub(crate) target: Address,
    pub(crate) message: Vec<u8>,
    pub(crate) source: ShardId,
    pub(crate) seq: Seq,
    pub(crate) attempt: u32,
    pub(crate) reply_to: Option<ReplyRoute>,
    /// For a reply: the caller's timeout timer it races.
    pub(crate) guard: Option<TimerId>,
    /// Its caller and the invocation it continues (the trace context stays
    /// on the sending node).
    pub(crate) provenance: Provenance,
}

impl MailMessage {
    pub(crate) fn of(dest: ShardId, envelope: Envelope) -> Option<Self> {
        let Origin::Function {
            source,
            seq,
            attempt,
        } = envelope.origin
        else {
            return None;
        };
        Some(MailMessage {
            dest,
            target: envelope.target,
            message: envelope.message,
            source,
            seq,
            attempt,
            reply_to: envelope.reply_to.map(|route| *route),
            guard: envelope.guard,
            provenance: envelope.provenance,
        })
    }

    pub(crate) fn into_envelope(self) -> (ShardId, Envelope) {
        let envelope = Envelope {
            target: self.target,
            message: self.message,
            origin: Origin::Function {
                source: self.source,
                seq: self.seq,
                attempt: self.attempt,
            },
            reply_to: self.reply_to.map(Box::new),
            guard: self.guard,
            provenance: self.provenance,
        };
        (self.dest, envelope)
    }
}

/// `dest` has durably applied these messages `(source, seq)`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AckMessage {
    pub(crate) dest: ShardId,
    pub(crate) acks: Vec<(ShardId, Seq)>,
}

/// Re-send `source`'s outbox for `dest`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ResendMessage {
    pub(crate) source: ShardId,
    pub(crate) dest: ShardId,
}

/// A node's heartbeat (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Heartbeat {
    pub(crate) node: String,
    /// Past its start-up grace: it may be given groups.
    pub(crate) ready: bool,
    /// Shutting down: it hands its groups off and takes none.
    pub(crate) draining: bool,
    /// The groups it serves.
    pub(crate) owned: Vec<u16>,
    /// The groups it follows as a standby.
    #[serde(default)]
    pub(crate) following: Vec<Following>,
}

/// A log group a node follows as a standby, and how far it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Following {
    pub(crate) group: u16,
    /// The last stream position applied.
    pub(crate) applied: u64,
    /// The position its checkpoints cover: the stream must keep what follows.
    pub(crate) checkpointed: u64,
    /// Stream positions not applied yet.
    pub(crate) lag: u64,
}

/// A value of the owners bucket (JSON): who should write the group's log,
/// and at which epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Owner {
    pub(crate) node: String,
    pub(crate) epoch: u64,
}

/// An [`Error`] on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum WireError {
    UnknownFunction {
        name: String,
        known: Vec<String>,
    },
    UnknownHandler {
        function: String,
        handler: String,
        known: Vec<String>,
    },
    InvalidArguments {
        function: String,
        handler: String,
        field: Option<String>,
        reason: String,
    },
    Decode {
        function: String,
        what: String,
        reason: String,
    },
    State {
        function: String,
        id: String,
        stored: Option<u32>,
        current: u32,
        reason: String,
    },
    HandlerPanicked {
        function: String,
        id: String,
        handler: String,
        message: String,
    },
    IdempotencyKeyReused {
        function: String,
        id: String,
        key: String,
        previous_handler: String,
    },
    InvalidAddress {
        reason: String,
    },
    ShuttingDown,
    Unavailable {
        shard: u16,
        reason: String,
        retry_after_ms: u64,
    },
    Overloaded {
        shard: u16,
        queued: usize,
        retry_after_ms: u64,
    },
    /// Anything else (a storage fault at the owner): a message only.
    Other {
        message: String,
    },
    /// A status or cancel of an invocation the owner does not know.
    UnknownInvocation {
        id: String,
    },
    /// A cancel of an invocation that is no longer pending.
    InvocationNotPending {
        id: String,
    },
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<&Error> for WireError {
    fn from(error: &Error) -> Self {
        match error.clone() {
            Error::UnknownFunction { name, known } => WireError::UnknownFunction { name, known },
            Error::UnknownHandler {
                function,
                handler,
                known,
            } => WireError::UnknownHandler {
                function,
                handler,
                known,
            },
            Error::InvalidArguments {
                function,
                handler,
                field,
                reason,
            } => WireError::InvalidArguments {
                function,
                handler,
                field,
                reason,
            },
            Error::Decode {
                function,
                what,
                reason,
            } => WireError::Decode {
                function,
                what,
                reason,
            },
            Error::State {
                function,
                id,
                stored,
                current,
                reason,
            } => WireError::State {
                function,
                id,
                stored,
                current,
                reason,
            },
            Error::HandlerPanicked {
                function,
                id,
                handler,
                message,
            } => WireError::HandlerPanicked {
                function,
                id,
                handler,
                message,
            },
            Error::IdempotencyKeyReused {
                function,
                id,
                key,
                previous_handler,
            } => WireError::IdempotencyKeyReused {
                function,
                id,
                key,
                previous_handler,
            },
            Error::InvalidAddress { reason } => WireError::InvalidAddress { reason },
            Error::ShuttingDown => WireError::ShuttingDown,
            Error::Unavailable {
                shard,
                reason,
                retry_after,
            } => WireError::Unavailable {
                shard,
                reason,
                retry_after_ms: ms(retry_after),
            },
            Error::Overloaded {
                shard,
                queued,
                retry_after,
            } => WireError::Overloaded {
                shard,
                queued,
                retry_after_ms: ms(retry_after),
            },
            Error::UnknownInvocation { id } => WireError::UnknownInvocation { id },
            Error::InvocationNotPending { id } => WireError::InvocationNotPending { id },
            other => WireError::Other {
                message: other.to_string(),
            },
        }
    }
}

impl WireError {
    /// The error a local call would have failed with.
    pub(crate) fn into_error(self) -> Error {
        match self {
            WireError::UnknownFunction { name, known } => Error::UnknownFunction { name, known },
            WireError::UnknownHandler {
                function,
                handler,
                known,
            } => Error::UnknownHandler {
                function,
                handler,
                known,
            },
            WireError::InvalidArguments {
                function,
                handler,
                field,
                reason,
            } => Error::InvalidArguments {
                function,
                handler,
                field,
                reason,
            },
            WireError::Decode {
                function,
                what,
                reason,
            } => Error::Decode {
                function,
                what,
                reason,
            },
            WireError::State {
                function,
                id,
                stored,
                current,
                reason,
            } => Error::State {
                function,
                id,
                stored,
                current,
                reason,
            },
            WireError::HandlerPanicked {
                function,
                id,
                handler,
                message,
            } => Error::HandlerPanicked {
                function,
                id,
                handler,
                message,
            },
            WireError::IdempotencyKeyReused {
                function,
                id,
                key,
                previous_handler,
            } => Error::IdempotencyKeyReused {
                function,
                id,
                key,
                previous_handler,
            },
            WireError::InvalidAddress { reason } => Error::InvalidAddress { reason },
            WireError::ShuttingDown => Error::ShuttingDown,
            WireError::Unavailable {
                shard,
                reason,
                retry_after_ms,
            } => Error::Unavailable {
                shard,
                reason,
                retry_after: Duration::from_millis(retry_after_ms),
            },
            WireError::Overloaded {
                shard,
                queued,
                retry_after_ms,
            } => Error::Overloaded {
                shard,
                queued,
                retry_after: Duration::from_millis(retry_after_ms),
            },
            WireError::Other { message } => Error::Cluster(ClusterError::Remote { message }),
            WireError::UnknownInvocation { id } => Error::UnknownInvocation { id },
            WireError::InvocationNotPending { id } => Error::InvocationNotPending { id },
        }
    }
}

/// Encodes a wire value.
pub(crate) fn to_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    // Only plain data (strings, bytes, integers) is encoded: postcard does
    // not fail on it, and an empty payload is refused by the receiver.
    postcard::to_stdvec(value).unwrap_or_default()
}

/// Decodes a wire value.
pub(crate) fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_cross_the_wire_as_the_same_error() {
        let errors = [
            Error::IdempotencyKeyReused {
                function: "A".into(),
                id: "x".into(),
                key: "k".into(),
                previous_handler: "h".into(),
            },
            Error::Unavailable {
                shard: 3,
                reason: "r".into(),
                retry_after: Duration::from_millis(250),
            },
            Error::ShuttingDown,
            Error::UnknownInvocation { id: "A.a.k".into() },
            Error::InvocationNotPending { id: "A.a.k".into() },
        ];
        for error in errors {
            let wire: WireError = from_bytes(&to_bytes(&WireError::from(&error))).expect("decodes");
            assert_eq!(wire.into_error().to_string(), error.to_string());
        }
        let storage = Error::Storage(crate::StorageError::Closed);
        let back = WireError::from(&storage).into_error();
        assert!(
            matches!(back, Error::Cluster(ClusterError::Remote { .. })),
            "{back:?}"
        );
    }
}
