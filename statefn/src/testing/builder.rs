//! [`TestBuilder`]: a [`Builder`] with a seed and a virtual clock.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::{TestRuntime, process_crash_fs::ProcessCrashFs};
use crate::{
    Builder, Durability, Error, RetryPolicy, StatefulFunction, error::StorageError, io::FileSystem,
};

/// Configures a [`TestRuntime`]: a [`Builder`] with a seed and a clock.
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
/// use statefn::testing::TestRuntime;
///
/// let rt = TestRuntime::builder()
///     .seed(42)
///     .shards(4)
///     .start_time(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000))
///     .register::<Counter>()
///     .start()?;
/// assert_eq!(rt.now_ms(), 1_000_000);
/// # Ok::<(), statefn::Error>(())
/// ```
#[must_use = "a builder does nothing until `start` is called"]
#[derive(Debug)]
pub struct TestBuilder {
    pub(super) builder: Builder,
    pub(super) seed: u64,
    pub(super) start_ms: u64,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) max_steps: usize,
    /// Whether a test gave the log's file system.
    pub(super) file_system_given: bool,
}

impl TestBuilder {
    /// How many steps [`run_until_idle`](TestRuntime::run_until_idle) (and
    /// so `call` and `advance`) may take before it panics: a guard against
    /// handlers that send each other messages forever (default
    /// [`DEFAULT_MAX_STEPS`](super::DEFAULT_MAX_STEPS)).
    pub fn max_steps(mut self, steps: usize) -> Self {
        self.max_steps = steps.max(1);
        self
    }

    /// The seed that orders the shards' batches and the commits (default
    /// [`DEFAULT_SEED`](super::DEFAULT_SEED)). The same seed gives the same run.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Where the virtual clock starts (default [`DEFAULT_START_MS`](super::DEFAULT_START_MS)).
    pub fn start_time(mut self, at: SystemTime) -> Self {
        let ms = at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        self.start_ms = u64::try_from(ms).unwrap_or(u64::MAX);
        self
    }

    /// Keeps the data in `path` rather than in a temporary directory that is
    /// deleted with the runtime.
    pub fn data_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(path.into());
        self
    }

    /// Registers a function type, as [`Builder::register`].
    pub fn register<T: StatefulFunction>(mut self) -> Self {
        self.builder = self.builder.register::<T>();
        self
    }

    /// The number of shards (default 4: enough for messages to cross shards).
    pub fn shards(mut self, shards: u16) -> Self {
        self.builder = self.builder.shards(shards);
        self
    }

    /// Physical logs the shards share, as [`Builder::log_groups`].
    pub fn log_groups(mut self, groups: u16) -> Self {
        self.builder = self.builder.log_groups(groups);
        self
    }

    /// Retries of failing messages from functions, as
    /// [`Builder::retry_policy`]; the backoff runs on the virtual clock.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.builder = self.builder.retry_policy(policy);
        self
    }

    /// The state cache, as [`Builder::cache_bytes`] (small values make
    /// states go through the store).
    pub fn cache_bytes(mut self, bytes: usize) -> Self {
        self.builder = self.builder.cache_bytes(bytes);
        self
    }

    /// A read-only resource for handlers, as [`Builder::resource`].
    pub fn resource<T: std::any::Any + Send + Sync>(mut self, value: Arc<T>) -> Self {
        self.builder = self.builder.resource(value);
        self
    }

    /// Mailbox bound, as [`Builder::mailbox_capacity`].
    pub fn mailbox_capacity(mut self, calls: usize) -> Self {
        self.builder = self.builder.mailbox_capacity(calls);
        self
    }

    /// Idempotency key retention, as [`Builder::idempotency_retention`].
    pub fn idempotency_retention(mut self, retention: Duration) -> Self {
        self.builder = self.builder.idempotency_retention(retention);
        self
    }

    /// How often a shard with changes checkpoints on its own, on the
    /// virtual clock, as [`Builder::checkpoint_interval`] (default 60 s). A
    /// long one keeps what a test does after [`TestRuntime::checkpoint`] in
    /// the log only, also while [`advance`](TestRuntime::advance) moves the
    /// clock by hours.
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
    /// use std::time::Duration;
    /// use statefn::testing::TestRuntime;
    ///
    /// let mut rt = TestRuntime::builder()
    ///     .checkpoint_interval(Duration::from_secs(365 * 24 * 3600))
    ///     .register::<Counter>()
    ///     .start()?;
    /// rt.call(rt.handle::<Counter>("c").add(1))?;
    /// rt.advance(Duration::from_secs(3600)); // no checkpoint: it stays in the log
    /// rt.crash()?;
    /// assert_eq!(rt.call(rt.handle::<Counter>("c").add(1))?, 2);
    /// # Ok::<(), statefn::Error>(())
    /// ```
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.builder = self.builder.checkpoint_interval(interval);
        self
    }

    /// Faults to inject into the state store's writes, as
    /// [`Builder::store_faults`] (see [`StoreFaults`](super::StoreFaults)).
    pub fn store_faults(mut self, faults: super::StoreFaults) -> Self {
        self.builder = self.builder.store_faults(faults);
        self
    }

    /// The log's file system, as [`Builder::file_system`]: inject I/O faults
    /// with `statefn_store::FaultyFs` (feature `fault-injection`).
    pub fn file_system(mut self, fs: Arc<dyn FileSystem>) -> Self {
        self.builder = self.builder.file_system(fs);
        self.file_system_given = true;
        self
    }

    /// Opens the runtime (recovering the data directory if it has data).
    ///
    /// # Errors
    ///
    /// As [`Builder::open`]; [`Error::Storage`] if no temporary directory can
    /// be made.
    pub fn start(self) -> Result<TestRuntime, Error> {
        let (path, temp) = match self.data_dir {
            Some(path) => (path, None),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("statefn-test-")
                    .tempdir()
                    .map_err(|e| StorageError::Io {
                        doing: "making a temporary directory".into(),
                        source: Arc::new(e),
                    })?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        // Every commit is durable before its effects leave, as in
        // production. A simulated crash keeps what was written to the OS, as
        // a killed process does, so the log's syncs do nothing, unless the
        // test gave its own file system (to inject faults into them).
        let builder = if self.file_system_given {
            self.builder
        } else {
            self.builder.file_system(Arc::new(ProcessCrashFs))
        };
        let plan = builder
            .data_dir(&path)
            .durability(Durability::Fsync)
            .workers(1)
            .plan()?;
        let mut rt = TestRuntime::new(self.seed, self.start_ms, self.max_steps, plan, path, temp);
        rt.reopen()?;
        Ok(rt)
    }
}
