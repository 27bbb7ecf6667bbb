//! Client access to one instance: `Handle<T>` and the `Call` it makes.

use std::{
    future::{Future, IntoFuture},
    marker::PhantomData,
    ops::Deref,
    pin::Pin,
    sync::Arc,
    task::{Context as TaskContext, Poll},
    time::Duration,
};

use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::{Address, Error, Runtime, StatefulFunction, wire::WireMessage};

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
        Handle {
            client: T::Client::from_raw(RawHandle {
                runtime,
                id: id.into(),
                address: Address::new(T::type_name(), id),
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

    fn raw(&self) -> &RawHandle {
        FromRawHandle::raw(&self.client)
    }
}

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
}

impl RawHandle {
    /// Starts a call with `message` (it names its handler).
    pub fn call<R, M: WireMessage>(&self, message: &M) -> Call<R> {
        Call {
            runtime: self.runtime.clone(),
            address: self.address.clone(),
            message: crate::wire::encode(message),
            key: None,
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
    address: Result<Address, Error>,
    message: Result<Vec<u8>, Error>,
    key: Option<String>,
    _reply: PhantomData<fn() -> R>,
}

impl<R> Call<R> {
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

    /// Durably enqueues the call instead of waiting for its reply: the
    /// handler runs later (like a message from another function: a panic is
    /// retried, then kept as a dead letter), and this returns the
    /// invocation id once the message is committed. The id is the
    /// idempotency key: the one given, or a new random one. As over HTTP
    /// (`POST .../send`), enqueueing again with the same key does nothing.
    ///
    /// # Errors
    ///
    /// As awaiting the call, before anything is enqueued.
    ///
    /// # Durability
    ///
    /// When this returns `Ok`, the message is committed: it will be
    /// delivered exactly once, across crashes.
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
    /// # impl Counter {
    /// #     #[handler] pub fn add(&mut self, by: u64) -> u64 { self.n += by; self.n }
    /// #     #[handler] pub fn get(&self) -> u64 { self.n }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), statefn::Error> {
    /// # let runtime = Runtime::builder().in_memory().register::<Counter>().open().await?;
    /// let counter = runtime.handle::<Counter>("c");
    /// let id = counter.add(5).idempotency_key("order-1").send().await?;
    /// assert_eq!(id, "order-1");
    /// assert_eq!(counter.add(5).idempotency_key("order-1").send().await?, "order-1"); // once
    /// let later = counter.add(1).send_after(std::time::Duration::from_secs(3600)).await?;
    /// assert!(later.starts_with("inv-"));
    /// # while counter.get().await? != 5 { tokio::task::yield_now().await; }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send(self) -> Result<String, Error> {
        self.send_after(Duration::ZERO).await
    }

    /// Like [`send`](Self::send), the handler running after `delay` (a
    /// durable timer: it fires once, also across restarts).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    ///
    /// # Durability
    ///
    /// As [`send`](Self::send).
    pub async fn send_after(self, delay: Duration) -> Result<String, Error> {
        let key = self
            .key
            .unwrap_or_else(|| format!("inv-{:032x}", rand::random::<u128>()));
        let rx = self.runtime.inner().submit(
            self.address?,
            self.message?,
            Some(key.clone()),
            Some(delay),
        )?;
        rx.await.map_err(|_| Error::ShuttingDown)??;
        Ok(key)
    }
}

impl<R> std::fmt::Debug for Call<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("address", &self.address)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<R: DeserializeOwned> IntoFuture for Call<R> {
    type Output = Result<R, Error>;
    type IntoFuture = CallFuture<R>;

    fn into_future(self) -> CallFuture<R> {
        let state = match (self.address, self.message) {
            (Ok(address), Ok(message)) => {
                let target = address.clone();
                match self.runtime.inner().submit_call(address, message, self.key) {
                    Ok(rx) => CallState::Waiting(rx, target),
                    Err(e) => CallState::Failed(Some(e)),
                }
            }
            (Err(e), _) | (_, Err(e)) => CallState::Failed(Some(e)),
        };
        CallFuture {
            state,
            started: std::time::Instant::now(),
            _reply: PhantomData,
        }
    }
}

/// The future of an awaited [`Call`].
#[must_use = "futures do nothing unless polled"]
pub struct CallFuture<R> {
    state: CallState,
    started: std::time::Instant,
    _reply: PhantomData<fn() -> R>,
}

enum CallState {
    /// The reply, and who sends it (named if it cannot be decoded).
    Waiting(oneshot::Receiver<Result<Vec<u8>, Error>>, Address),
    Failed(Option<Error>),
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
            CallState::Failed(e) => Poll::Ready(Err(e.take().unwrap_or(Error::ShuttingDown))),
            CallState::Waiting(rx, target) => match Pin::new(rx).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(Ok(bytes))) => {
                    metrics::histogram!(crate::metrics::CALL_DURATION)
                        .record(this.started.elapsed().as_secs_f64());
                    Poll::Ready(postcard::from_bytes(&bytes).map_err(|e| Error::Decode {
                        function: target.type_name().to_owned(),
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
