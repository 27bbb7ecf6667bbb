//! Model-based property test on the deterministic test runtime: random
//! sequences of deposits, transfers, timer-delayed transfers, clock moves,
//! injected log-write failures, crashes and power cuts (also with a call in
//! flight) and clean restarts, checked against a sequential model after
//! every step.
//!
//! A power cut (`FaultyFs::power_cut`) drops every byte of the log that no
//! successful `fdatasync` covered, and every file whose directory entry was
//! not synced; a crash keeps them (the page cache survives a killed
//! process). So a missing or misdirected `fdatasync` in the log makes an
//! answered operation disappear here, and the final comparison fails.
//!
//! Every operation has its own id and idempotency key and is retried with
//! that key until it succeeds, as a client would. Checked: no operation is
//! ever applied twice (after every step); a delayed deposit is applied only
//! once its due time has passed, and then exactly once; at the end every
//! balance and every account's set of applied operations equal the model's,
//! and money is conserved. Each case is deterministic (the test runtime is
//! seeded), so a failure replays and shrinks to a short, readable list of
//! steps.
//!
//! `PROPTEST_CASES=512 cargo test --test model_ledger` runs more cases.
//! (`model_bank` runs the same idea on the threaded runtime with real
//! `fsync` failures.)

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use proptest::prelude::*;
use statefn::{Error, testing::TestRuntime};
use statefn_store::{Faults, FaultyFs, StdFs};
use statefn_tests::Ledger;

const ACCOUNTS: usize = 4;

/// One step of a test case.
#[derive(Debug, Clone)]
enum Step {
    Deposit {
        to: usize,
        amount: i64,
    },
    Transfer {
        from: usize,
        to: usize,
        amount: i64,
    },
    /// The deposit reaches `to` after `delay_ms` (a durable timer).
    TransferLater {
        from: usize,
        to: usize,
        amount: i64,
        delay_ms: u64,
    },
    /// Moves the virtual clock.
    Advance {
        ms: u64,
    },
    /// The `nth` log write from now fails (the log group recovers).
    FailWrite {
        nth: u64,
    },
    /// The process dies.
    Crash,
    /// The machine loses power: what no fsync covered is gone.
    PowerCut,
    /// A deposit is started, the runtime takes `steps` steps, the process
    /// dies (with `power`, the machine); the client then retries with the
    /// same key.
    CrashDuringDeposit {
        to: usize,
        amount: i64,
        steps: u8,
        power: bool,
    },
    /// Clean shutdown and reopen.
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    let account = 0..ACCOUNTS;
    prop_oneof![
        4 => (account.clone(), 1..100i64).prop_map(|(to, amount)| Step::Deposit { to, amount }),
        4 => (account.clone(), account.clone(), 1..50i64)
            .prop_map(|(from, to, amount)| Step::Transfer { from, to, amount }),
        3 => (account.clone(), account.clone(), 1..50i64, 1..5_000u64)
            .prop_map(|(from, to, amount, delay_ms)| Step::TransferLater { from, to, amount, delay_ms }),
        3 => (1..4_000u64).prop_map(|ms| Step::Advance { ms }),
        1 => (1..4u64).prop_map(|nth| Step::FailWrite { nth }),
        1 => Just(Step::Crash),
        2 => Just(Step::PowerCut),
        1 => (account, 1..100i64, 0..12u8, any::<bool>())
            .prop_map(|(to, amount, steps, power)| Step::CrashDuringDeposit { to, amount, steps, power }),
        1 => Just(Step::Restart),
    ]
}

fn name(i: usize) -> String {
    format!("acct-{i}")
}

/// What the accounts must hold, and the delayed deposits still in flight.
#[derive(Debug, Default)]
struct Model {
    balances: [i64; ACCOUNTS],
    applied: [BTreeSet<String>; ACCOUNTS],
    /// Delayed deposits: op id -> (due ms, account, amount).
    delayed: BTreeMap<String, (u64, usize, i64)>,
    /// Immediate transfer deposits, applied some steps later.
    in_flight: Vec<(String, usize, i64)>,
}

impl Model {
    fn apply(&mut self, account: usize, op: String, amount: i64) {
        self.balances[account] += amount;
        assert!(
            self.applied[account].insert(op),
            "model applied an op twice"
        );
    }
}

