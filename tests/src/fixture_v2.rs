//! The data directory of format 2 checked in under `tests/fixtures/data-v2/`,
//! and the functions that wrote it (frozen: a fixture is read by the
//! functions that wrote it, so never change them; a new format gets a new
//! fixture).
//!
//! [`write()`] made it, run by `cargo run -p statefn-tests --bin
//! write-fixture-v2` at the commit that added it. It holds log records of
//! every kind and checkpoint rows of every table, `tests/format_v2.rs` reads
//! it back, and every later build must read it the same way.
//!
//! | when | what | where it ends up |
//! | --- | --- | --- |
//! | phase 0 (`Profile` v1) | `p-old`, `p-new` named | checkpoint: states at version 1 |
//! | phase 1 | `p-new` visits (version 2), deposits, a transfer, an idempotent deposit (`idem-1`), a timer (`a-3` in 1 h), expiry timers (`s-1`, `s-2`), three dead letters (`d-1..3`), a transfer (`a-2` → `a-3`) frozen in flight: outbox entry and pending egress record | checkpoint |
//! | phase 2 | transfers, an idempotent one (`idem-2`), a timer (`a-0` in 2 h), a request with its reply, `s-2` hit again, a dead letter replayed (`d-2`) and one dropped (`d-3`); 61 minutes later: the timer of `a-3` fires, `s-1` expires, the expiry of `s-2` is armed again; another dead letter (`d-1`) | the log only (killed, no checkpoint) |

use std::{
    path::Path,
    time::{Duration, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use statefn::{Error, RetryPolicy, decode_state, prelude::*, testing::TestRuntime};

/// When phase 0 runs: 2026-03-01T00:00:00Z.
pub const PHASE_0_MS: u64 = 1_772_323_200_000;
/// When phases 1 and 2 start (a minute later).
pub const PHASE_1_MS: u64 = PHASE_0_MS + 60_000;
/// When the writer was killed: 61 minutes into phase 2.
pub const KILLED_MS: u64 = PHASE_1_MS + 61 * 60_000;
/// The seed of every phase.
pub const SEED: u64 = 2;
/// Shards of the directory.
pub const SHARDS: u16 = 4;

/// A refused withdrawal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("insufficient funds: balance {balance}, asked {asked}")]
pub struct Insufficient {
    /// The balance.
    pub balance: i64,
    /// What was asked.
    pub asked: i64,
}

/// The egress record of a transfer (log `moves`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    /// The sender.
    pub from: String,
    /// The receiver.
    pub to: String,
    /// How much.
    pub amount: i64,
}

/// An account that can be closed (then the messages it is sent fail).
#[stateful_function(name = "fx.Ledger")]
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// The balance.
    pub balance: i64,
    /// Closed: `guarded` panics.
    pub closed: bool,
    /// The last balance an `ask` was told.
    pub told: Option<i64>,
}

#[stateful_function]
impl Ledger {
    /// Adds `amount`.
    #[handler]
    pub fn deposit(&mut self, amount: i64) -> i64 {
        self.balance += amount;
        self.balance
    }

    /// Moves `amount` to `to` (a message) and emits it to `moves`.
    #[handler]
    pub fn transfer(
        &mut self,
        ctx: &mut Context,
        to: String,
        amount: i64,
    ) -> Result<i64, Insufficient> {
        if amount > self.balance {
            return Err(Insufficient {
                balance: self.balance,
                asked: amount,
            });
        }
        self.balance -= amount;
        ctx.send::<Ledger>(&to).deposit(amount);
        let from = ctx.id().to_owned();
        ctx.emit("moves", &Moved { from, to, amount });
        Ok(self.balance)
    }

    /// Deposits `amount` into itself after `after_secs` (a timer).
    #[handler]
    pub fn remind(&mut self, ctx: &mut Context, after_secs: u64, amount: i64) {
        ctx.send_after::<Ledger>(Duration::from_secs(after_secs), ctx.id())
            .deposit(amount);
    }

    /// Closes the account.
    #[handler]
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Opens it again.
    #[handler]
    pub fn reopen(&mut self) {
        self.closed = false;
    }

    /// Sends `guarded(1)` to `to`.
    #[handler]
    pub fn poke(&mut self, ctx: &mut Context, to: String) {
        ctx.send::<Ledger>(&to).guarded(1);
    }

    /// Adds `amount`; panics while closed.
    #[handler(internal)]
    pub fn guarded(&mut self, amount: i64) {
        assert!(!self.closed, "closed");
        self.balance += amount;
    }

    /// Asks `of` for its balance; the answer goes to `told`.
    #[handler]
    pub fn ask(&mut self, ctx: &mut Context, of: String) {
        ctx.request::<Ledger>(&of)
            .balance()
            .reply_to(LedgerMessage::told());
    }

    /// The answer to `ask`.
    #[handler(internal)]
    pub fn told(&mut self, balance: Result<i64, statefn::RequestFailed>) {
        self.told = balance.ok();
    }

    /// The balance.
    #[handler]
    pub fn balance(&self) -> i64 {
        self.balance
    }
}

/// A session removed after an hour without a change.
#[stateful_function(name = "fx.Session", expire_after = "1h")]
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Hits so far.
    pub hits: u32,
}

#[stateful_function]
impl Session {
    /// Counts a hit.
    #[handler]
    pub fn hit(&mut self) -> u32 {
        self.hits += 1;
        self.hits
    }
}

