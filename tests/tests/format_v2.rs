//! The data directory of format 2 in `tests/fixtures/data-v2/`, written by
//! `statefn_tests::fixture_v2::write` (see there for what each phase left
//! where), opens and means the same to this build: every later build must
//! pass these tests unchanged, reading the fixture with the functions that
//! wrote it.
//!
//! The fixture is copied to a temporary directory first: opening a
//! directory writes to it.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, UNIX_EPOCH},
};

use statefn::{Error, testing::TestRuntime};
use statefn_tests::fixture_v2::{
    KILLED_MS, Ledger, Moved, PHASE_1_MS, Profile, SHARDS, Session, builder,
};

fn copy_fixture(dir: &Path) {
    statefn_tests::fixture_dirs::copy_fixture("data-v2", dir);
}

/// The fixture, opened right where the writer was killed.
fn open_fixture(dir: &Path) -> Result<TestRuntime, Error> {
    copy_fixture(dir);
    builder(dir, KILLED_MS).register::<Profile>().start()
}

fn balance(rt: &mut TestRuntime, id: &str) -> Result<i64, Error> {
    rt.call(rt.handle::<Ledger>(id).balance())
}

#[test]
fn the_fixture_holds_every_kind_of_log_record_and_checkpoint_row() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_fixture(dir.path());
    let got = statefn::__fixtures::inventory(dir.path(), SHARDS, 1)?;
    let expected: BTreeMap<String, usize> = [
        ("table.meta", 4),
        ("table.timers", 1),
        ("table.timers.expiry", 2),
        ("table.outbox", 1),
        ("table.pending_egress", 1),
        ("table.dead_letters", 3),
        ("log.Invocation", 15),
        ("log.Invocation.function", 8),
        ("log.Invocation.state", 13),
        ("log.Invocation.sent", 5),
        ("log.Invocation.timers", 1),
        ("log.Invocation.reply", 1),
        ("log.Invocation.egress", 2),
        ("log.Invocation.dead_letter", 1),
        ("log.TimerFired", 1),
        ("log.DeadLetterResolved.resent", 1),
        ("log.DeadLetterResolved.dropped", 1),
        ("log.Expired.rearmed", 1),
        ("log.Expired.removed", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(got, expected);
    // A state of each version of `fx.Profile`: one to migrate on read.
    let version = |id| {
        statefn::__fixtures::checkpointed_state_version(dir.path(), SHARDS, 1, "fx.Profile", id)
    };
    assert_eq!((version("p-old")?, version("p-new")?), (Some(1), Some(2)));
    Ok(())
}

#[test]
fn balances_and_states_are_what_the_writer_left() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rt = open_fixture(dir.path())?;
    rt.run_until_idle();
    // Nothing set aside: every stored message decodes.
    let letters = rt.dead_letters();
    for (id, want) in [
        ("a-0", 106),
        ("a-1", 94),
        ("a-2", 85),
        ("a-3", 127),
        ("d-1", 0),
        ("d-2", 1),
        ("d-3", 0),
    ] {
        assert_eq!(balance(&mut rt, id)?, want, "balance of {id}");
    }
    let a0 = rt.state::<Ledger>("a-0")?.expect("a-0 is stored");
    assert_eq!(a0.told, Some(94), "the reply to a-0's request");
    assert!(rt.state::<Ledger>("d-1")?.expect("stored").closed);
    assert!(!rt.state::<Ledger>("d-2")?.expect("stored").closed);
    // Version 1's state, migrated when read; version 2's as it is.
    assert_eq!(
        rt.state::<Profile>("p-old")?,
        Some(Profile {
            name: "old".into(),
            visits: 0
        })
    );
    assert_eq!(
        rt.state::<Profile>("p-new")?,
        Some(Profile {
            name: "new".into(),
            visits: 1
        })
    );
    assert_eq!(rt.state::<Session>("s-1")?, None, "expired");
    assert_eq!(rt.state::<Session>("s-2")?, Some(Session { hits: 2 }));
    assert_eq!(letters.len(), 2, "{letters:?}");
    Ok(())
}

