//! Model-based property test: random sequences of deposits, transfers,
//! injected fsync failures and restarts against a durable runtime, checked
//! against a sequential model. Every call has its own idempotency key and is
//! retried (with that key) until it succeeds, as a client would: each must be
//! applied exactly once, and money is conserved.
//!
//! `PROPTEST_CASES=256 cargo test --test model_bank` runs more cases.

use std::{future::IntoFuture, sync::Arc, time::Duration};

use proptest::prelude::*;
use statefn::prelude::*;
use statefn_examples::bank::Account;
use statefn_store::{Faults, FaultyFs, StdFs};

const ACCOUNTS: usize = 4;

#[derive(Debug, Clone)]
enum Step {
    Deposit {
        account: usize,
        amount: i64,
    },
    Transfer {
        from: usize,
        to: usize,
        amount: i64,
    },
    /// The disk starts failing every fsync; it heals when a call notices.
    FailSyncs,
    /// Clean shutdown and reopen.
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..ACCOUNTS, 1..100i64).prop_map(|(account, amount)| Step::Deposit { account, amount }),
        3 => (0..ACCOUNTS, 0..ACCOUNTS, 1..50i64)
            .prop_map(|(from, to, amount)| Step::Transfer { from, to, amount }),
        1 => Just(Step::FailSyncs),
        1 => Just(Step::Restart),
    ]
}

fn name(i: usize) -> String {
    format!("acct-{i}")
}

async fn open(dir: &std::path::Path, fs: &Arc<FaultyFs>) -> Runtime {
    Runtime::builder()
        .data_dir(dir)
        .shards(4)
        .log_groups(2)
        .file_system(fs.clone())
        .register::<Account>()
        .open()
        .await
        .expect("open")
}

/// Retries `call` with the same key until it succeeds, healing the disk when
/// the runtime reports it unavailable; returns the answer and whether it was
/// refused at least once.
async fn until_ok<T, F, Fut>(faults: &Faults, mut call: F) -> (T, bool)
where
    F: FnMut() -> Fut,
    Fut: IntoFuture<Output = Result<T, Error>>,
{
    for attempt in 0..2_000 {
        // A call must answer (with an error at worst): a hang is a bug.
        let answer = tokio::time::timeout(Duration::from_secs(30), call().into_future())
            .await
            .expect("a call got no answer within 30 s");
        match answer {
            Ok(v) => return (v, attempt > 0),
            Err(Error::Unavailable { .. } | Error::Overloaded { .. }) => {
                faults.heal();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    panic!("a call never succeeded");
}

async fn run(steps: Vec<Step>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = Arc::new(FaultyFs::new(Arc::new(StdFs)));
    let faults = fs.faults();
    let mut runtime = open(dir.path(), &fs).await;
    let mut model = [0i64; ACCOUNTS];
    // Set by `FailSyncs` until a call or a restart: the next call must meet
    // the failure (or the step tested nothing).
    let mut failing = false;
    for (i, step) in steps.iter().enumerate() {
        let key = format!("step-{i}");
        match *step {
            Step::Deposit { account, amount } => {
                let handle = runtime.handle::<Account>(name(account));
                let (reply, refused) =
                    until_ok(&faults, || handle.deposit(amount).idempotency_key(&key)).await;
                reply.expect("a positive amount");
                assert!(
                    refused || !failing,
                    "step {i}: the failing disk went unnoticed"
                );
                failing = false;
                model[account] += amount;
            }
            Step::Transfer { from, to, amount } => {
                let handle = runtime.handle::<Account>(name(from));
                let (result, refused) = until_ok(&faults, || {
                    handle.transfer(name(to), amount).idempotency_key(&key)
                })
                .await;
                assert!(
                    refused || !failing,
                    "step {i}: the failing disk went unnoticed"
                );
                failing = false;
                // The reply is the model's verdict: refused iff funds lacked.
                assert_eq!(result.is_ok(), model[from] >= amount, "step {i}: {step:?}");
                if result.is_ok() {
                    model[from] -= amount;
                    model[to] += amount;
                }
            }
            Step::FailSyncs => {
                faults.fail_syncs();
                failing = true;
            }
            Step::Restart => {
                faults.heal();
                failing = false;
                runtime.shutdown().await.expect("shutdown");
                runtime = open(dir.path(), &fs).await;
            }
        }
    }
    faults.heal();
    // Transfers' deposits arrive as messages: wait until they have.
    let mut balances = [0i64; ACCOUNTS];
    for _ in 0..2_000 {
        for (a, balance) in balances.iter_mut().enumerate() {
            let handle = runtime.handle::<Account>(name(a));
            *balance = until_ok(&faults, || handle.balance()).await.0;
        }
        if balances == model {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        balances, model,
        "balances differ from the model after {steps:?}"
    );
    runtime.shutdown().await.expect("shutdown");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(12),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_acknowledged_call_applies_once_through_faults_and_restarts(
        steps in proptest::collection::vec(step(), 1..40)
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio");
        rt.block_on(run(steps));
    }
}
