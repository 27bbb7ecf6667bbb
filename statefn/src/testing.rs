//! A deterministic runtime for unit tests of your functions (feature
//! `testing`).
//!
//! [`TestRuntime`] is the real runtime (the same shards, log, checkpoints and
//! recovery) with nothing running on its own: no worker threads, no syncer,
//! no timer task. Handlers run on the test's thread, one batch at a time, in
//! an order drawn from a seed; commits, checkpoints and egress appends happen
//! when the driver says. Time is a virtual clock that moves only with
//! [`advance`](TestRuntime::advance), which fires the timers that fall due.
//! The same seed and the same test give the same run.
//!
//! Beyond the [`Runtime`] API a test gets:
//! - [`state`](TestRuntime::state): any instance's current state;
//! - [`sent`](TestRuntime::sent): every message a handler sent (committed);
//! - [`egress`](TestRuntime::egress): every egress log;
//! - [`crash`](TestRuntime::crash): drop everything not committed and
//!   recover from the data directory, mid-test;
//! - [`start`](TestRuntime::start) + [`step`](TestRuntime::step): a call left
//!   in flight, to crash under it.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use serde::{Deserialize, Serialize};
//! use statefn::prelude::*;
//! use statefn::testing::TestRuntime;
//!
//! #[stateful_function]
//! #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
//! pub struct Reminder { fired: u32 }
//!
//! #[stateful_function]
//! impl Reminder {
//!     pub fn set(&mut self, ctx: &mut Context, after_secs: u64) {
//!         ctx.send_after::<Reminder>(Duration::from_secs(after_secs), ctx.id()).fire();
//!     }
//!     pub fn fire(&mut self, ctx: &mut Context) {
//!         self.fired += 1;
//!         ctx.emit("reminders", &ctx.id());
//!     }
//! }
//!
//! # fn main() -> Result<(), statefn::Error> {
//! let mut rt = TestRuntime::builder().seed(7).register::<Reminder>().start()?;
//! rt.call(rt.handle::<Reminder>("r").set(60))?;
//! assert_eq!(rt.sent()[0].handler(), "fire");
//!
//! rt.advance(Duration::from_secs(59));
//! assert_eq!(rt.state::<Reminder>("r")?, Some(Reminder { fired: 0 }));
//! rt.crash()?; // the timer is durable: it survives
//! rt.advance(Duration::from_secs(1));
//! assert_eq!(rt.state::<Reminder>("r")?, Some(Reminder { fired: 1 }));
//! assert_eq!(rt.egress("reminders")?[0].record, serde_json::json!("r"));
//! # Ok(())
//! # }
//! ```

use std::{
    future::{Future, IntoFuture},
    path::PathBuf,
    pin::Pin,
    sync::Arc,
    task::{Context as TaskContext, Poll, Waker},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use parking_lot::Mutex;
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::{
    Address, Builder, DeadLetter, DeadLetterId, Durability, EgressRecord, Error, Handle,
    RetryPolicy, Runtime, StatefulFunction,
    clock::Clock,
    commit::CommitObserver,
    error::StorageError,
    io::FileSystem,
    protocol::{
        ids::ShardId,
        record::{Entry, ShardRecord, decode},
    },
    runtime::{
        builder::Plan,
        open::{Background, open_manual},
    },
    scheduler::RunShard,
    service::{Service, Step},
};

/// Where the virtual clock starts by default: 2026-01-01T00:00:00Z.
pub const DEFAULT_START_MS: u64 = 1_767_225_600_000;

/// The seed used when none is given.
pub const DEFAULT_SEED: u64 = 0;

/// Steps [`TestRuntime::run_until_idle`] takes at most by default before it
/// reports handlers that never stop sending each other messages.
pub const DEFAULT_MAX_STEPS: usize = 1_000_000;

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
/// # impl Counter { pub fn add(&mut self, by: u64) -> u64 { self.n += by; self.n } }
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
    builder: Builder,
    seed: u64,
    start_ms: u64,
    data_dir: Option<PathBuf>,
    max_steps: usize,
}

