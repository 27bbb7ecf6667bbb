//! `DELETE /v1/invocations/{id}` cancels a delayed invocation that
//! `POST .../send?delay=` enqueued: 200 while it is pending, 409 once it is
//! not (cancelled, ran, or had no delay), 404 for an id nobody enqueued.
//! `GET /v1/invocations/{id}[?wait=]` follows one: scheduled, done with its
//! reply (or the handler's error), cancelled; unknown ids are 404.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Reply, post};
use reqwest::StatusCode;
use serde_json::json;
use statefn::{
    ingress::{self, IngressConfig},
    prelude::*,
};
use statefn_examples::bank::Account;

async fn serve_bank() -> (Runtime, String) {
    let runtime = Runtime::builder()
        .in_memory()
        .register::<Account>()
        .open()
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = ingress::router(runtime.clone(), IngressConfig::default());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (runtime, base)
}

async fn delete(client: &reqwest::Client, url: &str) -> Reply {
    Reply::from(client.delete(url).send().await.unwrap()).await
}

#[tokio::test]
async fn a_delayed_send_is_cancelled_by_its_id_once() {
    let (runtime, base) = serve_bank().await;
    let c = reqwest::Client::new();
    let sent = post(
        &c,
        &format!("{base}/v1/Account/alice/deposit/send?delay=1h"),
        Some(json!({"amount": 100})),
        Some("payday"),
    )
    .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{sent:?}");
    let id = sent.json["invocation_id"].as_str().unwrap().to_owned();
    assert_eq!(id, "Account.alice.payday");

    let cancelled = delete(&c, &format!("{base}/v1/invocations/{id}")).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");
    assert_eq!(cancelled.json["status"], "cancelled");
    assert_eq!(cancelled.json["invocation_id"], id.as_str());

    let again = delete(&c, &format!("{base}/v1/invocations/{id}")).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");
    assert_eq!(again.code(), "invocation_not_pending");

    // A retry of the send is answered from its stored reply: it does not
    // enqueue the cancelled invocation again.
    let retried = post(
        &c,
        &format!("{base}/v1/Account/alice/deposit/send?delay=1h"),
        Some(json!({"amount": 100})),
        Some("payday"),
    )
    .await;
    assert_eq!(retried.json["invocation_id"], id.as_str());
    let still = delete(&c, &format!("{base}/v1/invocations/{id}")).await;
    assert_eq!(still.status, StatusCode::CONFLICT, "{still:?}");
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_invocation_that_ran_or_never_was_cannot_be_cancelled() {
    let (runtime, base) = serve_bank().await;
    let c = reqwest::Client::new();
    let sent = post(
        &c,
        &format!("{base}/v1/Account/bob/deposit/send"),
        Some(json!({"amount": 5})),
        None,
    )
    .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{sent:?}");
    let id = sent.json["invocation_id"].as_str().unwrap().to_owned();
    let ran = delete(&c, &format!("{base}/v1/invocations/{id}")).await;
    assert_eq!(ran.status, StatusCode::CONFLICT, "{ran:?}");
    assert_eq!(ran.code(), "invocation_not_pending");

    for unknown in ["Account.bob.never-sent", "Nope.x.k", "not-an-id"] {
        let reply = delete(&c, &format!("{base}/v1/invocations/{unknown}")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{unknown}: {reply:?}");
        assert_eq!(reply.code(), "unknown_invocation", "{unknown}");
    }
    runtime.shutdown().await.unwrap();
}

async fn get(client: &reqwest::Client, url: &str) -> Reply {
    Reply::from(client.get(url).send().await.unwrap()).await
}

#[tokio::test]
async fn an_enqueued_invocation_is_followed_until_done_with_its_reply() {
    let (runtime, base) = serve_bank().await;
    let c = reqwest::Client::new();
    let sent = post(
        &c,
        &format!("{base}/v1/Account/carol/deposit/send"),
        Some(json!({"amount": 40})),
        Some("first"),
    )
    .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{sent:?}");
    let id = sent.json["invocation_id"].as_str().unwrap().to_owned();
    // The wait returns as soon as it ran (it does, at once), with its reply.
    let done = get(&c, &format!("{base}/v1/invocations/{id}?wait=30s")).await;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    assert_eq!(done.json["invocation_id"], id.as_str());
    assert_eq!(done.json["status"], "done", "{done:?}");
    assert_eq!(done.json["reply"], json!(40));

    // A handler's `Err` is reported as the call would have answered it.
    let refused = post(
        &c,
        &format!("{base}/v1/Account/carol/withdraw/send"),
        Some(json!({"amount": 1000})),
        None,
    )
    .await;
    let id = refused.json["invocation_id"].as_str().unwrap().to_owned();
    let failed = get(&c, &format!("{base}/v1/invocations/{id}?wait=30s")).await;
    assert_eq!(failed.status, StatusCode::OK, "{failed:?}");
    assert_eq!(failed.json["status"], "done", "{failed:?}");
    assert_eq!(failed.json["error"]["code"], "handler_error", "{failed:?}");
    assert!(failed.json.get("reply").is_none(), "{failed:?}");

    for unknown in ["Account.carol.never-sent", "Nope.x.k", "not-an-id"] {
        let reply = get(&c, &format!("{base}/v1/invocations/{unknown}")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{unknown}: {reply:?}");
        assert_eq!(reply.code(), "unknown_invocation", "{unknown}");
    }
    let bad_wait = get(
        &c,
        &format!("{base}/v1/invocations/Account.carol.first?wait=soon"),
    )
    .await;
    assert_eq!(bad_wait.status, StatusCode::BAD_REQUEST, "{bad_wait:?}");
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_delayed_invocation_is_scheduled_then_cancelled() {
    let (runtime, base) = serve_bank().await;
    let c = reqwest::Client::new();
    let sent = post(
        &c,
        &format!("{base}/v1/Account/dan/deposit/send?delay=1h"),
        Some(json!({"amount": 7})),
        Some("later"),
    )
    .await;
    let id = sent.json["invocation_id"].as_str().unwrap().to_owned();
    // Not final: a short wait passes and answers what it is.
    let scheduled = get(&c, &format!("{base}/v1/invocations/{id}?wait=50ms")).await;
    assert_eq!(scheduled.status, StatusCode::OK, "{scheduled:?}");
    assert_eq!(scheduled.json["status"], "scheduled", "{scheduled:?}");
    let cancelled = delete(&c, &format!("{base}/v1/invocations/{id}")).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");
    let after = get(&c, &format!("{base}/v1/invocations/{id}")).await;
    assert_eq!(after.json["status"], "cancelled", "{after:?}");
    runtime.shutdown().await.unwrap();
}
