//! `statefn::testing`: the deterministic runtime users test their functions
//! with. Same seed, same run; the virtual clock fires timers (and expiry)
//! only when advanced; a crash mid-test loses exactly what was not committed.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use statefn::{
    Address, RetryPolicy,
    prelude::*,
    testing::{SentMessage, TestRuntime},
};
use statefn_store::{FaultyFs, StdFs};
use statefn_tests::{Fragile, Ledger, Recorder};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

#[stateful_function(name = "test.Session", expire_after = "30d")]
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Session {
    touches: u32,
}

#[stateful_function]
impl Session {
    #[handler]
    fn touch(&mut self) -> u32 {
        self.touches += 1;
        self.touches
    }
}

/// Answers every ball with another: never idle.
#[stateful_function(name = "test.Ping")]
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Ping {
    hits: u64,
}

#[stateful_function]
impl Ping {
    #[handler]
    fn ball(&mut self, ctx: &mut Context) {
        self.hits += 1;
        ctx.send::<Ping>(ctx.id()).ball();
    }
}

fn ledger_runtime(seed: u64) -> TestRuntime {
    TestRuntime::builder()
        .seed(seed)
        .register::<Ledger>()
        .register::<Recorder>()
        .register::<Fragile>()
        .start()
        .expect("starts")
}

/// One account name on each of the test runtime's 4 shards.
fn one_per_shard() -> Vec<String> {
    let mut names: Vec<Option<String>> = vec![None; 4];
    for n in 0.. {
        let name = format!("acct-{n}");
        let shard = Address::new("test.Ledger", &name).expect("valid").shard(4);
        names[usize::from(shard)].get_or_insert(name);
        if names.iter().all(Option::is_some) {
            break;
        }
    }
    names.into_iter().flatten().collect()
}

/// Transfers from four accounts on four shards into one, all started before
/// any runs, so that the seed decides the order they arrive in.
fn transfer_fan(rt: &mut TestRuntime) -> Vec<(String, i64)> {
    let sources = one_per_shard();
    let mut calls = Vec::new();
    for i in 0..12u32 {
        let from = sources[i as usize % 4].clone();
        let to = "acct-sink".to_owned();
        let handle = rt.handle::<Ledger>(&from);
        calls.push(rt.start(handle.transfer(format!("op-{i}"), to, i64::from(i) + 1)));
    }
    rt.run_until_idle();
    for call in calls {
        call.take().expect("finished").expect("transfer applied");
    }
    sources
        .iter()
        .chain([&"acct-sink".to_owned()])
        .map(|a| {
            let state = rt.state::<Ledger>(a).expect("readable").expect("written");
            (state.applied.join(","), state.balance)
        })
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_run_and_seeds_explore_interleavings() {
    let runs: Vec<_> = (0..8)
        .map(|seed| {
            let mut rt = ledger_runtime(seed);
            let states = transfer_fan(&mut rt);
            let sent: Vec<SentMessage> = rt.sent().to_vec();
            (states, sent)
        })
        .collect();
    // Deterministic: seed 3 again gives seed 3's run, message for message.
    let mut again = ledger_runtime(3);
    assert_eq!((transfer_fan(&mut again), again.sent().to_vec()), runs[3]);
    // Seeded: the seeds do not all give the same order of applied operations.
    let orders: std::collections::HashSet<_> = runs.iter().map(|(states, _)| states).collect();
    assert!(orders.len() > 1, "every seed gave the same interleaving");
    // Whatever the order, every transfer was sent once and money is conserved.
    for (states, sent) in &runs {
        assert_eq!(sent.len(), 12);
        assert_eq!(states.iter().map(|(_, b)| b).sum::<i64>(), 0);
    }
}

#[test]
fn sent_messages_are_recorded_with_sender_target_arguments_and_delay() -> Result<(), Error> {
    let mut rt = ledger_runtime(1);
    let a = rt.handle::<Ledger>("a");
    rt.call(a.transfer("t1".into(), "b".into(), 5))?;
    rt.call(a.transfer_later("t2".into(), "c".into(), 7, 90_000))?;
    let sent = rt.take_sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0].from.to_string(), "test.Ledger/a");
    assert_eq!(sent[0].to.to_string(), "test.Ledger/b");
    assert_eq!(sent[0].handler(), "deposit");
    assert_eq!(
        sent[0].args(),
        &serde_json::json!({"op": "t1/in", "amount": 5})
    );
    assert_eq!(sent[0].delay, Duration::ZERO);
    assert_eq!(sent[1].to.to_string(), "test.Ledger/c");
    assert_eq!(sent[1].delay, Duration::from_secs(90));
    assert_eq!(sent[1].at_ms, rt.now_ms());
    assert!(rt.sent().is_empty(), "taken");
    Ok(())
}

