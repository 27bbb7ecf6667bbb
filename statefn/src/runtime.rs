//! `Runtime` and its builder: owns the shards, the worker threads and the
//! timer task, and routes mail between them.

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};

use crate::{
    Address, Error, Handle, StatefulFunction,
    envelope::{Envelope, Mail, Origin},
    journal::InMemoryJournal,
    registry::Registry,
    scheduler::{RunShard, Scheduler},
    shard::{Effects, Shard},
    timer::TimerService,
};

/// The default number of shards: enough to spread work over the workers and
/// keep batches large.
pub const DEFAULT_SHARDS: u16 = 16;

/// A running statefn runtime: cheap to clone, `Send + Sync + 'static`.
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
///     pub fn add(&mut self, by: u64) -> u64 { self.n += by; self.n }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), statefn::Error> {
/// let runtime = Runtime::builder().in_memory().register::<Counter>().open().await?;
/// assert_eq!(runtime.handle::<Counter>("a").add(2).await?, 2);
/// runtime.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Runtime {
    owner: Arc<Owner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("functions", &self.owner.inner.registry)
            .field("shards", &self.owner.inner.shards.len())
            .finish_non_exhaustive()
    }
}

/// Stops the workers when the last `Runtime` clone (or `Handle`) is dropped
/// without `shutdown`.
#[derive(Debug)]
struct Owner {
    inner: Arc<RuntimeInner>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.inner.stop();
    }
}

impl Runtime {
    /// Starts configuring a runtime.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A typed handle to instance `id` of `T`. Instances are virtual: this
    /// never fails and creates nothing; the first call creates the instance
    /// with `Default` state. An invalid id (empty, over 1 KiB) makes every
    /// call fail with [`Error::InvalidAddress`].
    pub fn handle<T: StatefulFunction>(&self, id: impl AsRef<str>) -> Handle<T> {
        Handle::new(self.clone(), id.as_ref())
    }

    /// The number of shards.
    pub fn shards(&self) -> u16 {
        u16::try_from(self.owner.inner.shards.len()).unwrap_or(u16::MAX)
    }

    /// Stops accepting calls, finishes the work in flight (including the
    /// messages it sends), then stops the workers. Pending timers are not
    /// waited for. Calling it again does nothing.
    ///
    /// # Errors
    ///
    /// Currently infallible in memory; durable runtimes report a failed
    /// final commit.
    pub async fn shutdown(&self) -> Result<(), Error> {
        let inner = &self.owner.inner;
        inner.closing.store(true, Ordering::SeqCst);
        loop {
            let idle = inner.idle.notified();
            if inner.in_flight.load(Ordering::SeqCst) == 0 {
                break;
            }
            // The timeout guards against a missed notification only.
            let _ = tokio::time::timeout(Duration::from_millis(10), idle).await;
        }
        inner.stop();
        let threads: Vec<JoinHandle<()>> = std::mem::take(&mut *inner.threads.lock());
        tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await
        .map_err(|e| Error::Storage(format!("a worker thread failed to stop: {e}")))?;
        Ok(())
    }

    pub(crate) fn inner(&self) -> &RuntimeInner {
        &self.owner.inner
    }
}

/// Configures and opens a [`Runtime`].
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
/// # impl Counter { pub fn add(&mut self, by: u64) -> u64 { self.n += by; self.n } }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), statefn::Error> {
/// let runtime = Runtime::builder()
///     .in_memory()
///     .workers(2)
///     .shards(8)
///     .register::<Counter>()
///     .open()
///     .await?;
/// # runtime.shutdown().await
/// # }
/// ```
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until `open` is awaited"]
pub struct Builder {
    storage: Option<Storage>,
    workers: Option<usize>,
    shards: Option<u16>,
    registry: Registry,
    error: Option<Error>,
}

#[derive(Debug, Clone)]
enum Storage {
    InMemory,
}

impl Builder {
    /// Keeps all state in memory: nothing survives the process. For tests and
    /// caches.
    pub fn in_memory(mut self) -> Self {
        self.storage = Some(Storage::InMemory);
        self
    }

    /// Worker threads that run handlers (default: the number of cores).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// The number of shards (default [`DEFAULT_SHARDS`]); each is a
    /// single-writer unit of state, scheduling and recovery.
    pub fn shards(mut self, shards: u16) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Registers a function type so that it can be called.
    pub fn register<T: StatefulFunction>(mut self) -> Self {
        if let Err(e) = self.registry.register::<T>() {
            self.error.get_or_insert(e);
        }
        self
    }

    /// Opens the runtime: starts its worker threads and its timer task on the
    /// current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid configuration (no storage chosen, no
    /// function registered, zero workers or shards, two types with one name).
    pub async fn open(self) -> Result<Runtime, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let Some(Storage::InMemory) = self.storage else {
            return Err(Error::Config(
                "choose where state lives: `.in_memory()` (nothing survives the process)".into(),
            ));
        };
        if self.registry.is_empty() {
            return Err(Error::Config(
                "no function type is registered; call `.register::<YourFunction>()`".into(),
            ));
        }
        let workers = self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
        });
        let shards = self.shards.unwrap_or(DEFAULT_SHARDS);
        if workers == 0 || shards == 0 {
            return Err(Error::Config(
                "workers and shards must be at least 1".into(),
            ));
        }
        let (scheduler, slots) = Scheduler::new(workers);
        let inner = Arc::new(RuntimeInner {
            registry: self.registry,
            shards: (0..shards)
                .map(|id| Shard::new(id, shards, Box::new(InMemoryJournal)))
                .collect(),
            scheduler: Arc::new(scheduler),
            timers: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            closing: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
        });
        let weak: Weak<RuntimeInner> = Arc::downgrade(&inner);
        let (timers, task) = TimerService::start(move |shard, timer| {
            if let Some(inner) = weak.upgrade() {
                inner.enqueue(shard, Mail::TimerDue { timer });
            }
        });
        *inner.timers.lock() = Some((timers, task));
        let threads = inner
            .scheduler
            .start(slots, Arc::clone(&inner))
            .map_err(|e| Error::Config(format!("cannot start worker threads: {e}")))?;
        *inner.threads.lock() = threads;
        Ok(Runtime {
            owner: Arc::new(Owner { inner }),
        })
    }
}

