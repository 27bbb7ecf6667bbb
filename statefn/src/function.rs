//! The contract between `#[stateful_function]`'s generated code and the runtime.

use std::marker::PhantomData;

use serde::{Serialize, de::DeserializeOwned};

use crate::{Context, Error, context::FromRawSender, handle::FromRawHandle, wire::WireMessage};

/// The stable type name given on the struct. Implemented by
/// `#[stateful_function]` on the struct; do not implement it by hand.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a stateful function",
    label = "add #[stateful_function] to `struct {Self}`",
    note = "a stateful function needs #[stateful_function] on both its struct and its impl block"
)]
pub trait FunctionState {
    /// The stable type name (defaults to the struct's name).
    const TYPE_NAME: &'static str;

    /// The version of the state's encoding (`#[stateful_function(version = N)]`,
    /// default 1): stored with every state, so that a changed struct never
    /// reads old bytes as if they were new.
    const VERSION: u32 = 1;

    /// Instances whose state has not changed for this many milliseconds are
    /// removed (`#[stateful_function(expire_after = "30d")]`); 0: never.
    const EXPIRE_AFTER_MS: u64 = 0;

    /// Builds the state from one stored by an older `version`
    /// (`#[stateful_function(migrate = path)]`). Without a migration, old
    /// states cannot be read: the invocation fails and the bytes stay.
    ///
    /// # Errors
    ///
    /// Why the old state cannot be converted.
    fn migrate(version: u32, bytes: &[u8]) -> Result<Self, String>
    where
        Self: Sized,
    {
        let _ = bytes;
        Err(format!(
            "no migration from state version {version}: add #[stateful_function(migrate = ..)]"
        ))
    }
}

/// Decodes state bytes stored by an older version of a function, as that
/// version's struct `Old`: the building block of a migration function.
///
/// # Errors
///
/// The decoder's explanation, when the bytes are not an `Old`.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use statefn::prelude::*;
///
/// /// The state as version 1 stored it.
/// #[derive(Deserialize)]
/// struct AccountV1 { balance: i64 }
///
/// #[stateful_function(version = 2, migrate = Account::from_older)]
/// #[derive(Default, Serialize, Deserialize)]
/// pub struct Account { cents: i64 }
///
/// impl Account {
///     fn from_older(version: u32, bytes: &[u8]) -> Result<Self, String> {
///         match version {
///             1 => {
///                 let v1: AccountV1 = statefn::decode_state(bytes)?;
///                 Ok(Account { cents: v1.balance * 100 })
///             }
///             other => Err(format!("unknown version {other}")),
///         }
///     }
/// }
///
/// #[stateful_function]
/// impl Account {
///     #[handler]
///     pub fn cents(&self) -> i64 { self.cents }
/// }
/// # assert_eq!(<Account as statefn::StatefulFunction>::type_name(), "Account");
/// ```
pub fn decode_state<Old: DeserializeOwned>(bytes: &[u8]) -> Result<Old, String> {
    postcard::from_bytes(bytes).map_err(|e| e.to_string())
}

/// Stored state: the encoding version, the time it was written (unix ms,
/// for expiry), then the postcard bytes. The header's layout is part of the
/// data directory format (`docs/formats.md`): changing it is a format change.
///
/// Encoded into `out` (cleared first): the shard hands in the buffer of the
/// state this one replaces, so a busy instance's writes allocate nothing
/// (issue 14). The bytes do not depend on `out`.
pub(crate) fn encode_state<T: StatefulFunction>(
    state: &T,
    now_ms: u64,
    mut out: Vec<u8>,
) -> Result<Vec<u8>, Error> {
    out.clear();
    // A new buffer: room for a small state at once, not grown by pushes.
    out.reserve(32);
    postcard::to_io(&(T::VERSION, now_ms), &mut out).map_err(|e| Error::Encode {
        what: "the state header".into(),
        reason: e.to_string(),
    })?;
    postcard::to_io(state, &mut out).map_err(|e| Error::Encode {
        what: "the state".into(),
        reason: e.to_string(),
    })?;
    Ok(out)
}

