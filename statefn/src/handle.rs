//! Client access to one instance: `Handle<T>` and the `Call` it makes.

use std::{
    future::{Future, IntoFuture},
    marker::PhantomData,
    ops::Deref,
    pin::Pin,
    sync::Arc,
    task::{Context as TaskContext, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::{
    Address, Error, Runtime, StatefulFunction, TraceContext, protocol::ids::ShardId,
    wire::WireMessage,
};

/// A typed handle to one instance (`Handle<Account>` for `Account/alice`):
/// its methods are the instance's handlers, each returning a [`Call`].
///
/// Cheap to clone, `Send + Sync + 'static`: move it into spawned tasks and web
/// handlers. It keeps the runtime alive.
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
///     #[handler]
///     pub fn add(&mut self, by: u64) -> u64 { self.n += by; self.n }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), statefn::Error> {
/// let runtime = Runtime::builder().in_memory().register::<Counter>().open().await?;
/// let visits: Handle<Counter> = runtime.handle("home-page");
/// let task = tokio::spawn({
///     let visits = visits.clone();
///     async move { visits.add(1).await }
/// });
/// task.await.expect("task ran")?;
/// assert_eq!(visits.add(1).await?, 2);
/// assert_eq!(visits.id(), "home-page");
/// runtime.shutdown().await?;
/// # Ok(())
/// # }
/// ```
pub struct Handle<T: StatefulFunction> {
    client: T::Client,
}

impl<T: StatefulFunction> Handle<T> {
    pub(crate) fn new(runtime: Runtime, id: &str) -> Self {
        use crate::handle::FromRawHandle;
        let inner = runtime.inner();
        let registered = inner.registry.get(T::type_name()).map(|_| ());
        let address = Address::new(T::type_name(), id);
        let shard = address
            .as_ref()
            .map_or(ShardId(0), |address| address.shard_id(inner.shard_count()));
        Handle {
            client: T::Client::from_raw(RawHandle {
                registered,
                shard,
                runtime,
                id: id.into(),
                address,
                function: T::type_name(),
            }),
        }
    }

    /// The instance id.
    pub fn id(&self) -> &str {
        &self.raw().id
    }

    /// The instance's address, or why it is invalid (an empty or oversized id).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidAddress`] when the id was empty or too long.
    pub fn address(&self) -> Result<&Address, Error> {
        self.raw().address.as_ref().map_err(Clone::clone)
    }

    /// The calls of every handler of the instance, `#[handler(internal)]`
    /// ones included, for code you trust to reach them: a test of a timer
    /// or reply handler, an operator's tool. The handle itself refuses to
    /// call an internal handler at compile time, since it is what code
    /// serving outside callers (a web handler) holds.
    ///
    /// # Examples
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use statefn::prelude::*;
    ///
    /// #[stateful_function]
    /// #[derive(Default, Serialize, Deserialize)]
    /// pub struct Cart { items: u32 }
    ///
    /// #[stateful_function]
    /// impl Cart {
    ///     #[handler]
    ///     fn add(&mut self, units: u32) -> u32 { self.items += units; self.items }
    ///     /// A timer target.
    ///     #[handler(internal)]
    ///     fn expire(&mut self) { self.items = 0; }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), statefn::Error> {
    /// let runtime = Runtime::builder().in_memory().register::<Cart>().open().await?;
    /// let cart = runtime.handle::<Cart>("c");
    /// cart.add(2).await?;
    /// // `cart.expire()` does not compile: `expire` is internal.
    /// cart.internal().expire().await?;
    /// assert_eq!(cart.add(1).await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn internal(&self) -> T::InternalClient {
        T::InternalClient::from_raw(self.raw().clone())
    }

    fn raw(&self) -> &RawHandle {
        FromRawHandle::raw(&self.client)
    }
}

/// The caller of a generated client reached through a [`Handle`]: its
/// methods of internal handlers do not compile.
#[doc(hidden)]
#[derive(Debug)]
pub enum Outside {}

/// The caller of a generated client reached through
/// [`Handle::internal`]: every handler.
#[doc(hidden)]
#[derive(Debug)]
pub enum Trusted {}

/// A handler a [`Handle`] calls: implemented by `#[stateful_function]` for
/// the marker type of every handler not marked `#[handler(internal)]`.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is an internal handler: a `Handle` does not call it",
    label = "this handler is `#[handler(internal)]`",
    note = "internal handlers are reached by other functions (`ctx.send`, `ctx.request`, timers, reply targets), not by code serving outside callers",
    note = "code you trust to reach it anyway (a test, an operator's tool) calls it through `Handle::internal`: `handle.internal().handler_name(..)`"
)]
pub trait OutsideCallable {}

