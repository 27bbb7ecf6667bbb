//! Calls by name with JSON arguments (what HTTP ingress uses): typed errors
//! that name what is wrong, `Err` replies kept apart, durable enqueue.

use std::time::Duration;

use serde_json::json;
use statefn::{JsonReply, prelude::*};
use statefn_examples::bank::Account;
use statefn_tests::eventually;

async fn bank() -> Result<Runtime, Error> {
    Runtime::builder()
        .in_memory()
        .register::<Account>()
        .open()
        .await
}

#[tokio::test]
async fn replies_and_handler_errors_come_back_as_json() -> Result<(), Error> {
    let runtime = bank().await?;
    let deposit = runtime
        .call_json("Account", "a", "deposit", json!({"amount": 5}), None)
        .await?;
    assert_eq!(deposit, JsonReply::Ok(json!(5)));
    let balance = runtime
        .call_json("Account", "a", "balance", json!(null), None)
        .await?;
    assert_eq!(balance, JsonReply::Ok(json!(5)));
    let refused = runtime
        .call_json("Account", "a", "withdraw", json!({"amount": 50}), None)
        .await?;
    assert_eq!(
        refused,
        JsonReply::Err {
            error: json!({"insufficient_funds": {"balance": 5, "asked": 50}}),
            message: "insufficient funds: the balance is 5, 50 was asked".into(),
        }
    );
    runtime.shutdown().await
}

#[tokio::test]
async fn bad_arguments_name_the_field_and_the_expected_type() -> Result<(), Error> {
    let runtime = bank().await?;
    let call = |args| runtime.call_json("Account", "a", "deposit", args, None);
    match call(json!({"amount": "five"})).await {
        Err(Error::InvalidArguments { field, reason, .. }) => {
            assert_eq!(field.as_deref(), Some("amount"));
            assert!(reason.contains("i64"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    match call(json!({})).await {
        Err(Error::InvalidArguments { reason, .. }) => {
            assert!(reason.contains("amount"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    match call(json!({"amount": 1, "amout": 2})).await {
        Err(Error::InvalidArguments { reason, .. }) => {
            assert!(reason.contains("amout"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        call(json!([1])).await,
        Err(Error::InvalidArguments { .. })
    ));
    match runtime
        .call_json("Account", "a", "steal", json!({}), None)
        .await
    {
        Err(Error::UnknownHandler { known, .. }) => {
            assert_eq!(known, ["deposit", "withdraw", "transfer", "balance"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        runtime
            .call_json("Bank", "a", "deposit", json!({}), None)
            .await,
        Err(Error::UnknownFunction { .. })
    ));
    assert_eq!(
        runtime
            .call_json("Account", "a", "balance", json!(null), None)
            .await?,
        JsonReply::Ok(json!(0)),
        "nothing was applied by the bad calls"
    );
    runtime.shutdown().await
}

#[tokio::test]
async fn enqueued_calls_run_later_and_once_per_key() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::builder()
        .data_dir(dir.path())
        .register::<Account>()
        .open()
        .await?;
    for _ in 0..2 {
        runtime
            .enqueue_json(
                "Account",
                "q",
                "deposit",
                json!({"amount": 3}),
                Duration::ZERO,
                Some("k1".into()),
            )
            .await?;
    }
    runtime
        .enqueue_json(
            "Account",
            "q",
            "deposit",
            json!({"amount": 10}),
            Duration::from_millis(200),
            None,
        )
        .await?;
    let account = runtime.handle::<Account>("q");
    eventually(10, || async {
        (account.balance().await.ok()? == 13).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(account.balance().await?, 13, "the keyed enqueue ran once");
    runtime.shutdown().await
}