#[test]
fn timers_fire_when_the_virtual_clock_reaches_them_and_not_before() -> Result<(), Error> {
    let mut rt = ledger_runtime(2);
    let start = rt.now_ms();
    rt.call(
        rt.handle::<Ledger>("a")
            .transfer_later("late".into(), "b".into(), 10, 60_000),
    )?;
    rt.advance(Duration::from_millis(59_999));
    assert_eq!(rt.state::<Ledger>("b")?, None, "not due yet");
    rt.advance(Duration::from_millis(1));
    let b = rt.state::<Ledger>("b")?.expect("deposited");
    assert_eq!((b.balance, b.applied), (10, vec!["late/in".to_owned()]));
    assert_eq!(rt.now_ms(), start + 60_000);
    // The deposit's egress record carries the virtual time it fired at.
    let deposits = rt.egress("deposits")?;
    assert_eq!(deposits.len(), 1);
    assert_eq!(deposits[0].at_ms, start + 60_000);
    Ok(())
}

#[test]
fn idle_instances_expire_on_the_virtual_clock_and_busy_ones_live_on() -> Result<(), Error> {
    let mut rt = TestRuntime::builder().register::<Session>().start()?;
    rt.call(rt.handle::<Session>("idle").touch())?;
    rt.call(rt.handle::<Session>("busy").touch())?;
    for _ in 0..4 {
        rt.advance(10 * DAY);
        rt.call(rt.handle::<Session>("busy").touch())?;
    }
    // 40 days on: "idle" was last written 40 days ago, "busy" 0 days ago.
    assert_eq!(rt.state::<Session>("idle")?, None, "expired");
    assert_eq!(rt.state::<Session>("busy")?, Some(Session { touches: 5 }));
    // Expiry is durable: it holds across a crash, and the instance starts
    // again from `Default`.
    rt.crash()?;
    assert_eq!(rt.state::<Session>("idle")?, None);
    assert_eq!(rt.call(rt.handle::<Session>("idle").touch())?, 1);
    // Just under 30 days idle is not expired.
    rt.advance(30 * DAY - Duration::from_secs(1));
    assert_eq!(rt.state::<Session>("idle")?, Some(Session { touches: 1 }));
    rt.advance(Duration::from_secs(1));
    assert_eq!(rt.state::<Session>("idle")?, None);
    Ok(())
}

#[test]
fn a_crash_loses_only_what_was_not_committed() -> Result<(), Error> {
    let mut rt = ledger_runtime(4);
    rt.call(rt.handle::<Ledger>("a").deposit("d1".into(), 100))?;
    // A transfer runs and commits; its deposit to "b" is queued, not applied.
    let mut transfer = rt.start(
        rt.handle::<Ledger>("a")
            .transfer("t1".into(), "b".into(), 30),
    );
    while transfer.result().is_none() {
        assert!(rt.step(), "the transfer finishes");
    }
    // A call that has not run yet when the process dies.
    let lost = rt.start(rt.handle::<Ledger>("c").deposit("never".into(), 1));
    assert_eq!(transfer.take().expect("done")?, 70);
    rt.crash()?;
    assert_eq!(rt.crashes(), 1);
    assert!(
        matches!(lost.take(), Some(Err(Error::ShuttingDown))),
        "the caller learns that its call may not have run"
    );
    // The committed transfer's message is re-sent from the outbox.
    rt.run_until_idle();
    let b = rt.state::<Ledger>("b")?.expect("deposited after the crash");
    assert_eq!((b.balance, b.applied), (30, vec!["t1/in".to_owned()]));
    assert_eq!(
        rt.state::<Ledger>("c")?,
        None,
        "the uncommitted call left nothing"
    );
    // Egress: each deposit exactly once.
    let ops: Vec<_> = rt
        .egress("deposits")?
        .into_iter()
        .map(|r| r.record)
        .collect();
    assert_eq!(
        ops,
        vec![serde_json::json!("d1"), serde_json::json!("t1/in")]
    );
    Ok(())
}