impl<T: StatefulFunction> Deref for Handle<T> {
    type Target = T::Client;

    fn deref(&self) -> &T::Client {
        &self.client
    }
}

impl<T: StatefulFunction> Clone for Handle<T> {
    fn clone(&self) -> Self {
        Handle {
            client: self.client.clone(),
        }
    }
}

impl<T: StatefulFunction> std::fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Handle({}/{})", T::type_name(), self.id())
    }
}

/// Builds generated clients; implemented by `#[stateful_function]`.
#[doc(hidden)]
pub trait FromRawHandle {
    fn from_raw(raw: RawHandle) -> Self;
    fn raw(&self) -> &RawHandle;
}

/// The untyped part of a generated client.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct RawHandle {
    runtime: Runtime,
    id: Arc<str>,
    address: Result<Address, Error>,
    /// Whether the runtime has the type registered, looked up once here
    /// rather than at every call (see `submit_registered`).
    registered: Result<(), Error>,
    /// The address's shard, computed once (a hash of the address's bytes;
    /// the shard count is fixed for the runtime's life).
    shard: ShardId,
    /// The registered type name (a metric label).
    function: &'static str,
}

impl RawHandle {
    /// Starts a call of `handler` with `message` (it names its handler).
    pub fn call<R, M: WireMessage>(&self, handler: &'static str, message: &M) -> Call<R> {
        Call {
            runtime: self.runtime.clone(),
            target: match (&self.address, &self.registered) {
                (Ok(address), Ok(())) => crate::wire::encode(message)
                    .map(|message| (address.clone(), self.shard, message))
                    .map_err(Box::new),
                (Err(e), _) | (_, Err(e)) => Err(Box::new(e.clone())),
            },
            key: None,
            trace: None,
            labels: (self.function, handler),
            _reply: PhantomData,
        }
    }
}

/// One call of a handler; `.await` it for the typed reply.
///
/// `R` is exactly the handler's return type: a handler returning
/// `Result<T, E>` gives `Result<Result<T, E>, Error>`.
///
/// # Durability
///
/// The reply is released only once the invocation is committed: in durable
/// mode, after the log record holding it is on disk (`fdatasync`), so a
/// reply you have seen survives a crash. A call with an
/// [`idempotency_key`](Call::idempotency_key) is applied at most once per
/// key, however often it is retried, before or after a crash; a call without
/// one is never recognised as a retry, so *your* retry of it may apply
/// twice.
///
/// # Cancel safety
///
/// Dropping the future after it was first polled does not cancel the
/// invocation: it may still be applied. Retry with the same idempotency key
/// to learn its outcome.
#[must_use = "a call does nothing unless it is awaited"]
pub struct Call<R> {
    runtime: Runtime,
    /// The address and the encoded message, or why there are none (boxed:
    /// the call is moved into its future, and an inline `Error` doubled
    /// what every call moves, issue 14).
    target: Result<(Address, ShardId, Vec<u8>), Box<Error>>,
    key: Option<String>,
    trace: Option<TraceContext>,
    /// (function, handler): the metric labels.
    labels: (&'static str, &'static str),
    _reply: PhantomData<fn() -> R>,
}