impl TestBuilder {
    /// How many steps [`run_until_idle`](TestRuntime::run_until_idle) (and
    /// so `call` and `advance`) may take before it panics: a guard against
    /// handlers that send each other messages forever (default
    /// [`DEFAULT_MAX_STEPS`]).
    pub fn max_steps(mut self, steps: usize) -> Self {
        self.max_steps = steps.max(1);
        self
    }

    /// The seed that orders the shards' batches and the commits (default
    /// [`DEFAULT_SEED`]). The same seed gives the same run.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Where the virtual clock starts (default [`DEFAULT_START_MS`]).
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

    /// The log's file system, as [`Builder::file_system`]: inject I/O faults
    /// with `statefn_store::FaultyFs` (feature `fault-injection`).
    pub fn file_system(mut self, fs: Arc<dyn FileSystem>) -> Self {
        self.builder = self.builder.file_system(fs);
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
        let plan = self
            .builder
            .data_dir(&path)
            // A simulated crash keeps what was written to the OS, as a killed
            // process does: an fsync per commit would only slow tests down.
            // Checkpoints are still synced.
            .durability(Durability::Periodic(Duration::from_secs(365 * 24 * 3600)))
            .workers(1)
            .plan()?;
        let clock = Clock::virtual_at(self.start_ms);
        let committed = Arc::new(Mutex::new(Vec::new()));
        let mut rt = TestRuntime {
            runtime: None,
            background: None,
            ready: Vec::new(),
            committed,
            plan,
            clock,
            rng: StdRng::seed_from_u64(self.seed),
            seed: self.seed,
            path,
            _temp: temp,
            sent: Vec::new(),
            crashes: 0,
            max_steps: self.max_steps,
        };
        rt.reopen()?;
        Ok(rt)
    }
}

/// A message a handler sent, from [`TestRuntime::sent`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SentMessage {
    /// The instance whose handler sent it.
    pub from: Address,
    /// The instance it is for.
    pub to: Address,
    /// The message as JSON: `{"handler": {"arg": value}}` (a handler without
    /// arguments: `{"handler": {}}`, or `"handler"`).
    pub message: serde_json::Value,
    /// Its delay (`ctx.send_after`); zero for `ctx.send`.
    pub delay: Duration,
    /// When it was committed, on the virtual clock (unix milliseconds).
    pub at_ms: u64,
}

impl SentMessage {
    /// The name of the handler it calls.
    pub fn handler(&self) -> &str {
        match &self.message {
            serde_json::Value::Object(map) => map.keys().next().map_or("", String::as_str),
            serde_json::Value::String(name) => name,
            _ => "",
        }
    }

    /// The handler's arguments as JSON (`null` if it takes none).
    pub fn args(&self) -> &serde_json::Value {
        match &self.message {
            serde_json::Value::Object(map) => {
                map.values().next().unwrap_or(&serde_json::Value::Null)
            }
            _ => &serde_json::Value::Null,
        }
    }
}

/// A deterministic, single-threaded runtime with a virtual clock: see the
/// [module docs](self).
#[derive(Debug)]
pub struct TestRuntime {
    /// `None` only between a crash and the reopen.
    runtime: Option<Runtime>,
    /// The runtime's services, stepped here instead of on threads.
    background: Option<Background>,
    /// Runnable shards, in the order they became runnable.
    ready: Vec<ShardId>,
    /// Every committed log record not yet looked at (the commit observer
    /// fills it).
    committed: Arc<Mutex<Vec<Vec<u8>>>>,
    plan: Plan,
    clock: Clock,
    rng: StdRng,
    seed: u64,
    path: PathBuf,
    _temp: Option<tempfile::TempDir>,
    sent: Vec<SentMessage>,
    crashes: u32,
    max_steps: usize,
}

/// A call started with [`TestRuntime::start`] and not yet finished.
#[must_use = "a started call is only observed through `result`"]
pub struct Started<F: Future> {
    future: Pin<Box<F>>,
    output: Option<F::Output>,
}

impl<F: Future> std::fmt::Debug for Started<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("finished", &self.output.is_some())
            .finish()
    }
}