#[test]
fn a_crash_between_checkpoints_recovers_from_checkpoint_and_log() -> Result<(), Error> {
    let mut rt = ledger_runtime(5);
    for i in 0..20 {
        rt.call(
            rt.handle::<Ledger>(format!("x{}", i % 3))
                .deposit(format!("d{i}"), 1),
        )?;
        if i == 9 {
            rt.checkpoint();
        }
    }
    rt.crash()?;
    let total: i64 = (0..3)
        .map(|a| {
            rt.state::<Ledger>(&format!("x{a}"))
                .map(|s| s.map_or(0, |s| s.balance))
        })
        .sum::<Result<i64, Error>>()?;
    assert_eq!(total, 20);
    rt.restart()?;
    let x0 = rt.state::<Ledger>("x0")?.expect("kept");
    assert_eq!(x0.applied.len(), 7);
    Ok(())
}

#[test]
fn a_poison_message_is_retried_on_the_virtual_clock_then_dead_lettered_and_replayed()
-> Result<(), Error> {
    let mut rt = TestRuntime::builder()
        .register::<Fragile>()
        .register::<Recorder>()
        .register::<Ledger>()
        .retry_policy(RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(10),
        })
        .start()?;
    // A Ledger cannot send to Fragile; use the JSON enqueue path, which
    // commits a message that then fails like one from a function.
    let runtime = rt.runtime().clone();
    rt.call(runtime.enqueue_json(
        "test.Fragile",
        "f",
        "set_then_panic",
        serde_json::json!({"value": 9, "witness": "w"}),
        Duration::ZERO,
        None,
    ))?;
    rt.run_until_idle();
    assert!(rt.dead_letters().is_empty(), "retries wait for the clock");
    rt.advance(Duration::from_secs(25));
    let letters = rt.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].attempts, 3);
    assert!(
        letters[0].error.contains("boom at 9"),
        "{}",
        letters[0].error
    );
    assert_eq!(rt.state::<Fragile>("f")?, None, "a panic changes nothing");
    // Dead letters are durable.
    rt.crash()?;
    assert_eq!(rt.dead_letters(), letters);
    // A replay is a fresh set of attempts: it still panics, so after the
    // backoff it is a dead letter again (a new one).
    rt.replay_dead_letter(letters[0].id)?;
    assert!(rt.dead_letters().is_empty(), "being retried");
    rt.advance(Duration::from_secs(25));
    let again = rt.dead_letters();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_ne!(again[0].id, letters[0].id);
    assert_eq!(
        (again[0].attempts, &again[0].message),
        (3, &letters[0].message)
    );
    rt.drop_dead_letter(again[0].id)?;
    assert!(rt.dead_letters().is_empty());
    assert!(matches!(
        rt.drop_dead_letter(again[0].id),
        Err(Error::UnknownDeadLetter { .. })
    ));
    assert_eq!(rt.state::<Recorder>("w")?, None, "a panic sends nothing");
    Ok(())
}

#[test]
fn a_failing_disk_is_reported_and_recovered_inside_the_test_kit() -> Result<(), Error> {
    let fs = std::sync::Arc::new(FaultyFs::new(std::sync::Arc::new(StdFs)));
    let faults = fs.faults();
    let mut rt = TestRuntime::builder()
        .register::<Ledger>()
        .file_system(fs)
        .start()?;
    rt.call(rt.handle::<Ledger>("a").deposit("d1".into(), 1))?;
    faults.fail_nth_append(1);
    let err = rt
        .call(
            rt.handle::<Ledger>("a")
                .deposit("d2".into(), 2)
                .idempotency_key("k"),
        )
        .expect_err("the log write failed");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    rt.run_until_idle();
    assert_eq!(rt.runtime().recoveries(), 1);
    assert_eq!(
        rt.call(
            rt.handle::<Ledger>("a")
                .deposit("d2".into(), 2)
                .idempotency_key("k")
        )?,
        3
    );
    Ok(())
}

#[test]
fn a_test_runtime_refuses_the_async_shutdown_instead_of_hanging() -> Result<(), Error> {
    let rt = ledger_runtime(0);
    let runtime = rt.runtime().clone();
    let err = futures::executor::block_on(runtime.shutdown()).expect_err("refused");
    assert!(err.to_string().contains("TestRuntime::shutdown"), "{err}");
    rt.shutdown();
    Ok(())
}

