//! What a handler learns from its `Context` inside a runtime (issue 13,
//! "Context that tests can control"): the test kit's virtual time, the
//! sending instance, an invocation id that a retry keeps, randomness seeded
//! by it, and resources given at build time. A delayed message keeps its
//! caller and invocation id across a crash (record format 2 stores them).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use statefn::{RetryPolicy, prelude::*, rand::Rng, testing::TestRuntime};

/// A price table: a resource, not state.
struct Prices {
    cents: u64,
}

/// How many `record`s still fail (a panic rolls state back, so this lives
/// outside it).
struct Failures(AtomicU32);

/// What each invocation saw.
#[stateful_function(name = "ctx.Probe")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Probe {
    seen: Vec<Seen>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    now_ms: u128,
    caller: Option<String>,
    invocation: String,
    roll: u64,
    price: Option<u64>,
}

#[stateful_function]
impl Probe {
    #[handler]
    fn record(&mut self, ctx: &Context) {
        let failures = ctx.resource::<Failures>().expect("given at build time");
        if failures
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            panic!("failing on purpose");
        }
        self.seen.push(Seen {
            now_ms: ctx
                .now()
                .duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_millis(),
            caller: ctx.caller().map(ToString::to_string),
            invocation: ctx.invocation_id().to_string(),
            roll: ctx.rng().random(),
            price: ctx.resource::<Prices>().map(|p| p.cents),
        });
    }

    #[handler]
    fn poke(&mut self, ctx: &Context, to: String, after_secs: u64) {
        if after_secs == 0 {
            ctx.send::<Probe>(&to).record();
        } else {
            ctx.send_after::<Probe>(Duration::from_secs(after_secs), &to)
                .record();
        }
    }

    /// Records through its keyed timer `remind`, `after_secs` from now.
    #[handler]
    fn remind(&mut self, ctx: &mut Context, after_secs: u64) {
        ctx.timer::<Probe>("remind")
            .after(Duration::from_secs(after_secs))
            .record();
    }

    #[handler]
    fn seen(&self) -> Vec<Seen> {
        self.seen.clone()
    }
}

const START: Duration = Duration::from_secs(1_800_000_000);

fn runtime() -> TestRuntime {
    failing(0)
}

/// A runtime whose next `failures` `record`s panic.
fn failing(failures: u32) -> TestRuntime {
    TestRuntime::builder()
        .resource(Arc::new(Failures(AtomicU32::new(failures))))
        .start_time(UNIX_EPOCH + START)
        .retry_policy(RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        })
        .resource(Arc::new(Prices { cents: 40 }))
        .register::<Probe>()
        .start()
        .expect("starts")
}

fn seen(rt: &mut TestRuntime, id: &str) -> Vec<Seen> {
    let h = rt.handle::<Probe>(id);
    rt.call(h.seen()).expect("seen")
}

#[test]
fn handlers_see_virtual_time_their_caller_and_resources() {
    let mut rt = runtime();
    let a = rt.handle::<Probe>("a");
    rt.call(a.record()).expect("record");
    rt.advance(Duration::from_secs(60));
    rt.call(a.poke("b".into(), 0)).expect("poke");
    rt.run_until_idle();
    let at_a = seen(&mut rt, "a");
    let at_b = seen(&mut rt, "b");
    assert_eq!(at_a.len(), 1);
    assert_eq!(at_a[0].now_ms, START.as_millis(), "the virtual start time");
    assert_eq!(at_a[0].caller, None, "a client call has no caller");
    assert_eq!(at_a[0].price, Some(40));
    assert_eq!(at_b.len(), 1);
    assert_eq!(at_b[0].now_ms, START.as_millis() + 60_000);
    assert_eq!(at_b[0].caller.as_deref(), Some("ctx.Probe/a"));
    assert!(at_b[0].invocation.starts_with("m-"), "{:?}", at_b[0]);
    assert_ne!(at_a[0].invocation, at_b[0].invocation);
    assert_eq!(
        rt.now(),
        SystemTime::UNIX_EPOCH + START + Duration::from_secs(60)
    );
}

#[test]
fn a_retried_message_keeps_its_invocation_id_and_draws_the_same_numbers() {
    let mut rt = failing(2);
    let a = rt.handle::<Probe>("a");
    rt.call(a.poke("b".into(), 0)).expect("poke");
    rt.advance(Duration::from_secs(1));
    rt.run_until_idle();
    let first = seen(&mut rt, "b");
    assert_eq!(first.len(), 1, "applied once, after two failed attempts");
    // The same message again, from the same sender, without failures: a
    // new invocation, other numbers.
    rt.call(a.poke("b".into(), 0)).expect("poke");
    rt.run_until_idle();
    let both = seen(&mut rt, "b");
    assert_eq!(both.len(), 2);
    assert_ne!(both[0].invocation, both[1].invocation);
    assert_ne!(both[0].roll, both[1].roll);
    // Run the first one again elsewhere, without failures: the id its
    // retries kept is the one its first attempt had, so the roll matches.
    let mut fresh = runtime();
    let fa = fresh.handle::<Probe>("a");
    fresh.call(fa.poke("b".into(), 0)).expect("poke");
    fresh.run_until_idle();
    let unfailed = seen(&mut fresh, "b");
    assert_eq!(unfailed[0].invocation, first[0].invocation);
    assert_eq!(unfailed[0].roll, first[0].roll);
}

/// A keyed timer's run that fails is retried as the same invocation: the
/// id (and so the numbers) its first attempt had.
#[test]
fn a_retried_keyed_timer_keeps_its_invocation_id_and_draws_the_same_numbers() {
    let run = |failures: u32| {
        let mut rt = failing(failures);
        let a = rt.handle::<Probe>("a");
        rt.call(a.remind(1)).expect("remind");
        for _ in 0..20 {
            rt.advance(Duration::from_secs(60));
            rt.run_until_idle();
        }
        seen(&mut rt, "a")
    };
    let retried = run(2);
    let unfailed = run(0);
    assert_eq!(retried.len(), 1, "applied once, after two failed attempts");
    assert_eq!(unfailed.len(), 1);
    assert!(retried[0].invocation.starts_with("t-"), "{:?}", retried[0]);
    assert_eq!(retried[0].invocation, unfailed[0].invocation);
    assert_eq!(retried[0].roll, unfailed[0].roll);
    assert_ne!(retried[0].now_ms, unfailed[0].now_ms, "it ran later");
}

#[test]
fn a_delayed_message_keeps_its_caller_and_id_across_a_crash() {
    let mut rt = runtime();
    let a = rt.handle::<Probe>("a");
    rt.call(a.poke("b".into(), 3600)).expect("poke");
    rt.checkpoint();
    rt.crash().expect("crash");
    rt.restart().expect("restart");
    rt.advance(Duration::from_secs(3601));
    rt.run_until_idle();
    let at_b = seen(&mut rt, "b");
    assert_eq!(at_b.len(), 1);
    assert_eq!(at_b[0].caller.as_deref(), Some("ctx.Probe/a"));
    assert!(at_b[0].invocation.starts_with("m-"), "{:?}", at_b[0]);
}
