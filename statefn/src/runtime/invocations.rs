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

use std::time::Duration;

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
///
/// # Why there is no "running" status
///
/// Every status is durable: once a client was told one, a crash never
/// takes it back. The instance's shard answers a status query between two
/// mails, so the handler has either not run yet (pending) or run (done);
/// and the answer leaves, like a reply, only once the batch that read it
/// is committed, which is after the invocation's own commit. The one
/// moment in between, the handler run and its commit pending (one group
/// commit, an `fdatasync`), could only be reported from what is not
/// committed yet, which a crash turns back into pending: the invocation
/// runs again. Handlers never wait, so that moment is short; an
/// invocation retried after a failed attempt is pending (see
/// [`RetryPolicy`](crate::RetryPolicy)).
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

impl Runtime {
    /// What became of an enqueued invocation ([`Call::send`](crate::Call::send),
    /// [`send_after`](crate::Call::send_after), [`enqueue_json`](Self::enqueue_json),
    /// `POST .../send`): scheduled or pending, done with its reply, failed,
    /// cancelled, or unknown. While it is not final, waits up to `wait` for
    /// it to become so (`Duration::ZERO`: answers at once).
    ///
    /// A wait does not poll: it asks the shard once, then sleeps until the
    /// commit that stores the invocation's outcome is released (or `wait`
    /// passes) and asks again. At most [`MAX_INVOCATION_WAITERS`](crate::MAX_INVOCATION_WAITERS)
    /// waits are registered at once; past that, a wait answers at once with
    /// the current status. Dropping the future (an HTTP client that went
    /// away) unregisters its wait.
    ///
    /// The outcome is stored with the invocation's own commit, under its
    /// key, and kept for the
    /// [idempotency retention](crate::Builder::idempotency_retention) after
    /// it ran: it survives restarts.
    ///
    /// Cluster mode: the node that serves the instance's shard answers; on
    /// another node this is [`Error::Unavailable`] (ask the owner).
    /// `wait` needs a Tokio runtime's timer: under
    /// the test kit's `TestRuntime` pass `Duration::ZERO`
    /// and run the runtime instead.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] while the shard recovers (or, in cluster
    /// mode, is served elsewhere), [`Error::ShuttingDown`], a storage
    /// error.
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
        // Without a Tokio runtime (the test kit) there is no timer to wait
        // with: the caller runs the runtime and asks again.
        if wait.is_zero() || tokio::runtime::Handle::try_current().is_err() {
            return self.invocation_now(target, key).await;
        }
        // Registered before the first read: the release that stores the
        // outcome wakes it, so the read after a wake-up sees the outcome.
        // Past the registry's bound, the status as it is now.
        let Some(waiter) = self.inner().invocation_waiters.register(target, key) else {
            return self.invocation_now(target, key).await;
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let woken = waiter.notify().notified();
            let mut woken = std::pin::pin!(woken);
            woken.as_mut().enable();
            let status = self.invocation_now(target, key).await?;
            if status.is_final() {
                return Ok(status);
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                // The wait passed: what it is now (it may have just settled).
                return self.invocation_now(target, key).await;
            }
        }
    }

    /// One status query to the instance's shard.
    async fn invocation_now(&self, target: &Address, key: &str) -> Result<InvocationStatus, Error> {
        let inner = self.inner();
        #[cfg(test)]
        inner
            .status_queries
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
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

#[cfg(test)]
mod tests {
    use std::{sync::atomic::Ordering, time::Duration};

    use crate::{
        InvocationStatus, Runtime,
        runtime::tests::{Counter, counter_runtime},
    };

    /// A task waiting (up to 10 minutes) for invocation `id`.
    fn spawn_wait(
        runtime: &Runtime,
        id: &crate::InvocationId,
    ) -> tokio::task::JoinHandle<Result<InvocationStatus, crate::Error>> {
        let (runtime, id) = (runtime.clone(), id.clone());
        tokio::spawn(async move { runtime.invocation(&id, Duration::from_secs(600)).await })
    }

    /// Yields until `runtime` has `n` registered waits.
    async fn until_waiters(runtime: &Runtime, n: usize) {
        while runtime.inner().invocation_waiters.len() != n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn a_wait_sleeps_until_the_outcome_is_released_then_asks_once_more() {
        let runtime = counter_runtime().await;
        let counter = runtime.handle::<Counter>("c");
        let id = counter
            .add(5)
            .send_after(Duration::from_secs(3600))
            .await
            .expect("enqueued");
        let waiting = spawn_wait(&runtime, &id);
        until_waiters(&runtime, 1).await;
        let queries = &runtime.inner().status_queries;
        // Registered, asked once, and now asleep: however long nothing
        // happens to the invocation, it asks nothing more (a poll would).
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert_eq!(queries.load(Ordering::SeqCst), 1);
        }
        assert!(!waiting.is_finished());
        // The cancel's release wakes it: one more query, which reads it.
        runtime.cancel_invocation(&id).await.expect("cancelled");
        let status = waiting.await.expect("task").expect("status");
        assert_eq!(status, InvocationStatus::Cancelled);
        assert_eq!(queries.load(Ordering::SeqCst), 2);
        assert_eq!(runtime.inner().invocation_waiters.len(), 0);
        runtime.shutdown().await.expect("shuts down");
    }

    #[tokio::test]
    async fn waits_that_time_out_or_are_dropped_leave_nothing_registered() {
        let runtime = counter_runtime().await;
        let counter = runtime.handle::<Counter>("c");
        let id = counter
            .add(1)
            .send_after(Duration::from_secs(3600))
            .await
            .expect("enqueued");
        // Timed out: the status as it is, and the wait unregistered.
        let status = runtime
            .invocation(&id, Duration::from_millis(20))
            .await
            .expect("status");
        assert_eq!(status, InvocationStatus::Scheduled);
        assert_eq!(runtime.inner().invocation_waiters.len(), 0);
        // Dropped (an HTTP client that went away): unregistered too.
        let waits: Vec<_> = (0..3).map(|_| spawn_wait(&runtime, &id)).collect();
        until_waiters(&runtime, 3).await;
        for wait in &waits {
            wait.abort();
        }
        for wait in waits {
            assert!(wait.await.expect_err("aborted").is_cancelled());
        }
        assert_eq!(runtime.inner().invocation_waiters.len(), 0);
        runtime.shutdown().await.expect("shuts down");
    }

    #[tokio::test]
    async fn every_waiter_of_an_invocation_is_woken_by_its_completion() {
        let runtime = counter_runtime().await;
        let counter = runtime.handle::<Counter>("c");
        let id = counter
            .add(2)
            .send_after(Duration::from_millis(200))
            .await
            .expect("enqueued");
        let waits: Vec<_> = (0..2).map(|_| spawn_wait(&runtime, &id)).collect();
        for wait in waits {
            let status = wait.await.expect("task").expect("status");
            assert_eq!(
                status,
                InvocationStatus::Done(crate::JsonReply::Ok(2.into()))
            );
        }
        assert_eq!(runtime.inner().invocation_waiters.len(), 0);
        runtime.shutdown().await.expect("shuts down");
    }
}
