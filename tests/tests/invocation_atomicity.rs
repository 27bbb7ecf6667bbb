//! An invocation is atomic: `Err` or a panic changes no state and sends no
//! message, and the runtime keeps serving.

use statefn::prelude::*;
use statefn_tests::{Fragile, Recorder};

async fn runtime() -> Result<Runtime, Error> {
    Runtime::builder()
        .in_memory()
        .register::<Fragile>()
        .register::<Recorder>()
        .open()
        .await
}

#[tokio::test]
async fn a_panicking_handler_changes_nothing_and_sends_nothing() -> Result<(), Error> {
    let runtime = runtime().await?;
    let fragile = runtime.handle::<Fragile>("f");
    fragile.set(7).await?;
    let err = fragile
        .set_then_panic(99, "witness".into())
        .await
        .expect_err("a panic is an error for the caller");
    match &err {
        Error::HandlerPanicked {
            function,
            id,
            handler,
            message,
        } => {
            assert_eq!(
                (function.as_str(), id.as_str(), handler.as_str()),
                ("test.Fragile", "f", "set_then_panic")
            );
            assert!(message.contains("boom at 99"), "{message}");
        }
        other => panic!("expected HandlerPanicked, got {other:?}"),
    }
    assert_eq!(fragile.value().await?, 7, "state unchanged after the panic");
    // The runtime (and this instance) keep serving.
    assert_eq!(fragile.set(8).await?, 8);
    // The message sent before the panic never left: the witness saw nothing.
    // The set(8) above ran after the panicking invocation on the same shard,
    // and a send would have been delivered before its reply.
    assert!(
        runtime
            .handle::<Recorder>("witness")
            .seen()
            .await?
            .is_empty()
    );
    runtime.shutdown().await
}

#[tokio::test]
async fn an_erroring_handler_changes_nothing_and_sends_nothing() -> Result<(), Error> {
    let runtime = runtime().await?;
    let fragile = runtime.handle::<Fragile>("f");
    fragile.set(7).await?;
    let reply = fragile.set_then_fail(99, "witness".into()).await?;
    assert_eq!(reply, Err("refused 99".to_owned()));
    assert_eq!(fragile.value().await?, 7, "state unchanged after Err");
    assert!(
        runtime
            .handle::<Recorder>("witness")
            .seen()
            .await?
            .is_empty()
    );
    runtime.shutdown().await
}

#[tokio::test]
async fn a_retried_err_gets_the_same_err_without_running_again() -> Result<(), Error> {
    let runtime = runtime().await?;
    let fragile = runtime.handle::<Fragile>("f");
    let first = fragile
        .set_then_fail(1, "w".into())
        .idempotency_key("k")
        .await?;
    let again = fragile
        .set_then_fail(2, "w".into())
        .idempotency_key("k")
        .await?;
    assert_eq!(first, Err("refused 1".to_owned()));
    assert_eq!(again, first, "the stored reply, not a new run");
    runtime.shutdown().await
}
