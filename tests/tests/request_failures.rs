//! Request/reply that can fail: the reply handler gets the caller's
//! correlation value and either the callee's value or a typed failure
//! (`Rejected`, `CalleeFailed`, `Timeout`), exactly once: also when the
//! failed request is replayed, when the reply comes after the timeout, and
//! across crashes at any step (virtual time, the test kit).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use statefn::{RequestFailed, RetryPolicy, prelude::*, testing::TestRuntime};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("refused")]
pub struct Refused;

/// Answers `n * 10`, refuses 0, panics while broken.
#[stateful_function(name = "rr.Callee")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Callee {
    broken: bool,
    calls: u32,
}

#[stateful_function]
impl Callee {
    #[handler]
    fn set_broken(&mut self, broken: bool) {
        self.broken = broken;
    }

    #[handler]
    fn answer(&mut self, n: u32) -> Result<u32, Refused> {
        assert!(!self.broken, "the callee is broken");
        self.calls += 1;
        if n == 0 { Err(Refused) } else { Ok(n * 10) }
    }

    #[handler]
    fn calls(&self) -> u32 {
        self.calls
    }
}

/// Asks callees and keeps every outcome it is told, with its tag.
#[stateful_function(name = "rr.Caller")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Caller {
    outcomes: Vec<(String, String)>,
}

#[stateful_function]
impl Caller {
    #[handler]
    fn ask(&mut self, ctx: &mut Context, to: String, n: u32, tag: String, timeout_ms: u64) {
        let request = ctx.request::<Callee>(&to).answer(n);
        let request = match timeout_ms {
            0 => request,
            ms => request.timeout(Duration::from_millis(ms)),
        };
        request.reply_to_with(CallerMessage::answered(), tag);
    }

    /// Several `ask`s in one invocation: `(to, n, tag, timeout_ms)`.
    #[handler]
    fn ask_all(&mut self, ctx: &mut Context, asks: Vec<(String, u32, String, u64)>) {
        for (to, n, tag, timeout_ms) in asks {
            self.ask(ctx, to, n, tag, timeout_ms);
        }
    }

    #[handler(internal)]
    fn answered(&mut self, tag: String, reply: Result<u32, RequestFailed<Refused>>) {
        let outcome = match reply {
            Ok(v) => format!("ok {v}"),
            Err(RequestFailed::Rejected(Refused)) => "rejected".to_owned(),
            Err(RequestFailed::Timeout) => "timeout".to_owned(),
            Err(RequestFailed::CalleeFailed { error }) => format!("failed: {error}"),
        };
        self.outcomes.push((tag, outcome));
    }

    #[handler]
    fn outcomes(&self) -> Vec<(String, String)> {
        self.outcomes.clone()
    }

    /// Passes its context to a helper that names another type's handler.
    #[handler]
    fn misdirect(&mut self, ctx: &mut Context) {
        self.outcomes.push(("misdirect".into(), "ran".into()));
        ask_for_someone_else(ctx);
    }
}

/// A helper sees a plain `&Context`, which does not know its caller's
/// type: a reply target of another type is refused when the handler runs
/// (inside a handler it does not compile: see the macros' UI tests).
fn ask_for_someone_else(ctx: &Context) {
    ctx.request::<Callee>("x")
        .answer(1)
        .reply_to_with(OtherMessage::answered(), "t".to_owned());
}

/// Has a reply handler of the right shape, but asked nothing.
#[stateful_function(name = "rr.Other")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Other {
    answers: u32,
}

#[stateful_function]
impl Other {
    #[handler(internal)]
    fn answered(&mut self, tag: String, reply: Result<u32, RequestFailed<Refused>>) {
        let _ = (tag, reply);
        self.answers += 1;
    }
}

fn kit(retry: RetryPolicy) -> Result<TestRuntime, Error> {
    TestRuntime::builder()
        .register::<Caller>()
        .register::<Callee>()
        .retry_policy(retry)
        .start()
}

