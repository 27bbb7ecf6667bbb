//! Invocations a client enqueued ([`Runtime::enqueue_json`], HTTP `POST
//! .../send`): their ids, and cancelling a delayed one before it runs.
//!
//! A delayed invocation is its target instance's timer under the
//! invocation's key, so its id names the instance and the key, and a
//! cancel goes to that instance's shard like any keyed timer's: it wins
//! over the timer unless the handler has already run.

use std::{fmt, str::FromStr};

use tokio::sync::oneshot;

use crate::{Address, Error, Runtime, protocol::envelope::Mail};

/// Identifies an enqueued invocation: its target instance and its key (the
/// idempotency key it was enqueued with, or one generated for it).
///
/// As text (`Display`, `FromStr`, JSON): `type.id.key`, each part with
/// every byte other than ASCII letters, digits, `_` and `-` written `~XX`
/// (hex), so that it fits in a URL path as it is.
///
/// # Examples
///
/// ```
/// use statefn::{Address, InvocationId};
///
/// let id = InvocationId::new(Address::new("shop.Cart", "c-1")?, "payday");
/// assert_eq!(id.to_string(), "shop~2ECart.c-1.payday");
/// assert_eq!("shop~2ECart.c-1.payday".parse::<InvocationId>()?, id);
/// assert_eq!(id.key(), "payday");
/// # Ok::<(), statefn::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InvocationId {
    target: Address,
    key: String,
}

impl InvocationId {
    /// The invocation enqueued for `target` under `key`.
    pub fn new(target: Address, key: impl Into<String>) -> Self {
        InvocationId {
            target,
            key: key.into(),
        }
    }

    /// The instance it runs on.
    pub fn target(&self) -> &Address {
        &self.target
    }

    /// Its key: the idempotency key it was enqueued with.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Writes `part` with `~XX` escapes.
fn escape(part: &str, out: &mut fmt::Formatter<'_>) -> fmt::Result {
    for byte in part.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            write!(out, "{}", char::from(byte))?;
        } else {
            write!(out, "~{byte:02X}")?;
        }
    }
    Ok(())
}

/// Reads a part written by [`escape`].
fn unescape(part: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(part.len());
    let mut rest = part.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'~' {
            let hex = tail.get(..2)?;
            let hex = std::str::from_utf8(hex).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = tail.get(2..)?;
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

impl fmt::Display for InvocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        escape(self.target.type_name(), f)?;
        f.write_str(".")?;
        escape(self.target.id(), f)?;
        f.write_str(".")?;
        escape(&self.key, f)
    }
}

impl FromStr for InvocationId {
    type Err = Error;

    /// # Errors
    ///
    /// [`Error::UnknownInvocation`] if `s` is not an invocation id.
    fn from_str(s: &str) -> Result<Self, Error> {
        let unknown = || Error::UnknownInvocation { id: s.to_owned() };
        let mut parts = s.split('.').map(unescape);
        let (Some(Some(type_name)), Some(Some(id)), Some(Some(key)), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(unknown());
        };
        if key.is_empty() {
            return Err(unknown());
        }
        let target = Address::new(type_name, id).map_err(|_| unknown())?;
        Ok(InvocationId { target, key })
    }
}

impl serde::Serialize for InvocationId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Runtime {
    /// Cancels a delayed invocation (one enqueued with a delay by
    /// [`enqueue_json`](Self::enqueue_json) or `POST .../send?delay=`)
    /// before it runs: its handler will not run, even if it is due and
    /// about to.
    ///
    /// # Errors
    ///
    /// [`Error::InvocationNotPending`] if it was enqueued but is no longer
    /// pending: it has run (or is running), was cancelled, or was enqueued
    /// without a delay (those run at once). [`Error::UnknownInvocation`] if
    /// no such invocation is known (never enqueued, or longer ago than the
    /// [idempotency retention](crate::Builder::idempotency_retention)).
    ///
    /// # Durability
    ///
    /// When this returns `Ok`, the cancellation is committed: the
    /// invocation will not run, also after a crash.
    ///
    /// # Examples
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use statefn::prelude::*;
    /// # #[stateful_function]
    /// # #[derive(Default, Serialize, Deserialize)]
    /// # pub struct Counter { n: u64 }
    /// # #[stateful_function]
    /// # impl Counter { #[handler] pub fn add(&mut self, by: u64) -> u64 { self.n += by; self.n } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), statefn::Error> {
    /// use std::time::Duration;
    /// use statefn::{Address, InvocationId};
    ///
    /// let runtime = Runtime::builder().in_memory().register::<Counter>().open().await?;
    /// let id = runtime
    ///     .enqueue_json("Counter", "c", "add", serde_json::json!({"by": 5}), Duration::from_secs(3600), None)
    ///     .await?;
    /// runtime.cancel_invocation(&id).await?;
    /// // Cancelled: it never runs, and a second cancel says so.
    /// assert!(matches!(runtime.cancel_invocation(&id).await, Err(Error::InvocationNotPending { .. })));
    /// let never = InvocationId::new(Address::new("Counter", "c")?, "no-such-key");
    /// assert!(matches!(runtime.cancel_invocation(&never).await, Err(Error::UnknownInvocation { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn cancel_invocation(&self, id: &InvocationId) -> Result<(), Error> {
        let inner = self.inner();
        inner
            .registry
            .get(id.target.type_name())
            .map_err(|_| Error::UnknownInvocation { id: id.to_string() })?;
        let (reply, rx) = oneshot::channel();
        let shard = id.target.shard_id(inner.shard_count());
        inner.enqueue(
            shard,
            Mail::CancelInvocation {
                target: id.target.clone(),
                key: id.key.clone(),
                reply,
            },
        );
        match rx.await.map_err(|_| Error::ShuttingDown)? {
            Ok(_) => Ok(()),
            Err(Error::UnknownInvocation { .. }) => {
                Err(Error::UnknownInvocation { id: id.to_string() })
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text_whatever_their_parts_hold() -> Result<(), Error> {
        for (type_name, id, key) in [
            ("Account", "dave", "payday"),
            ("shop.Cart", "a.b/c d~e", "k.y:%2F\u{e9}"),
            ("T", "-", "_"),
        ] {
            let invocation = InvocationId::new(Address::new(type_name, id)?, key);
            let text = invocation.to_string();
            assert_eq!(text.matches('.').count(), 2, "{text}");
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.~".contains(&b)),
                "{text}"
            );
            assert_eq!(text.parse::<InvocationId>()?, invocation);
        }
        for bad in ["", "a.b", "a.b.c.d", "a..k", "a.b.", "a.b.~zz", "a.b.~4"] {
            assert!(
                matches!(
                    bad.parse::<InvocationId>(),
                    Err(Error::UnknownInvocation { .. })
                ),
                "{bad}"
            );
        }
        Ok(())
    }
}
