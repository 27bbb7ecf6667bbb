//! Timers people can manage (issue 13): keyed timers that replace each
//! other, cancel by key, periodic timers, `send_at` an absolute time, and
//! cancelling a delayed invocation from Rust. On the test kit's virtual
//! clock, with crashes: every timer is durable.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use statefn::{Address, Error, InvocationId, prelude::*, testing::TestRuntime};

/// Counts what its timers did.
#[stateful_function(name = "t.Clock")]
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Clock {
    /// Labels of the timer runs, in order.
    runs: Vec<String>,
    ticks: u32,
}

#[stateful_function]
impl Clock {
    /// Sets (or replaces) the timer `key` to run `ring(label)` after `secs`.
    #[handler]
    pub fn set(&mut self, ctx: &mut Context, key: String, secs: u64, label: String) {
        ctx.timer::<Clock>(&key)
            .after(Duration::from_secs(secs))
            .ring(label);
    }

    /// Sets the timer `key` to ring at `at_ms` (unix ms).
    #[handler]
    pub fn set_at(&mut self, ctx: &mut Context, key: String, at_ms: u64, label: String) {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(at_ms);
        ctx.timer::<Clock>(&key).at(at).ring(label);
    }

    /// Cancels the timer `key`.
    #[handler]
    pub fn cancel(&mut self, ctx: &mut Context, key: String) {
        ctx.cancel_timer(&key);
    }

    /// Ticks every `secs` under the key `tick`.
    #[handler]
    pub fn start_ticking(&mut self, ctx: &mut Context, secs: u64) {
        ctx.timer::<Clock>("tick")
            .every(Duration::from_secs(secs))
            .tick();
    }

    /// A message to itself at an absolute time.
    #[handler]
    pub fn remind_at(&mut self, ctx: &mut Context, at_ms: u64, label: String) {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(at_ms);
        ctx.send_at::<Clock>(at, ctx.id()).ring(label);
    }

    #[handler(internal)]
    pub fn ring(&mut self, label: String) {
        self.runs.push(label);
    }

    #[handler(internal)]
    pub fn tick(&mut self) {
        self.ticks += 1;
    }

    /// Notes the id of its own invocation.
    #[handler]
    pub fn note_id(&mut self, ctx: &mut Context) {
        self.runs.push(ctx.invocation_id().to_string());
    }

    #[handler]
    pub fn runs(&self) -> Vec<String> {
        self.runs.clone()
    }

    #[handler]
    pub fn add(&mut self, by: u32) -> u32 {
        self.ticks += by;
        self.ticks
    }
}

fn kit() -> Result<TestRuntime, Error> {
    TestRuntime::builder().register::<Clock>().start()
}

fn runs(rt: &TestRuntime, id: &str) -> Result<Vec<String>, Error> {
    Ok(rt.state::<Clock>(id)?.map(|c| c.runs).unwrap_or_default())
}

#[test]
fn a_keyed_timer_set_again_replaces_the_earlier_one_which_never_runs() -> Result<(), Error> {
    let mut rt = kit()?;
    let clock = rt.handle::<Clock>("c");
    rt.call(clock.set("k".into(), 10, "first".into()))?;
    rt.advance(Duration::from_secs(5));
    rt.call(rt.handle::<Clock>("c").set("k".into(), 10, "second".into()))?;
    // Past the first one's due time: it was replaced, so nothing ran.
    rt.advance(Duration::from_secs(7));
    assert_eq!(runs(&rt, "c")?, Vec::<String>::new());
    rt.crash()?;
    rt.advance(Duration::from_secs(60));
    assert_eq!(runs(&rt, "c")?, vec!["second".to_owned()]);
    // Another key is another timer.
    rt.call(rt.handle::<Clock>("c").set("a".into(), 1, "a".into()))?;
    rt.call(rt.handle::<Clock>("c").set("b".into(), 2, "b".into()))?;
    rt.advance(Duration::from_secs(3));
    assert_eq!(runs(&rt, "c")?, vec!["second", "a", "b"]);
    Ok(())
}

#[test]
fn a_cancelled_timer_never_runs_also_after_a_crash() -> Result<(), Error> {
    let mut rt = kit()?;
    rt.call(rt.handle::<Clock>("c").set("k".into(), 10, "x".into()))?;
    rt.call(
        rt.handle::<Clock>("c")
            .set("keep".into(), 20, "kept".into()),
    )?;
    rt.advance(Duration::from_secs(9));
    rt.call(rt.handle::<Clock>("c").cancel("k".into()))?;
    // Cancelling a key without a timer does nothing.
    rt.call(rt.handle::<Clock>("c").cancel("none".into()))?;
    rt.crash()?;
    rt.advance(Duration::from_secs(60));
    assert_eq!(runs(&rt, "c")?, vec!["kept".to_owned()]);
    Ok(())
}

