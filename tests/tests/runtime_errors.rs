//! Misuse gets a typed error that says what to do, never a panic.

use std::{sync::Arc, time::Duration};

use statefn::prelude::*;
use statefn_examples::bank::Account;
use statefn_store::{FaultyFs, StdFs};
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
    // The shutdown runs (spawned, not a lazy future) while calls are in
    // flight: a stalled fsync holds their commit in the disk. Every call is
    // then either answered and applied, or refused and not applied; the
    // balances after a reopen tell which.
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = Arc::new(FaultyFs::new(Arc::new(StdFs)));
    let faults = fs.faults();
    let open = |fs: Option<Arc<FaultyFs>>| {
        let mut builder = Runtime::builder().data_dir(dir.path());
        if let Some(fs) = fs {
            builder = builder.file_system(fs);
        }
        builder.register::<Account>().open()
    };
    let runtime = open(Some(fs)).await?;
    let ids: Vec<String> = (0..50).map(|i| format!("a{i}")).collect();
    let synced = faults.sync_count();
    faults.sync_delay(Duration::from_millis(300));
    let calls: Vec<_> = (0..500)
        .map(|i| {
            let account = runtime.handle::<Account>(ids[i % ids.len()].clone());
            tokio::spawn(async move { account.deposit(1).await })
        })
        .collect();
    // A commit is in the (stalled) disk: calls are in flight.
    while faults.sync_count() == synced {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let shutdown = tokio::spawn({
        let runtime = runtime.clone();
        async move { runtime.shutdown().await }
    });
    // Calls made while it runs are refused (the arm that the lazy future
    // of an earlier version of this test never reached).
    let mut late = 0;
    let mut accepted: i64 = 0;
    loop {
        match runtime.handle::<Account>(&ids[0]).deposit(1).await {
            Ok(_) => accepted += 1,
            Err(Error::ShuttingDown) => break,
            Err(e) => panic!("unexpected {e:?}"),
        }
        late += 1;
        assert!(late < 20, "a running shutdown never refused a call");
    }
    let mut refused = 1;
    for r in futures::future::join_all(calls).await {
        match r.expect("task") {
            Ok(_) => accepted += 1,
            Err(Error::ShuttingDown) => refused += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    shutdown.await.expect("task")?;
    assert!(accepted > 0, "the calls in flight were answered");
    faults.heal();
    let err = runtime
        .handle::<Account>("a1")
        .deposit(1)
        .await
        .expect_err("after shutdown");
    assert!(matches!(err, Error::ShuttingDown), "{err:?}");

    // Exactly the answered calls were applied.
    let runtime = open(None).await?;
    let mut total = 0;
    for id in &ids {
        total += runtime.handle::<Account>(id.clone()).balance().await?;
    }
    assert_eq!(total, accepted, "{refused} calls were refused");
    runtime.shutdown().await
}
