//! Function types shared by the integration tests.

pub mod fixture_dirs;
pub mod fixture_records_v2;
pub mod fixture_v2;
pub mod nats;
pub mod ports;
pub mod seeds;
pub mod wal_files;

use serde::{Deserialize, Serialize};
use statefn::prelude::*;

/// Records every message it receives, in arrival order.
#[stateful_function(name = "test.Recorder")]
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Recorder {
    seen: Vec<(String, u64)>,
}

#[stateful_function]
impl Recorder {
    /// Records `(from, n)`.
    #[handler]
    pub fn record(&mut self, from: String, n: u64) {
        self.seen.push((from, n));
    }

    /// Everything recorded so far.
    #[handler]
    pub fn seen(&self) -> Vec<(String, u64)> {
        self.seen.clone()
    }
}

/// Sends numbered messages to a `Recorder`.
#[stateful_function(name = "test.Emitter")]
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Emitter {
    next: u64,
}

#[stateful_function]
impl Emitter {
    /// Sends `count` messages numbered on from where the last call stopped.
    #[handler]
    pub fn emit(&mut self, ctx: &mut Context, to: String, count: u64) -> u64 {
        let me = ctx.id().to_owned();
        for _ in 0..count {
            ctx.send::<Recorder>(&to).record(me.clone(), self.next);
            self.next += 1;
        }
        self.next
    }

    /// Sends one message after `delay_ms`.
    #[handler]
    pub fn emit_later(&mut self, ctx: &mut Context, to: String, delay_ms: u64) {
        let me = ctx.id().to_owned();
        ctx.send_after::<Recorder>(std::time::Duration::from_millis(delay_ms), &to)
            .record(me, self.next);
        self.next += 1;
    }
}

/// Changes its state and sends a message, then fails in various ways.
#[stateful_function(name = "test.Fragile")]
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Fragile {
    value: i64,
}

#[stateful_function]
impl Fragile {
    /// Sets the value.
    #[handler]
    pub fn set(&mut self, value: i64) -> i64 {
        self.value = value;
        self.value
    }

    /// Changes the state, sends a message to `witness`, then panics.
    #[handler]
    pub fn set_then_panic(&mut self, ctx: &mut Context, value: i64, witness: String) {
        self.value = value;
        ctx.send::<Recorder>(&witness).record("fragile".into(), 1);
        panic!("boom at {value}");
    }

    /// Changes the state, sends a message to `witness`, then returns `Err`.
    #[handler]
    pub fn set_then_fail(
        &mut self,
        ctx: &mut Context,
        value: i64,
        witness: String,
    ) -> Result<i64, String> {
        self.value = value;
        ctx.send::<Recorder>(&witness).record("fragile".into(), 2);
        Err(format!("refused {value}"))
    }

    /// The value.
    #[handler]
    pub fn value(&self) -> i64 {
        self.value
    }
}

/// Polls `probe` until it returns `Some`, failing the test after `secs`
/// seconds (a deadline for a hang, not a timing assertion).
///
/// # Panics
///
/// When the deadline passes.
pub async fn eventually<T, F, Fut>(secs: u64, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within {secs} s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// An account that remembers which operations it applied, so a test can
/// prove each was applied exactly once (not just that balances add up).
#[stateful_function(name = "test.Ledger")]
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    /// The balance.
    pub balance: i64,
    /// Operation ids applied here, in order (`op-7`, `op-9/in`, ...).
    pub applied: Vec<String>,
}

#[stateful_function]
impl Ledger {
    /// Adds `amount`, recording `op` here and in the `deposits` egress log.
    #[handler]
    pub fn deposit(&mut self, ctx: &mut Context, op: String, amount: i64) -> i64 {
        self.balance += amount;
        ctx.emit("deposits", &op);
        self.applied.push(op);
        self.balance
    }

    /// Moves `amount` to `to`: the withdrawal here and the message that
    /// deposits it there (as `{op}/in`) commit together. Overdrafts are
    /// allowed, so that the outcome does not depend on operation order.
    #[handler]
    pub fn transfer(&mut self, ctx: &mut Context, op: String, to: String, amount: i64) -> i64 {
        self.balance -= amount;
        ctx.send::<Ledger>(&to).deposit(format!("{op}/in"), amount);
        self.applied.push(op);
        self.balance
    }

    /// As `transfer`, but the deposit arrives `delay_ms` later (a durable
    /// timer): the money is in flight meanwhile.
    #[handler]
    pub fn transfer_later(
        &mut self,
        ctx: &mut Context,
        op: String,
        to: String,
        amount: i64,
        delay_ms: u64,
    ) -> i64 {
        self.balance -= amount;
        ctx.send_after::<Ledger>(std::time::Duration::from_millis(delay_ms), &to)
            .deposit(format!("{op}/in"), amount);
        self.applied.push(op);
        self.balance
    }

    /// The whole state.
    #[handler]
    pub fn snapshot(&self) -> (i64, Vec<String>) {
        (self.balance, self.applied.clone())
    }
}

/// The crash workload's operations, derived from a seed so the parent and
/// every child run agree on them.
pub mod workload {
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// Accounts in the workload.
    pub const ACCOUNTS: usize = 24;
    /// What every account starts with.
    pub const OPENING_BALANCE: i64 = 1_000_000;

    /// One operation, identified by its index (its idempotency key is `op-{i}`).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Op {
        /// Deposit into an account.
        Deposit { account: usize, amount: i64 },
        /// Transfer between two accounts.
        Transfer { from: usize, to: usize, amount: i64 },
    }

    /// The account's id.
    pub fn account(i: usize) -> String {
        format!("acct-{i}")
    }

    /// The operations: openings first, then a seeded mix (one in three a transfer).
    pub fn ops(seed: u64, count: usize) -> Vec<Op> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut ops: Vec<Op> = (0..ACCOUNTS)
            .map(|account| Op::Deposit {
                account,
                amount: OPENING_BALANCE,
            })
            .collect();
        for _ in 0..count {
            let from = rng.random_range(0..ACCOUNTS);
            let amount = rng.random_range(1..100);
            if rng.random_range(0..3) == 0 {
                let to = (from + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
                ops.push(Op::Transfer { from, to, amount });
            } else {
                ops.push(Op::Deposit {
                    account: from,
                    amount,
                });
            }
        }
        ops
    }
}
