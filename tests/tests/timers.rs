//! Delayed messages (`send_after`) are delivered once, not before their time.

use std::time::{Duration, Instant};

use statefn::prelude::*;
use statefn_examples::cart::{Cart, CartStatus};
use statefn_tests::{Emitter, Recorder, eventually};

#[tokio::test]
async fn a_delayed_message_arrives_once_and_not_early() -> Result<(), Error> {
    let runtime = Runtime::builder()
        .in_memory()
        .register::<Emitter>()
        .register::<Recorder>()
        .open()
        .await?;
    let started = Instant::now();
    runtime
        .handle::<Emitter>("e")
        .emit_later("r".into(), 300)
        .await?;
    let recorder = runtime.handle::<Recorder>("r");
    let seen = eventually(10, || async {
        let seen = recorder.seen().await.ok()?;
        (!seen.is_empty()).then_some(seen)
    })
    .await;
    // A lower bound only: a timer can never fire before its due time.
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(seen, vec![("e".to_owned(), 0)]);
    // Give a duplicate the chance to show up: it must not.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(recorder.seen().await?.len(), 1);
    runtime.shutdown().await
}

#[tokio::test]
async fn an_idle_cart_expires_but_a_touched_one_waits_for_its_latest_timer() -> Result<(), Error> {
    let runtime = Runtime::builder()
        .in_memory()
        .register::<Cart>()
        .open()
        .await?;
    let cart = runtime.handle::<Cart>("idle");
    cart.set_idle_timeout(100).await?;
    cart.add("apple".into(), 1).await?.expect("open");
    cart.add("pear".into(), 1).await?.expect("open");
    let view = eventually(10, || async {
        let v = cart.view().await.ok()?;
        (v.status == CartStatus::Expired).then_some(v)
    })
    .await;
    assert!(view.items.is_empty());
    runtime.shutdown().await
}