#[test]
fn dead_letters_are_what_the_writer_left_and_replay() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rt = open_fixture(dir.path())?;
    let letters = rt.dead_letters();
    let got: Vec<(String, String, serde_json::Value, u32, u64)> = letters
        .iter()
        .map(|l| {
            (
                l.id.to_string(),
                l.target.to_string(),
                l.message.clone(),
                l.attempts,
                l.at_ms,
            )
        })
        .collect();
    let guarded = serde_json::json!({ "guarded": { "amount": 1 } });
    assert_eq!(
        got,
        vec![
            (
                "1-1".into(),
                "fx.Ledger/d-1".into(),
                guarded.clone(),
                1,
                PHASE_1_MS
            ),
            ("1-2".into(), "fx.Ledger/d-1".into(), guarded, 1, KILLED_MS),
        ]
    );
    for letter in &letters {
        assert!(letter.error.contains("closed"), "{}", letter.error);
    }
    rt.call(rt.handle::<Ledger>("d-1").reopen())?;
    for letter in letters {
        rt.replay_dead_letter(letter.id)?;
    }
    assert_eq!(balance(&mut rt, "d-1")?, 2);
    assert!(rt.dead_letters().is_empty());
    Ok(())
}

#[test]
fn stored_replies_answer_retries() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rt = open_fixture(dir.path())?;
    // From the checkpoint.
    let retry = rt.call(
        rt.handle::<Ledger>("a-2")
            .deposit(5)
            .idempotency_key("idem-1"),
    )?;
    assert_eq!(retry, 105);
    // From the log.
    let retry = rt.call(
        rt.handle::<Ledger>("a-1")
            .transfer("a-0".into(), 1)
            .idempotency_key("idem-2"),
    )?;
    assert_eq!(retry.ok(), Some(94));
    assert_eq!(balance(&mut rt, "a-0")?, 106);
    assert_eq!(balance(&mut rt, "a-2")?, 85);
    Ok(())
}

#[test]
fn timers_fire_once_at_their_time() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rt = open_fixture(dir.path())?;
    rt.run_until_idle();
    // a-0's reminder is due two hours into phase 2 (+3); s-2 expires an
    // hour after its second hit (30 minutes into phase 2).
    let due = UNIX_EPOCH + Duration::from_millis(PHASE_1_MS + 2 * 3600 * 1000);
    rt.advance(due.duration_since(rt.now()).expect("ahead") - Duration::from_millis(1));
    assert_eq!(balance(&mut rt, "a-0")?, 106);
    assert_eq!(rt.state::<Session>("s-2")?, None, "expired at 1 h 30 min");
    rt.crash()?;
    rt.advance(Duration::from_millis(1));
    assert_eq!(balance(&mut rt, "a-0")?, 109);
    rt.advance(Duration::from_secs(24 * 3600));
    assert_eq!(balance(&mut rt, "a-0")?, 109);
    assert_eq!(balance(&mut rt, "a-3")?, 127);
    Ok(())
}

#[test]
fn egress_records_keep_their_offsets_and_ids() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rt = open_fixture(dir.path())?;
    rt.run_until_idle();
    let got: Vec<(u64, String, Moved)> = rt
        .egress("moves")?
        .iter()
        .map(|r| Ok((r.offset, r.id.clone(), r.decode::<Moved>()?)))
        .collect::<Result<_, Error>>()?;
    let moved = |from: &str, to: &str, amount| Moved {
        from: from.into(),
        to: to.into(),
        amount,
    };
    assert_eq!(
        got,
        vec![
            (0, "s3-1".into(), moved("a-0", "a-1", 10)),
            (1, "s1-1".into(), moved("a-2", "a-3", 20)),
            (2, "s0-1".into(), moved("a-1", "a-0", 15)),
            (3, "s0-2".into(), moved("a-1", "a-0", 1)),
        ]
    );
    Ok(())
}