#[test]
#[should_panic(expected = "the call cannot finish")]
fn a_call_that_can_never_finish_is_reported_not_hung() {
    let mut rt = ledger_runtime(0);
    rt.call(std::future::pending::<()>());
}

#[test]
fn states_beyond_the_cache_are_read_through_the_store_across_crashes() -> Result<(), Error> {
    let mut rt = TestRuntime::builder()
        .seed(9)
        .cache_bytes(4 << 10) // about 1 KiB per shard: most states live in fjall only
        .register::<Ledger>()
        .start()?;
    for i in 0..200 {
        rt.call(
            rt.handle::<Ledger>(format!("m{i}"))
                .deposit(format!("d{i}"), i),
        )?;
    }
    rt.checkpoint();
    for i in (0..200).step_by(3) {
        rt.call(
            rt.handle::<Ledger>(format!("m{i}"))
                .deposit(format!("e{i}"), 1000),
        )?;
    }
    rt.crash()?;
    for i in 0..200 {
        let state = rt.state::<Ledger>(&format!("m{i}"))?.expect("kept");
        let extra = if i % 3 == 0 { 1000 } else { 0 };
        assert_eq!(state.balance, i + extra, "m{i}");
    }
    Ok(())
}

#[test]
#[should_panic(expected = "did not become idle within 500 steps")]
fn handlers_that_never_stop_are_reported_not_run_forever() {
    let mut rt = TestRuntime::builder()
        .max_steps(500)
        .register::<Ping>()
        .start()
        .expect("starts");
    let _ = rt.call(rt.handle::<Ping>("p").ball());
}

#[test]
fn shards_with_changes_checkpoint_on_the_virtual_clocks_interval() -> Result<(), Error> {
    let mut rt = ledger_runtime(6);
    rt.call(rt.handle::<Ledger>("a").deposit("d1".into(), 1))?;
    let checkpointed = |rt: &TestRuntime| {
        rt.runtime()
            .shard_status()
            .iter()
            .filter(|s| s.checkpoint_lsn > 0)
            .count()
    };
    rt.advance(Duration::from_secs(59));
    assert_eq!(checkpointed(&rt), 0, "not yet: the interval is 60 s");
    rt.advance(Duration::from_secs(2));
    assert!(
        checkpointed(&rt) > 0,
        "a checkpoint after 60 s of virtual time"
    );
    Ok(())
}

/// A function with a keyed timer, to inspect from the test kit.
#[stateful_function(name = "test.Reminder")]
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Reminder {
    rang: u32,
}

#[stateful_function]
impl Reminder {
    #[handler]
    fn set(&mut self, ctx: &mut Context) {
        ctx.timer::<Reminder>("ring").after(DAY).ring();
    }

    #[handler(internal)]
    fn ring(&mut self) {
        self.rang += 1;
    }
}

/// The inspection calls of `Runtime` (`timers_of`, `state_json`,
/// `instances`, `delete_instance`) run under `TestRuntime::call` like any
/// call: they read the store without a Tokio runtime to block in (they
/// used `spawn_blocking`, which panics outside one).
#[test]
fn inspection_calls_run_under_the_test_kit() -> Result<(), Error> {
    let mut rt = TestRuntime::builder().register::<Reminder>().start()?;
    rt.call(rt.handle::<Reminder>("r").set())?;
    let runtime = rt.runtime().clone();
    let timers = rt.call(runtime.timers_of("test.Reminder", "r"))?;
    assert_eq!(timers.len(), 1, "{timers:?}");
    assert_eq!(timers[0].message, serde_json::json!({"ring": {}}));
    let state = rt.call(runtime.state_json("test.Reminder", "r"))?;
    assert_eq!(state, Some(serde_json::json!({"rang": 0})));
    let page = rt.call(runtime.instances("test.Reminder", None, 10))?;
    assert_eq!(page.ids, vec!["r".to_owned()]);
    assert!(rt.call(runtime.delete_instance("test.Reminder", "r"))?);
    assert!(rt.call(runtime.timers_of("test.Reminder", "r"))?.is_empty());
    rt.advance(2 * DAY);
    assert_eq!(rt.call(runtime.state_json("test.Reminder", "r"))?, None);
    Ok(())
}