impl<R> Call<R> {
    /// Makes the invocation continue trace `parent` (a W3C trace context,
    /// say from the `traceparent` of the request that led to this call):
    /// its span records `trace_id` and `parent_span_id`, and the messages it
    /// sends carry the trace on.
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
    /// # let runtime = Runtime::builder().in_memory().register::<Counter>().open().await?;
    /// use statefn::TraceContext;
    /// let parent = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    /// let mut call = runtime.handle::<Counter>("c").add(1);
    /// if let Some(parent) = parent {
    ///     call = call.trace_context(parent);
    /// }
    /// assert_eq!(call.await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn trace_context(mut self, parent: TraceContext) -> Self {
        self.trace = Some(parent);
        self
    }

    /// Makes the call idempotent: a call with a key already applied to this
    /// instance (within the retention period) is answered with the stored
    /// reply instead of running again. Using one key for a different handler
    /// is an [`Error::IdempotencyKeyReused`].
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
    /// # let runtime = Runtime::builder().in_memory().register::<Counter>().open().await?;
    /// let counter = runtime.handle::<Counter>("c");
    /// assert_eq!(counter.add(5).idempotency_key("order-1").await?, 5);
    /// assert_eq!(counter.add(5).idempotency_key("order-1").await?, 5); // not applied again
    /// # Ok(())
    /// # }
    /// ```
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Durably enqueues the call instead of awaiting its reply (as
    /// `POST .../send` does): the handler runs later (like a message from
    /// another function: a panic is retried, then kept as a dead letter),
    /// and this returns its [`InvocationId`](crate::InvocationId) once the
    /// message is committed. [`Runtime::invocation`] follows it by that id
    /// (its status, and its reply once done; `GET /v1/invocations/{id}`
    /// over HTTP). With an [`idempotency_key`](Self::idempotency_key),
    /// enqueueing again does nothing and returns the same id; without one,
    /// a random key is generated.
    ///
    /// # Errors
    ///
    /// As awaiting the call would, before anything is enqueued.
    ///
    /// # Durability
    ///
    /// When this returns `Ok`, the message is committed: it will be
    /// delivered exactly once, across crashes, and its outcome is stored
    /// for [`Runtime::invocation`] for the idempotency retention
    /// ([`Builder::idempotency_retention`](crate::Builder::idempotency_retention)).
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
    /// use statefn::{InvocationStatus, JsonReply};
    ///
    /// let runtime = Runtime::builder().in_memory().register::<Counter>().open().await?;
    /// let counter = runtime.handle::<Counter>("c");
    /// let id = counter.add(5).idempotency_key("order-1").send().await?;
    /// assert_eq!(id.to_string(), "Counter.c.order-1");
    /// // Enqueued once: the same key gives the same id and runs nothing more.
    /// assert_eq!(counter.add(5).idempotency_key("order-1").send().await?, id);
    /// // Its status, then its reply: waits up to 10 s for it to run.
    /// let done = runtime.invocation(&id, Duration::from_secs(10)).await?;
    /// assert_eq!(done, InvocationStatus::Done(JsonReply::Ok(serde_json::json!(5))));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send(self) -> Result<crate::InvocationId, Error> {
        self.send_after(Duration::ZERO).await
    }

    /// Enqueues the call to run `delay` from now instead of awaiting its
    /// reply (as `POST .../send?delay=` does): returns its
    /// [`InvocationId`](crate::InvocationId), with which
    /// [`Runtime::cancel_invocation`] cancels it until it runs. With an
    /// [`idempotency_key`](Self::idempotency_key), enqueueing again does
    /// nothing and returns the same id.
    ///
    /// # Errors
    ///
    /// As awaiting the call would, before anything is enqueued.
    ///
    /// # Durability
    ///
    /// When this returns `Ok`, the invocation is committed as a durable
    /// timer: it runs once, at its time (after downtime, as soon as the
    /// runtime runs again), unless cancelled.
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
    ///
    /// let runtime = Runtime::builder().in_memory().register::<Counter>().open().await?;
    /// let counter = runtime.handle::<Counter>("c");
    /// let later = counter.add(5).send_after(Duration::from_secs(3600)).await?;
    /// runtime.cancel_invocation(&later).await?; // it will not run
    /// assert_eq!(counter.add(1).await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send_after(self, delay: Duration) -> Result<crate::InvocationId, Error> {
        let (address, shard, message) = self.target.map_err(|e| *e)?;
        // Always keyed, so that the id names exactly one invocation.
        let key = self
            .key
            .unwrap_or_else(|| format!("inv-{:032x}", rand::random::<u128>()));
        let rx = self.runtime.inner().submit_registered(
            address.clone(),
            shard,
            message,
            Some(key.clone()),
            Some(delay),
            self.trace,
        )?;
        rx.await.map_err(|_| Error::ShuttingDown)??;
        Ok(crate::InvocationId::enqueued(address, key))
    }

    /// Like [`send_after`](Self::send_after), at `at` on the runtime's
    /// clock (the system clock, or the test kit's virtual one); a time
    /// already past runs it as soon as possible.
    ///
    /// # Errors
    ///
    /// As [`send_after`](Self::send_after).
    ///
    /// # Durability
    ///
    /// As [`send_after`](Self::send_after).
    pub async fn send_at(self, at: SystemTime) -> Result<crate::InvocationId, Error> {
        let now = UNIX_EPOCH + Duration::from_millis(self.runtime.inner().clock.now_ms());
        let delay = at.duration_since(now).unwrap_or(Duration::ZERO);
        // A zero delay would run at once and could not be cancelled.
        self.send_after(delay.max(Duration::from_millis(1))).await
    }
}

