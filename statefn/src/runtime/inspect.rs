//! What operators may look at and remove, instance by instance: a state as
//! JSON, the instances of a type (paged by a cursor), an instance's pending
//! timers, and its deletion. The admin routes `/admin/state/...` serve
//! these.

use serde::Serialize;
use tokio::sync::oneshot;

use crate::{
    Address, Error, Runtime,
    protocol::{envelope::Mail, record::TimerKey},
};

/// The most instances [`Runtime::instances`] returns in one page.
pub const MAX_INSTANCES_PAGE: usize = 1000;

impl Runtime {
    /// The state of instance `id` of `type_name` as JSON (migrated to the
    /// current version if it is older), or `None` if it has none.
    ///
    /// It reads what the instance's shard has applied, including changes
    /// not yet durable.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownFunction`] for a type that is not registered,
    /// [`Error::InvalidAddress`] for an id no instance can have, [`Error::State`]
    /// if the stored state does not decode (see the function's `migrate`),
    /// a storage error if it cannot be read.
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
    /// let runtime = Runtime::builder().in_memory().register::<Counter>().open().await?;
    /// runtime.handle::<Counter>("a").add(5).await?;
    /// let state = runtime.state_json("Counter", "a").await?;
    /// assert_eq!(state, Some(serde_json::json!({ "n": 5 })));
    /// assert_eq!(runtime.state_json("Counter", "never").await?, None);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn state_json(
        &self,
        type_name: &str,
        id: &str,
    ) -> Result<Option<serde_json::Value>, Error> {
        let target = self.registered(type_name, id)?;
        let runtime = self.clone();
        blocking(move || {
            let inner = runtime.inner();
            let function = inner.registry.get(target.type_name())?;
            let shard = inner
                .shard(target.shard_id(inner.shard_count()))
                .ok_or(Error::ShuttingDown)?;
            let mut core = shard.core.lock();
            match core.states.get(&target)? {
                Some(bytes) => function.state_to_json(target.id(), bytes).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    /// The ids of `type_name`'s instances that have a state, in byte
    /// order, after the cursor `after` (from the first when `None`): at
    /// most `limit` of them (at most [`MAX_INSTANCES_PAGE`]). Pass the
    /// page's [`next`](Instances::next) as `after` for the next page.
    ///
    /// A listing is not a snapshot: an instance created or deleted while
    /// you page may or may not appear.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownFunction`] for a type that is not registered; a
    /// storage error if the store cannot be read.
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
    /// let runtime = Runtime::builder().in_memory().register::<Counter>().open().await?;
    /// for id in ["a", "b", "c"] {
    ///     runtime.handle::<Counter>(id).add(1).await?;
    /// }
    /// let first = runtime.instances("Counter", None, 2).await?;
    /// assert_eq!(first.ids, ["a", "b"]);
    /// let rest = runtime.instances("Counter", first.next.as_deref(), 2).await?;
    /// assert_eq!(rest.ids, ["c"]);
    /// assert_eq!(rest.next, None);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn instances(
        &self,
        type_name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Instances, Error> {
        let function = self.inner().registry.get(type_name)?;
        let type_name = function.type_name();
        let limit = limit.clamp(1, MAX_INSTANCES_PAGE);
        let after = after.map(str::to_owned);
        let runtime = self.clone();
        blocking(move || {
            let inner = runtime.inner();
            let mut ids = Vec::new();
            for shard in inner.shard_ids() {
                let shard = inner.shard(shard).ok_or(Error::ShuttingDown)?;
                let page = shard
                    .core
                    .lock()
                    .states
                    .ids(type_name, after.as_deref(), limit)?;
                ids.extend(page);
            }
            ids.sort();
            ids.truncate(limit);
            // Each shard gave up to `limit` ids: a short merged page is the end.
            let next = (ids.len() == limit).then(|| ids.last().cloned()).flatten();
            Ok(Instances { ids, next })
        })
        .await
    }

    /// The pending timers of instance `id` of `type_name` (its
    /// `ctx.timer` timers, delayed invocations enqueued for it, its
    /// `expire_after` check), soonest first. A `send_after` message on its
    /// way to it is its sender's timer and is not listed.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownFunction`] for a type that is not registered,
    /// [`Error::InvalidAddress`] for an id no instance can have.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use serde::{Deserialize, Serialize};
    /// # use statefn::prelude::*;
    /// # #[stateful_function]
    /// # #[derive(Default, Serialize, Deserialize)]
    /// # pub struct Counter { n: u64 }
    /// # #[stateful_function]
    /// # impl Counter { #[handler] pub fn add(&mut self, by: u64) -> u64 { self.n += by; self.n } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), statefn::Error> {
    /// let runtime = Runtime::builder().in_memory().register::<Counter>().open().await?;
    /// let later = Duration::from_secs(3600);
    /// let key = Some("late-add".to_owned());
    /// runtime.enqueue_json("Counter", "a", "add", serde_json::json!({"by": 2}), later, key.clone()).await?;
    /// let timers = runtime.timers_of("Counter", "a").await?;
    /// assert_eq!(timers.len(), 1);
    /// assert_eq!(timers[0].message, serde_json::json!({"add": {"by": 2}}));
    /// assert_eq!(timers[0].invocation_key, key);
    /// assert_eq!((timers[0].key.clone(), timers[0].every_ms), (None, None));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn timers_of(&self, type_name: &str, id: &str) -> Result<Vec<PendingTimer>, Error> {
        let target = self.registered(type_name, id)?;
        let runtime = self.clone();
        blocking(move || {
            let inner = runtime.inner();
            let shard_id = target.shard_id(inner.shard_count());
            let shard = inner.shard(shard_id).ok_or(Error::ShuttingDown)?;
            let entries = {
                let core = shard.core.lock();
                let keys = core.timers.keys_of(&target)?;
                let mut entries = Vec::with_capacity(keys.len());
                for (_, slot) in keys {
                    if let Some(entry) = core.timers.entry_at(slot)? {
                        entries.push(entry);
                    }
                }
                entries
            };
            let function = inner.registry.get(target.type_name())?;
            let mut timers: Vec<PendingTimer> = entries
                .into_iter()
                .map(|t| PendingTimer {
                    id: format!("{}-{}", shard_id.0, t.id.0),
                    due_ms: t.due_ms,
                    expiry: t.is_expiry(),
                    message: if t.is_expiry() {
                        serde_json::Value::Null
                    } else {
                        function
                            .message_to_json(&t.outgoing.message)
                            .unwrap_or(serde_json::Value::Null)
                    },
                    key: match &t.key {
                        Some(TimerKey::Named(key)) => Some(key.clone()),
                        _ => None,
                    },
                    invocation_key: match &t.key {
                        Some(TimerKey::Invocation(key)) => Some(key.clone()),
                        _ => None,
                    },
                    every_ms: t.every_ms,
                })
                .collect();
            timers.sort_by(|a, b| (a.due_ms, &a.id).cmp(&(b.due_ms, &b.id)));
            Ok(timers)
        })
        .await
    }

    /// Deletes instance `id` of `type_name`: its state and its pending
    /// timers (as [`timers_of`](Self::timers_of) lists them), in one log
    /// record. Returns whether there was anything to delete. Messages
    /// already on their way to it still arrive, and start from `Default`.
    ///
    /// # Requests the instance sent
    ///
    /// A request it sent with a [`timeout`](crate::Request::timeout) is
    /// guarded by a timer of the instance, which goes with it: the timeout
    /// never fires, and the reply, when it comes, is dropped: it does not
    /// run and does not bring the instance back. Each such drop is logged
    /// at `info` and counted in
    /// [`LATE_REPLIES_DROPPED`](crate::metrics::LATE_REPLIES_DROPPED) (as are
    /// replies that come after their timeout fired). A request sent
    /// *without* a timeout leaves nothing on the instance to tell its
    /// reply from any other message: that reply arrives like a message,
    /// and starts the instance again from `Default`. Give requests a
    /// timeout where instances may be deleted.
    ///
    /// # Durability
    ///
    /// Like an invocation's: it returns once the deletion is committed under
    /// the runtime's [`Durability`](crate::Durability) (with the default,
    /// fsynced: a crash after it returns never brings the state or the
    /// timers back).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownFunction`] for a type that is not registered,
    /// [`Error::InvalidAddress`] for an id no instance can have,
    /// [`Error::ShuttingDown`], or a storage error.
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
    /// let runtime = Runtime::builder().in_memory().register::<Counter>().open().await?;
    /// runtime.handle::<Counter>("a").add(5).await?;
    /// assert!(runtime.delete_instance("Counter", "a").await?);
    /// assert_eq!(runtime.state_json("Counter", "a").await?, None);
    /// assert!(!runtime.delete_instance("Counter", "a").await?);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn delete_instance(&self, type_name: &str, id: &str) -> Result<bool, Error> {
        let target = self.registered(type_name, id)?;
        let inner = self.inner();
        let shard = target.shard_id(inner.shard_count());
        let (reply, rx) = oneshot::channel();
        inner.enqueue(shard, Mail::Delete { target, reply });
        let existed = rx.await.map_err(|_| Error::ShuttingDown)??;
        Ok(existed.first() == Some(&1))
    }

    /// The address of `id` of a registered type.
    fn registered(&self, type_name: &str, id: &str) -> Result<Address, Error> {
        self.inner().registry.get(type_name)?;
        Address::new(type_name, id)
    }
}

/// Runs `f` off the async threads: it may wait for a shard's batch. Without
/// a Tokio runtime (the test kit polls calls itself, on the thread that
/// also runs the shards between polls, so no batch holds a shard now) it
/// runs in place.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or(Err(Error::ShuttingDown))
}

