//! # statefn: stateful functions in Rust
//!
//! Write a struct and its methods; statefn stores the struct's state per
//! instance, delivers typed messages to the methods, and applies each message
//! **exactly once**, committing state changes and the messages a handler sends
//! **atomically**.
//!
//! ## A tour
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use statefn::prelude::*;
//!
//! #[derive(Debug, Serialize, Deserialize, thiserror::Error)]
//! #[error("insufficient funds: balance {balance}, asked {asked}")]
//! pub struct InsufficientFunds { balance: i64, asked: i64 }
//!
//! // The struct's fields are the state of one instance (one account).
//! #[stateful_function]
//! #[derive(Debug, Default, Serialize, Deserialize)]
//! pub struct Account { balance: i64 }
//!
//! // Its methods marked #[handler] are the handlers (their visibility does
//! // not matter); other methods are helpers.
//! #[stateful_function]
//! impl Account {
//!     #[handler]
//!     fn deposit(&mut self, amount: i64) -> i64 {
//!         self.balance += amount;
//!         self.balance
//!     }
//!
//!     /// An `Err` changes nothing and sends nothing.
//!     #[handler]
//!     fn withdraw(&mut self, amount: i64) -> Result<i64, InsufficientFunds> {
//!         if amount > self.balance {
//!             return Err(InsufficientFunds { balance: self.balance, asked: amount });
//!         }
//!         self.balance -= amount;
//!         Ok(self.balance)
//!     }
//!
//!     /// Messages sent through `ctx` leave only when this invocation commits.
//!     #[handler]
//!     fn transfer(&mut self, ctx: &mut Context, to: String, amount: i64)
//!         -> Result<i64, InsufficientFunds>
//!     {
//!         let left = self.withdraw(amount)?;
//!         ctx.send::<Account>(&to).deposit(amount);
//!         Ok(left)
//!     }
//!
//!     #[handler]
//!     fn balance(&self) -> i64 { self.balance }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), statefn::Error> {
//! let runtime = Runtime::builder().in_memory().register::<Account>().open().await?;
//! let alice = runtime.handle::<Account>("alice");
//! assert_eq!(alice.deposit(100).await?, 100);
//! // A retry with the same key is answered from the stored reply.
//! alice.deposit(5).idempotency_key("req-7").await?;
//! alice.deposit(5).idempotency_key("req-7").await?;
//! assert_eq!(alice.balance().await?, 105);
//! // A fallible handler gives Result<Result<T, E>, statefn::Error>.
//! assert!(alice.withdraw(1_000).await?.is_err());
//! assert_eq!(alice.transfer("bob".into(), 5).await?.ok(), Some(100));
//! runtime.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! ## The model
//!
//! - An **address** is `(type name, id)`. Instances are virtual: the first
//!   message to an address creates it with `Default` state.
//! - `#[stateful_function]` generates `AccountMessage` (one variant per
//!   handler, arguments as named fields, serde-serializable), the typed client
//!   methods that [`Handle<Account>`](Handle) dereferences to, and the senders
//!   returned by [`Context::send`] and [`Context::request`].
//! - Addresses hash onto shards. A shard is a single-writer state machine run
//!   by one worker thread at a time, so handlers of one instance never run
//!   concurrently and messages from one sender to one instance keep their order.
//! - An invocation is atomic: a plain return or `Ok` applies its state change
//!   and releases its messages; `Err` or a panic applies nothing and sends
//!   nothing (a panic becomes [`Error::HandlerPanicked`]).
//! - **Request/reply between functions**: `ctx.request::<T>(id).handler(args)`
//!   `.timeout(d).reply_to_with(MyMessage::my_handler(), correlation)` sends
//!   a request whose outcome arrives later as an ordinary message to
//!   `my_handler(correlation, Result<T, RequestFailed<E>>)`, a handler of
//!   the caller: the callee's value, or [`RequestFailed`] (it returned
//!   `Err`, it failed and became a dead letter, or the timeout fired first).
//!   Exactly one of them arrives, once; a reply after the timeout is dropped.
//!   `reply_to(MyMessage::my_handler())` is the same for a one-argument
//!   handler, without correlation. Handlers never wait.
//! - **Timers and time**: [`Context::timer`] sets a keyed timer of the
//!   instance (`.after`, `.at`, `.every`; setting a key again replaces it,
//!   [`Context::cancel_timer`] removes it even when due);
//!   [`Context::send_after`] / [`Context::send_at`] send a delayed message.
//!   [`Context::now`], [`Context::rng`], [`Context::caller`],
//!   [`Context::invocation_id`] and [`Context::resource`] are what a handler
//!   may depend on besides its state: the test kit controls each.
//! - **Enqueued invocations**: [`Call::send`], [`Call::send_after`] and
//!   [`Call::send_at`] (HTTP `POST .../send`) enqueue durably and return an
//!   [`InvocationId`]; [`Runtime::invocation`] follows it (scheduled,
//!   pending, done with its reply, failed, cancelled; with a wait) and
//!   [`Runtime::cancel_invocation`] cancels a delayed one.
//! - **Operators** look inside: [`Runtime::state_json`],
//!   [`Runtime::instances`], [`Runtime::timers_of`],
//!   [`Runtime::delete_instance`], [`Runtime::dead_letters`] (and the
//!   `/admin/...` routes of `statefn::ingress`).
//!
//! ## Durability and failures
//!
//! - `Runtime::builder().data_dir("./data")` keeps state durably: a reply is
//!   released only once the invocation's log record is `fdatasync`ed (see
//!   [`Durability`] for the other modes). Shards checkpoint into fjall in the
//!   background and recover on their own; shards share a physical log per
//!   log group ([`Builder::log_groups`]), which is also the I/O failure domain.
//! - A call with an [`idempotency_key`](Call::idempotency_key) is applied at
//!   most once per key, also across crashes.
//! - A message from another function whose handler panics is retried
//!   ([`Builder::retry_policy`]), then kept as a [`DeadLetter`].
//! - Calls get [`Error::Unavailable`] while their shard recovers and
//!   [`Error::Overloaded`] when its mailbox is full; both carry a retry hint.
//! - `#[stateful_function(version = 2, migrate = path)]` migrates stored
//!   states; `#[stateful_function(expire_after = "30d")]` removes idle ones.
//! - [`Context::emit`] appends to egress logs that consumers read by offset
//!   ([`Runtime::read_egress`], [`Runtime::egress_stream`]).
//! - With the default `http` feature, `statefn::ingress` serves functions over HTTP.
//! - With the `testing` feature, `statefn::testing::TestRuntime` runs your
//!   functions deterministically in unit tests: seeded, single-threaded, on a
//!   virtual clock, with crashes on demand.
//!
//! ## Handlers: the rules the macro checks
//!
//! - A method is a handler only when marked [`#[handler]`](macro@handler);
//!   its Rust visibility does not matter. Other methods are helpers.
//! - `&self` (read-only) or `&mut self`; never `self` by value, never `async`,
//!   never generic.
//! - Optionally `ctx: &mut Context` (or `&Context`) as the first argument.
//! - Other arguments are owned serde types with plain names: they become the
//!   message's fields (`{"amount": 5}` in JSON).
//! - The return type is the reply; it must be a serde type. A return type
//!   written `Result<T, E>` (two type arguments) makes the handler fallible;
//!   a `Result` alias with another number (`io::Result<T>`, `fmt::Result`)
//!   is refused, since its error type, and so its fallibility, cannot be
//!   seen.
//! - `#[handler(internal)]`: reached by other functions (`ctx.send`,
//!   `ctx.request`, timers, reply targets), never from outside: HTTP and
//!   [`Runtime::call_json`] answer as for a handler that does not exist, and
//!   a [`Handle`]'s method or a typed HTTP [`Route`]'s path for it does not
//!   compile. Trusted code (a test, an operator's tool) reaches it through
//!   [`Handle::internal`]. Use it for reply and timer targets.
//! - `#[stateful_function(message_derive(Debug, Clone, PartialEq))]` on the
//!   impl block adds derives to the generated message enum.
//!
//! ## Upgrades: what a stored message means
//!
//! Messages outlive deploys (a timer may fire a year later), so each stored
//! message names its handler and carries a fingerprint of the handler's
//! arguments ([`encode_message`] documents the bytes; `docs/formats.md` has
//! every stored format and its versions).
//!
//! **Safe in any deploy:**
//!
//! - reordering handlers, adding handlers, adding function types;
//! - changing a handler's body, or whether it is `internal`;
//! - renaming a handler with `#[handler(renamed_from = "old_name")]`:
//!   stored messages, reply routes and idempotency keys of the old name
//!   reach it (a retry with a key first used under the old name is
//!   answered from its stored reply); or keep the name on the wire with
//!   `#[handler(name = "old_name")]` and rename only the method;
//! - changing the state struct together with a `version` bump and a
//!   `migrate` function ([`decode_state`] reads the old struct).
//!
//! **Needs two deploys:** changing a handler's arguments (a name, a type as
//! written, their order) or its return type (stored idempotent replies and
//! replies on their way back hold the old type's bytes), or removing a
//! handler. First add the new handler
//! under a new name and stop sending to the old one; remove the old one
//! only once no message for it is left (no timer, no dead letter). The
//! fingerprint covers the handler's signature, not the inside of its
//! argument types: postcard, the binary encoding, is not self-describing, so
//! changing a struct used as an argument (even adding a `#[serde(default)]`
//! field) needs a new handler too, as a changed state struct needs a
//! `version` bump.
//!
//! **A stored message that no longer decodes** (its handler removed, its
//! arguments changed, its function no longer registered) is never run by
//! another handler, nor with misread arguments. It becomes a
//! [`DeadLetter`] whose error names the function, the handler and what
//! differs (see [`MessageError`]):
//!
//! - a **timer** when the runtime opens the data directory, at the deploy
//!   rather than when it is due (its due time is in the error);
//! - a message **in flight** between functions (an outbox entry, a
//!   replayed dead letter) when it arrives, at once, without retries;
//! - a dead letter stays one.
//!
//! The runtime stays up for everything else. Fix the build (restore the
//! handler, add `renamed_from`, register the function) and replay the dead
//! letters ([`Runtime::replay_dead_letter`]), or drop them. This is why
//! stale messages are dead-lettered rather than refused at open: one stale
//! timer does not take every other function down.
//!
//! **Upgrading from a data directory of format 1** (statefn before messages
//! named their handlers): the first open converts every stored message from
//! its position among the handlers to the handler at that position **in
//! this build's declaration order**, makes that durable, and records format
//! 2; after that no positional message is ever read. So upgrade statefn in
//! a deploy that does not reorder, insert or remove handlers, with every
//! function type that has stored messages registered; a message that cannot
//! be converted refuses the open ([`StorageError::Upgrade`]) and changes
//! nothing.
//!
//! ## How it works: the exactly-once protocol, file by file
//!
//! A reader who knows the protocol can follow it through the source (paths
//! under `statefn/src/`), in the order a message meets it:
//!
//! 1. **Ingress dedup.** A client call reaches its shard's mailbox
//!    (`runtime/router.rs`, refused at once when the shard recovers or its
//!    mailbox is full). A call with an idempotency key is answered from the
//!    stored reply if the key was used (`protocol/idempotency.rs`).
//! 2. **Invoke.** A worker (`scheduler.rs`) runs a batch of the shard's mail
//!    (`shard/mod.rs`) through the state machine (`shard/state_machine.rs`):
//!    `shard/invocation.rs` runs the handler and builds the invocation's log
//!    record (`protocol/record.rs`) and its effects (`shard/effects.rs`).
//!    Nothing leaves yet.
//! 3. **Channel sequence.** Each message a handler sends is numbered on its
//!    (source shard, destination shard) channel and kept in the outbox
//!    (`shard/outgoing.rs`, `protocol/channel.rs`, `protocol/outbox.rs`); a
//!    delayed one becomes a durable timer (`shard/timer_table.rs`). The
//!    receiver applies only the next sequence of each channel and drops
//!    duplicates by its watermark (`protocol/channel.rs`).
//! 4. **Commit.** The shard's log group's syncer appends the records of
//!    every waiting batch to the log, flushes once and waits until it is
//!    durable (`commit/syncer.rs`), through the log trait of
//!    `statefn-store` (the local write-ahead log, or a replicated one).
//!    Batches of a core from before a recovery are refused
//!    (`protocol/epoch.rs`).
//! 5. **Release.** Only then do the batch's effects leave: deliveries,
//!    egress records, replies, timers, in that order (`runtime/release.rs`,
//!    `egress/`, `timers.rs`).
//! 6. **Ack.** The receiver's durable commit publishes acks
//!    (`protocol/acks.rs`); senders prune their outboxes with them.
//! 7. **Checkpoint.** A shard freezes its dirty state at the end of a batch
//!    (`shard/freeze.rs`); the checkpointer writes it into the store's
//!    tables (`commit/checkpointer.rs`, whose layout `statefn-store` owns),
//!    then the log drops what it covers.
//! 8. **Recovery.** A log group's shards are rebuilt from their checkpoints
//!    and the log after them (`commit/recovery.rs`), replaying records
//!    without running handlers (`shard/replay.rs`); after a log failure,
//!    `commit/failover.rs` refuses what was in flight and does this alone
//!    while other groups serve.
//! 9. **Resend.** A recovered shard re-sends its outbox and re-arms its
//!    timers; after a failure the other shards re-send what it may have lost
//!    (`runtime/resend.rs`). Watermarks drop what was already applied. A
//!    gap on a channel or a full mailbox asks the sender to re-send from the
//!    first message missing, one chunk at a time (`shard/outgoing.rs`,
//!    `shard/mailbox.rs`).

