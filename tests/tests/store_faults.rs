//! The state store (fjall) failing: checkpoints are retried with backoff,
//! not in a hot loop; the status says so; nothing answered is lost, since
//! the log is kept until a checkpoint succeeds.

use std::time::Duration;

use statefn::{
    Error,
    testing::{StoreFaults, TestRuntime},
};
use statefn_examples::bank::Account;

fn deposit(rt: &mut TestRuntime, amount: i64) -> Result<i64, Error> {
    Ok(rt
        .call(rt.handle::<Account>("a").deposit(amount))?
        .expect("a positive amount"))
}

#[test]
fn a_failing_state_store_is_retried_with_backoff_not_in_a_hot_loop() -> Result<(), Error> {
    let faults = StoreFaults::default();
    let mut rt = TestRuntime::builder()
        .shards(1)
        .store_faults(faults.clone())
        .register::<Account>()
        .start()?;
    deposit(&mut rt, 5)?;
    faults.fail_writes();
    // Without a backoff the failed checkpoint is frozen again at once, by
    // the batch its failure wakes, and again: the runtime never goes idle.
    rt.checkpoint();
    assert_eq!(faults.failed_writes(), 1, "one attempt, not a loop");
    assert_eq!(rt.runtime().shard_status()[0].checkpoint_failures, 1);

    // Batches within the backoff (100 ms) do not retry...
    deposit(&mut rt, 1)?;
    rt.advance(Duration::from_millis(99));
    deposit(&mut rt, 1)?;
    assert_eq!(faults.failed_writes(), 1);
    // ...the first after it does, and the next waits twice as long.
    rt.advance(Duration::from_millis(1));
    deposit(&mut rt, 1)?;
    assert_eq!(faults.failed_writes(), 2);
    rt.advance(Duration::from_millis(199));
    deposit(&mut rt, 1)?;
    assert_eq!(faults.failed_writes(), 2);
    rt.advance(Duration::from_millis(1));
    deposit(&mut rt, 1)?;
    assert_eq!(faults.failed_writes(), 3);
    assert_eq!(rt.runtime().shard_status()[0].checkpoint_failures, 3);

    // The store heals: the next retry succeeds and the status says so.
    faults.heal();
    rt.advance(Duration::from_millis(400));
    deposit(&mut rt, 1)?;
    assert_eq!(faults.failed_writes(), 3);
    assert_eq!(rt.runtime().shard_status()[0].checkpoint_failures, 0);

    // Nothing answered was lost meanwhile.
    rt.crash()?;
    assert_eq!(rt.call(rt.handle::<Account>("a").balance())?, 11);
    Ok(())
}
