//! A message's binary form: the bytes the runtime stores and sends (client
//! calls, messages between functions, their outbox entries, timers and dead
//! letters).
//!
//! Such bytes outlive the build that wrote them: a timer may fire a year
//! later, after many deploys. So a message names its handler by **name**
//! (never by its position among the handlers, which changes when handlers
//! are added, removed or reordered) and carries a **fingerprint** of the
//! handler's arguments, so that a changed signature is reported instead of
//! misread:
//!
//! ```text
//! 0xA1           format tag: a named message, version 1
//! u8 n           length of the handler's name, 1 to 128
//! n bytes        the handler's name (UTF-8), as in HandlerInfo::name
//! u32, LE        the handler's argument fingerprint (HandlerInfo::fingerprint)
//! ...            each argument in declaration order, postcard-encoded
//! ```
//!
//! The tag can never start a message of the older, positional encoding (a
//! postcard variant index below 128 is one byte below 0x80), so such a
//! message is reported as [`MessageError::Malformed`], never run. Positional
//! messages exist only in data directories of format 1; the one-time upgrade
//! of such a directory converts them with [`named_from_positional`] and the
//! runtime never reads one otherwise.

use std::marker::PhantomData;

use crate::{Error, HandlerInfo, StatefulFunction, function::MessageArgument};

/// The first byte of every encoded message (format version 1).
pub(crate) const MESSAGE_TAG: u8 = 0xA1;

/// The longest handler name, in bytes (its length is stored in one byte).
pub const MAX_HANDLER_NAME: usize = 128;

/// Why stored message bytes do not decode as a message of this build's
/// function: the message must not run (it would run the wrong handler, or
/// with misread arguments). Returned by [`decode_message`]; the runtime
/// reports it when such a message arrives.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use statefn::{MessageError, prelude::*};
///
/// #[stateful_function]
/// #[derive(Default, Serialize, Deserialize)]
/// pub struct Counter { n: u64 }
///
/// #[stateful_function]
/// impl Counter {
///     #[handler]
///     fn add(&mut self, by: u64) { self.n += by; }
/// }
///
/// // A message for a handler `reset` that this build does not have.
/// let mut bytes = vec![0xA1, 5];
/// bytes.extend_from_slice(b"reset");
/// bytes.extend_from_slice(&0u32.to_le_bytes());
/// let err = statefn::decode_message::<Counter>(&bytes).map(|_| ()).unwrap_err();
/// assert!(matches!(&err, MessageError::UnknownHandler { handler, .. } if handler == "reset"));
/// assert!(err.to_string().contains("renamed_from"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The message is for a function type this runtime does not register.
    #[error(
        "a message for `{function}` cannot be decoded: no function of that name is registered \
         (known: {}); register it with `Builder::register`",
        known.join(", ")
    )]
    UnknownFunction {
        /// The function type the message is for.
        function: String,
        /// The registered type names.
        known: Vec<String>,
    },
    /// The message names a handler that this build of the function does not
    /// have: it was removed or renamed.
    #[error(
        "a message for `{function}` names the handler `{handler}`, which this build of \
         `{function}` does not have (its handlers: {}); restore the handler, or mark the one \
         that replaced it #[handler(renamed_from = \"{handler}\")]",
        known.join(", ")
    )]
    UnknownHandler {
        /// The function type.
        function: String,
        /// The handler name stored in the message.
        handler: String,
        /// This build's handlers.
        known: Vec<String>,
    },
    /// The handler exists, but its arguments (names or types) changed since
    /// the message was encoded: decoding it would misread them.
    #[error(
        "a message for `{function}::{stored_name}` was encoded for other arguments than this \
         build's `{handler}({signature})` (argument fingerprint {stored:#010x}, this build's \
         {current:#010x}); keep a handler with the old arguments until no such message is \
         left, and give the changed handler a new name"
    )]
    ArgumentsChanged {
        /// The function type.
        function: String,
        /// This build's handler the message's name resolves to.
        handler: String,
        /// The handler name stored in the message (differs from `handler`
        /// when the handler was renamed with `renamed_from`).
        stored_name: String,
        /// This build's arguments, as written (`name:Type,...`).
        signature: String,
        /// The fingerprint stored in the message.
        stored: u32,
        /// This build's fingerprint of the handler's arguments.
        current: u32,
    },
    /// The bytes are not a message in this format: truncated or damaged, an
    /// argument that does not decode as its type, or a message written
    /// before messages named their handlers.
    #[error(
        "cannot decode a message for `{function}`{}: {reason}",
        .handler.as_ref().map(|h| format!(" (handler `{h}`)")).unwrap_or_default()
    )]
    Malformed {
        /// The function type.
        function: String,
        /// The handler, once its name was read.
        handler: Option<String>,
        /// What is wrong.
        reason: String,
    },
}