fn ask(to: &str, n: u32, tag: &str, timeout_ms: u64) -> (String, u32, String, u64) {
    (to.to_owned(), n, tag.to_owned(), timeout_ms)
}

fn pairs(outcomes: &[(String, String)]) -> Vec<(&str, &str)> {
    outcomes
        .iter()
        .map(|(t, o)| (t.as_str(), o.as_str()))
        .collect()
}

#[test]
fn the_reply_handler_gets_the_correlation_and_the_value_or_the_callees_err()
-> Result<(), Box<dyn std::error::Error>> {
    let mut rt = kit(RetryPolicy::default())?;
    let caller = rt.handle::<Caller>("c");
    for (to, n, tag, timeout) in [ask("x", 3, "three", 0), ask("x", 0, "zero", 1_000)] {
        rt.call(caller.ask(to, n, tag, timeout))?;
    }
    rt.run_until_idle();
    rt.advance(Duration::from_secs(5));
    let outcomes = rt.call(caller.outcomes())?;
    assert_eq!(pairs(&outcomes), [("three", "ok 30"), ("zero", "rejected")]);
    Ok(())
}

#[test]
fn a_callee_that_panics_every_attempt_answers_callee_failed_once_also_when_replayed()
-> Result<(), Box<dyn std::error::Error>> {
    let mut rt = kit(RetryPolicy::default())?;
    let caller = rt.handle::<Caller>("c");
    let callee = rt.handle::<Callee>("x");
    rt.call(callee.set_broken(true))?;
    rt.call(caller.ask("x".into(), 1, "t".into(), 0))?;
    rt.advance(Duration::from_secs(60));
    let outcomes = rt.call(caller.outcomes())?;
    let [(tag, outcome)] = outcomes.as_slice() else {
        panic!("one outcome expected: {outcomes:?}");
    };
    assert_eq!(tag, "t");
    assert!(
        outcome.starts_with("failed: ") && outcome.contains("the callee is broken"),
        "{outcome}"
    );
    // The request is a dead letter; replayed once the callee works, it runs
    // the callee but sends no second answer.
    let letters = rt.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    rt.call(callee.set_broken(false))?;
    rt.replay_dead_letter(letters[0].id)?;
    rt.advance(Duration::from_secs(60));
    assert_eq!(rt.call(callee.calls())?, 1, "the replay ran the callee");
    assert_eq!(rt.call(caller.outcomes())?, outcomes, "no second answer");
    Ok(())
}

#[test]
fn a_request_that_times_out_answers_timeout_and_its_late_reply_is_dropped()
-> Result<(), Box<dyn std::error::Error>> {
    // The callee's retries come long after the timeout.
    let slow = RetryPolicy {
        max_attempts: 5,
        initial_backoff: Duration::from_secs(10),
        max_backoff: Duration::from_secs(10),
    };
    let mut rt = kit(slow)?;
    let caller = rt.handle::<Caller>("c");
    let callee = rt.handle::<Callee>("x");
    rt.call(callee.set_broken(true))?;
    rt.call(caller.ask("x".into(), 2, "t".into(), 1_000))?;
    rt.advance(Duration::from_secs(2));
    assert_eq!(pairs(&rt.call(caller.outcomes())?), [("t", "timeout")]);
    // The callee recovers: its retry succeeds (its effects stay), and the
    // reply it sends back is dropped.
    rt.call(callee.set_broken(false))?;
    rt.advance(Duration::from_secs(60));
    assert_eq!(rt.call(callee.calls())?, 1, "the retry ran");
    assert_eq!(pairs(&rt.call(caller.outcomes())?), [("t", "timeout")]);
    Ok(())
}

#[test]
fn a_reply_target_of_another_type_named_in_a_helper_fails_the_invocation()
-> Result<(), Box<dyn std::error::Error>> {
    let mut rt = kit(RetryPolicy::default())?;
    let caller = rt.handle::<Caller>("c");
    let err = rt.call(caller.misdirect()).expect_err("refused");
    assert!(
        matches!(&err, Error::ReplyTargetMismatch { caller, target, handler }
            if caller == "rr.Caller" && target == "rr.Other" && handler == "answered"),
        "{err:?}"
    );
    assert!(
        rt.call(caller.outcomes())?.is_empty(),
        "nothing was applied"
    );
    assert_eq!(
        rt.call(rt.handle::<Callee>("x").calls())?,
        0,
        "nothing was sent"
    );
    Ok(())
}