impl<R> std::fmt::Debug for Call<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field(
                "address",
                &self.target.as_ref().map(|(address, ..)| address),
            )
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<R: DeserializeOwned> IntoFuture for Call<R> {
    type Output = Result<R, Error>;
    type IntoFuture = CallFuture<R>;

    fn into_future(self) -> CallFuture<R> {
        let state = match self.target {
            Ok((address, shard, message)) => {
                let inner = self.runtime.inner();
                match inner.submit_registered(address, shard, message, self.key, None, self.trace) {
                    Ok(rx) => CallState::Waiting(rx),
                    Err(e) => CallState::Failed(Some(Box::new(e))),
                }
            }
            Err(e) => CallState::Failed(Some(e)),
        };
        CallFuture {
            state,
            started: std::time::Instant::now(),
            labels: self.labels,
            _reply: PhantomData,
        }
    }
}

/// The future of an awaited [`Call`].
#[must_use = "futures do nothing unless polled"]
pub struct CallFuture<R> {
    state: CallState,
    started: std::time::Instant,
    labels: (&'static str, &'static str),
    _reply: PhantomData<fn() -> R>,
}

/// Small, since the caller's future holds it and moves it: the reply's
/// sender is named by the labels' function if the reply cannot be decoded
/// (no address kept per call), and an error is boxed.
enum CallState {
    Waiting(oneshot::Receiver<Result<Vec<u8>, Error>>),
    Failed(Option<Box<Error>>),
}

impl<R> std::fmt::Debug for CallFuture<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallFuture")
    }
}

impl<R: DeserializeOwned> Future for CallFuture<R> {
    type Output = Result<R, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.state {
            CallState::Failed(e) => Poll::Ready(Err(e.take().map_or(Error::ShuttingDown, |e| *e))),
            CallState::Waiting(rx) => match Pin::new(rx).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(Ok(bytes))) => {
                    crate::metrics::record_call(this.labels.0, this.labels.1, this.started);
                    Poll::Ready(postcard::from_bytes(&bytes).map_err(|e| Error::Decode {
                        function: this.labels.0.to_owned(),
                        what: "a reply".to_owned(),
                        reason: e.to_string(),
                    }))
                }
                Poll::Ready(Err(_)) => Poll::Ready(Err(Error::ShuttingDown)),
                Poll::Ready(Ok(Err(e))) => Poll::Ready(Err(e)),
            },
        }
    }
}
