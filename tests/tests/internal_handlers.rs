//! `#[handler(internal)]`: reached by other functions (`ctx.send`,
//! `ctx.send_after`, reply targets) and through `Handle::internal`, refused
//! at compile time by a `Handle` and by the typed HTTP routes, and by name
//! (`Runtime::call_json`, `enqueue_json`, and so HTTP) exactly like a
//! handler that does not exist.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use statefn::{JsonReply, prelude::*, testing::TestRuntime};
use statefn_examples::cart::{Cart, CartStatus, Inventory};

/// Counts what reached its internal handlers.
#[stateful_function(name = "test.Relay")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Relay {
    sent: u32,
    timed: u32,
    replies: Vec<u32>,
}

#[stateful_function]
impl Relay {
    /// Public: starts everything else.
    #[handler]
    fn start(&mut self, ctx: &mut Context) {
        ctx.send::<Relay>(ctx.id()).received();
        ctx.send_after::<Relay>(Duration::from_secs(60), ctx.id())
            .tick();
        ctx.request::<Relay>("echo")
            .echo(7)
            .reply_to(RelayMessage::answered());
    }

    #[handler(internal)]
    fn received(&mut self) {
        self.sent += 1;
    }

    #[handler(internal)]
    fn tick(&mut self) {
        self.timed += 1;
    }

    #[handler(internal)]
    fn echo(&self, n: u32) -> u32 {
        n
    }

    #[handler(internal)]
    fn answered(&mut self, n: Result<u32, statefn::RequestFailed>) {
        self.replies.extend(n.ok());
    }

    #[handler]
    fn counts(&self) -> (u32, u32, Vec<u32>) {
        (self.sent, self.timed, self.replies.clone())
    }
}

#[test]
fn messages_timers_and_replies_from_functions_reach_internal_handlers()
-> Result<(), Box<dyn std::error::Error>> {
    let mut rt = TestRuntime::builder().register::<Relay>().start()?;
    let relay = rt.handle::<Relay>("r");
    rt.call(relay.start())?;
    rt.run_until_idle();
    assert_eq!(rt.call(relay.counts())?, (1, 0, vec![7]));
    rt.advance(Duration::from_secs(61));
    assert_eq!(rt.call(relay.counts())?, (1, 1, vec![7]));
    Ok(())
}

#[test]
fn the_cart_reaches_its_internal_reply_and_timer_handlers() -> Result<(), Box<dyn std::error::Error>>
{
    let mut rt = TestRuntime::builder()
        .register::<Cart>()
        .register::<Inventory>()
        .start()?;
    rt.call(rt.handle::<Inventory>("apple").restock(5))?;
    let ordered = rt.handle::<Cart>("ordered");
    rt.call(ordered.add("apple".into(), 2))??;
    rt.call(ordered.checkout())??;
    rt.run_until_idle();
    let view = rt.call(ordered.view())?;
    assert_eq!(view.status, CartStatus::Ordered, "`reserved` ran: {view:?}");
    let idle = rt.handle::<Cart>("idle");
    rt.call(idle.add("apple".into(), 1))??;
    rt.advance(Duration::from_secs(16 * 60));
    assert_eq!(rt.call(idle.view())?.status, CartStatus::Expired);
    Ok(())
}

#[tokio::test]
async fn a_handle_reaches_an_internal_handler_through_internal() -> Result<(), statefn::Error> {
    let runtime = Runtime::builder()
        .in_memory()
        .register::<Relay>()
        .open()
        .await?;
    let relay = runtime.handle::<Relay>("r");
    // `relay.tick()` does not compile (trybuild
    // internal_handler_called_through_a_handle); trusted code says so.
    relay.internal().tick().await?;
    assert_eq!(relay.internal().echo(3).await?, 3);
    assert_eq!(relay.internal().counts().await?, (0, 1, vec![]));
    assert_eq!(relay.counts().await?, (0, 1, vec![]));
    runtime.shutdown().await
}

#[tokio::test]
async fn calls_by_name_refuse_an_internal_handler_exactly_like_a_missing_one()
-> Result<(), statefn::Error> {
    let runtime = Runtime::builder()
        .in_memory()
        .register::<Relay>()
        .open()
        .await?;
    let json = serde_json::json!({});
    let by_name = |handler: &'static str| {
        let runtime = runtime.clone();
        let json = json.clone();
        async move {
            let call = runtime
                .call_json("test.Relay", "r", handler, json.clone(), None)
                .await
                .map(|_| ());
            let enqueue = runtime
                .enqueue_json("test.Relay", "r", handler, json, Duration::ZERO, None)
                .await
                .map(|_| ());
            (call, enqueue)
        }
    };
    for internal in ["received", "tick", "answered"] {
        let (call, enqueue) = by_name(internal).await;
        let (missing_call, missing_enqueue) = by_name("no_such_handler").await;
        for (refused, missing) in [(call, missing_call), (enqueue, missing_enqueue)] {
            let refused = refused.expect_err("internal handlers are not callable by name");
            let missing = missing.expect_err("no such handler");
            assert!(
                matches!(&refused, statefn::Error::UnknownHandler { known, .. }
                    if known == &["start", "counts"]),
                "{refused:?}"
            );
            assert_eq!(
                refused.to_string().replace(internal, "no_such_handler"),
                missing.to_string()
            );
        }
    }
    // Nothing ran, and public handlers are callable by name.
    assert_eq!(
        runtime
            .call_json("test.Relay", "r", "counts", json.clone(), None)
            .await?,
        JsonReply::Ok(serde_json::json!([0, 0, []]))
    );
    runtime.shutdown().await
}