#[test]
fn a_reply_before_its_timeout_disarms_the_timeout() -> Result<(), Box<dyn std::error::Error>> {
    let mut rt = kit(RetryPolicy::default())?;
    let caller = rt.handle::<Caller>("c");
    rt.call(caller.ask("x".into(), 4, "t".into(), 1_000))?;
    rt.run_until_idle();
    assert_eq!(pairs(&rt.call(caller.outcomes())?), [("t", "ok 40")]);
    rt.advance(Duration::from_secs(10));
    assert_eq!(pairs(&rt.call(caller.outcomes())?), [("t", "ok 40")]);
    Ok(())
}

/// One run: a request answered in time, one to a broken callee that times
/// out (its dead letter's failure comes later and is dropped), and one
/// without a timeout to the broken callee (answered `CalleeFailed`), with a
/// crash after `crash_at` steps (none if the run is shorter). Returns the
/// outcomes and whether the crash happened.
fn run_with_crash_after(crash_at: usize) -> Result<(Vec<(String, String)>, bool), Error> {
    let dir = tempfile::tempdir().map_err(|e| Error::Config(e.to_string()))?;
    let retry = RetryPolicy {
        max_attempts: 2,
        initial_backoff: Duration::from_secs(3),
        max_backoff: Duration::from_secs(3),
    };
    let mut rt = TestRuntime::builder()
        .data_dir(dir.path())
        .register::<Caller>()
        .register::<Callee>()
        .retry_policy(retry)
        .seed(7)
        .start()?;
    rt.call(rt.handle::<Callee>("broken").set_broken(true))?;
    let asks = vec![
        ask("fine", 5, "in-time", 5_000),
        ask("broken", 1, "times-out", 1_000),
        ask("broken", 1, "fails", 0),
    ];
    // Keyed, so that the client's retry after a crash asks at most once.
    let mut asked = rt.start(
        rt.handle::<Caller>("c")
            .ask_all(asks.clone())
            .idempotency_key("asks"),
    );
    let mut crashed = false;
    for _ in 0..crash_at {
        if !rt.step() {
            break;
        }
    }
    if rt.step() {
        rt.crash()?;
        crashed = true;
    }
    if !matches!(asked.result(), Some(Ok(()))) {
        rt.call(
            rt.handle::<Caller>("c")
                .ask_all(asks)
                .idempotency_key("asks"),
        )?;
    }
    rt.advance(Duration::from_secs(60));
    let mut outcomes = rt.call(rt.handle::<Caller>("c").outcomes())?;
    outcomes.sort();
    rt.shutdown();
    Ok((outcomes, crashed))
}

#[test]
fn with_a_crash_at_any_step_each_request_is_answered_exactly_once() -> Result<(), Error> {
    let mut crash_at = 0;
    loop {
        let (outcomes, crashed) = run_with_crash_after(crash_at)?;
        let tags: Vec<&str> = outcomes.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            tags,
            ["fails", "in-time", "times-out"],
            "crash after {crash_at} steps: {outcomes:?}"
        );
        let by_tag = |tag: &str| {
            outcomes
                .iter()
                .find(|(t, _)| t == tag)
                .map(|(_, o)| o.as_str())
        };
        assert_eq!(by_tag("in-time"), Some("ok 50"), "crash after {crash_at}");
        assert_eq!(
            by_tag("times-out"),
            Some("timeout"),
            "crash after {crash_at}"
        );
        assert!(
            by_tag("fails").is_some_and(|o| o.starts_with("failed: ")),
            "crash after {crash_at}: {outcomes:?}"
        );
        if !crashed {
            assert!(crash_at > 3, "the run has steps to crash in");
            return Ok(());
        }
        crash_at += 1;
    }
}
