//! A data directory written by an earlier build still opens, and means the
//! same: the on-disk format (WAL framing, log records, checkpoint keys and
//! values, egress rows) is a promise, tested here rather than hoped for.
//!
//! `tests/fixtures/bank-data-v1/` was written by the `bank` example at commit
//! 44b7600 (format versions: data dir 1, WAL 1, record 1), over HTTP:
//!
//! 1. deposits into `acct-0..19`, transfers `acct-i -> acct-(i+10)`, an
//!    idempotent deposit (`fix-1`) retried once, two delayed deposits into
//!    `zed` (`send?delay=7200h` and `30s`), then a clean shutdown (so all of
//!    it is in the checkpoint);
//! 2. transfers `acct-(i+10) -> acct-(19-i)`, a deposit and an idempotent
//!    transfer (`fix-2`) from `acct-new`, two more delayed deposits into
//!    `zed` (`4800h` and `30s`), then SIGKILL (so all of it is in the log only,
//!    with outbox entries and egress records possibly not yet appended).
//!
//! The expected values are what that build itself read back from the
//! directory.
//!
//! That build stored messages in the first format, naming their handler by
//! position (data directory format 1): the first open converts them to named
//! messages by position in this `Account`'s declaration order, checkpoints,
//! and only then records format 2.

use std::{
    path::Path,
    time::{Duration, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use statefn::{Error, prelude::*, testing::TestRuntime};

// The bank's `Account` as it was at 44b7600, frozen here: the example has
// moved on (positive amounts, `BankError`), but a fixture is read by the
// function that wrote it. Handlers in the same order, with the same
// arguments and return types.

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("insufficient funds: the balance is {balance}, {asked} was asked")]
pub struct InsufficientFunds {
    balance: i64,
    asked: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transferred {
    from: String,
    to: String,
    amount: i64,
}

#[stateful_function]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Account {
    balance: i64,
}

#[stateful_function]
impl Account {
    #[handler]
    fn deposit(&mut self, amount: i64) -> i64 {
        self.balance += amount;
        self.balance
    }

    #[handler]
    fn withdraw(&mut self, amount: i64) -> Result<i64, InsufficientFunds> {
        if amount > self.balance {
            return Err(InsufficientFunds {
                balance: self.balance,
                asked: amount,
            });
        }
        self.balance -= amount;
        Ok(self.balance)
    }

    #[handler]
    fn transfer(
        &mut self,
        ctx: &mut Context,
        to: String,
        amount: i64,
    ) -> Result<i64, InsufficientFunds> {
        let left = self.withdraw(amount)?;
        ctx.send::<Account>(&to).deposit(amount);
        ctx.emit(
            "transfers",
            &Transferred {
                from: ctx.id().to_owned(),
                to,
                amount,
            },
        );
        Ok(left)
    }

    #[handler]
    fn balance(&self) -> i64 {
        self.balance
    }
}

/// 2026-11-30T05:00:00Z: 40 minutes after the fixture was written, so the
/// 30 s timers are due, the far ones are not and stored replies are fresh.
const OPENED_AT_MS: u64 = 1_796_014_800_000;

fn copy_fixture(dir: &Path) {
    statefn_tests::fixture_dirs::copy_fixture("bank-data-v1", dir);
}

fn open_fixture(dir: &Path) -> Result<TestRuntime, Error> {
    copy_fixture(dir);
    open_copy(dir)
}

/// Opens the copy in `dir` as it is.
fn open_copy(dir: &Path) -> Result<TestRuntime, Error> {
    TestRuntime::builder()
        .data_dir(dir)
        .shards(16)
        .start_time(UNIX_EPOCH + Duration::from_millis(OPENED_AT_MS))
        .register::<Account>()
        .start()
}

#[test]
fn a_data_dir_written_by_an_earlier_build_opens_with_the_same_balances() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rt = open_fixture(dir.path())?;
    rt.run_until_idle();
    let mut expected: Vec<(String, i64)> = vec![("acct-0".into(), 106)];
    expected.extend((1..10).map(|i| (format!("acct-{i}"), if i == 3 { 102 } else { 99 })));
    expected.extend((10..20).map(|i| (format!("acct-{i}"), 120)));
    expected.push(("acct-new".into(), 47));
    // The two 30 s timers (one from the checkpoint, one from the log) fired.
    expected.push(("zed".into(), 11));
    for (id, balance) in expected {
        let got = rt.call(rt.handle::<Account>(&id).balance())?;
        assert_eq!(got, balance, "balance of {id}");
    }
    Ok(())
}