/// A page of instance ids, from [`Runtime::instances`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Instances {
    /// The ids, in byte order.
    pub ids: Vec<String>,
    /// The cursor of the next page (the last id here), `None` at the end.
    pub next: Option<String>,
}

/// A timer aimed at an instance, from [`Runtime::timers_of`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PendingTimer {
    /// `"<shard>-<timer>"`.
    pub id: String,
    /// When it is due (unix milliseconds).
    pub due_ms: u64,
    /// `true` for the instance's `expire_after` check (no message).
    pub expiry: bool,
    /// The message it sends (`{"handler": {"arg": value}}`), or null.
    pub message: serde_json::Value,
    /// The key of a timer set with [`Context::timer`](crate::Context::timer)
    /// (the one [`Context::cancel_timer`](crate::Context::cancel_timer)
    /// takes); `None` for other timers.
    pub key: Option<String>,
    /// The idempotency key of a delayed invocation
    /// ([`Call::send_after`](crate::Call::send_after), `/send?delay=`), the
    /// one its [`InvocationId`](crate::InvocationId) names; `None` for
    /// other timers.
    pub invocation_key: Option<String>,
    /// A periodic timer's period in milliseconds
    /// ([`TimerBuilder::every`](crate::TimerBuilder::every)); `None` for a
    /// timer that runs once.
    pub every_ms: Option<u64>,
}
