//! The data directory in `tests/fixtures/data-v2-records-v2/`, written with
//! values of record version 2 by `statefn_tests::fixture_records_v2::write`
//! (see there for what each phase left where), opens and means the same to
//! this build: every later build must pass these tests unchanged, reading
//! the fixture with the functions that wrote it. They check what it decodes
//! to: states, pending timers with their keys, dead letters, egress records,
//! the outcomes of enqueued invocations, and the outbox (by what its
//! re-sent entries do).
//!
//! The fixture is copied to a temporary directory first: opening a
//! directory writes to it.

use std::{collections::BTreeMap, path::Path, time::Duration};

use statefn::{Error, InvocationId, InvocationStatus, JsonReply, testing::TestRuntime};
use statefn_tests::fixture_records_v2::{
    Desk, IDLE, KILLED_MS, LATER, PHASE_1_MS, PHASE_2_MS, REQUEST_TIMEOUT, SHARDS, Session, TICK,
    Tick, Vault, builder,
};

const MINUTE: u64 = 60_000;

fn copy_fixture(dir: &Path) {
    statefn_tests::fixture_dirs::copy_fixture("data-v2-records-v2", dir);
}

/// The fixture, opened right where the writer was killed.
fn open_fixture(dir: &Path) -> Result<TestRuntime, Error> {
    copy_fixture(dir);
    builder(dir, KILLED_MS).start()
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).expect("small")
}

fn balance(rt: &mut TestRuntime, id: &str) -> Result<i64, Error> {
    rt.call(rt.handle::<Vault>(id).balance())
}

/// An instance's pending timers as `(due_ms, key, invocation key, period,
/// expiry, message)`.
type Listed = (
    u64,
    Option<String>,
    Option<String>,
    Option<u64>,
    bool,
    serde_json::Value,
);

fn timers(rt: &mut TestRuntime, type_name: &str, id: &str) -> Result<Vec<Listed>, Error> {
    let runtime = rt.runtime().clone();
    let (type_name, id) = (type_name.to_owned(), id.to_owned());
    let listed = rt.call(async move { runtime.timers_of(&type_name, &id).await })?;
    Ok(listed
        .into_iter()
        .map(|t| {
            (
                t.due_ms,
                t.key,
                t.invocation_key,
                t.every_ms,
                t.expiry,
                t.message,
            )
        })
        .collect())
}

fn status(rt: &mut TestRuntime, vault: &str, key: &str) -> Result<InvocationStatus, Error> {
    let runtime = rt.runtime().clone();
    let address = statefn::Address::new("r2.Vault", vault)?;
    let id = InvocationId::enqueued(address, key);
    rt.call(async move { runtime.invocation(&id, Duration::ZERO).await })
}

