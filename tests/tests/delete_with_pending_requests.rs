//! `DELETE /admin/state/{type}/{id}` (`Runtime::delete_instance`) on an
//! instance with a request in flight: the deletion removes the request's
//! timeout with the instance's other timers, so the timeout never fires;
//! the reply, when it comes, is dropped with a trace (an info log, a
//! metric) and brings nothing back. A reply to a request *without* a
//! timeout is an ordinary message: it arrives and starts from `Default`,
//! as the deletion's documentation says.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use statefn::{RequestFailed, prelude::*, testing::TestRuntime};
use tracing::{
    Event, Level, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{Layer, layer::Context as LayerContext, prelude::*};

#[stateful_function(name = "test.Asker")]
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Asker {
    asked: u32,
    answers: Vec<String>,
}

#[stateful_function]
impl Asker {
    #[handler]
    fn ask(&mut self, ctx: &mut Context, answerer: String, with_timeout: bool) {
        self.asked += 1;
        let request = ctx.request::<Answerer>(&answerer).answer();
        let request = if with_timeout {
            request.timeout(Duration::from_secs(60))
        } else {
            request
        };
        request.reply_to(AskerMessage::answered());
    }

    #[handler(internal)]
    fn answered(&mut self, reply: Result<u32, RequestFailed>) {
        self.answers.push(format!("{reply:?}"));
    }
}

#[stateful_function(name = "test.Answerer")]
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Answerer {
    answered: u32,
}

/// Answerers that panic on their next attempt (then are retried).
static FAIL_ONCE: Mutex<Option<HashSet<String>>> = Mutex::new(None);

#[stateful_function]
impl Answerer {
    #[handler]
    fn answer(&mut self, ctx: &Context) -> u32 {
        let mut failing = FAIL_ONCE.lock().unwrap_or_else(|e| e.into_inner());
        if failing.as_mut().is_some_and(|ids| ids.remove(ctx.id())) {
            panic!("first attempt of {} fails", ctx.id());
        }
        self.answered += 1;
        self.answered
    }
}

/// The messages of events at `INFO` or above.
#[derive(Clone, Default)]
struct Logged(Arc<Mutex<Vec<String>>>);

struct Message<'a>(&'a mut String);

impl Visit for Message<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl<S: Subscriber> Layer<S> for Logged {
    fn on_event(&self, event: &Event<'_>, _: LayerContext<'_, S>) {
        if *event.metadata().level() <= Level::INFO {
            let mut text = String::new();
            event.record(&mut Message(&mut text));
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push(text);
        }
    }
}

impl Logged {
    fn dropped_replies(&self) -> Vec<String> {
        let logged = self.0.lock().unwrap_or_else(|e| e.into_inner());
        logged
            .iter()
            .filter(|m| m.contains("dropped a reply"))
            .cloned()
            .collect()
    }
}

/// `test.Asker/a` asks `answerer`, whose first attempt fails: once idle,
/// the request waits for its retry (after 100 ms of virtual time),
/// unanswered.
fn asked(rt: &mut TestRuntime, answerer: &str, with_timeout: bool) {
    FAIL_ONCE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_default()
        .insert(answerer.to_owned());
    rt.call(
        rt.handle::<Asker>("a")
            .ask(answerer.to_owned(), with_timeout),
    )
    .expect("asked");
    assert_eq!(
        rt.state::<Answerer>(answerer).ok().flatten(),
        None,
        "not answered yet"
    );
}

/// Deletes `test.Asker/a`; whether there was anything to delete.
fn delete_asker(rt: &mut TestRuntime) -> bool {
    let runtime = rt.runtime().clone();
    rt.call(async move { runtime.delete_instance("test.Asker", "a").await })
        .expect("deleted")
}

#[test]
fn a_reply_after_the_asker_was_deleted_is_dropped_with_a_trace_and_brings_nothing_back()
-> Result<(), Box<dyn std::error::Error>> {
    let logged = Logged::default();
    let subscriber = tracing_subscriber::registry().with(logged.clone());
    let _default = tracing::subscriber::set_default(subscriber);
    let mut rt = TestRuntime::builder()
        .register::<Asker>()
        .register::<Answerer>()
        .start()?;
    asked(&mut rt, "slow", true);
    let runtime = rt.runtime().clone();
    let timers = rt.call(async move { runtime.timers_of("test.Asker", "a").await })?;
    assert_eq!(timers.len(), 1, "the request's timeout: {timers:?}");

    assert!(delete_asker(&mut rt), "it had state and a timer");
    let runtime = rt.runtime().clone();
    assert!(
        rt.call(async move { runtime.timers_of("test.Asker", "a").await })?
            .is_empty()
    );
    assert!(logged.dropped_replies().is_empty());
    // The retry answers; the reply finds no pending request.
    rt.advance(Duration::from_secs(1));
    assert_eq!(
        rt.state::<Answerer>("slow")?,
        Some(Answerer { answered: 1 })
    );
    assert_eq!(rt.state::<Asker>("a")?, None, "no resurrection");
    let dropped = logged.dropped_replies();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert!(dropped[0].contains("test.Asker/a"), "{dropped:?}");
    assert!(dropped[0].contains("answered"), "{dropped:?}");

    // The timeout went with the instance: past it, nothing fires.
    rt.advance(Duration::from_secs(120));
    assert_eq!(rt.state::<Asker>("a")?, None);
    assert_eq!(logged.dropped_replies().len(), 1);
    let runtime = rt.runtime().clone();
    assert!(
        rt.call(async move { runtime.timers_of("test.Asker", "a").await })?
            .is_empty()
    );
    assert!(rt.dead_letters().is_empty());
    Ok(())
}

#[test]
fn a_reply_to_a_request_without_a_timeout_arrives_after_a_deletion_like_any_message()
-> Result<(), Box<dyn std::error::Error>> {
    let mut rt = TestRuntime::builder()
        .register::<Asker>()
        .register::<Answerer>()
        .start()?;
    asked(&mut rt, "plain", false);
    // Nothing of the request is the asker's but its state: no timer.
    assert!(delete_asker(&mut rt));
    assert_eq!(rt.state::<Asker>("a")?, None);
    rt.advance(Duration::from_secs(1));
    assert_eq!(
        rt.state::<Asker>("a")?,
        Some(Asker {
            asked: 0,
            answers: vec!["Ok(1)".into()]
        }),
        "the reply started a fresh instance"
    );
    Ok(())
}