#[test]
fn stored_replies_of_an_earlier_build_answer_retries() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rt = open_fixture(dir.path())?;
    // From the checkpoint.
    let retry = rt.call(
        rt.handle::<Account>("acct-0")
            .deposit(7)
            .idempotency_key("fix-1"),
    )?;
    assert_eq!(retry, 106);
    // From the log.
    let retry = rt.call(
        rt.handle::<Account>("acct-new")
            .transfer("acct-3".into(), 3)
            .idempotency_key("fix-2"),
    )?;
    assert_eq!(retry.ok(), Some(47));
    let reused = rt.call(
        rt.handle::<Account>("acct-0")
            .balance()
            .idempotency_key("fix-1"),
    );
    assert!(
        matches!(reused, Err(Error::IdempotencyKeyReused { .. })),
        "{reused:?}"
    );
    assert_eq!(rt.call(rt.handle::<Account>("acct-0").balance())?, 106);
    Ok(())
}

#[test]
fn egress_records_of_an_earlier_build_keep_their_offsets_and_ids() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rt = open_fixture(dir.path())?;
    rt.run_until_idle();
    let records = rt.egress("transfers")?;
    let got: Vec<(u64, String, Transferred)> = records
        .iter()
        .map(|r| Ok((r.offset, r.id.clone(), r.decode::<Transferred>()?)))
        .collect::<Result<_, Error>>()?;
    let t = |from: &str, to: &str, amount| Transferred {
        from: from.into(),
        to: to.into(),
        amount,
    };
    let first: Vec<(u64, &str, Transferred)> = vec![
        (0, "s9-1", t("acct-0", "acct-10", 1)),
        (1, "s8-1", t("acct-1", "acct-11", 2)),
        (2, "s14-1", t("acct-2", "acct-12", 3)),
        (3, "s11-1", t("acct-3", "acct-13", 4)),
        (4, "s14-2", t("acct-4", "acct-14", 5)),
        (5, "s11-2", t("acct-5", "acct-15", 6)),
        (6, "s11-3", t("acct-6", "acct-16", 7)),
        (7, "s14-3", t("acct-7", "acct-17", 8)),
        (8, "s14-4", t("acct-8", "acct-18", 9)),
        (9, "s3-1", t("acct-9", "acct-19", 10)),
    ];
    assert_eq!(got.len(), 21, "{got:?}");
    for ((offset, id, record), (want_offset, want_id, want)) in got.iter().zip(&first) {
        assert_eq!((offset, id.as_str(), record), (want_offset, *want_id, want));
    }
    // The log-only half: every transfer once, whatever order the appender
    // took them in after the kill.
    let mut second: Vec<(String, Transferred)> = got
        .iter()
        .skip(10)
        .map(|(_, id, r)| (id.clone(), r.clone()))
        .collect();
    second.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want: Vec<(String, Transferred)> = vec![
        ("s5-1".into(), t("acct-10", "acct-19", 2)),
        ("s6-1".into(), t("acct-11", "acct-18", 3)),
        ("s12-1".into(), t("acct-12", "acct-17", 4)),
        ("s12-2".into(), t("acct-13", "acct-16", 5)),
        ("s10-1".into(), t("acct-14", "acct-15", 6)),
        ("s13-1".into(), t("acct-15", "acct-14", 7)),
        ("s9-2".into(), t("acct-16", "acct-13", 8)),
        ("s6-2".into(), t("acct-17", "acct-12", 9)),
        ("s8-2".into(), t("acct-18", "acct-11", 10)),
        ("s8-3".into(), t("acct-19", "acct-10", 11)),
        ("s7-1".into(), t("acct-new", "acct-3", 3)),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(second, want);
    Ok(())
}

#[test]
fn timers_of_an_earlier_build_fire_once_at_their_time() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rt = open_fixture(dir.path())?;
    rt.run_until_idle();
    assert_eq!(rt.call(rt.handle::<Account>("zed").balance())?, 11);
    // 4800 h after phase 2 (in the log), then 7200 h after phase 1 (in the
    // checkpoint); the fixture was written about 40 minutes before
    // `OPENED_AT_MS`.
    rt.advance(Duration::from_secs(4800 * 3600));
    assert_eq!(rt.call(rt.handle::<Account>("zed").balance())?, 2011);
    rt.crash()?;
    rt.advance(Duration::from_secs(2400 * 3600));
    assert_eq!(rt.call(rt.handle::<Account>("zed").balance())?, 3011);
    rt.advance(Duration::from_secs(24 * 3600));
    assert_eq!(rt.call(rt.handle::<Account>("zed").balance())?, 3011);
    Ok(())
}

/// The `format_version` line of the copy's FORMAT file.
fn recorded_format(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("FORMAT")).expect("format file");
    text.lines()
        .find(|l| l.starts_with("format_version"))
        .expect("a format_version line")
        .to_owned()
}