impl From<MessageError> for Error {
    /// A message that does not decode, as the runtime reports it when one
    /// arrives: [`Error::Decode`] with the [`MessageError`]'s explanation.
    fn from(error: MessageError) -> Self {
        let function = match &error {
            MessageError::UnknownFunction { function, .. }
            | MessageError::UnknownHandler { function, .. }
            | MessageError::ArgumentsChanged { function, .. }
            | MessageError::Malformed { function, .. } => function.clone(),
        };
        Error::Decode {
            function,
            what: "a message".to_owned(),
            reason: error.to_string(),
        }
    }
}

/// The binary form of a generated message enum; implemented by
/// `#[stateful_function]`, not by hand.
#[doc(hidden)]
pub trait WireMessage: Sized {
    /// Appends the encoded message to `out`.
    ///
    /// # Errors
    ///
    /// An argument's `Serialize` implementation failed.
    fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), Error>;

    /// Decodes a whole message.
    ///
    /// # Errors
    ///
    /// See [`MessageError`].
    fn decode(bytes: &[u8]) -> Result<Self, MessageError>;
}

/// Encodes `T`'s message in the stored format: what the runtime writes to
/// its log for a call, a sent message, a timer or a dead letter.
///
/// Such bytes outlive the build that wrote them, so the message names its
/// handler (never its position among the handlers) and carries a
/// fingerprint of the handler's arguments
/// ([`HandlerInfo::fingerprint`](crate::HandlerInfo::fingerprint)):
///
/// ```text
/// 0xA1           format tag: a named message, version 1
/// u8 n           length of the handler's name, 1 to 128
/// n bytes        the handler's name (UTF-8), as in HandlerInfo::name
/// u32, LE        the handler's argument fingerprint
/// ...            each argument in declaration order, postcard-encoded
/// ```
///
/// [`decode_message`] takes the message to the handler of that name (or the
/// one that declares `#[handler(renamed_from = "that name")]`) and refuses
/// it with a [`MessageError`] when no handler has the name or its arguments
/// changed.
///
/// # Errors
///
/// [`Error::Encode`] when an argument's `Serialize` implementation fails.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use statefn::prelude::*;
///
/// #[stateful_function]
/// #[derive(Default, Serialize, Deserialize)]
/// pub struct Counter { n: u64 }
///
/// #[stateful_function(message_derive(Debug, PartialEq))]
/// impl Counter {
///     #[handler]
///     fn add(&mut self, by: u64) { self.n += by; }
/// }
///
/// let bytes = statefn::encode_message::<Counter>(&CounterMessage::Add { by: 7 })?;
/// assert_eq!(&bytes[..5], &[0xA1, 3, b'a', b'd', b'd']);
/// assert_eq!(statefn::decode_message::<Counter>(&bytes)?, CounterMessage::Add { by: 7 });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn encode_message<T: StatefulFunction>(message: &T::Message) -> Result<Vec<u8>, Error> {
    encode(message)
}

/// Decodes bytes made by [`encode_message`], possibly by an older build of
/// `T`: the message goes to the handler it names (or to the handler that
/// declares `#[handler(renamed_from = "that name")]`), whatever its position
/// among the handlers now.
///
/// # Errors
///
/// [`MessageError`] when the named handler no longer exists, its arguments
/// changed, or the bytes are not a message.
pub fn decode_message<T: StatefulFunction>(bytes: &[u8]) -> Result<T::Message, MessageError> {
    T::Message::decode(bytes)
}

/// Converts a message of data directory format 1, which named its handler
/// by **position** (postcard's variant index of the generated enum, then the
/// arguments), to a named message of `handlers`' handler at that position.
/// The arguments are laid out alike in both formats and are copied as they
/// are; the caller checks that they decode.
///
/// The position is read in this build's declaration order: that is the
/// upgrade rule (upgrade statefn without reordering handlers in the same
/// deploy). Used only by the one-time upgrade of such a directory.
pub(crate) fn named_from_positional(
    handlers: &[HandlerInfo],
    bytes: &[u8],
) -> Result<Vec<u8>, String> {
    let (index, args) = postcard::take_from_bytes::<u32>(bytes)
        .map_err(|e| format!("no handler position at its start: {e}"))?;
    let info = usize::try_from(index)
        .ok()
        .and_then(|i| handlers.get(i))
        .ok_or_else(|| {
            format!(
                "it names handler number {index} by position, but this build declares {} \
                 handlers",
                handlers.len()
            )
        })?;
    let mut out = Vec::with_capacity(6 + info.name.len() + args.len());
    write_header(&mut out, info.name, info.fingerprint);
    out.extend_from_slice(args);
    Ok(out)
}

