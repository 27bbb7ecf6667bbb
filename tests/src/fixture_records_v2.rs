//! The data directory of format 2 holding values of **record version 2**,
//! checked in under `tests/fixtures/data-v2-records-v2/`, and the functions
//! that wrote it (frozen: a fixture is read by the functions that wrote it,
//! so never change them; a new format gets a new fixture).
//!
//! `tests/fixtures/data-v2/` holds records of version 1. Version 2 added
//! keyed and periodic timers (and timers named by their slot), request/reply
//! that can fail (a reply route with the reply's message prefix, here with a
//! correlation value, and the caller's timeout timer; the timer guard a
//! reply carries), the stored outcome of an enqueued invocation, the
//! provenance of every message, and the `Deleted` entry: this fixture holds
//! each of them, in the checkpoint's tables and in the log.
//!
//! [`write()`] made it, run by `cargo run -p statefn-tests --bin
//! write-fixture-records-v2` at the commit that added it;
//! `tests/format_records_v2.rs` reads it back (decoded contents: states,
//! pending timers with their keys, dead letters, egress records, invocation
//! outcomes, the outbox), and every later build must read it the same way.
//!
//! | when | what | where it ends up |
//! | --- | --- | --- |
//! | phase 1 | vault deposits; `desk-1` sets its timers (`tick` every 10 min, `idle` in 1 h) and asks `v-1` (answered); an invocation enqueued for later (`k-later-1`, in 2 h); two enqueued invocations that fail (`k-early-1`, `k-early-2`: dead letters); sessions `s-1`, `s-2` hit (expiry in 1 h); `desk-2` asks `v-2`, frozen in flight with the checkpoint | checkpoint: keyed, periodic, invocation, reply and expiry timers; the outbox entry with its reply route; a pending egress record (`asks`); dead letters; stored outcomes |
//! | phase 2 (a minute later) | enqueued invocations that run (`k-done`), wait (`k-later-2`), are cancelled (`k-cancelled`) and fail (`k-failed`); `k-early-2` replayed (fails again); `desk-3` sets its timers and cancels `idle`; `desk-gone` sets its timers and is deleted; `desk-3` asks `v-1` (answered); 30 minutes later `s-2` is hit again; 61 minutes into the phase, `tick`s have fired (egress `ticks`), `desk-1`'s `idle` has fired, `s-1` has expired, `s-2`'s expiry is armed again; last, `desk-1` asks `v-2` and the writer is killed before `v-2` runs it | the log only (no checkpoint, no shutdown) |

use std::{
    path::Path,
    time::{Duration, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use statefn::{Error, RequestFailed, RetryPolicy, prelude::*, testing::TestRuntime};

/// When phase 1 runs: 2026-06-01T00:00:00Z.
pub const PHASE_1_MS: u64 = 1_780_272_000_000;
/// When phase 2 starts (a minute later).
pub const PHASE_2_MS: u64 = PHASE_1_MS + 60_000;
/// When the writer was killed: 61 minutes into phase 2.
pub const KILLED_MS: u64 = PHASE_2_MS + 61 * 60_000;
/// The seed of every phase.
pub const SEED: u64 = 3;
/// Shards of the directory.
pub const SHARDS: u16 = 4;
/// How long a request waits for its reply.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);
/// How far in the future the invocations enqueued for later run.
pub const LATER: Duration = Duration::from_secs(2 * 3600);
/// The period of a desk's `tick`.
pub const TICK: Duration = Duration::from_secs(600);
/// When a desk's `idle` runs, after `open`.
pub const IDLE: Duration = Duration::from_secs(3600);

/// A vault: a balance, and a handler that always fails.
#[stateful_function(name = "r2.Vault")]
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vault {
    /// The balance.
    pub balance: i64,
}

#[stateful_function]
impl Vault {
    /// Adds `amount`.
    #[handler]
    pub fn deposit(&mut self, amount: i64) -> i64 {
        self.balance += amount;
        self.balance
    }

    /// The balance.
    #[handler]
    pub fn balance(&self) -> i64 {
        self.balance
    }

    /// Always fails (an enqueued one becomes a dead letter).
    #[handler]
    pub fn refuse(&mut self, why: String) {
        panic!("refused: {why}");
    }
}

/// One tick of a desk's periodic timer (egress log `ticks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick {
    /// The desk.
    pub desk: String,
    /// Its tick count.
    pub n: u32,
}

/// A desk asks vaults for their balances and keeps timers.
#[stateful_function(name = "r2.Desk")]
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desk {
    /// The answers to its requests: (vault, balance or why none).
    pub told: Vec<(String, Result<i64, String>)>,
    /// Ticks so far.
    pub ticks: u32,
    /// Times its `idle` timer ran.
    pub idled: u32,
}

#[stateful_function]
impl Desk {
    /// Asks vault `of` for its balance (the answer in `told`, or a
    /// timeout), and emits `of` to `asks`.
    #[handler]
    pub fn ask(&mut self, ctx: &mut Context, of: String) {
        ctx.request::<Vault>(&of)
            .balance()
            .timeout(REQUEST_TIMEOUT)
            .reply_to_with(DeskMessage::told(), of.clone());
        ctx.emit("asks", &of);
    }

    /// The answer to `ask`.
    #[handler(internal)]
    pub fn told(&mut self, of: String, balance: Result<i64, RequestFailed>) {
        self.told.push((of, balance.map_err(|e| e.to_string())));
    }

    /// Sets its timers: `tick` every 10 minutes, `idle` in an hour.
    #[handler]
    pub fn open(&mut self, ctx: &mut Context) {
        ctx.timer::<Desk>("tick").every(TICK).tick();
        ctx.timer::<Desk>("idle").after(IDLE).idle();
    }

    /// Cancels its `idle` timer.
    #[handler]
    pub fn stay(&mut self, ctx: &mut Context) {
        ctx.cancel_timer("idle");
    }

    /// A tick: counted, and emitted to `ticks`.
    #[handler(internal)]
    pub fn tick(&mut self, ctx: &mut Context) {
        self.ticks += 1;
        let desk = ctx.id().to_owned();
        ctx.emit(
            "ticks",
            &Tick {
                desk,
                n: self.ticks,
            },
        );
    }

    /// Its `idle` timer ran.
    #[handler(internal)]
    pub fn idle(&mut self) {
        self.idled += 1;
    }
}

/// A session removed after an hour without a change.
#[stateful_function(name = "r2.Session", expire_after = "1h")]
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

/// How every phase (and every reader) is configured, at `at_ms`.
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
        .register::<Vault>()
        .register::<Desk>()
        .register::<Session>()
}