#[test]
fn the_fixture_holds_every_kind_of_record_version_2_value() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_fixture(dir.path());
    let got = statefn::__fixtures::inventory(dir.path(), SHARDS, 1)?;
    let expected: BTreeMap<String, usize> = [
        // The checkpoint (phase 1).
        ("table.meta", 4),
        ("table.timers", 4),
        ("table.timers.named", 2),
        ("table.timers.periodic", 1),
        ("table.timers.invocation", 1),
        ("table.timers.reply", 1),
        ("table.timers.expiry", 2),
        // desk-2's request (its reply route), and v-2's reply to it (its
        // guard): v-2's shard froze its checkpoint after answering.
        ("table.outbox", 2),
        ("table.outbox.reply_route", 1),
        ("table.pending_egress", 1),
        ("table.dead_letters", 2),
        ("table.dead_letters.invocation", 2),
        // The log after it (the rest of phase 1, and phase 2).
        ("log.Invocation", 30),
        ("log.Invocation.function", 6),
        ("log.Invocation.state", 22),
        ("log.Invocation.sent", 5),
        ("log.Invocation.sent.caller", 3),
        ("log.Invocation.sent.guard", 1),
        ("log.Invocation.sent.reply_route", 2),
        ("log.Invocation.timers", 18),
        ("log.Invocation.timers.keyed", 18),
        ("log.Invocation.timer", 13),
        ("log.Invocation.cancelled", 4),
        ("log.Invocation.reply", 8),
        ("log.Invocation.outcome", 8),
        ("log.Invocation.egress", 14),
        ("log.Invocation.dead_letter", 2),
        ("log.DeadLetterResolved.resent", 1),
        ("log.Expired.rearmed", 1),
        ("log.Expired.removed", 1),
        ("log.Deleted", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(got, expected);
    Ok(())
}

#[test]
fn pending_timers_keep_their_keys_periods_and_times() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rt = open_fixture(dir.path())?;
    let tick = serde_json::json!({ "tick": {} });
    let deposit = |amount: i64| serde_json::json!({ "deposit": { "amount": amount } });
    let every = Some(ms(TICK));
    // Read before anything runs: what the checkpoint and the log hold.
    // desk-1's tick ran 6 times (last at P1 + 60 min), its idle ran; its
    // last request waits for its reply, guarded by a timeout timer.
    let timeout = serde_json::json!({ "told": { "of": "v-2", "balance": { "Err": "Timeout" } } });
    assert_eq!(
        timers(&mut rt, "r2.Desk", "desk-1")?,
        vec![
            (
                PHASE_1_MS + 70 * MINUTE,
                Some("tick".into()),
                None,
                every,
                false,
                tick.clone()
            ),
            (
                KILLED_MS + ms(REQUEST_TIMEOUT),
                None,
                None,
                None,
                false,
                timeout
            ),
        ]
    );
    // desk-2's reply came: its timeout timer is gone.
    assert_eq!(timers(&mut rt, "r2.Desk", "desk-2")?, vec![]);
    // desk-3 cancelled its idle.
    assert_eq!(
        timers(&mut rt, "r2.Desk", "desk-3")?,
        vec![(
            PHASE_2_MS + 70 * MINUTE,
            Some("tick".into()),
            None,
            every,
            false,
            tick
        )]
    );
    assert_eq!(timers(&mut rt, "r2.Desk", "desk-gone")?, vec![], "deleted");
    assert_eq!(
        timers(&mut rt, "r2.Vault", "v-1")?,
        vec![(
            PHASE_1_MS + ms(LATER),
            None,
            Some("k-later-1".into()),
            None,
            false,
            deposit(7)
        )]
    );
    // k-cancelled is gone.
    assert_eq!(
        timers(&mut rt, "r2.Vault", "v-2")?,
        vec![(
            PHASE_2_MS + ms(LATER),
            None,
            Some("k-later-2".into()),
            None,
            false,
            deposit(9)
        )]
    );
    assert_eq!(timers(&mut rt, "r2.Session", "s-1")?, vec![], "expired");
    // Hit 30 minutes into phase 2; armed again when the first check found
    // it hit since.
    let expiry = (
        PHASE_2_MS + 90 * MINUTE,
        None,
        None,
        None,
        true,
        serde_json::Value::Null,
    );
    assert_eq!(timers(&mut rt, "r2.Session", "s-2")?, vec![expiry]);
    assert!(IDLE < LATER, "an idle not cancelled would have run by now");
    Ok(())
}

#[test]
fn states_are_what_the_writer_left_and_the_outbox_is_delivered_once() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rt = open_fixture(dir.path())?;
    rt.run_until_idle();
    for (id, want) in [("v-1", 105), ("v-2", 50), ("v-3", 10)] {
        assert_eq!(balance(&mut rt, id)?, want, "balance of {id}");
    }
    let desk = |told: &[(&str, i64)], ticks, idled| Desk {
        told: told
            .iter()
            .map(|(of, b)| ((*of).to_owned(), Ok(*b)))
            .collect(),
        ticks,
        idled,
    };
    // desk-1's last request, re-sent from the log, answered once; desk-2's
    // (the checkpoint's outbox) answered once before, not again.
    assert_eq!(
        rt.state::<Desk>("desk-1")?,
        Some(desk(&[("v-1", 100), ("v-2", 50)], 6, 1))
    );
    assert_eq!(
        rt.state::<Desk>("desk-2")?,
        Some(desk(&[("v-2", 50)], 0, 0))
    );
    assert_eq!(
        rt.state::<Desk>("desk-3")?,
        Some(desk(&[("v-1", 105)], 6, 0))
    );
    assert_eq!(rt.state::<Desk>("desk-gone")?, None);
    assert_eq!(rt.state::<Session>("s-1")?, None);
    assert_eq!(rt.state::<Session>("s-2")?, Some(Session { hits: 2 }));
    // The answered request's timeout timer went with its reply: it never
    // fires, and the ticks go on from where they were.
    rt.advance(Duration::from_millis(
        KILLED_MS + ms(REQUEST_TIMEOUT) + 1 - rt.now_ms(),
    ));
    let desk_1 = rt.state::<Desk>("desk-1")?.expect("stored");
    assert_eq!(desk_1.told.len(), 2, "{:?}", desk_1.told);
    // Ticks at P1 + 70 ... 120 min (desk-3: a minute later each): 6 more.
    assert_eq!(desk_1.ticks, 12);
    assert_eq!(rt.state::<Desk>("desk-3")?.expect("stored").ticks, 12);
    Ok(())
}

