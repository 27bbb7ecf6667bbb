//! [`InvocationId`]: names one invocation, stably across the re-deliveries
//! and retries of the same message, so that a handler can use it as an
//! idempotency key of its own (towards an egress consumer, say) and seed
//! its randomness with it ([`Context::rng`](crate::Context::rng)).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The id of one invocation, from [`Context::invocation_id`](crate::Context::invocation_id).
///
/// Where it comes from decides what it is stable across:
///
/// | the message | its id | printed as |
/// | --- | --- | --- |
/// | a client call with an idempotency key, or an enqueued call (`/send`, whose id is its key) | the key | the key itself |
/// | a message from a function (`ctx.send`, `ctx.request`, a reply, a timer) | its channel position: (source shard, sequence), stored with the message | `m-<shard>-<seq>` |
/// | a client call without a key | generated: (shard, time, counter) | `c-<shard>-<ms>-<n>` |
///
/// A re-delivery of a message from a function (after a crash of its
/// receiver or its sender) has the same id, and so do its retries after a
/// panic ([`RetryPolicy`](crate::RetryPolicy)) and its replay as a dead
/// letter: the id travels with the message. A client retry with the same
/// idempotency key is answered from the stored reply and runs nothing. A
/// call without a key is never recognised as a retry, so each gets a new
/// id.
///
/// Keys are chosen by clients: two instances may see the same key, and a
/// key may be spelled like a generated id. Pair the id with
/// [`Context::address`](crate::Context::address) where it must be unique.
///
/// # Examples
///
/// ```
/// use statefn::{Address, Context, InvocationId};
///
/// let ctx = Context::for_test(Address::new("Account", "alice")?)
///     .with_invocation_id(InvocationId::from_key("order-17"));
/// assert_eq!(ctx.invocation_id().to_string(), "order-17");
/// # Ok::<(), statefn::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InvocationId(Repr);

/// Stored with messages (`Outgoing`, `Sent`, dead letters): the variants'
/// order is part of the record format.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
enum Repr {
    Key(String),
    Message { shard: u16, seq: u64 },
    Call { shard: u16, at_ms: u64, n: u64 },
}

impl InvocationId {
    /// The id of a call made with idempotency key `key` (also the id of an
    /// enqueued call, whose key it is).
    pub fn from_key(key: impl Into<String>) -> Self {
        InvocationId(Repr::Key(key.into()))
    }

    /// A message from a function: its position on its channel.
    pub(crate) fn message(shard: u16, seq: u64) -> Self {
        InvocationId(Repr::Message { shard, seq })
    }

    /// A client call without a key: unique within a shard by the time and
    /// a counter.
    pub(crate) fn call(shard: u16, at_ms: u64, n: u64) -> Self {
        InvocationId(Repr::Call { shard, at_ms, n })
    }

    /// The idempotency key it was made from, if any.
    pub fn key(&self) -> Option<&str> {
        match &self.0 {
            Repr::Key(key) => Some(key),
            _ => None,
        }
    }

    /// A 64-bit hash of the id (FNV-1a over a tagged encoding, never the
    /// process-random `std` hasher): the same id gives the same number in
    /// every process and release.
    pub(crate) fn stable_hash(&self, mut hash: u64) -> u64 {
        let mut eat = |bytes: &[u8]| {
            for byte in bytes {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        match &self.0 {
            Repr::Key(key) => {
                eat(b"k");
                eat(key.as_bytes());
            }
            Repr::Message { shard, seq } => {
                eat(b"m");
                eat(&shard.to_le_bytes());
                eat(&seq.to_le_bytes());
            }
            Repr::Call { shard, at_ms, n } => {
                eat(b"c");
                eat(&shard.to_le_bytes());
                eat(&at_ms.to_le_bytes());
                eat(&n.to_le_bytes());
            }
        }
        hash
    }
}

impl fmt::Display for InvocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Key(key) => f.write_str(key),
            Repr::Message { shard, seq } => write!(f, "m-{shard}-{seq}"),
            Repr::Call { shard, at_ms, n } => write!(f, "c-{shard}-{at_ms}-{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_by_origin_and_hash_apart() {
        let ids = [
            InvocationId::from_key("m-1-2"),
            InvocationId::message(1, 2),
            InvocationId::call(1, 2, 0),
        ];
        assert_eq!(ids[0].to_string(), "m-1-2");
        assert_eq!(ids[1].to_string(), "m-1-2");
        assert_eq!(ids[2].to_string(), "c-1-2-0");
        // The same text, different origins: different seeds.
        assert_ne!(ids[0].stable_hash(0), ids[1].stable_hash(0));
        assert_eq!(
            ids[1].stable_hash(7),
            InvocationId::message(1, 2).stable_hash(7)
        );
    }

    #[test]
    fn stable_hash_is_fixed_across_releases() {
        // Seeds of `Context::rng` depend on it: a change reseeds every
        // handler's numbers, so it is pinned here.
        assert_eq!(
            InvocationId::message(3, 17).stable_hash(0xcbf2_9ce4_8422_2325),
            0xad26_5d39_5c6c_8ec2
        );
    }
}