fn failed(what: &str) -> Error {
    Error::Config(format!("the fixture's writer: {what}"))
}

/// Writes the fixture into `dir` (which must be empty or absent).
///
/// # Errors
///
/// Whatever the runtime reports, or a step that did not do what it should.
pub fn write(dir: &Path) -> Result<(), Error> {
    // Phase 1: into the checkpoint.
    let mut rt = builder(dir, PHASE_1_MS).start()?;
    for (vault, amount) in [("v-1", 100), ("v-2", 50), ("v-3", 10)] {
        rt.call(rt.handle::<Vault>(vault).deposit(amount))?;
    }
    rt.call(rt.handle::<Desk>("desk-1").open())?;
    rt.call(rt.handle::<Desk>("desk-1").ask("v-1".into()))?;
    rt.call(
        rt.handle::<Vault>("v-1")
            .deposit(7)
            .idempotency_key("k-later-1")
            .send_after(LATER),
    )?;
    for key in ["k-early-1", "k-early-2"] {
        rt.call(
            rt.handle::<Vault>("v-3")
                .refuse(key.into())
                .idempotency_key(key)
                .send(),
        )?;
    }
    rt.call(rt.handle::<Session>("s-1").hit())?;
    rt.call(rt.handle::<Session>("s-2").hit())?;
    rt.run_until_idle();
    if rt.dead_letters().len() != 2 {
        return Err(failed("k-early-1 and k-early-2 are not dead letters"));
    }
    // Frozen in the same batch as the checkpoint request: its outbox entry
    // (with its reply route), its reply timer and its egress record are in
    // the checkpoint.
    let in_flight = rt.start(rt.handle::<Desk>("desk-2").ask("v-2".into()));
    rt.checkpoint();
    in_flight
        .take()
        .ok_or_else(|| failed("desk-2's request was not sent"))??;
    rt.run_until_idle();

    // Phase 2: in the log only.
    rt.advance(Duration::from_millis(PHASE_2_MS - rt.now_ms()));
    rt.call(
        rt.handle::<Vault>("v-1")
            .deposit(5)
            .idempotency_key("k-done")
            .send(),
    )?;
    rt.call(
        rt.handle::<Vault>("v-2")
            .deposit(9)
            .idempotency_key("k-later-2")
            .send_after(LATER),
    )?;
    let cancelled = rt.call(
        rt.handle::<Vault>("v-2")
            .deposit(1000)
            .idempotency_key("k-cancelled")
            .send_after(LATER),
    )?;
    let runtime = rt.runtime().clone();
    rt.call(async move { runtime.cancel_invocation(&cancelled).await })?;
    rt.call(
        rt.handle::<Vault>("v-3")
            .refuse("k-failed".into())
            .idempotency_key("k-failed")
            .send(),
    )?;
    rt.run_until_idle();
    let early_2 = rt
        .dead_letters()
        .into_iter()
        .find(|l| l.message["refuse"]["why"] == "k-early-2")
        .ok_or_else(|| failed("k-early-2 is not a dead letter"))?;
    rt.replay_dead_letter(early_2.id)?;
    rt.call(rt.handle::<Desk>("desk-3").open())?;
    rt.call(rt.handle::<Desk>("desk-3").stay())?;
    rt.call(rt.handle::<Desk>("desk-gone").open())?;
    let runtime = rt.runtime().clone();
    if !rt.call(async move { runtime.delete_instance("r2.Desk", "desk-gone").await })? {
        return Err(failed("desk-gone had nothing to delete"));
    }
    rt.call(rt.handle::<Desk>("desk-3").ask("v-1".into()))?;
    rt.run_until_idle();
    rt.advance(Duration::from_secs(30 * 60));
    rt.call(rt.handle::<Session>("s-2").hit())?;
    rt.advance(Duration::from_millis(KILLED_MS - rt.now_ms()));
    // The last request commits; its receiver has not run it when the
    // writer is killed (no shutdown, no checkpoint).
    let mut last = rt.start(rt.handle::<Desk>("desk-1").ask("v-2".into()));
    while last.result().is_none() {
        if !rt.step() {
            return Err(failed("desk-1's last request never committed"));
        }
    }
    last.take()
        .ok_or_else(|| failed("desk-1's last request did not finish"))??;
    drop(rt);
    Ok(())
}