#![warn(missing_docs)]
#![warn(
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::allow_attributes_without_reason
)]

// Lets the macros' `::statefn::` paths resolve inside this crate's own tests.
#[cfg(test)]
extern crate self as statefn;

mod address;
mod clock;
#[cfg(feature = "cluster")]
pub mod cluster;
mod commit;
mod context;
mod egress;
mod error;
#[cfg(feature = "testing")]
mod fixtures;
#[allow(
    clippy::allow_attributes_without_reason,
    reason = "owned by the API work (issue 13): its one bare `allow` is theirs to justify"
)]
mod function;
mod fuzz_api;
mod handle;
#[cfg(feature = "http")]
pub mod ingress;
mod invocation_id;
pub mod metrics;
mod protocol;
#[allow(
    clippy::indexing_slicing,
    reason = "owned by the API work (issue 13): handler indexes come from the generated \
              `handler_index`, below `HANDLERS.len()` by construction"
)]
mod registry;
mod request;
mod resources;
mod rng;
mod route;
mod runtime;
mod scheduler;
mod schema;
mod service;
mod shard;
#[cfg(feature = "testing")]
pub mod testing;
mod timers;
mod trace;
mod wire;

// `context.rs` names envelopes by their old path.
use protocol::envelope;

pub use address::{Address, MAX_ID_LEN};
pub use commit::Durability;
pub use commit::store_faults::StoreFaults;
pub use context::{Context, MAX_TIMER_KEY, Request, Sent, TimerBuilder};
pub use egress::{EgressRecord, MAX_EGRESS_NAME};
pub use error::{Error, StorageError};
pub use function::{HandlerInfo, HandlerRef, JsonReply, StatefulFunction, decode_state};
pub use handle::{Call, CallFuture, Handle};
pub use invocation_id::InvocationId;
pub use protocol::idempotency::MAX_IDEMPOTENCY_KEY_LEN;
/// The `rand` crate (0.9), for [`rand::Rng`]'s methods on [`Context::rng`].
pub use rand;
pub use request::{NoError, RequestFailed};
pub use rng::InvocationRng;
pub use route::{ExternalHandler, Route, routes};
#[doc(hidden)]
pub use runtime::commit_phases::CommitPhases;
pub use runtime::{
    Builder, DEFAULT_CACHE_BYTES, DEFAULT_COMMIT_QUEUE_BYTES, DEFAULT_EGRESS_QUEUE_BYTES,
    DEFAULT_EGRESS_RETENTION, DEFAULT_FUNCTION_MAIL_BYTES, DEFAULT_IDEMPOTENCY_RETENTION,
    DEFAULT_MAILBOX_CAPACITY, DEFAULT_SHARDS, DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_TIMERS_IN_MEMORY,
    DeadLetter, DeadLetterId, Instances, InvocationStatus, MAX_INSTANCES_PAGE,
    MAX_INVOCATION_WAITERS, PendingTimer, Runtime, ShardStatus,
};
pub use shard::RetryPolicy;
pub use statefn_macros::{handler, stateful_function};
pub use trace::TraceContext;
pub use wire::{MAX_HANDLER_NAME, MessageError, decode_message, encode_message};