#[test]
fn a_periodic_timer_runs_every_period_until_cancelled() -> Result<(), Error> {
    let mut rt = kit()?;
    rt.call(rt.handle::<Clock>("p").start_ticking(10))?;
    rt.advance(Duration::from_secs(35));
    assert_eq!(rt.state::<Clock>("p")?.map(|c| c.ticks), Some(3));
    rt.crash()?;
    rt.advance(Duration::from_secs(10));
    assert_eq!(rt.state::<Clock>("p")?.map(|c| c.ticks), Some(4));
    rt.call(rt.handle::<Clock>("p").cancel("tick".into()))?;
    rt.advance(Duration::from_secs(100));
    assert_eq!(rt.state::<Clock>("p")?.map(|c| c.ticks), Some(4));
    Ok(())
}

#[test]
fn timers_at_an_absolute_time_run_then_not_before() -> Result<(), Error> {
    let mut rt = kit()?;
    let at = rt.now_ms() + 30_000;
    rt.call(
        rt.handle::<Clock>("a")
            .set_at("k".into(), at, "timer".into()),
    )?;
    rt.call(
        rt.handle::<Clock>("a")
            .remind_at(at + 1_000, "message".into()),
    )?;
    rt.advance(Duration::from_millis(29_999));
    assert!(runs(&rt, "a")?.is_empty());
    rt.advance(Duration::from_millis(1));
    assert_eq!(runs(&rt, "a")?, vec!["timer".to_owned()]);
    rt.advance(Duration::from_secs(1));
    assert_eq!(runs(&rt, "a")?, vec!["timer", "message"]);
    // A time already past runs at once.
    let past = rt.now_ms() - 5_000;
    rt.call(
        rt.handle::<Clock>("a")
            .set_at("late".into(), past, "late".into()),
    )?;
    rt.advance(Duration::from_millis(1));
    assert_eq!(runs(&rt, "a")?, vec!["timer", "message", "late"]);
    Ok(())
}

#[test]
fn a_delayed_invocation_is_cancelled_by_its_id_and_answers_for_its_state() -> Result<(), Error> {
    let mut rt = kit()?;
    let runtime = rt.runtime().clone();
    let enqueue = |key: Option<&str>| {
        let runtime = runtime.clone();
        let key = key.map(str::to_owned);
        async move {
            runtime
                .enqueue_json(
                    "t.Clock",
                    "d",
                    "add",
                    serde_json::json!({"by": 1}),
                    Duration::from_secs(60),
                    key,
                )
                .await
        }
    };
    let cancelled = rt.call(enqueue(Some("payday")))?;
    assert_eq!(cancelled.key(), Some("payday"));
    let ran = rt.call(enqueue(None))?;
    let runtime = rt.runtime().clone();
    rt.call(runtime.cancel_invocation(&cancelled))?;
    rt.crash()?;
    rt.advance(Duration::from_secs(120));
    // Only the other one ran.
    assert_eq!(rt.state::<Clock>("d")?.map(|c| c.ticks), Some(1));
    let runtime = rt.runtime().clone();
    for id in [&cancelled, &ran] {
        let again = rt.call(runtime.cancel_invocation(id));
        assert!(
            matches!(again, Err(Error::InvocationNotPending { .. })),
            "{again:?}"
        );
    }
    let unknown = InvocationId::enqueued(Address::new("t.Clock", "d")?, "never");
    let answer = rt.call(runtime.cancel_invocation(&unknown));
    assert!(
        matches!(answer, Err(Error::UnknownInvocation { .. })),
        "{answer:?}"
    );
    Ok(())
}

#[test]
fn a_timer_of_another_type_or_with_a_bad_key_fails_the_invocation() -> Result<(), Error> {
    let mut rt = kit()?;
    let long = "k".repeat(statefn::MAX_TIMER_KEY + 1);
    let answer = rt.call(rt.handle::<Clock>("c").set(long, 1, "x".into()));
    assert!(
        matches!(answer, Err(Error::InvalidTimer { .. })),
        "{answer:?}"
    );
    let answer = rt.call(rt.handle::<Clock>("c").set(String::new(), 1, "x".into()));
    assert!(
        matches!(answer, Err(Error::InvalidTimer { .. })),
        "{answer:?}"
    );
    rt.advance(Duration::from_secs(5));
    assert_eq!(
        rt.state::<Clock>("c")?,
        None,
        "a failed invocation changes nothing"
    );
    Ok(())
}

