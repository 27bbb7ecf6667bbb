//! Invocations a client enqueued ([`Runtime::enqueue_json`], HTTP `POST
//! .../send`): cancelling a delayed one before it runs, by its
//! [`InvocationId`].
//!
//! A delayed invocation is its target instance's timer under the
//! invocation's key, so its id names the instance and the key, and a
//! cancel goes to that instance's shard like any keyed timer's: it wins
//! over the timer unless the handler has already run.

use tokio::sync::oneshot;

use crate::{Error, InvocationId, Runtime, protocol::envelope::Mail};

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
    /// let never = InvocationId::enqueued(Address::new("Counter", "c")?, "no-such-key");
    /// assert!(matches!(runtime.cancel_invocation(&never).await, Err(Error::UnknownInvocation { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn cancel_invocation(&self, id: &InvocationId) -> Result<(), Error> {
        let unknown = || Error::UnknownInvocation { id: id.to_string() };
        // Only an enqueued invocation can be cancelled.
        let (Some(target), Some(key)) = (id.target(), id.key()) else {
            return Err(unknown());
        };
        let inner = self.inner();
        inner
            .registry
            .get(target.type_name())
            .map_err(|_| unknown())?;
        let (reply, rx) = oneshot::channel();
        let shard = target.shard_id(inner.shard_count());
        inner.enqueue(
            shard,
            Mail::CancelInvocation {
                target: target.clone(),
                key: key.to_owned(),
                reply,
            },
        );
        match rx.await.map_err(|_| Error::ShuttingDown)? {
            Ok(_) => Ok(()),
            Err(Error::UnknownInvocation { .. }) => Err(unknown()),
            Err(e) => Err(e),
        }
    }
}
