//! Power loss, not just a killed process: `FaultyFs::power_cut` drops every
//! byte and every new file that no successful fsync covered (a SIGKILL
//! keeps them in the page cache, so it cannot tell synced from written).
//! Every call answered before the cut must survive it.
//!
//! The second test is the proof that the first can fail: the same run on a
//! disk whose fsyncs do nothing (as a build with its `fdatasync` removed)
//! loses answered calls at the cut, and the check catches it.

use std::{sync::Arc, time::Duration};

use statefn::{Error, testing::TestRuntime};
use statefn_examples::bank::Account;
use statefn_store::{Faults, FaultyFs, StdFs};

const ACCOUNTS: usize = 6;

fn start(seed: u64) -> (TestRuntime, Faults) {
    let fs = Arc::new(FaultyFs::new(Arc::new(StdFs)));
    let faults = fs.faults();
    let rt = TestRuntime::builder()
        .seed(seed)
        .shards(3)
        .log_groups(2)
        // (Given a file system, the test runtime fsyncs every commit.)
        // No checkpoint during the run: what survives is what the log's
        // fsyncs made durable, nothing else.
        .checkpoint_interval(Duration::from_secs(24 * 60 * 60))
        .file_system(fs)
        .register::<Account>()
        .start()
        .expect("starts");
    (rt, faults)
}

/// Deposits `rounds` × [`ACCOUNTS`] answered calls, with a power cut after
/// each round; returns the answered deposits per account and the balances
/// read after the last cut.
fn deposit_through_power_cuts(
    rt: &mut TestRuntime,
    faults: &Faults,
    rounds: i64,
) -> Result<(Vec<i64>, Vec<i64>), Error> {
    let mut answered = vec![0; ACCOUNTS];
    for round in 1..=rounds {
        for (a, sum) in answered.iter_mut().enumerate() {
            let amount = round * 10 + i64::try_from(a).expect("small");
            rt.call(rt.handle::<Account>(format!("acct-{a}")).deposit(amount))?
                .expect("a positive amount");
            *sum += amount;
        }
        rt.crash_with(|| faults.power_cut().expect("the cut"))?;
    }
    let mut balances = Vec::new();
    for a in 0..ACCOUNTS {
        balances.push(rt.call(rt.handle::<Account>(format!("acct-{a}")).balance())?);
    }
    Ok((answered, balances))
}

#[test]
fn every_answered_call_survives_a_power_cut() -> Result<(), Error> {
    for seed in [1, 2, 3] {
        let (mut rt, faults) = start(seed);
        let (answered, balances) = deposit_through_power_cuts(&mut rt, &faults, 4)?;
        assert_eq!(balances, answered, "seed {seed}: balances after power cuts");
    }
    Ok(())
}

#[test]
fn a_disk_that_skips_fdatasync_loses_answered_calls_at_a_power_cut() -> Result<(), Error> {
    let (mut rt, faults) = start(1);
    faults.lie_about_syncs();
    let (answered, balances) = deposit_through_power_cuts(&mut rt, &faults, 4)?;
    assert!(
        balances.iter().zip(&answered).any(|(b, a)| b < a),
        "without fsyncs a power cut must lose answered calls, or the check \
         above proves nothing: balances {balances:?}, answered {answered:?}"
    );
    Ok(())
}