/// The file-system seam under the write-ahead log, for
/// [`Builder::file_system`] (tests inject faults through it).
pub mod io {
    pub use statefn_store::{FileSystem, LogFile, StdFs};
}

/// Everything a typical program needs: `use statefn::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Context, Error, Handle, RequestFailed, Runtime, StatefulFunction, handler,
        stateful_function,
    };
}

/// What a data directory holds, for the tests of checked-in fixtures; not
/// a public API.
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod __fixtures {
    pub use crate::fixtures::*;
}

/// Entry points for the fuzz targets; not a public API.
#[doc(hidden)]
pub mod __fuzz {
    pub use crate::fuzz_api::*;
}

/// Used by the code `#[stateful_function]` generates; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::context::{
        Checked, FromRawSender, HandlerContext, RawSender, ReplyTarget, Unchecked,
    };
    pub use crate::function::{
        CheckArgument, FunctionState, HandlerImpl, MessageArgument, NotAHandler, Reply, ReplyValue,
        decode_reply_arg, json_reply, json_result_reply, no_such_handler_index,
        not_a_reply_handler,
    };
    pub use crate::handle::{FromRawHandle, Outside, OutsideCallable, RawHandle, Trusted};
    pub use crate::route::FromRouteId;
    pub use crate::schema::{
        ArgSchema, HandlerSchema, SchemaOf, Schemas, ViaAnyValue, ViaJsonSchema,
    };
    pub use crate::wire::{Reader, WireMessage, fingerprint, write_arg, write_header};
    pub use serde;
}