/// Encodes a message, with room for a small one in the first allocation.
pub(crate) fn encode<M: WireMessage>(message: &M) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(48);
    message.encode_into(&mut out)?;
    Ok(out)
}

/// The fingerprint of a handler's arguments: 32-bit FNV-1a of their
/// signature as the macro writes it (`name:Type` per argument, joined by
/// `,`, the type's tokens without whitespace). `const` so that it is computed
/// at compile time.
#[doc(hidden)]
pub const fn fingerprint(signature: &str) -> u32 {
    let mut bytes = signature.as_bytes();
    let mut hash: u32 = 0x811c_9dc5;
    // `while let` over slice patterns: a `for` loop is not allowed in a
    // `const fn`, and this never indexes.
    while let [byte, rest @ ..] = bytes {
        hash ^= *byte as u32;
        hash = hash.wrapping_mul(0x0100_0193);
        bytes = rest;
    }
    hash
}

/// Writes a message's header. `name` is at most [`MAX_HANDLER_NAME`] bytes
/// (the macro checks it).
#[doc(hidden)]
pub fn write_header(out: &mut Vec<u8>, name: &'static str, fingerprint: u32) {
    debug_assert!(!name.is_empty() && name.len() <= MAX_HANDLER_NAME);
    out.push(MESSAGE_TAG);
    // Names longer than a byte can count are refused by the macro.
    out.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&fingerprint.to_le_bytes());
}

/// Appends one argument, postcard-encoded. (Bounded by `MessageArgument`,
/// as `Reader::arg` is, so that an argument type that is not serde is
/// reported with that trait's message.)
///
/// # Errors
///
/// [`Error::Encode`] when its `Serialize` implementation fails.
#[doc(hidden)]
pub fn write_arg<A: MessageArgument>(
    out: &mut Vec<u8>,
    value: &A,
    handler: &'static str,
    arg: &'static str,
) -> Result<(), Error> {
    postcard::serialize_with_flavor(value, Append(out)).map_err(|e| Error::Encode {
        what: format!("argument `{arg}` of handler `{handler}`"),
        reason: e.to_string(),
    })
}

/// A postcard output that appends to a borrowed `Vec`.
struct Append<'v>(&'v mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Reads one message of function `F`; used by the generated decoder. The
/// success path returns small values (`Option`, postcard's one-byte error)
/// and builds a [`MessageError`] only in `#[cold]` functions: decoding is
/// on every invocation's path.
#[doc(hidden)]
#[derive(Debug)]
pub struct Reader<'b, F> {
    name: &'b [u8],
    fingerprint: u32,
    rest: &'b [u8],
    _function: PhantomData<fn() -> F>,
}

impl<'b, F: StatefulFunction> Reader<'b, F> {
    /// Reads the header; `None` when there is no valid one (then
    /// [`malformed_header`](Self::malformed_header) says why).
    #[inline]
    pub fn new(bytes: &'b [u8]) -> Option<Self> {
        let [MESSAGE_TAG, len, rest @ ..] = bytes else {
            return None;
        };
        let len = usize::from(*len);
        if len == 0 || rest.len() < len + 4 {
            return None;
        }
        let (name, rest) = rest.split_at(len);
        let (fingerprint, rest) = rest.split_first_chunk::<4>()?;
        let fingerprint = u32::from_le_bytes(*fingerprint);
        Some(Reader {
            name,
            fingerprint,
            rest,
            _function: PhantomData,
        })
    }

    /// Why `bytes` have no valid header.
    #[cold]
    #[inline(never)]
    pub fn malformed_header(bytes: &[u8]) -> MessageError {
        let reason = match bytes {
            [] => "the message is empty".to_owned(),
            [tag, ..] if *tag != MESSAGE_TAG => format!(
                "it starts with {tag:#04x}, not the named-message tag {MESSAGE_TAG:#04x} (a \
                 message written before messages named their handlers, or damaged bytes)"
            ),
            _ => "it ends inside its header".to_owned(),
        };
        MessageError::Malformed {
            function: F::type_name().to_owned(),
            handler: None,
            reason,
        }
    }