impl<F: Future> Started<F> {
    /// The call's result once it has one (`None` while it is in flight).
    /// A call whose runtime crashed fails with [`Error::ShuttingDown`].
    pub fn result(&mut self) -> Option<&F::Output> {
        if self.output.is_none()
            && let Poll::Ready(out) = poll_once(self.future.as_mut())
        {
            self.output = Some(out);
        }
        self.output.as_ref()
    }

    /// Takes the result, if there is one.
    pub fn take(mut self) -> Option<F::Output> {
        self.result();
        self.output.take()
    }
}

fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut TaskContext::from_waker(Waker::noop()))
}

impl TestRuntime {
    /// Starts configuring a test runtime: 4 shards, seed [`DEFAULT_SEED`],
    /// clock at [`DEFAULT_START_MS`], data in a temporary directory.
    pub fn builder() -> TestBuilder {
        TestBuilder {
            builder: Runtime::builder().shards(4),
            seed: DEFAULT_SEED,
            start_ms: DEFAULT_START_MS,
            data_dir: None,
            max_steps: DEFAULT_MAX_STEPS,
        }
    }

    /// The runtime under test, for its other APIs (`call_json`,
    /// `enqueue_json`, typed handles). Its futures complete only while this
    /// driver runs: pass them to [`call`](Self::call). Use this type's
    /// [`egress`](Self::egress) and [`dead_letters`](Self::dead_letters)
    /// rather than the runtime's: those read on tokio's blocking pool, and
    /// a test runtime needs no tokio.
    ///
    /// # Panics
    ///
    /// If the last [`crash`](Self::crash) could not reopen the runtime.
    pub fn runtime(&self) -> &Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime did not reopen after the last crash (its error was returned)")
    }

    /// A typed handle, as [`Runtime::handle`]. Take new handles after a
    /// [`crash`](Self::crash) or [`restart`](Self::restart): old ones belong
    /// to the stopped runtime and fail with [`Error::ShuttingDown`].
    pub fn handle<T: StatefulFunction>(&self, id: impl AsRef<str>) -> Handle<T> {
        self.runtime().handle(id)
    }

    /// The seed this runtime was built with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Where the data lives.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.path
    }

    /// The virtual clock, in unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The virtual clock.
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.now_ms())
    }

    /// How many times [`crash`](Self::crash) was called.
    pub fn crashes(&self) -> u32 {
        self.crashes
    }

    /// Runs the runtime until `call` (a [`Call`](crate::Call) or any future
    /// of this runtime) completes, then until idle, and returns its output.
    /// When it returns, what the call set off has run too (messages it sent,
    /// their replies), except timers: those wait for
    /// [`advance`](Self::advance). For finer control use
    /// [`start`](Self::start) and [`step`](Self::step).
    ///
    /// # Panics
    ///
    /// If the runtime runs out of work while the future is still pending:
    /// it waits for something only time or another call would bring (a
    /// reply from a timer: use [`start`](Self::start) and
    /// [`advance`](Self::advance)), so it would wait forever.
    pub fn call<F: IntoFuture>(&mut self, call: F) -> F::Output {
        let mut started = self.start(call);
        let out = loop {
            started.result();
            if let Some(out) = started.output.take() {
                break out;
            }
            assert!(
                self.step(),
                "the call cannot finish: the runtime is idle and the call still waits \
                 (on a timer? use `start`, then `advance`)"
            );
        };
        self.run_until_idle();
        out
    }

    /// Starts `call` without running anything: the runtime runs with
    /// [`step`](Self::step), [`run_until_idle`](Self::run_until_idle) or
    /// [`advance`](Self::advance), and [`Started::result`] tells when it is
    /// done. Use it to crash with a call in flight.
    ///
    /// # Examples
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use statefn::prelude::*;
    /// # #[stateful_function]
    /// # #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    /// # pub struct Counter { n: u64 }
    /// # #[stateful_function]
    /// # impl Counter { pub fn add(&mut self, by: u64) -> u64 { self.n += by; self.n } }
    /// use statefn::testing::TestRuntime;
    ///
    /// let mut rt = TestRuntime::builder().register::<Counter>().start()?;
    /// let in_flight = rt.start(rt.handle::<Counter>("c").add(1));
    /// rt.crash()?; // before it ran
    /// assert!(matches!(in_flight.take(), Some(Err(Error::ShuttingDown))));
    /// assert_eq!(rt.state::<Counter>("c")?, None); // no trace of it
    ///
    /// let mut done = rt.start(rt.handle::<Counter>("c").add(2));
    /// while done.result().is_none() {
    ///     rt.step();
    /// }
    /// rt.crash()?; // after it committed
    /// assert_eq!(rt.state::<Counter>("c")?, Some(Counter { n: 2 }));
    /// # Ok::<(), statefn::Error>(())
    /// ```
    pub fn start<F: IntoFuture>(&self, call: F) -> Started<F::IntoFuture> {
        let mut started = Started {
            future: Box::pin(call.into_future()),
            output: None,
        };
        started.result();
        started
    }

    /// Does one thing, chosen by the seed among those ready: runs one batch
    /// of a shard with mail, or commits what batches handed to the log (and
    /// writes the checkpoints and egress records that follow); when neither
    /// is ready, fires the timers already due (re-armed ones after a crash
    /// or a recovery). Returns `false` if nothing was ready and nothing is.
    pub fn step(&mut self) -> bool {
        if self.runtime.is_none() {
            return false;
        }
        // Commit first half the time: batches of several shards then share a
        // commit, as under load, or a shard runs again before its last batch
        // is durable.
        let commit_first = self.rng.random_bool(0.5);
        let mut did = if commit_first {
            self.pump()
        } else {
            self.run_one()
        };
        if !did {
            did = if commit_first {
                self.run_one()
            } else {
                self.pump()
            };
        }
        let did = did || self.fire_due_timers();
        // A commit may have made shards runnable without anything to commit
        // (the syncer's own checkpoint requests): that is work too.
        let more = did || self.has_ready();
        self.collect_sent();
        more
    }

    /// Takes every runnable shard from the scheduler into `ready`.
    fn take_runnable(&mut self) {
        let (Some(runtime), Some(background)) = (&self.runtime, &self.background) else {
            return;
        };
        let scheduler = &runtime.inner().scheduler;
        if let Some(slot) = background.workers.first() {
            while let Some(shard) = scheduler.find(slot) {
                self.ready.push(shard);
            }
        }
    }

    fn has_ready(&mut self) -> bool {
        self.take_runnable();
        !self.ready.is_empty()
    }

    /// Runs one batch of the runnable shard the seed picks; returns `false`
    /// if none is runnable.
    fn run_one(&mut self) -> bool {
        self.take_runnable();
        if self.ready.is_empty() {
            return false;
        }
        let pick = self.rng.random_range(0..self.ready.len());
        // `remove`, not `swap_remove`: the order of the rest stays a function
        // of the seed and the history only.
        let shard = self.ready.remove(pick);
        if let Some(runtime) = &self.runtime {
            let inner = runtime.inner();
            if inner.run_shard(shard) {
                inner.scheduler.push(shard);
            }
        }
        true
    }

    /// Steps the syncers, the checkpointer and the egress appender once
    /// each, without waiting; returns whether any had something to do.
    fn pump(&mut self) -> bool {
        let Some(background) = &mut self.background else {
            return false;
        };
        let mut any = false;
        let mut step = |service: &mut Box<dyn Service>| {
            let step = service.step(Duration::ZERO);
            any |= step == Step::Worked;
            step != Step::Done
        };
        background.syncers.retain_mut(&mut step);
        if let Some(checkpointer) = &mut background.checkpointer
            && !step(checkpointer)
        {
            background.checkpointer = None;
        }
        if let Some(appender) = &mut background.appender
            && !step(appender)
        {
            background.appender = None;
        }
        any
    }

    /// Queues the timers due by the virtual clock; returns whether there
    /// were any.
    fn fire_due_timers(&mut self) -> bool {
        self.background
            .as_mut()
            .is_some_and(|b| b.timers.step(Duration::ZERO) == Step::Worked)
    }

    /// Steps until nothing is ready; returns how many steps it took. Timers
    /// not yet due stay armed.
    ///
    /// # Panics
    ///
    /// After [`max_steps`](TestBuilder::max_steps) steps without becoming
    /// idle: handlers that answer every message with another one would
    /// otherwise run forever.
    pub fn run_until_idle(&mut self) -> usize {
        let mut steps = 0;
        while self.step() {
            steps += 1;
            assert!(
                steps < self.max_steps,
                "the runtime did not become idle within {} steps: do handlers keep sending \
                 each other messages? (raise the bound with `TestBuilder::max_steps`)",
                self.max_steps
            );
        }
        steps
    }

    /// Moves the virtual clock forward by `by`, firing each timer that falls
    /// due at its due time (handlers see that time), and runs until idle.
    pub fn advance(&mut self, by: Duration) {
        let by_ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        let target = self.now_ms().saturating_add(by_ms);
        loop {
            self.run_until_idle();
            let Some(runtime) = &self.runtime else { return };
            match runtime.inner().timers.next_due() {
                Some(due) if due <= target => {
                    self.clock.advance_to(due);
                    self.fire_due_timers();
                }
                _ => break,
            }
        }
        self.clock.advance_to(target);
        self.run_until_idle();
    }

    /// The current state of instance `id` of `T`: `None` if it has none (never
    /// written, or removed by expiry). Reads committed and in-flight batches
    /// alike: call it when idle.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidAddress`] for an invalid id, [`Error::State`] if the
    /// stored state cannot be decoded, [`Error::Storage`] if it cannot be read.
    pub fn state<T: StatefulFunction>(&self, id: &str) -> Result<Option<T>, Error> {
        let address = Address::new(T::type_name(), id)?;
        let inner = self.runtime().inner();
        let Some(shard) = inner.shard(address.shard_id(inner.shard_count())) else {
            return Ok(None);
        };
        let mut core = shard.core.lock();
        match core.states.get(&address)? {
            None => Ok(None),
            Some(bytes) => crate::function::decode_state_of::<T>(id, bytes).map(Some),
        }
    }

    /// Every message handlers sent and committed so far, in commit order
    /// (crashes do not clear it: a message sent before a crash stays sent).
    pub fn sent(&self) -> &[SentMessage] {
        &self.sent
    }

    /// Takes the recorded messages, leaving none.
    pub fn take_sent(&mut self) -> Vec<SentMessage> {
        std::mem::take(&mut self.sent)
    }

    /// Every record of egress log `log`, in offset order. Appends run as
    /// steps: call it when idle.
    ///
    /// # Errors
    ///
    /// As [`Runtime::read_egress`].
    pub fn egress(&self, log: &str) -> Result<Vec<EgressRecord>, Error> {
        crate::egress::check_name(log)?;
        self.runtime().inner().egress.read(log, 0, usize::MAX)
    }

    /// The dead letters, as [`Runtime::dead_letters`].
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.runtime().dead_letters_now()
    }

    /// Replays a dead letter and runs until idle, as
    /// [`Runtime::replay_dead_letter`].
    ///
    /// # Errors
    ///
    /// [`Error::UnknownDeadLetter`] if there is no such dead letter.
    pub fn replay_dead_letter(&mut self, id: DeadLetterId) -> Result<(), Error> {
        let runtime = self.runtime().clone();
        self.call(runtime.replay_dead_letter(id))?;
        self.run_until_idle();
        Ok(())
    }

    /// Drops a dead letter, as [`Runtime::drop_dead_letter`].
    ///
    /// # Errors
    ///
    /// [`Error::UnknownDeadLetter`] if there is no such dead letter.
    pub fn drop_dead_letter(&mut self, id: DeadLetterId) -> Result<(), Error> {
        let runtime = self.runtime().clone();
        self.call(runtime.drop_dead_letter(id))
    }

    /// Asks every shard to checkpoint and runs until idle: later recoveries
    /// start from the checkpoint instead of the start of the log. Shards
    /// with changes also checkpoint on their own once the checkpoint
    /// interval (60 s) has passed on the virtual clock.
    pub fn checkpoint(&mut self) {
        if let Some(runtime) = &self.runtime {
            let inner = runtime.inner();
            for shard in inner.shard_ids() {
                inner.request_checkpoint(shard);
            }
        }
        self.run_until_idle();
    }

    /// Crashes the runtime and opens it again from its data directory, as a
    /// killed process restarted. Lost: queued mail, batches not committed,
    /// checkpoints not written, egress records not appended (the shards send
    /// them again). Kept: everything committed. Calls in flight fail with
    /// [`Error::ShuttingDown`]; timers keep their due times on the same
    /// clock. Take new handles afterwards.
    ///
    /// # Errors
    ///
    /// As [`Builder::open`], if recovery fails (then the runtime stays down).
    pub fn crash(&mut self) -> Result<(), Error> {
        self.crashes += 1;
        if let Some(runtime) = self.runtime.take() {
            runtime.inner().crash();
        }
        // Batches not committed, checkpoints not written, egress records not
        // appended: they go with the services.
        self.background = None;
        self.ready.clear();
        self.committed.lock().clear();
        self.reopen()
    }

    /// Shuts down cleanly (in-flight work finishes, every shard
    /// checkpoints) and opens the runtime again.
    ///
    /// # Errors
    ///
    /// As [`Builder::open`].
    pub fn restart(&mut self) -> Result<(), Error> {
        self.shutdown_in_place();
        self.reopen()
    }

    /// Shuts down cleanly, keeping the data directory (if it was given).
    pub fn shutdown(mut self) {
        self.shutdown_in_place();
    }

    fn shutdown_in_place(&mut self) {
        if let Some(runtime) = &self.runtime {
            runtime.inner().refuse_new_calls();
        }
        self.checkpoint();
        if let Some(runtime) = self.runtime.take() {
            runtime.inner().stop_and_join();
        }
        self.background = None;
        self.ready.clear();
    }

    fn reopen(&mut self) -> Result<(), Error> {
        let committed = Arc::clone(&self.committed);
        let observer: CommitObserver = Arc::new(move |records: &[Vec<u8>]| {
            committed.lock().extend(records.iter().cloned());
        });
        let (runtime, background) = open_manual(self.plan.clone(), &self.clock, observer)?;
        self.runtime = Some(runtime);
        self.background = Some(background);
        Ok(())
    }

    /// Moves newly committed records' sent messages into `sent`.
    fn collect_sent(&mut self) {
        let Some(runtime) = &self.runtime else { return };
        let inner = runtime.inner();
        let records = std::mem::take(&mut *self.committed.lock());
        let now = self.clock.now_ms();
        let json = |to: &Address, message: &[u8]| {
            inner
                .registry
                .get(to.type_name())
                .and_then(|f| f.message_to_json(message))
                .unwrap_or(serde_json::Value::Null)
        };
        for bytes in records {
            let Ok(ShardRecord {
                entry: Entry::Invocation(record),
                ..
            }) = decode::<ShardRecord>(&bytes, "a committed record")
            else {
                continue;
            };
            for sent in record.sent.iter().filter(|s| s.attempt == 0) {
                self.sent.push(SentMessage {
                    from: record.target.clone(),
                    to: sent.target.clone(),
                    message: json(&sent.target, &sent.message),
                    delay: Duration::ZERO,
                    at_ms: now,
                });
            }
            for timer in record
                .timers
                .iter()
                .filter(|t| !t.expiry && t.outgoing.attempt == 0)
            {
                self.sent.push(SentMessage {
                    from: record.target.clone(),
                    to: timer.outgoing.target.clone(),
                    message: json(&timer.outgoing.target, &timer.outgoing.message),
                    delay: Duration::from_millis(timer.due_ms.saturating_sub(now)),
                    at_ms: now,
                });
            }
        }
    }
}

impl Drop for TestRuntime {
    fn drop(&mut self) {
        // Release fjall and the directory lock before the temporary directory
        // is deleted.
        if let Some(runtime) = self.runtime.take() {
            runtime.inner().stop_and_join();
        }
        self.background = None;
    }
}
