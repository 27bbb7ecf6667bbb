//! [`Error`], what a call or an open can fail with, and [`StorageError`],
//! its storage layer, which keeps the store's and the log's own errors as
//! sources: every variant says what went wrong and what to do about it.

use std::{sync::Arc, time::Duration};

use statefn_store::{DataDirError, LogError, StoreError};

use crate::MessageError;

/// Everything that can go wrong when calling a stateful function.
///
/// A handler's own `Err(E)` is *not* an `Error`: a handler returning
/// `Result<T, E>` gives its caller `Result<Result<T, E>, Error>`, the outer
/// layer for the runtime, the inner one for the business outcome.
///
/// # Examples
///
/// ```
/// use statefn::Error;
///
/// let err = Error::UnknownFunction { name: "Acount".into(), known: vec!["Account".into()] };
/// assert!(err.to_string().contains("register it"));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No function type of that name is registered.
    #[error(
        "no stateful function named `{name}` is registered (known: {}); register it with `Runtime::builder().register::<T>()`",
        known.join(", ")
    )]
    UnknownFunction {
        /// The type name that was asked for.
        name: String,
        /// The registered type names.
        known: Vec<String>,
    },
    /// The function type has no handler of that name.
    #[error("`{function}` has no handler `{handler}` (its handlers: {})", known.join(", "))]
    UnknownHandler {
        /// The function type.
        function: String,
        /// The handler that was asked for.
        handler: String,
        /// The function's handlers.
        known: Vec<String>,
    },
    /// Arguments given by name (JSON) do not fit the handler's parameters.
    #[error("invalid arguments for `{function}::{handler}`: {reason}")]
    InvalidArguments {
        /// The function type.
        function: String,
        /// The handler.
        handler: String,
        /// The offending field, when one is to blame.
        field: Option<String>,
        /// What is wrong, with the expected type (from serde).
        reason: String,
    },
    /// Bytes could not be decoded as what they should be (a message, a state, a reply).
    #[error("cannot decode {what} of `{function}`: {reason}")]
    Decode {
        /// The function type.
        function: String,
        /// What was being decoded: "message", "state of id `x`", "reply of `h`".
        what: String,
        /// The decoder's explanation.
        reason: String,
    },
    /// A stored state cannot be read by this build of its function: nothing
    /// ran and the stored bytes are left as they are.
    #[error(
        "the state of `{function}/{id}` (stored version {}, this build's version {current}) cannot be read: {reason}; it is left untouched",
        stored.map_or_else(|| "unknown".to_owned(), |v| v.to_string())
    )]
    State {
        /// The function type.
        function: String,
        /// The instance id.
        id: String,
        /// The version the state was stored with, if it could be read.
        stored: Option<u32>,
        /// The version this build writes.
        current: u32,
        /// What went wrong.
        reason: String,
    },
    /// A value could not be encoded (a serde implementation refused it).
    #[error("cannot encode {what}: {reason}; check its Serialize implementation")]
    Encode {
        /// What was being encoded.
        what: String,
        /// The encoder's explanation.
        reason: String,
    },
    /// The handler panicked: the invocation changed nothing and sent nothing.
    #[error(
        "handler `{function}::{handler}` panicked on id `{id}`: {message}; its state is unchanged"
    )]
    HandlerPanicked {
        /// The function type.
        function: String,
        /// The instance id.
        id: String,
        /// The handler.
        handler: String,
        /// The panic message.
        message: String,
    },
    /// User code around the handler panicked: the type's `Default`, its
    /// state's `Serialize` or `Deserialize`, its `migrate` function, or the
    /// `Deserialize` of a handler's arguments. The invocation changed
    /// nothing and sent nothing (a message from another function is retried,
    /// then kept as a dead letter); fix the code named in `during`.
    #[error(
        "`{function}` panicked{} while {during}: {message}; nothing was changed",
        if id.is_empty() { String::new() } else { format!(" on id `{id}`") }
    )]
    Panicked {
        /// The function type.
        function: String,
        /// The instance id (empty when no instance was involved: a message
        /// or reply decoded for inspection).
        id: String,
        /// What was running: "building its `Default` state", "decoding or
        /// migrating its stored state", "encoding its new state", "decoding
        /// the message"...
        during: String,
        /// The panic message.
        message: String,
    },
    /// The same idempotency key was used before for a different call on this instance.
    #[error(
        "idempotency key `{key}` was already used on `{function}/{id}` for a different call \
         (`{previous_handler}`); use a new key for a new request"
    )]
    IdempotencyKeyReused {
        /// The function type.
        function: String,
        /// The instance id.
        id: String,
        /// The key.
        key: String,
        /// The handler the key was first used with.
        previous_handler: String,
    },
    /// An idempotency key that cannot be stored with its reply: 1 to
    /// [`MAX_IDEMPOTENCY_KEY_LEN`](crate::MAX_IDEMPOTENCY_KEY_LEN) printable
    /// ASCII characters (no spaces). Nothing was submitted.
    #[error(
        "invalid idempotency key: {reason}; use 1 to {} printable ASCII characters (no spaces)",
        crate::MAX_IDEMPOTENCY_KEY_LEN
    )]
    InvalidIdempotencyKey {
        /// What is wrong with it.
        reason: String,
    },
    /// A request's reply was routed to a handler of another function type.
    #[error(
        "`{caller}` asked for a reply to `{target}::{handler}`; replies can only go to the caller's own handlers"
    )]
    ReplyTargetMismatch {
        /// The calling function type.
        caller: String,
        /// The function type of the handler given to `reply_to`.
        target: String,
        /// The handler given to `reply_to`.
        handler: String,
    },
    /// A handler set a timer that cannot be: of another function type, with
    /// a key that is empty or too long, or periodic with a zero period. The
    /// invocation changed nothing.
    #[error("invalid timer: {reason}")]
    InvalidTimer {
        /// What is wrong with it.
        reason: String,
    },
    /// No invocation with that id is known: it never existed, or it was
    /// enqueued longer ago than the idempotency retention.
    #[error(
        "no invocation `{id}` is known: check the id `/send` returned (ids are remembered for \
         the idempotency retention)"
    )]
    UnknownInvocation {
        /// The invocation id asked for.
        id: String,
    },
    /// The invocation was enqueued but is no longer pending, so it cannot
    /// be cancelled: it ran already (or is running), was cancelled, or was
    /// enqueued without a delay (such an invocation runs at once).
    #[error(
        "invocation `{id}` is no longer pending: it ran already, was cancelled, or had no delay; \
         only a delayed invocation can be cancelled, before it runs"
    )]
    InvocationNotPending {
        /// The invocation id asked for.
        id: String,
    },
    /// The address is not valid (empty id, id too long).
    #[error("invalid address: {reason}")]
    InvalidAddress {
        /// What is wrong with it.
        reason: String,
    },
    /// The runtime is shutting down or has shut down; the call was not accepted.
    #[error(
        "the runtime is shutting down; the call was not accepted, retry against a running runtime"
    )]
    ShuttingDown,
    /// The shard owning the instance is recovering from a failure; retry after the hint.
    #[error("shard {shard} is unavailable ({reason}); retry in {retry_after:?}")]
    Unavailable {
        /// The shard.
        shard: u16,
        /// Why.
        reason: String,
        /// When a retry is likely to succeed.
        retry_after: Duration,
    },
    /// The shard's mailbox is full: the runtime refuses work rather than
    /// grow without bound. Retry after the hint (HTTP: 503 + `Retry-After`).
    #[error("shard {shard} is overloaded ({queued} calls queued); retry in {retry_after:?}")]
    Overloaded {
        /// The shard.
        shard: u16,
        /// Calls waiting in its mailbox.
        queued: usize,
        /// When a retry is likely to be accepted.
        retry_after: Duration,
    },
    /// No dead letter with that id (already replayed or dropped?).
    #[error("no dead letter `{id}`; list them with `Runtime::dead_letters`")]
    UnknownDeadLetter {
        /// The id asked for.
        id: String,
    },
    /// A record emitted to an egress log is not what
    /// [`EgressRecord::decode`](crate::EgressRecord::decode) was asked for.
    #[error("cannot decode egress record {id}: {reason}; decode it as the type that was emitted")]
    EgressRecord {
        /// The record's id.
        id: String,
        /// The decoder's explanation.
        reason: String,
    },
    /// The runtime's configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A runtime thread could not be started, or failed while stopping.
    #[error("{what}{}; the runtime cannot run without it", source.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    Thread {
        /// Which thread, and what went wrong.
        what: String,
        /// The operating system's error, if one was given.
        #[source]
        source: Option<Arc<std::io::Error>>,
    },
    /// [`Runtime::shutdown`](crate::Runtime::shutdown) returned without
    /// finishing everything: a log group could not recover, work was still
    /// in flight, or a thread did not stop by the deadline
    /// ([`Builder::shutdown_timeout`](crate::Builder::shutdown_timeout)).
    /// What was committed is durable; what was not is as after a crash, and
    /// the next open recovers it. The process may exit.
    #[error(
        "shutdown did not finish cleanly: {}; what was committed is durable, the next open recovers the rest",
        unfinished.join("; ")
    )]
    ShutdownIncomplete {
        /// What did not finish, one item each.
        unfinished: Vec<String>,
    },
    /// Storage failed: the data directory, a log, or the state store.
    #[error("storage error: {0}")]
    Storage(#[from] StorageError),
    /// Cluster mode: the node could not join its cluster, or the node
    /// serving an instance failed a forwarded call.
    #[cfg(feature = "cluster")]
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// A storage failure, with the store's or the log's own error as its source.
///
/// # Examples
///
/// ```
/// use statefn::{Error, StorageError};
///
/// let err = Error::from(StorageError::Closed);
/// assert!(matches!(err, Error::Storage(StorageError::Closed)));
/// assert!(err.to_string().contains("shut down"));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The data directory cannot be used (locked by another process, written
    /// by a newer version, another shard count...).
    #[error(transparent)]
    DataDir(Arc<DataDirError>),
    /// A log group's log failed to open, read, write or sync.
    #[error("the log of log group {group} failed: {source}")]
    Log {
        /// The log group.
        group: u16,
        /// What the log said.
        #[source]
        source: Arc<LogError>,
    },
    /// The state store failed.
    #[error("the state store failed while {doing}: {source}")]
    Store {
        /// What the runtime was doing.
        doing: String,
        /// What the store said.
        #[source]
        source: Arc<StoreError>,
    },
    /// Stored bytes cannot be decoded.
    #[error(
        "cannot decode {what}: {reason}; the data directory is damaged or was written by an incompatible build"
    )]
    Corrupt {
        /// What was being decoded, and where.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The data directory is of an older format, and its upgrade found a
    /// stored message it cannot convert: the open is refused and nothing
    /// was written.
    #[error(
        "cannot upgrade the data directory from format {from}: {what} cannot be converted to a \
         named message ({source}); the upgrade reads a message's handler by its position, so \
         register every function type that has stored messages, with its handlers declared in \
         the order of the build that wrote them, and open again (see the crate docs, \
         \"Upgrades\"); nothing was changed"
    )]
    Upgrade {
        /// The format version of the directory.
        from: u32,
        /// Which stored message.
        what: String,
        /// Why it cannot be converted.
        #[source]
        source: Arc<MessageError>,
    },
    /// Stored bytes were written by a newer statefn.
    #[error(
        "{what} has format version {found}, but this build reads up to {supported}: the data directory was written by a newer statefn; upgrade to open it"
    )]
    NewerFormat {
        /// What was being decoded.
        what: String,
        /// Its format version.
        found: u8,
        /// The newest version this build reads.
        supported: u8,
    },
    /// A file outside the store could not be made (the test kit's
    /// temporary directory).
    #[error("{doing}: {source}")]
    Io {
        /// What the runtime was doing.
        doing: String,
        /// The operating system's error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The runtime has shut down and closed its storage.
    #[error("the runtime has shut down and closed its storage; open it again")]
    Closed,
}

impl StorageError {
    /// A state store failure while `doing`.
    pub(crate) fn store(doing: impl Into<String>) -> impl FnOnce(StoreError) -> StorageError {
        let doing = doing.into();
        move |source| StorageError::Store {
            doing,
            source: Arc::new(source),
        }
    }

    /// A failure of the log of `group`.
    pub(crate) fn log(group: u16) -> impl FnOnce(LogError) -> StorageError {
        move |source| StorageError::Log {
            group,
            source: Arc::new(source),
        }
    }
}

impl From<DataDirError> for StorageError {
    fn from(e: DataDirError) -> Self {
        StorageError::DataDir(Arc::new(e))
    }
}