    /// The handler name the message carries.
    #[inline]
    pub fn name(&self) -> &'b [u8] {
        self.name
    }

    /// The argument fingerprint the message carries.
    #[inline]
    pub fn fingerprint(&self) -> u32 {
        self.fingerprint
    }

    /// A handler index the generated code should never pass (it comes from
    /// the same `HANDLERS` table).
    #[cold]
    #[inline(never)]
    fn no_such_handler(handler: usize) -> MessageError {
        MessageError::Malformed {
            function: F::type_name().to_owned(),
            handler: None,
            reason: format!("handler index {handler} is out of range (a bug in statefn)"),
        }
    }

    /// The error for a fingerprint that is not handler number `handler`'s.
    #[cold]
    #[inline(never)]
    pub fn arguments_changed(&self, handler: usize) -> MessageError {
        let Some(info) = F::HANDLERS.get(handler) else {
            return Self::no_such_handler(handler);
        };
        MessageError::ArgumentsChanged {
            function: F::type_name().to_owned(),
            handler: info.name.to_owned(),
            stored_name: String::from_utf8_lossy(self.name).into_owned(),
            signature: info.signature.to_owned(),
            stored: self.fingerprint,
            current: info.fingerprint,
        }
    }

    /// Reads the next argument.
    ///
    /// # Errors
    ///
    /// Postcard's reason when it does not decode as an `A` (turn it into a
    /// [`MessageError`] with [`bad_arg`](Self::bad_arg)).
    #[inline]
    pub fn arg<A: MessageArgument>(&mut self) -> Result<A, postcard::Error> {
        let (value, rest) = postcard::take_from_bytes::<A>(self.rest)?;
        self.rest = rest;
        Ok(value)
    }

    /// The error for argument `arg` of handler number `handler` that does
    /// not decode.
    #[cold]
    #[inline(never)]
    pub fn bad_arg(&self, handler: usize, arg: &str, error: postcard::Error) -> MessageError {
        self.malformed(handler, format!("argument `{arg}`: {error}"))
    }

    /// Whether every byte was read.
    #[inline]
    pub fn is_done(&self) -> bool {
        self.rest.is_empty()
    }

    /// The error for bytes left after handler number `handler`'s arguments.
    #[cold]
    #[inline(never)]
    pub fn trailing(&self, handler: usize) -> MessageError {
        let left = self.rest.len();
        self.malformed(
            handler,
            format!("{left} bytes are left after the last argument"),
        )
    }

    /// The error for a name that is none of `F`'s handlers.
    #[cold]
    #[inline(never)]
    pub fn unknown_handler(&self) -> MessageError {
        MessageError::UnknownHandler {
            function: F::type_name().to_owned(),
            handler: String::from_utf8_lossy(self.name).into_owned(),
            known: F::HANDLERS.iter().map(|h| h.name.to_owned()).collect(),
        }
    }

    fn malformed(&self, handler: usize, reason: String) -> MessageError {
        MessageError::Malformed {
            function: F::type_name().to_owned(),
            handler: F::HANDLERS.get(handler).map(|h| h.name.to_owned()),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(name: &'static str, signature: &'static str) -> HandlerInfo {
        HandlerInfo {
            name,
            mutates: true,
            fallible: false,
            internal: false,
            args: &[],
            signature,
            fingerprint: fingerprint(signature),
            renamed_from: &[],
        }
    }

    #[test]
    fn a_positional_message_becomes_the_named_message_of_the_handler_at_its_position() {
        let handlers = [handler("a", "n:u32"), handler("b", "n:u32,s:String")];
        // Variant 1 (`b`), n = 5, s = "hi": postcard of the old enum.
        let positional = [1, 5, 2, b'h', b'i'];
        let named = named_from_positional(&handlers, &positional).expect("converts");
        let mut expected = vec![MESSAGE_TAG, 1, b'b'];
        expected.extend_from_slice(&fingerprint("n:u32,s:String").to_le_bytes());
        expected.extend_from_slice(&[5, 2, b'h', b'i']);
        assert_eq!(named, expected);
    }

    #[test]
    fn a_position_this_build_lacks_or_no_position_is_an_error_never_a_guess() {
        let handlers = [handler("a", "n:u32")];
        let err = named_from_positional(&handlers, &[3, 5]).expect_err("no handler 3");
        assert!(
            err.contains("handler number 3") && err.contains("declares 1"),
            "{err}"
        );
        assert!(named_from_positional(&handlers, &[]).is_err());
        // A varint that never ends.
        assert!(named_from_positional(&handlers, &[0xFF; 6]).is_err());
    }

    #[test]
    fn fingerprint_is_fnv1a_32() {
        // Reference values of 32-bit FNV-1a.
        assert_eq!(fingerprint(""), 0x811c_9dc5);
        assert_eq!(fingerprint("a"), 0xe40c_292c);
        assert_eq!(fingerprint("foobar"), 0xbf9c_f968);
    }

    #[test]
    fn fingerprint_tells_names_types_and_order_apart() {
        let all = [
            fingerprint("amount:i64"),
            fingerprint("amount:u64"),
            fingerprint("cents:i64"),
            fingerprint("a:u32,b:String"),
            fingerprint("b:String,a:u32"),
            fingerprint(""),
        ];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y);
            }
        }
    }
}
