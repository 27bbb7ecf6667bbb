// Over 500 lines because every public method carries a runnable example;
// the driving is in `driver.rs`, the builder in `builder.rs`.

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
//!     #[handler]
//!     pub fn set(&mut self, ctx: &mut Context, after_secs: u64) {
//!         ctx.send_after::<Reminder>(Duration::from_secs(after_secs), ctx.id()).fire();
//!     }
//!     #[handler]
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

mod builder;
mod driver;
mod process_crash_fs;
mod sent;

use parking_lot::Mutex;
use rand::{Rng, rngs::StdRng};

pub use self::builder::TestBuilder;
pub use self::sent::SentMessage;
pub use crate::commit::store_faults::StoreFaults;
use crate::{
    Address, DeadLetter, DeadLetterId, EgressRecord, Error, Handle, Runtime, StatefulFunction,
    clock::Clock,
    protocol::ids::ShardId,
    runtime::{builder::Plan, open::Background},
};

/// Where the virtual clock starts by default: 2026-01-01T00:00:00Z.
pub const DEFAULT_START_MS: u64 = 1_767_225_600_000;

/// The seed used when none is given.
pub const DEFAULT_SEED: u64 = 0;

/// Steps [`TestRuntime::run_until_idle`] takes at most by default before it
/// reports handlers that never stop sending each other messages.
pub const DEFAULT_MAX_STEPS: usize = 1_000_000;

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

impl TestRuntime {
    /// A runtime not yet opened (see [`TestBuilder::start`]).
    fn new(
        seed: u64,
        start_ms: u64,
        max_steps: usize,
        plan: Plan,
        path: PathBuf,
        temp: Option<tempfile::TempDir>,
    ) -> Self {
        TestRuntime {
            runtime: None,
            background: None,
            ready: Vec::new(),
            committed: Arc::new(Mutex::new(Vec::new())),
            plan,
            clock: Clock::virtual_at(start_ms),
            rng: rand::SeedableRng::seed_from_u64(seed),
            seed,
            path,
            _temp: temp,
            sent: Vec::new(),
            crashes: 0,
            max_steps,
        }
    }
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
            file_system_given: false,
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
    #[expect(
        clippy::expect_used,
        reason = "documented: a test cannot go on without its runtime"
    )]
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
    /// # impl Counter { #[handler] pub fn add(&mut self, by: u64) -> u64 { self.n += by; self.n } }
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
    /// As [`Builder::open`](crate::Builder::open), if recovery fails (then the runtime stays down).
    pub fn crash(&mut self) -> Result<(), Error> {
        self.crash_with(|| {})
    }

    /// [`crash`](Self::crash), running `at_crash` after everything stopped
    /// and before the data directory is opened again: the place for a
    /// simulated power cut (`statefn_store::Faults::power_cut`), which
    /// drops what no fsync covered.
    ///
    /// # Errors
    ///
    /// As [`crash`](Self::crash).
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
    /// # impl Counter { #[handler] pub fn add(&mut self, by: u64) -> u64 { self.n += by; self.n } }
    /// use statefn::testing::TestRuntime;
    ///
    /// # fn main() -> Result<(), statefn::Error> {
    /// let mut rt = TestRuntime::builder().register::<Counter>().start()?;
    /// rt.call(rt.handle::<Counter>("c").add(2))?;
    /// let mut stopped = false;
    /// rt.crash_with(|| stopped = true)?;
    /// assert!(stopped);
    /// assert_eq!(rt.state::<Counter>("c")?, Some(Counter { n: 2 }));
    /// # Ok(())
    /// # }
    /// ```
    pub fn crash_with(&mut self, at_crash: impl FnOnce()) -> Result<(), Error> {
        self.crashes += 1;
        if let Some(runtime) = self.runtime.take() {
            runtime.inner().crash();
        }
        // Batches not committed, checkpoints not written, egress records not
        // appended: they go with the services.
        self.background = None;
        self.ready.clear();
        self.committed.lock().clear();
        at_crash();
        self.reopen()
    }

    /// Shuts down cleanly (in-flight work finishes, every shard
    /// checkpoints) and opens the runtime again.
    ///
    /// # Errors
    ///
    /// As [`Builder::open`](crate::Builder::open).
    pub fn restart(&mut self) -> Result<(), Error> {
        self.shutdown_in_place();
        self.reopen()
    }

    /// Shuts down cleanly, keeping the data directory (if it was given).
    pub fn shutdown(mut self) {
        self.shutdown_in_place();
    }
}

impl Drop for TestRuntime {
    fn drop(&mut self) {
        // Release fjall and the directory lock before the temporary directory
        // is deleted.
        if let Some(runtime) = self.runtime.take() {
            runtime.inner().stop_and_join(None);
        }
        self.background = None;
    }
}