/// When stored state was last written (unix ms), from its header.
pub(crate) fn state_written_ms(bytes: &[u8]) -> Option<u64> {
    postcard::take_from_bytes::<(u32, u64)>(bytes)
        .ok()
        .map(|((_, written), _)| written)
}

/// Decodes stored state, migrating it from an older version if it must.
pub(crate) fn decode_state_of<T: StatefulFunction>(id: &str, bytes: &[u8]) -> Result<T, Error> {
    let fail = |stored: Option<u32>, reason: String| Error::State {
        function: T::type_name().to_owned(),
        id: id.to_owned(),
        stored,
        current: T::VERSION,
        reason,
    };
    let ((version, _written_ms), rest) = postcard::take_from_bytes::<(u32, u64)>(bytes)
        .map_err(|e| fail(None, format!("no version header: {e}")))?;
    if version == T::VERSION {
        postcard::from_bytes(rest).map_err(|e| fail(Some(version), e.to_string()))
    } else if version < T::VERSION {
        T::migrate(version, rest).map_err(|reason| fail(Some(version), reason))
    } else {
        Err(fail(
            Some(version),
            "it was written by a newer release of this function; deploy that release".into(),
        ))
    }
}

/// What a handler is, as the runtime sees it. Made by `#[stateful_function]`
/// (one per `#[handler]` method), listed in [`StatefulFunction::HANDLERS`].
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
/// #[stateful_function]
/// impl Counter {
///     #[handler(renamed_from = "increment")]
///     fn add(&mut self, by: u64) { self.n += by; }
///     #[handler(internal)]
///     fn reset(&mut self) { self.n = 0; }
/// }
///
/// let add = &Counter::HANDLERS[0];
/// assert_eq!((add.name, add.signature, add.internal), ("add", "by:u64", false));
/// assert_eq!(add.renamed_from, ["increment"]);
/// assert_eq!(add.fingerprint, statefn::__private::fingerprint("by:u64"));
/// assert!(Counter::HANDLERS[1].internal);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandlerInfo {
    /// The handler's name on the wire, in stored messages and in URLs: the
    /// method's name, or `#[handler(name = "...")]`.
    pub name: &'static str,
    /// `&mut self`: the state is written back after an `Ok`.
    pub mutates: bool,
    /// Returns `Result<T, E>`: an `Err` discards the invocation's effects.
    pub fallible: bool,
    /// `#[handler(internal)]`: reached only from other functions (`ctx.send`,
    /// `ctx.request`, timers, replies) and from Rust through
    /// [`Handle::internal`](crate::Handle::internal); calls by name (HTTP,
    /// [`Runtime::call_json`](crate::Runtime::call_json)) are refused as if
    /// it did not exist, and a [`Handle`](crate::Handle) or a typed
    /// [`Route`](crate::Route) refuses it at compile time.
    pub internal: bool,
    /// The argument names, in order (the message's field names).
    pub args: &'static [&'static str],
    /// The arguments as written, `name:Type` joined by `,` (whitespace
    /// removed): what [`fingerprint`](Self::fingerprint) is computed from.
    pub signature: &'static str,
    /// A hash of [`signature`](Self::signature), stored in every message so
    /// that a message encoded for other arguments is refused, not misread.
    /// Changing an argument's name, type (as written) or order changes it.
    pub fingerprint: u32,
    /// Earlier names of the handler (`#[handler(renamed_from = "...")]`):
    /// stored messages and reply routes under those names reach it.
    pub renamed_from: &'static [&'static str],
}

impl HandlerInfo {
    /// Whether `name`, stored by this or an earlier build (a message, a
    /// reply route, the handler of a stored idempotent reply), means this
    /// handler: its name, or one in `renamed_from`.
    pub(crate) fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.renamed_from.contains(&name)
    }
}