/// `fx.Profile` as version 1 stored it (phase 0).
pub mod v1 {
    use super::*;

    /// A profile, version 1.
    #[stateful_function(name = "fx.Profile")]
    #[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Profile {
        /// Its name.
        pub name: String,
    }

    #[stateful_function]
    impl Profile {
        /// Names it.
        #[handler]
        pub fn rename(&mut self, name: String) {
            self.name = name;
        }
    }
}

/// `fx.Profile`, version 2: counts visits; migrates version 1.
#[stateful_function(name = "fx.Profile", version = 2, migrate = Profile::from_older)]
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Its name.
    pub name: String,
    /// Visits since version 2.
    pub visits: u32,
}

impl Profile {
    fn from_older(version: u32, bytes: &[u8]) -> Result<Self, String> {
        match version {
            1 => decode_state::<v1::Profile>(bytes).map(|old| Profile {
                name: old.name,
                visits: 0,
            }),
            other => Err(format!("no migration from version {other}")),
        }
    }
}

#[stateful_function]
impl Profile {
    /// Names it.
    #[handler]
    pub fn rename(&mut self, name: String) {
        self.name = name;
    }

    /// Counts a visit.
    #[handler]
    pub fn visit(&mut self) -> u32 {
        self.visits += 1;
        self.visits
    }
}

/// How every phase (and every reader) is configured, at `at_ms`, with
/// `Profile` registered by the caller.
pub fn builder(dir: &Path, at_ms: u64) -> statefn::testing::TestBuilder {
    TestRuntime::builder()
        .data_dir(dir)
        .seed(SEED)
        .shards(SHARDS)
        .start_time(UNIX_EPOCH + Duration::from_millis(at_ms))
        .retry_policy(RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        })
        // Only the checkpoints asked for: phase 2 stays in the log.
        .checkpoint_interval(Duration::from_secs(10 * 365 * 24 * 3600))
        .register::<Ledger>()
        .register::<Session>()
}

/// Writes the fixture into `dir` (which must be empty or absent).
///
/// # Errors
///
/// Whatever the runtime reports.
pub fn write(dir: &Path) -> Result<(), Error> {
    // Phase 0: version 1 of `fx.Profile`, then a clean shutdown.
    let mut rt = builder(dir, PHASE_0_MS).register::<v1::Profile>().start()?;
    rt.call(rt.handle::<v1::Profile>("p-old").rename("old".into()))?;
    rt.call(rt.handle::<v1::Profile>("p-new").rename("new".into()))?;
    rt.shutdown();

    // Phase 1: into the checkpoint.
    let mut rt = builder(dir, PHASE_1_MS).register::<Profile>().start()?;
    rt.call(rt.handle::<Profile>("p-new").visit())?;
    for i in 0..4 {
        rt.call(rt.handle::<Ledger>(format!("a-{i}")).deposit(100))?;
    }
    ok(rt.call(rt.handle::<Ledger>("a-0").transfer("a-1".into(), 10))?)?;
    rt.call(
        rt.handle::<Ledger>("a-2")
            .deposit(5)
            .idempotency_key("idem-1"),
    )?;
    rt.call(rt.handle::<Ledger>("a-3").remind(3600, 7))?;
    rt.call(rt.handle::<Session>("s-1").hit())?;
    rt.call(rt.handle::<Session>("s-2").hit())?;
    for d in ["d-1", "d-2", "d-3"] {
        rt.call(rt.handle::<Ledger>(d).close())?;
        rt.call(rt.handle::<Ledger>("a-0").poke(d.into()))?;
    }
    // Frozen in the same batch as the checkpoint request: its outbox entry
    // and egress record are in the checkpoint, not yet acknowledged or
    // appended.
    let in_flight = rt.start(rt.handle::<Ledger>("a-2").transfer("a-3".into(), 20));
    rt.checkpoint();
    ok(in_flight
        .take()
        .ok_or_else(|| Error::Config("the transfer did not finish".into()))??)?;

    // Phase 2: in the log only.
    ok(rt.call(rt.handle::<Ledger>("a-1").transfer("a-0".into(), 15))?)?;
    ok(rt.call(
        rt.handle::<Ledger>("a-1")
            .transfer("a-0".into(), 1)
            .idempotency_key("idem-2"),
    )?)?;
    rt.call(rt.handle::<Ledger>("a-0").remind(7200, 3))?;
    rt.call(rt.handle::<Ledger>("a-0").ask("a-1".into()))?;
    rt.advance(Duration::from_secs(30 * 60));
    rt.call(rt.handle::<Session>("s-2").hit())?;
    rt.call(rt.handle::<Ledger>("d-2").reopen())?;
    for letter in rt.dead_letters() {
        match letter.target.id() {
            "d-2" => rt.replay_dead_letter(letter.id)?,
            "d-3" => rt.drop_dead_letter(letter.id)?,
            _ => {}
        }
    }
    rt.advance(Duration::from_secs(31 * 60));
    rt.call(rt.handle::<Ledger>("a-0").poke("d-1".into()))?;
    // Killed: no shutdown, no checkpoint.
    drop(rt);
    Ok(())
}

fn ok<T>(result: Result<T, Insufficient>) -> Result<T, Error> {
    result.map_err(|e| Error::Config(format!("the fixture's transfer failed: {e}")))
}
