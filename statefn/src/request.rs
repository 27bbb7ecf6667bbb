//! What a request's reply handler receives: the callee's reply, or why
//! there is none ([`RequestFailed`]), and the bytes of that outcome as the
//! runtime builds them without knowing the types.
//!
//! A reply handler's last argument is `Result<T, RequestFailed<E>>`, where
//! the callee returns `T` (then `E` is [`NoError`]) or `Result<T, E>`. The
//! callee's shard only has the encoded return value, so it writes the
//! postcard bytes of that `Result` by hand (`outcome_*` below); a unit test
//! checks them against serde's.

use serde::{Deserialize, Serialize};

/// Why a request got no reply value: the `Err` of a reply handler's
/// last argument, `Result<T, RequestFailed<E>>`.
///
/// Exactly one of a reply or a failure reaches the reply handler, once.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use statefn::{RequestFailed, prelude::*};
///
/// #[derive(Debug, Serialize, Deserialize, thiserror::Error)]
/// #[error("out of stock")]
/// pub struct OutOfStock;
///
/// #[stateful_function]
/// #[derive(Default, Serialize, Deserialize)]
/// pub struct Inventory { left: u32 }
///
/// #[stateful_function]
/// impl Inventory {
///     #[handler]
///     fn reserve(&mut self, n: u32) -> Result<u32, OutOfStock> {
///         self.left = self.left.checked_sub(n).ok_or(OutOfStock)?;
///         Ok(self.left)
///     }
/// }
///
/// #[stateful_function]
/// #[derive(Default, Serialize, Deserialize)]
/// pub struct Shop { log: Vec<String> }
///
/// #[stateful_function]
/// impl Shop {
///     #[handler]
///     fn order(&mut self, ctx: &mut Context, sku: String) {
///         ctx.request::<Inventory>(&sku)
///             .reserve(1)
///             .timeout(std::time::Duration::from_secs(5))
///             .reply_to_with(ShopMessage::reserved(), sku.clone());
///     }
///
///     #[handler(internal)]
///     fn reserved(&mut self, sku: String, reply: Result<u32, RequestFailed<OutOfStock>>) {
///         let line = match reply {
///             Ok(left) => format!("{sku}: reserved, {left} left"),
///             Err(RequestFailed::Rejected(OutOfStock)) => format!("{sku}: out of stock"),
///             Err(RequestFailed::Timeout) => format!("{sku}: no answer in time"),
///             Err(RequestFailed::CalleeFailed { error }) => format!("{sku}: failed: {error}"),
///         };
///         self.log.push(line);
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestFailed<E = NoError> {
    /// The callee ran and returned `Err(e)` (its effects were not applied).
    Rejected(E),
    /// No reply came within the request's
    /// [`timeout`](crate::Request::timeout). A reply that arrives later is
    /// dropped: the reply handler never sees both.
    Timeout,
    /// The callee could not run: it panicked on every allowed attempt
    /// ([`Builder::retry_policy`](crate::Builder::retry_policy)), or its
    /// message could not be decoded or its function is not registered. The
    /// request is kept as a [`DeadLetter`](crate::DeadLetter); replaying it
    /// runs the callee again but sends no second reply.
    CalleeFailed {
        /// What went wrong, as the dead letter records it.
        error: String,
    },
}

impl<E: std::fmt::Display> std::fmt::Display for RequestFailed<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestFailed::Rejected(e) => write!(f, "the callee returned an error: {e}"),
            RequestFailed::Timeout => f.write_str("no reply came within the request's timeout"),
            RequestFailed::CalleeFailed { error } => {
                write!(
                    f,
                    "the callee failed and its request is a dead letter: {error}"
                )
            }
        }
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for RequestFailed<E> {}

/// The error type of a handler that cannot fail: the `E` of
/// `RequestFailed<E>` when the callee returns a plain value. It has no
/// values, so `RequestFailed::Rejected` cannot occur.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoError {}

impl std::fmt::Display for NoError {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {}
    }
}

/// Postcard's variant indexes (varints below 128: one byte each).
const OK: u8 = 0;
const ERR: u8 = 1;
const REJECTED: u8 = 0;
const TIMEOUT: u8 = 1;
const CALLEE_FAILED: u8 = 2;

/// `Ok(value)` from the encoded return value of a callee: `reply` is the
/// plain value's bytes, or (for a fallible callee) an `Ok` whose bytes are
/// already `Ok`'s.
pub(crate) fn outcome_of_reply(reply: &[u8], fallible: bool, rejected: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(reply.len() + 2);
    match (fallible, rejected, reply.split_first()) {
        // `Err(e)` encoded as `Result<T, E>`: becomes `Err(Rejected(e))`.
        (true, true, Some((_, e))) => {
            out.extend_from_slice(&[ERR, REJECTED]);
            out.extend_from_slice(e);
        }
        // `Ok(t)` encoded as `Result<T, E>` is already `Ok(t)`.
        (true, false, _) => out.extend_from_slice(reply),
        _ => {
            out.push(OK);
            out.extend_from_slice(reply);
        }
    }
    out
}

/// `Err(RequestFailed::Timeout)`.
pub(crate) fn outcome_timeout() -> [u8; 2] {
    [ERR, TIMEOUT]
}

/// `Err(RequestFailed::CalleeFailed { error })`.
pub(crate) fn outcome_callee_failed(error: &str) -> Vec<u8> {
    let mut out = vec![ERR, CALLEE_FAILED];
    // A `String` never fails to encode.
    out.extend(postcard::to_stdvec(error).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Big {
        a: u64,
        b: String,
    }

    fn serde<T: Serialize>(value: &T) -> Vec<u8> {
        postcard::to_stdvec(value).expect("encodes")
    }

    #[test]
    fn hand_written_outcomes_are_the_serde_bytes_of_the_result() {
        let big = Big {
            a: 300,
            b: "x".into(),
        };
        // A plain callee.
        assert_eq!(
            outcome_of_reply(&serde(&big), false, false),
            serde(&Result::<&Big, RequestFailed>::Ok(&big))
        );
        // A fallible callee, both ways.
        let ok: Result<u32, Big> = Ok(7);
        assert_eq!(
            outcome_of_reply(&serde(&ok), true, false),
            serde(&Result::<u32, RequestFailed<Big>>::Ok(7))
        );
        let err: Result<u32, &Big> = Err(&big);
        assert_eq!(
            outcome_of_reply(&serde(&err), true, true),
            serde(&Result::<u32, RequestFailed<&Big>>::Err(
                RequestFailed::Rejected(&big)
            ))
        );
        assert_eq!(
            outcome_timeout().to_vec(),
            serde(&Result::<Big, RequestFailed<Big>>::Err(
                RequestFailed::Timeout
            ))
        );
        let failed = outcome_callee_failed("boom");
        assert_eq!(
            failed,
            serde(&Result::<Big, RequestFailed<Big>>::Err(
                RequestFailed::CalleeFailed {
                    error: "boom".into()
                }
            ))
        );
        let back: Result<Big, RequestFailed<Big>> = postcard::from_bytes(&failed).expect("decodes");
        assert_eq!(
            back,
            Err(RequestFailed::CalleeFailed {
                error: "boom".into()
            })
        );
    }
}