#[test]
fn a_typed_call_sent_for_later_runs_at_its_time_unless_cancelled() -> Result<(), Error> {
    let mut rt = kit()?;
    let at = rt.now() + Duration::from_secs(60);
    let kept = rt.call(rt.handle::<Clock>("h").add(1).send_at(at))?;
    let dropped = rt.call(
        rt.handle::<Clock>("h")
            .add(10)
            .send_after(Duration::from_secs(30)),
    )?;
    assert_ne!(kept, dropped);
    let runtime = rt.runtime().clone();
    rt.call(runtime.cancel_invocation(&dropped))?;
    rt.advance(Duration::from_secs(59));
    assert_eq!(rt.state::<Clock>("h")?, None);
    rt.advance(Duration::from_secs(1));
    assert_eq!(rt.state::<Clock>("h")?.map(|c| c.ticks), Some(1));
    Ok(())
}

/// One invocation id from enqueueing to running: the id a delayed
/// invocation's client gets is the one its handler sees, and a keyed
/// timer's run has an id of its own.
#[test]
fn a_delayed_invocation_runs_under_the_id_its_client_was_given() -> Result<(), Error> {
    let mut rt = kit()?;
    let runtime = rt.runtime().clone();
    let id = rt.call(async move {
        runtime
            .enqueue_json(
                "t.Clock",
                "e",
                "note_id",
                serde_json::json!({}),
                Duration::from_secs(60),
                Some("nightly".into()),
            )
            .await
    })?;
    assert_eq!(id.to_string(), "t~2EClock.e.nightly");
    rt.crash()?;
    rt.advance(Duration::from_secs(61));
    assert_eq!(runs(&rt, "e")?, vec![id.to_string()]);
    Ok(())
}

/// An operator's delete takes the instance's keyed timers with its state,
/// durably: none runs, also after a crash.
#[test]
fn deleting_an_instance_deletes_its_keyed_timers() -> Result<(), Error> {
    let mut rt = kit()?;
    rt.call(
        rt.handle::<Clock>("f")
            .set("wake".into(), 60, "woke".into()),
    )?;
    rt.call(rt.handle::<Clock>("f").start_ticking(10))?;
    let runtime = rt.runtime().clone();
    assert!(rt.call(async move { runtime.delete_instance("t.Clock", "f").await })?);
    rt.crash()?;
    rt.advance(Duration::from_secs(120));
    assert_eq!(
        rt.state::<Clock>("f")?,
        None,
        "nothing ran after the delete"
    );
    Ok(())
}

/// `timers_of` lists an instance's keyed timers, from memory and from the
/// store (after a restart), and lists none once the instance is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instances_keyed_timers_are_listed_until_it_is_deleted()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let open = || {
        statefn::Runtime::builder()
            .data_dir(dir.path())
            .register::<Clock>()
            .open()
    };
    let runtime = open().await?;
    let clock = runtime.handle::<Clock>("g");
    clock.set("wake".into(), 3_600, "woke".into()).await?;
    clock.start_ticking(3_600).await?;
    assert_eq!(runtime.timers_of("t.Clock", "g").await?.len(), 2);
    runtime.shutdown().await?;
    let runtime = open().await?;
    let listed = runtime.timers_of("t.Clock", "g").await?;
    assert_eq!(listed.len(), 2, "{listed:?}");
    // Each with its key; the periodic one with its period.
    let mut keys: Vec<(Option<String>, Option<u64>)> =
        listed.iter().map(|t| (t.key.clone(), t.every_ms)).collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            (Some("tick".to_owned()), Some(3_600_000)),
            (Some("wake".to_owned()), None),
        ]
    );
    assert!(runtime.delete_instance("t.Clock", "g").await?);
    assert!(runtime.timers_of("t.Clock", "g").await?.is_empty());
    runtime.shutdown().await?;
    let runtime = open().await?;
    assert!(runtime.timers_of("t.Clock", "g").await?.is_empty());
    assert!(!runtime.delete_instance("t.Clock", "g").await?);
    runtime.shutdown().await?;
    Ok(())
}