/// A stateful function type: implemented by `#[stateful_function]` on the
/// struct's impl block; not meant to be implemented by hand.
///
/// The struct's fields are the state of one instance (serialized with serde and
/// postcard); its methods marked `#[handler]` are the handlers.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use statefn::prelude::*;
///
/// #[stateful_function(name = "demo.Counter")]
/// #[derive(Default, Serialize, Deserialize)]
/// pub struct Counter { n: u64 }
///
/// #[stateful_function]
/// impl Counter {
///     #[handler]
///     pub fn add(&mut self, by: u64) -> u64 { self.n += by; self.n }
///     #[handler]
///     pub fn get(&self) -> u64 { self.n }
///     /// Not a handler: no `#[handler]`.
///     pub fn doubled(&self) -> u64 { self.n * 2 }
/// }
///
/// assert_eq!(Counter::type_name(), "demo.Counter");
/// let names: Vec<_> = Counter::HANDLERS.iter().map(|h| h.name).collect();
/// assert_eq!(names, ["add", "get"]);
/// assert!(Counter::HANDLERS[0].mutates && !Counter::HANDLERS[1].mutates);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no handlers",
    label = "add #[stateful_function] to `impl {Self}`",
    note = "a stateful function needs #[stateful_function] on both its struct and its impl block"
)]
pub trait StatefulFunction:
    FunctionState + Default + Serialize + DeserializeOwned + Send + 'static
{
    /// The generated message enum (`AccountMessage`). Its serde form is the
    /// JSON one (`{"deposit": {"amount": 5}}`); the runtime stores it in the
    /// binary form of [`encode_message`](crate::encode_message), which names
    /// the handler.
    type Message: Serialize + DeserializeOwned + WireMessage + Send + 'static;
    /// The generated client that `Handle<Self>` dereferences to: it calls
    /// every handler but the internal ones.
    type Client: FromRawHandle + Clone + Send + Sync + 'static;
    /// The generated client of [`Handle::internal`](crate::Handle::internal):
    /// it calls every handler, the internal ones too.
    type InternalClient: FromRawHandle + Clone + Send + Sync + 'static;
    /// The generated fire-and-forget sender (`ctx.send::<Self>(id)`).
    type Sender<'c>: FromRawSender<'c>;
    /// The generated requester (`ctx.request::<Self>(id)`).
    type Requester<'c>: FromRawSender<'c>;
    /// The generated requester of a request made inside a handler of the
    /// function `Caller` names: its reply target is checked at compile time.
    #[doc(hidden)]
    type CheckedRequester<'c, Caller: 'static>: FromRawSender<'c>;
    /// The generated HTTP routes of one instance's handlers
    /// ([`routes`](crate::routes)).
    type Routes: crate::route::FromRouteId;

    /// The handlers, in declaration order (which does not matter to stored
    /// messages: they name their handler).
    const HANDLERS: &'static [HandlerInfo];

    /// The stable type name.
    fn type_name() -> &'static str {
        <Self as FunctionState>::TYPE_NAME
    }

    /// Which handler a message is for (an index into [`Self::HANDLERS`]).
    #[doc(hidden)]
    fn handler_index(message: &Self::Message) -> usize;

    /// Runs the handler a message is for.
    #[doc(hidden)]
    fn dispatch(&mut self, ctx: &mut Context, message: Self::Message) -> Reply;

    /// Wraps a reply (the encoded return value of another function's handler)
    /// as the message for this function's one-argument handler `handler`.
    #[doc(hidden)]
    fn reply_message(handler: &str, reply: &[u8]) -> Result<Self::Message, Error>;

    /// Decodes handler number `handler`'s encoded reply as JSON.
    #[doc(hidden)]
    fn reply_to_json(handler: usize, reply: &[u8]) -> Result<JsonReply, Error>;

    /// The JSON Schemas of handler number `handler`'s arguments, reply and
    /// error, for the OpenAPI document (`None`: no such handler).
    #[doc(hidden)]
    fn handler_schema(
        handler: usize,
        schemas: &mut crate::schema::Schemas,
    ) -> Option<crate::schema::HandlerSchema>;
}