/// Runs `call` with the same key until it answers, as a retrying client:
/// `Unavailable` (a log group recovering) and `ShuttingDown` (a crash took
/// the call) are retried.
fn until_ok<T>(
    rt: &mut TestRuntime,
    mut call: impl FnMut(&mut TestRuntime) -> Result<T, Error>,
) -> T {
    for _ in 0..100 {
        match call(rt) {
            Ok(v) => return v,
            Err(Error::Unavailable { .. } | Error::ShuttingDown) => {
                rt.run_until_idle();
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    panic!("a call never succeeded");
}

/// Deposits with the operation id as idempotency key, retrying until done.
fn deposit(rt: &mut TestRuntime, to: usize, op: &str, amount: i64) {
    until_ok(rt, |rt| {
        rt.call(
            rt.handle::<Ledger>(name(to))
                .deposit(op.to_owned(), amount)
                .idempotency_key(op),
        )
    });
}

/// Every account's applied operations, with duplicates kept.
fn applied(rt: &TestRuntime) -> Vec<(i64, Vec<String>)> {
    (0..ACCOUNTS)
        .map(|a| {
            rt.state::<Ledger>(&name(a))
                .expect("state readable")
                .map_or((0, Vec::new()), |s| (s.balance, s.applied))
        })
        .collect()
}

/// Checked after every step: nothing applied twice, and no delayed deposit
/// applied before its time; the ones due are applied (once idle).
fn check_step(rt: &TestRuntime, model: &Model, step: usize) {
    let now = rt.now_ms();
    let accounts = applied(rt);
    let mut seen = BTreeSet::new();
    for (a, (_, ops)) in accounts.iter().enumerate() {
        for op in ops {
            assert!(
                seen.insert(op.clone()),
                "step {step}: {op} applied twice (at {a})"
            );
        }
    }
    for (op, &(due, to, _)) in &model.delayed {
        let landed = accounts[to].1.contains(op);
        assert_eq!(
            landed,
            due <= now,
            "step {step}: {op} due at {due}, now {now}: applied = {landed}"
        );
    }
}

/// The process dies and the machine loses power at once: the log keeps only
/// what its fsyncs covered. (A fault armed before stays armed.)
fn power_cut(rt: &mut TestRuntime, faults: &Faults) {
    rt.crash_with(|| faults.power_cut().expect("the cut"))
        .expect("recovers");
}

fn run(seed: u64, steps: &[Step]) {
    let fs = Arc::new(FaultyFs::new(Arc::new(StdFs)));
    let faults: Faults = fs.faults();
    let mut rt = TestRuntime::builder()
        .seed(seed)
        .log_groups(2)
        .file_system(fs)
        .register::<Ledger>()
        .start()
        .expect("starts");
    let mut model = Model::default();
    for (i, step) in steps.iter().enumerate() {
        let op = format!("op-{i}");
        match *step {
            Step::Deposit { to, amount } => {
                deposit(&mut rt, to, &op, amount);
                model.apply(to, op, amount);
            }
            Step::Transfer { from, to, amount } => {
                until_ok(&mut rt, |rt| {
                    rt.call(
                        rt.handle::<Ledger>(name(from))
                            .transfer(op.clone(), name(to), amount)
                            .idempotency_key(&op),
                    )
                });
                model.apply(from, op.clone(), -amount);
                model.in_flight.push((format!("{op}/in"), to, amount));
            }
            Step::TransferLater {
                from,
                to,
                amount,
                delay_ms,
            } => {
                let due = rt.now_ms() + delay_ms;
                until_ok(&mut rt, |rt| {
                    rt.call(
                        rt.handle::<Ledger>(name(from))
                            .transfer_later(op.clone(), name(to), amount, delay_ms)
                            .idempotency_key(&op),
                    )
                });
                model.apply(from, op.clone(), -amount);
                model.delayed.insert(format!("{op}/in"), (due, to, amount));
            }
            Step::Advance { ms } => rt.advance(Duration::from_millis(ms)),
            Step::FailWrite { nth } => faults.fail_nth_append(nth),
            Step::Crash => rt.crash().expect("recovers"),
            Step::PowerCut => power_cut(&mut rt, &faults),
            Step::CrashDuringDeposit {
                to,
                amount,
                steps,
                power,
            } => {
                let started = rt.start(
                    rt.handle::<Ledger>(name(to))
                        .deposit(op.clone(), amount)
                        .idempotency_key(&op),
                );
                for _ in 0..steps {
                    rt.step();
                }
                drop(started);
                if power {
                    power_cut(&mut rt, &faults);
                } else {
                    rt.crash().expect("recovers");
                }
                deposit(&mut rt, to, &op, amount);
                model.apply(to, op, amount);
            }
            Step::Restart => {
                faults.heal();
                rt.restart().expect("reopens");
            }
        }
        rt.run_until_idle();
        check_step(&rt, &model, i);
    }
    faults.heal();
    // Let every delayed deposit fall due, then compare everything.
    rt.advance(Duration::from_secs(10));
    let Model {
        mut balances,
        mut applied,
        delayed,
        in_flight,
    } = model;
    for (op, to, amount) in in_flight.into_iter().chain(
        delayed
            .into_iter()
            .map(|(op, (_, to, amount))| (op, to, amount)),
    ) {
        balances[to] += amount;
        applied[to].insert(op);
    }
    let actual = self::applied(&rt);
    for a in 0..ACCOUNTS {
        let ops: BTreeSet<String> = actual[a].1.iter().cloned().collect();
        assert_eq!(ops.len(), actual[a].1.len(), "duplicates at {a}");
        assert_eq!(ops, applied[a], "account {a}'s operations after {steps:?}");
        assert_eq!(
            actual[a].0, balances[a],
            "account {a}'s balance after {steps:?}"
        );
    }
    let deposited: i64 = steps
        .iter()
        .map(|s| match s {
            Step::Deposit { amount, .. } | Step::CrashDuringDeposit { amount, .. } => *amount,
            _ => 0,
        })
        .sum();
    assert_eq!(
        actual.iter().map(|(b, _)| b).sum::<i64>(),
        deposited,
        "money conserved"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_acknowledged_operation_applies_once_through_timers_faults_and_crashes(
        seed in any::<u64>(),
        steps in proptest::collection::vec(step(), 1..40),
    ) {
        run(seed, &steps);
    }
}