fn set_recorded_format(dir: &Path, version: u32) {
    let path = dir.join("FORMAT");
    let text = std::fs::read_to_string(&path).expect("format file");
    let line = recorded_format(dir);
    let text = text.replace(&line, &format!("format_version = {version}"));
    std::fs::write(path, text).expect("rewrite the format file");
}

#[test]
fn the_first_open_upgrades_the_directory_to_format_2() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_fixture(dir.path());
    assert_eq!(recorded_format(dir.path()), "format_version = 1");
    let mut rt = open_copy(dir.path())?;
    // Recorded before anything runs: the conversion is durable by then.
    assert_eq!(recorded_format(dir.path()), "format_version = 2");
    assert!(rt.dead_letters().is_empty(), "{:?}", rt.dead_letters());
    rt.crash()?;
    rt.run_until_idle();
    assert_eq!(rt.call(rt.handle::<Account>("zed").balance())?, 11);
    assert_eq!(rt.call(rt.handle::<Account>("acct-new").balance())?, 47);
    rt.advance(Duration::from_secs(7200 * 3600));
    assert_eq!(rt.call(rt.handle::<Account>("zed").balance())?, 3011);
    assert!(rt.dead_letters().is_empty(), "{:?}", rt.dead_letters());
    Ok(())
}

#[test]
fn an_upgrade_interrupted_before_it_records_format_2_runs_again() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_fixture(dir.path());
    // The conversion is checkpointed, then the process dies before the
    // format file says 2: the next open converts again (what is named
    // already stays as it is).
    drop(open_copy(dir.path())?);
    set_recorded_format(dir.path(), 1);
    let mut rt = open_copy(dir.path())?;
    assert_eq!(recorded_format(dir.path()), "format_version = 2");
    rt.run_until_idle();
    assert_eq!(rt.call(rt.handle::<Account>("zed").balance())?, 11);
    assert_eq!(rt.call(rt.handle::<Account>("acct-0").balance())?, 106);
    rt.advance(Duration::from_secs(7200 * 3600));
    assert_eq!(rt.call(rt.handle::<Account>("zed").balance())?, 3011);
    assert!(rt.dead_letters().is_empty(), "{:?}", rt.dead_letters());
    Ok(())
}

#[test]
fn positional_messages_in_a_format_2_directory_are_dead_letters_never_run() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_fixture(dir.path());
    // As if positional messages had reached a directory already upgraded:
    // none may run, by position or otherwise.
    set_recorded_format(dir.path(), 2);
    let mut rt = open_copy(dir.path())?;
    rt.run_until_idle();
    rt.advance(Duration::from_secs(7200 * 3600));
    assert_eq!(rt.call(rt.handle::<Account>("zed").balance())?, 0);
    let letters = rt.dead_letters();
    let zed: Vec<_> = letters
        .iter()
        .filter(|l| l.target.to_string() == "Account/zed")
        .collect();
    assert_eq!(zed.len(), 4, "the four delayed deposits: {letters:?}");
    for letter in &letters {
        assert!(
            letter.error.contains("`Account`") && letter.error.contains("0xa1"),
            "{}",
            letter.error
        );
        assert_eq!(letter.message, serde_json::Value::Null);
    }
    Ok(())
}

/// The bank's `Account` with its handlers declared in another order: what
/// the upgrade rule forbids in the deploy that upgrades statefn.
mod reordered {
    use super::*;

    #[stateful_function(name = "Account")]
    #[derive(Debug, Default, Serialize, Deserialize)]
    pub(crate) struct Account {
        balance: i64,
    }

    #[stateful_function]
    impl Account {
        #[handler]
        fn balance(&self) -> i64 {
            self.balance
        }

        #[handler]
        fn deposit(&mut self, amount: i64) -> i64 {
            self.balance += amount;
            self.balance
        }
    }
}

#[test]
fn an_upgrade_that_cannot_convert_a_message_refuses_to_open_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_fixture(dir.path());
    // Position 0 was `deposit(amount)`; here it is `balance()`, which takes
    // no argument: the stored deposits do not fit it.
    let refused = TestRuntime::builder()
        .data_dir(dir.path())
        .shards(16)
        .start_time(UNIX_EPOCH + Duration::from_millis(OPENED_AT_MS))
        .register::<reordered::Account>()
        .start()
        .map(drop)
        .expect_err("refused");
    let message = refused.to_string();
    assert!(
        matches!(
            &refused,
            Error::Storage(statefn::StorageError::Upgrade { from: 1, .. })
        ) && message.contains("`Account`")
            && message.contains("order"),
        "{message}"
    );
    assert_eq!(recorded_format(dir.path()), "format_version = 1");
    // With the build's own declaration order, the same directory upgrades.
    let mut rt = open_copy(dir.path()).expect("upgrades");
    rt.run_until_idle();
    assert_eq!(
        rt.call(rt.handle::<Account>("zed").balance())
            .expect("answers"),
        11
    );
}