/// A handler's reply as JSON, for callers that work by name (HTTP ingress,
/// [`Runtime::call_json`](crate::Runtime::call_json)).
#[derive(Debug, Clone, PartialEq)]
pub enum JsonReply {
    /// The handler's return value (the `T` of a `Result<T, E>`).
    Ok(serde_json::Value),
    /// The handler returned `Err(e)`: `e` serialized, and its `Display` text.
    Err {
        /// The error value as JSON.
        error: serde_json::Value,
        /// The error's `Display` text.
        message: String,
    },
}

fn decode_reply<F: StatefulFunction, R: DeserializeOwned>(reply: &[u8]) -> Result<R, Error> {
    postcard::from_bytes(reply).map_err(|e| Error::Decode {
        function: F::type_name().to_owned(),
        what: "a reply".to_owned(),
        reason: e.to_string(),
    })
}

fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value, Error> {
    serde_json::to_value(value).map_err(|e| Error::Encode {
        what: "a reply as JSON".to_owned(),
        reason: e.to_string(),
    })
}

/// A plain reply as JSON.
#[doc(hidden)]
pub fn json_reply<F: StatefulFunction, R: ReplyValue>(reply: &[u8]) -> Result<JsonReply, Error> {
    Ok(JsonReply::Ok(to_json(&decode_reply::<F, R>(reply)?)?))
}

/// A `Result<T, E>` reply as JSON, `Err` kept apart.
#[doc(hidden)]
pub fn json_result_reply<F, T, E>(reply: &[u8]) -> Result<JsonReply, Error>
where
    F: StatefulFunction,
    T: ReplyValue,
    E: ReplyValue + std::fmt::Display,
{
    match decode_reply::<F, Result<T, E>>(reply)? {
        Ok(value) => Ok(JsonReply::Ok(to_json(&value)?)),
        Err(error) => Ok(JsonReply::Err {
            message: error.to_string(),
            error: to_json(&error)?,
        }),
    }
}

/// The error for a handler index out of range (a bug: indices come from `HANDLERS`).
#[doc(hidden)]
pub fn no_such_handler_index<F: StatefulFunction>(index: usize) -> Error {
    Error::UnknownHandler {
        function: F::type_name().to_owned(),
        handler: format!("#{index}"),
        known: F::HANDLERS
            .iter()
            .filter(|h| !h.internal)
            .map(|h| h.name.to_owned())
            .collect(),
    }
}

/// A handler's encoded return value, and whether it was an `Err`.
#[doc(hidden)]
#[derive(Debug)]
pub struct Reply {
    pub(crate) bytes: Result<Vec<u8>, Error>,
    /// `Some(text)` when the handler returned `Err`: its `Display` text.
    pub(crate) rejected: Option<String>,
}

impl Reply {
    /// Encodes a plain return value.
    pub fn from_value<T: ReplyValue>(value: &T) -> Reply {
        Reply {
            bytes: encode(value, "a handler's reply"),
            rejected: None,
        }
    }

    /// Encodes a `Result`, remembering whether it was an `Err`.
    pub fn from_result<T, E: std::fmt::Display>(value: &Result<T, E>) -> Reply
    where
        Result<T, E>: ReplyValue,
    {
        Reply {
            bytes: encode(value, "a handler's reply"),
            rejected: value.as_ref().err().map(ToString::to_string),
        }
    }
}

