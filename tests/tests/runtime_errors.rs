//! Misuse gets a typed error that says what to do, never a panic.

use statefn::prelude::*;
use statefn_examples::bank::Account;
use statefn_tests::Recorder;

#[tokio::test]
async fn calling_an_unregistered_function_names_the_registered_ones() -> Result<(), Error> {
    let runtime = Runtime::builder()
        .in_memory()
        .register::<Account>()
        .open()
        .await?;
    let err = runtime
        .handle::<Recorder>("r")
        .seen()
        .await
        .expect_err("not registered");
    assert!(
        matches!(&err, Error::UnknownFunction { name, known } if name == "test.Recorder" && known == &["Account".to_owned()]),
        "{err:?}"
    );
    assert!(err.to_string().contains("register"));
    runtime.shutdown().await
}

#[tokio::test]
async fn invalid_ids_are_rejected() -> Result<(), Error> {
    let runtime = Runtime::builder()
        .in_memory()
        .register::<Account>()
        .open()
        .await?;
    for id in [String::new(), "x".repeat(statefn::MAX_ID_LEN + 1)] {
        let err = runtime
            .handle::<Account>(&id)
            .balance()
            .await
            .expect_err("invalid id");
        assert!(matches!(err, Error::InvalidAddress { .. }), "{err:?}");
    }
    runtime.shutdown().await
}

#[tokio::test]
async fn a_key_reused_for_another_handler_is_refused() -> Result<(), Error> {
    let runtime = Runtime::builder()
        .in_memory()
        .register::<Account>()
        .open()
        .await?;
    let a = runtime.handle::<Account>("a");
    a.deposit(5)
        .idempotency_key("k1")
        .await?
        .expect("a positive amount");
    let err = a
        .withdraw(1)
        .idempotency_key("k1")
        .await
        .expect_err("same key, other handler");
    assert!(
        matches!(&err, Error::IdempotencyKeyReused { previous_handler, .. } if previous_handler == "deposit"),
        "{err:?}"
    );
    assert_eq!(a.balance().await?, 5);
    runtime.shutdown().await
}

#[tokio::test]
async fn opening_without_storage_or_functions_is_a_config_error() {
    let err = Runtime::builder()
        .register::<Account>()
        .open()
        .await
        .expect_err("no storage chosen");
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let err = Runtime::builder()
        .in_memory()
        .open()
        .await
        .expect_err("nothing registered");
    assert!(err.to_string().contains("register"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_calls_and_refuses_new_ones() -> Result<(), Error> {
    let runtime = Runtime::builder()
        .in_memory()
        .register::<Account>()
        .open()
        .await?;
    let calls: Vec<_> = (0..2_000)
        .map(|i| {
            let account = runtime.handle::<Account>(format!("a{}", i % 50));
            tokio::spawn(async move { account.deposit(1).await })
        })
        .collect();
    // Let every task submit its call before shutting down.
    tokio::task::yield_now().await;
    let mut accepted = 0;
    let shutdown = runtime.shutdown();
    let results = futures::future::join_all(calls).await;
    shutdown.await?;
    for r in results {
        match r.expect("task") {
            Ok(_) => accepted += 1,
            Err(Error::ShuttingDown) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(accepted > 0);
    let err = runtime
        .handle::<Account>("a1")
        .deposit(1)
        .await
        .expect_err("after shutdown");
    assert!(matches!(err, Error::ShuttingDown), "{err:?}");
    Ok(())
}
