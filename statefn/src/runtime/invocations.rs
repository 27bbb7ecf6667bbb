//! Invocations a client enqueued ([`Runtime::enqueue_json`],
//! [`Call::send`](crate::Call::send), HTTP `POST .../send`), by their
//! [`InvocationId`]: following one until it is done
//! ([`Runtime::invocation`]: its status, then its reply), and cancelling a
//! delayed one before it runs.
//!
//! An enqueued invocation's outcome is stored under its key in the
//! idempotency table (written by the record of the invocation itself), so
//! it survives restarts and is kept for the idempotency retention after it
//! ran; a status query goes to the instance's shard and is answered once
//! what it read is durable.
//!
//! A delayed invocation is its target instance's timer under the
//! invocation's key, so its id names the instance and the key, and a
//! cancel goes to that instance's shard like any keyed timer's: it wins
//! over the timer unless the handler has already run.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::{
    Address, Error, InvocationId, JsonReply, Runtime,
    protocol::{
        envelope::Mail,
        record::{InvocationOutcome, StoredReply},
    },
};

/// What became of an enqueued invocation, from [`Runtime::invocation`]
/// (and `GET /v1/invocations/{id}`, whose `status` is the variant's name in
/// snake case).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum InvocationStatus {
    /// Enqueued with a delay and not due yet: it can still be cancelled
    /// ([`Runtime::cancel_invocation`]).
    Scheduled,
    /// Enqueued and not done yet: on its way, or retried after a failed
    /// attempt ([`RetryPolicy`](crate::RetryPolicy)).
    Pending,
    /// Its handler ran: its reply (a fallible handler's `Err` is
    /// [`JsonReply::Err`]; its effects were not applied).
    Done(JsonReply),
    /// It failed every allowed attempt and is now a
    /// [`DeadLetter`](crate::DeadLetter): the error. Replaying the letter
    /// runs it again, and the status follows.
    Failed {
        /// What the last attempt failed with.
        error: String,
    },
    /// Cancelled before it ran.
    Cancelled,
    /// No such invocation: never enqueued, or done longer ago than the
    /// [idempotency retention](crate::Builder::idempotency_retention).
    Unknown,
}

impl InvocationStatus {
    /// Whether it will not change any more by itself (done, failed,
    /// cancelled, unknown).
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            InvocationStatus::Scheduled | InvocationStatus::Pending
        )
    }

    /// The status's name as HTTP shows it (`"scheduled"`, `"pending"`,
    /// `"done"`, `"failed"`, `"cancelled"`, `"unknown"`).
    pub fn name(&self) -> &'static str {
        match self {
            InvocationStatus::Scheduled => "scheduled",
            InvocationStatus::Pending => "pending",
            InvocationStatus::Done(_) => "done",
            InvocationStatus::Failed { .. } => "failed",
            InvocationStatus::Cancelled => "cancelled",
            InvocationStatus::Unknown => "unknown",
        }
    }
}

/// How often a waiting [`Runtime::invocation`] asks again, at most.
const POLL_MAX: Duration = Duration::from_millis(50);

impl Runtime {
    /// What became of an enqueued invocation ([`Call::send`](crate::Call::send),
    /// [`send_after`](crate::Call::send_after), [`enqueue_json`](Self::enqueue_json),
    /// `POST .../send`): scheduled or pending, done with its reply, failed,
    /// cancelled, or unknown. While it is not final, waits up to `wait` for
    /// it to become so (`Duration::ZERO`: answers at once).
    ///
    /// The outcome is stored with the invocation's own commit, under its
    /// key, and kept for the
    /// [idempotency retention](crate::Builder::idempotency_retention) after
    /// it ran: it survives restarts.
    ///
    /// Cluster mode: any node answers; the question goes to the node that
    /// serves the instance's shard (as [`cancel_invocation`](Self::cancel_invocation) does).
    /// `wait` needs a Tokio runtime's timer: under
    /// the test kit's `TestRuntime` pass `Duration::ZERO`
    /// and run the runtime instead.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] while the shard recovers (or, in cluster
    /// mode, while no node serves it: a failover), [`Error::ShuttingDown`],
    /// a storage error.
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
    /// let later = counter.add(1).send_after(Duration::from_secs(3600)).await?;
    /// assert_eq!(runtime.invocation(&later, Duration::ZERO).await?, InvocationStatus::Scheduled);
    ///
    /// let id = counter.add(5).send().await?;
    /// // Waits (up to 10 s) until it ran.
    /// let status = runtime.invocation(&id, Duration::from_secs(10)).await?;
    /// assert_eq!(status, InvocationStatus::Done(JsonReply::Ok(serde_json::json!(5))));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn invocation(
        &self,
        id: &InvocationId,
        wait: Duration,
    ) -> Result<InvocationStatus, Error> {
        // Only an enqueued invocation (its instance and key) can be followed.
        let (Some(target), Some(key)) = (id.target(), id.key()) else {
            return Ok(InvocationStatus::Unknown);
        };
        if self.inner().registry.get(target.type_name()).is_err() {
            return Ok(InvocationStatus::Unknown);
        }
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(2);
        loop {
            let status = self.invocation_now(target, key).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            // Without a Tokio runtime (the test kit) there is no timer to
            // wait with: the caller runs the runtime and asks again.
            if status.is_final() || left.is_zero() || tokio::runtime::Handle::try_current().is_err()
            {
                return Ok(status);
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    /// One status query to the instance's shard.
    async fn invocation_now(&self, target: &Address, key: &str) -> Result<InvocationStatus, Error> {
        let inner = self.inner();
        let (reply, rx) = oneshot::channel();
        inner.enqueue(
            target.shard_id(inner.shard_count()),
            Mail::InvocationStatus {
                target: target.clone(),
                key: key.to_owned(),
                reply,
            },
        );
        let bytes = rx.await.map_err(|_| Error::ShuttingDown)??;
        let (stored, scheduled): (Option<StoredReply>, bool) = postcard::from_bytes(&bytes)
            .map_err(|e| Error::Decode {
                function: target.type_name().to_owned(),
                what: "the status of an invocation".into(),
                reason: e.to_string(),
            })?;
        let reply_json = |handler: &str, reply: &[u8]| {
            inner
                .registry
                .get(target.type_name())
                .and_then(|f| f.reply_to_json(handler, reply))
        };
        Ok(match stored {
            None if scheduled => InvocationStatus::Scheduled,
            None => InvocationStatus::Unknown,
            Some(stored) => match stored.outcome {
                // A call that ran at once under this key.
                None => InvocationStatus::Done(reply_json(&stored.handler, &stored.reply)?),
                Some(InvocationOutcome::Pending) if scheduled => InvocationStatus::Scheduled,
                Some(InvocationOutcome::Pending) => InvocationStatus::Pending,
                Some(InvocationOutcome::Done(reply)) => {
                    InvocationStatus::Done(reply_json(&stored.handler, &reply)?)
                }
                Some(InvocationOutcome::Failed(error)) => InvocationStatus::Failed { error },
                Some(InvocationOutcome::Cancelled) => InvocationStatus::Cancelled,
            },
        })
    }

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