#[test]
fn enqueued_invocations_keep_their_outcomes_and_run_at_their_time() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rt = open_fixture(dir.path())?;
    rt.run_until_idle();
    assert_eq!(
        status(&mut rt, "v-1", "k-later-1")?,
        InvocationStatus::Scheduled
    );
    assert_eq!(
        status(&mut rt, "v-2", "k-later-2")?,
        InvocationStatus::Scheduled
    );
    assert_eq!(
        status(&mut rt, "v-1", "k-done")?,
        InvocationStatus::Done(JsonReply::Ok(serde_json::json!(105)))
    );
    assert_eq!(
        status(&mut rt, "v-2", "k-cancelled")?,
        InvocationStatus::Cancelled
    );
    for key in ["k-failed", "k-early-1", "k-early-2"] {
        let InvocationStatus::Failed { error } = status(&mut rt, "v-3", key)? else {
            panic!("{key} failed");
        };
        assert!(error.contains(&format!("refused: {key}")), "{error}");
    }
    // A retry of a done one is answered from its stored outcome.
    rt.call(
        rt.handle::<Vault>("v-1")
            .deposit(5)
            .idempotency_key("k-done")
            .send(),
    )?;
    rt.run_until_idle();
    assert_eq!(balance(&mut rt, "v-1")?, 105);
    // The delayed ones run at their time, once; the cancelled one never.
    rt.advance(Duration::from_millis(PHASE_1_MS + ms(LATER) - rt.now_ms()));
    assert_eq!(balance(&mut rt, "v-1")?, 112);
    assert_eq!(
        status(&mut rt, "v-1", "k-later-1")?,
        InvocationStatus::Done(JsonReply::Ok(serde_json::json!(112)))
    );
    assert_eq!(balance(&mut rt, "v-2")?, 50);
    rt.advance(Duration::from_millis(PHASE_2_MS + ms(LATER) - rt.now_ms()));
    assert_eq!(balance(&mut rt, "v-2")?, 59);
    rt.advance(Duration::from_secs(24 * 3600));
    assert_eq!(
        (balance(&mut rt, "v-1")?, balance(&mut rt, "v-2")?),
        (112, 59)
    );
    Ok(())
}

#[test]
fn dead_letters_are_what_the_writer_left() -> Result<(), Error> {
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
    let refuse = |why: &str| serde_json::json!({ "refuse": { "why": why } });
    let v3 = "r2.Vault/v-3".to_owned();
    // 1-2 was k-early-2's first letter: replayed (and failed again as 1-4).
    assert_eq!(
        got,
        vec![
            ("1-1".into(), v3.clone(), refuse("k-early-1"), 1, PHASE_1_MS),
            ("1-3".into(), v3.clone(), refuse("k-failed"), 1, PHASE_2_MS),
            ("1-4".into(), v3, refuse("k-early-2"), 1, PHASE_2_MS),
        ]
    );
    for letter in &letters {
        assert!(letter.error.contains("refused: k-"), "{}", letter.error);
    }
    for letter in letters {
        rt.drop_dead_letter(letter.id)?;
    }
    assert!(rt.dead_letters().is_empty());
    assert_eq!(balance(&mut rt, "v-3")?, 10);
    Ok(())
}

#[test]
fn egress_records_keep_their_offsets_and_ids() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rt = open_fixture(dir.path())?;
    rt.run_until_idle();
    let asks: Vec<(u64, String, String)> = rt
        .egress("asks")?
        .iter()
        .map(|r| Ok((r.offset, r.id.clone(), r.decode::<String>()?)))
        .collect::<Result<_, Error>>()?;
    // desk-1 (shard 1) at phase 1, desk-2's (shard 0) frozen in the
    // checkpoint, desk-3's, desk-1's last.
    assert_eq!(
        asks,
        vec![
            (0, "s1-1".into(), "v-1".into()),
            (1, "s0-1".into(), "v-2".into()),
            (2, "s0-2".into(), "v-1".into()),
            (3, "s1-8".into(), "v-2".into()),
        ]
    );
    let ticks: Vec<(u64, String, Tick)> = rt
        .egress("ticks")?
        .iter()
        .map(|r| Ok((r.offset, r.id.clone(), r.decode::<Tick>()?)))
        .collect::<Result<_, Error>>()?;
    // desk-1 ticks at P1 + 10, 20, ... min, desk-3 a minute after each.
    let expected: Vec<(u64, String, Tick)> = (0..12u32)
        .map(|i| {
            let (desk, shard, seq) = if i % 2 == 0 {
                ("desk-1", 1, 2 + i / 2)
            } else {
                ("desk-3", 0, 3 + i / 2)
            };
            let tick = Tick {
                desk: desk.into(),
                n: i / 2 + 1,
            };
            (u64::from(i), format!("s{shard}-{seq}"), tick)
        })
        .collect();
    assert_eq!(ticks, expected);
    Ok(())
}