/// `what` is formatted only on failure: callers pass `format_args!` on the
/// per-call path.
pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    what: impl std::fmt::Display,
) -> Result<Vec<u8>, Error> {
    postcard::to_stdvec(value).map_err(|e| Error::Encode {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

/// A typed reference to a handler of `F` that takes a reply of type `A`
/// (and first, when `C` is not `()`, a correlation value of type `C`): where
/// the reply to a request goes (see [`Request::reply_to`](crate::Request::reply_to)
/// and [`Request::reply_to_with`](crate::Request::reply_to_with)). Made by
/// the generated `FMessage::handler_name()` functions, for handlers of one
/// or two arguments.
pub struct HandlerRef<F, A, C = ()> {
    pub(crate) handler: &'static str,
    _types: PhantomData<Types<F, A, C>>,
}

/// `HandlerRef`'s type parameters, without owning any of them.
type Types<F, A, C> = fn() -> (F, A, C);

impl<F, A, C> HandlerRef<F, A, C> {
    #[doc(hidden)]
    pub const fn new(handler: &'static str) -> Self {
        HandlerRef {
            handler,
            _types: PhantomData,
        }
    }

    /// The handler's name.
    pub fn name(&self) -> &'static str {
        self.handler
    }
}

impl<F, A, C> Clone for HandlerRef<F, A, C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F, A, C> Copy for HandlerRef<F, A, C> {}

impl<F, A, C> std::fmt::Debug for HandlerRef<F, A, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HandlerRef({})", self.handler)
    }
}

/// Handler arguments are stored and sent: they must be serde types.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler argument: it must implement serde's `Serialize` and `Deserialize` and be `Send + 'static`",
    label = "not serializable",
    note = "derive them: `#[derive(Serialize, Deserialize)]`"
)]
pub trait MessageArgument: Serialize + DeserializeOwned + Send + 'static {}
// `do_not_recommend`: report the unmet `MessageArgument` with its message,
// not each unmet bound of this blanket impl.
#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned + Send + 'static> MessageArgument for T {}

/// Names a handler argument's type in a field of a struct the macro emits
/// before the message enum: the type is checked when the struct is, so
/// `MessageArgument`'s message is the first error reported, ahead of the
/// errors of serde's derive on the enum.
#[doc(hidden)]
#[allow(missing_debug_implementations)]
pub struct CheckArgument<T: MessageArgument>(PhantomData<T>);

/// Replies are stored (for idempotent retries) and sent: they must be serde types.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler's return type: it must implement serde's `Serialize` and `Deserialize` and be `Send + 'static`",
    label = "not serializable",
    note = "derive them: `#[derive(Serialize, Deserialize)]`"
)]
pub trait ReplyValue: Serialize + DeserializeOwned + Send + 'static {}
#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned + Send + 'static> ReplyValue for T {}

/// Never implemented: the bound of the stubs that `#[stateful_function]`
/// gives generated clients and senders for each helper method, so that
/// calling a helper as if it were a handler says what is missing.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a handler: the method has no `#[handler]`",
    label = "not a handler",
    note = "mark the method `#[handler]` in its `#[stateful_function]` impl block to call it through a `Handle`, `ctx.send` or `ctx.request`; without `#[handler]` a method is a plain helper"
)]
pub trait NotAHandler {}

/// Implemented by `#[stateful_function]` on the impl block, also when it
/// reports an error there, so that the struct's check only fires when the
/// attribute is really missing.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no handlers",
    label = "add #[stateful_function] to `impl {Self}`",
    note = "a stateful function needs #[stateful_function] on both its struct and its impl block"
)]
pub trait HandlerImpl {}

/// Decodes the argument of a reply handler.
#[doc(hidden)]
pub fn decode_reply_arg<F: StatefulFunction, A: DeserializeOwned>(
    handler: &str,
    reply: &[u8],
) -> Result<A, Error> {
    postcard::from_bytes(reply).map_err(|e| Error::Decode {
        function: F::type_name().to_owned(),
        what: format!("the reply routed to handler `{handler}`"),
        reason: e.to_string(),
    })
}

/// The error for a reply routed to a handler that does not take exactly one argument.
#[doc(hidden)]
pub fn not_a_reply_handler<F: StatefulFunction>(handler: &str) -> Error {
    Error::UnknownHandler {
        function: F::type_name().to_owned(),
        handler: handler.to_owned(),
        known: F::HANDLERS
            .iter()
            .filter(|h| h.args.len() == 1)
            .map(|h| h.name.to_owned())
            .collect(),
    }
}