/// The shared core of a runtime.
#[derive(Debug)]
pub(crate) struct RuntimeInner {
    pub(crate) registry: Registry,
    shards: Vec<Shard>,
    scheduler: Arc<Scheduler>,
    timers: Mutex<Option<(TimerService, tokio::task::JoinHandle<()>)>>,
    /// Mail queued or being processed: shutdown waits for zero.
    in_flight: AtomicUsize,
    idle: Notify,
    closing: AtomicBool,
    stopped: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl RuntimeInner {
    /// Queues a client call; the receiver resolves to the encoded reply.
    pub(crate) fn submit_call(
        &self,
        target: Address,
        message: Vec<u8>,
        key: Option<String>,
    ) -> Result<oneshot::Receiver<Result<Vec<u8>, Error>>, Error> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(Error::ShuttingDown);
        }
        self.registry.get(target.type_name())?;
        let (tx, rx) = oneshot::channel();
        let shard = target.shard(self.shard_count());
        self.enqueue(
            shard,
            Mail::Invoke(Envelope {
                target,
                message,
                origin: Origin::Client {
                    key,
                    reply: Some(tx),
                },
                reply_to: None,
            }),
        );
        Ok(rx)
    }

    fn shard_count(&self) -> u16 {
        u16::try_from(self.shards.len()).unwrap_or(u16::MAX)
    }

    fn enqueue(&self, shard: u16, mail: Mail) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.shards[usize::from(shard)].enqueue(mail) {
            self.scheduler.push(shard);
        }
    }

    /// Releases a committed batch's effects: replies, deliveries, timers.
    fn release(&self, effects: Effects) {
        // Deliveries first: a caller who has seen a transfer's reply and then
        // calls the receiver finds the deposit already queued ahead of it.
        let shards = self.shard_count();
        for envelope in effects.deliveries {
            let shard = envelope.target.shard(shards);
            self.enqueue(shard, Mail::Invoke(envelope));
        }
        for (tx, reply) in effects.replies {
            // The caller may have stopped waiting; the invocation stands.
            let _ = tx.send(reply);
        }
        if !effects.timers.is_empty()
            && let Some((timers, _)) = &*self.timers.lock()
        {
            for timer in effects.timers {
                timers.arm(timer);
            }
        }
        if effects.finished > 0
            && self.in_flight.fetch_sub(effects.finished, Ordering::SeqCst) == effects.finished
        {
            self.idle.notify_waiters();
        }
    }

    /// Stops the workers and the timer task (idempotent).
    fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.closing.store(true, Ordering::SeqCst);
        self.scheduler.stop();
        if let Some((_, task)) = self.timers.lock().take() {
            task.abort();
        }
    }
}

impl RunShard for RuntimeInner {
    fn run_shard(&self, shard: u16) -> bool {
        let mut effects = Effects::default();
        let more = self.shards[usize::from(shard)].run(&self.registry, &mut effects);
        if !effects.is_empty() {
            self.release(effects);
        }
        more
    }
}

#[cfg(test)]
#[allow(unreachable_pub)] // handlers must be `pub`, even in a test module
mod tests {
    use serde::{Deserialize, Serialize};

    use crate::{Address, Error, Runtime, stateful_function};

    #[stateful_function]
    #[derive(Default, Serialize, Deserialize)]
    pub struct Counter {
        n: u64,
    }

    #[stateful_function]
    impl Counter {
        pub fn add(&mut self, by: u64) -> u64 {
            self.n += by;
            self.n
        }
    }

    async fn counter_runtime() -> Runtime {
        Runtime::builder()
            .in_memory()
            .register::<Counter>()
            .open()
            .await
            .expect("opens")
    }

    #[tokio::test]
    async fn undecodable_message_is_a_typed_error_and_changes_nothing() {
        let runtime = counter_runtime().await;
        let target = Address::new("Counter", "x").expect("valid");
        for garbage in [vec![], vec![0xff; 3], vec![7, 1, 2]] {
            let rx = runtime
                .inner()
                .submit_call(target.clone(), garbage, None)
                .expect("accepted");
            let err = rx.await.expect("answered").expect_err("undecodable");
            assert!(
                matches!(&err, Error::Decode { function, .. } if function == "Counter"),
                "{err:?}"
            );
        }
        assert_eq!(runtime.handle::<Counter>("x").add(1).await.expect("ok"), 1);
    }

    #[tokio::test]
    async fn unknown_function_is_refused_before_queueing() {
        let runtime = counter_runtime().await;
        let target = Address::new("Nope", "x").expect("valid");
        let err = runtime
            .inner()
            .submit_call(target, vec![0], None)
            .expect_err("unknown type");
        assert!(matches!(err, Error::UnknownFunction { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn dropping_the_last_handle_stops_the_workers() {
        let runtime = counter_runtime().await;
        let inner = std::sync::Arc::clone(&runtime.owner.inner);
        drop(runtime);
        assert!(inner.stopped.load(std::sync::atomic::Ordering::SeqCst));
    }
}
