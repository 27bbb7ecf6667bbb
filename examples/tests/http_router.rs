//! `statefn::ingress::router` over an in-memory runtime, served on a free
//! port in the test process: the statuses the bank cannot produce on demand
//! (a handler panic, a runtime that is shutting down) and `/metrics` without
//! a recorder.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Reply, post};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use statefn::{
    Address,
    ingress::{self, IngressConfig},
    prelude::*,
};
use std::sync::atomic::{AtomicBool, Ordering};

/// A function whose `explode` handler panics with internals in the message.
#[stateful_function]
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Fragile {
    count: u64,
}

#[stateful_function]
impl Fragile {
    #[handler]
    fn bump(&mut self) -> u64 {
        self.count += 1;
        self.count
    }

    #[handler]
    fn explode(&mut self, secret: String) -> u64 {
        self.count += 1_000;
        panic!("internal detail: {secret} at /srv/keys");
    }

    #[handler]
    fn count(&self) -> u64 {
        self.count
    }
}

/// Serves `router` for `runtime` on 127.0.0.1:0; returns the base URL.
async fn serve(runtime: Runtime, config: IngressConfig) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = ingress::router(runtime, config);
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

async fn fragile_runtime() -> Runtime {
    Runtime::builder()
        .in_memory()
        .workers(1)
        .shards(2)
        .register::<Fragile>()
        .open()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_handler_panic_is_a_500_with_a_generic_message_and_changes_nothing() {
    let runtime = fragile_runtime().await;
    let base = serve(runtime.clone(), IngressConfig::default()).await;
    let c = reqwest::Client::new();
    assert_eq!(
        post(&c, &format!("{base}/v1/Fragile/f/bump"), None, None)
            .await
            .json,
        1
    );

    let boom = post(
        &c,
        &format!("{base}/v1/Fragile/f/explode"),
        Some(serde_json::json!({"secret": "hunter2"})),
        Some("boom-1"),
    )
    .await;
    assert_eq!(boom.status, StatusCode::INTERNAL_SERVER_ERROR, "{boom:?}");
    assert_eq!(boom.code(), "handler_panicked");
    for internal in ["hunter2", "/srv/keys", "internal detail", "explode"] {
        assert!(!boom.text.contains(internal), "leaks {internal}: {boom:?}");
    }
    let count = post(&c, &format!("{base}/v1/Fragile/f/count"), None, None).await;
    assert_eq!((count.status, count.json), (StatusCode::OK, 1.into()));
    runtime.shutdown().await.unwrap();
}

/// Set when a [`Gate::pass`] call runs; it returns once [`GATE_OPEN`] is.
static GATE_ENTERED: AtomicBool = AtomicBool::new(false);
static GATE_OPEN: AtomicBool = AtomicBool::new(false);

/// A function whose handler holds its call in flight until the test lets
/// it go: a shutdown then has work to wait for.
#[stateful_function]
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Gate {
    passed: u64,
}

#[stateful_function]
impl Gate {
    #[handler]
    fn pass(&mut self) -> u64 {
        GATE_ENTERED.store(true, Ordering::SeqCst);
        while !GATE_OPEN.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.passed += 1;
        self.passed
    }
}

/// Asserts that `path` is refused with 503 `shutting_down` and a
/// `Retry-After`.
async fn assert_refused(c: &reqwest::Client, base: &str, path: &str) {
    let refused = post(c, &format!("{base}{path}"), None, None).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{path}: {refused:?}"
    );
    assert_eq!(refused.code(), "shutting_down");
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
}

/// While a shutdown waits for a call in flight, new calls are refused with
/// 503 and a `Retry-After` (and the call in flight still finishes); after
/// it, too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_while_the_runtime_shuts_down_get_503_with_retry_after() {
    let runtime = Runtime::builder()
        .in_memory()
        .workers(2)
        .shards(2)
        .register::<Fragile>()
        .register::<Gate>()
        .open()
        .await
        .unwrap();
    let base = serve(runtime.clone(), IngressConfig::default()).await;
    let c = reqwest::Client::new();
    // A Fragile instance on the other shard than the gate's, so that one
    // worker serves it while the other is held.
    let gate_shard = Address::new("Gate", "g").unwrap().shard(2);
    let free = (0..)
        .map(|i| format!("f{i}"))
        .find(|id| Address::new("Fragile", id).unwrap().shard(2) != gate_shard)
        .unwrap();
    let held = tokio::spawn({
        let (c, url) = (c.clone(), format!("{base}/v1/Gate/g/pass"));
        async move { post(&c, &url, None, None).await }
    });
    while !GATE_ENTERED.load(Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let shutdown = tokio::spawn({
        let runtime = runtime.clone();
        async move { runtime.shutdown().await }
    });
    // Calls are served until the shutdown begins, then refused (the loop
    // ends at the first refusal; the gate holds the shutdown meanwhile).
    let bump = format!("/v1/Fragile/{free}/bump");
    let mut served = 0;
    loop {
        let reply = post(&c, &format!("{base}{bump}"), None, None).await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        served += 1;
        assert!(served < 5_000, "the shutdown never refused a call");
    }
    assert!(
        !shutdown.is_finished() && !held.is_finished(),
        "the shutdown must still be waiting for the held call"
    );
    for path in [
        bump.as_str(),
        &format!("/v1/Fragile/{free}/bump/send?delay=1s"),
    ] {
        assert_refused(&c, &base, path).await;
    }
    GATE_OPEN.store(true, Ordering::SeqCst);
    let held = held.await.unwrap();
    assert_eq!(
        (held.status, held.json),
        (StatusCode::OK, 1.into()),
        "the call in flight finishes"
    );
    shutdown.await.unwrap().unwrap();
    for path in [bump.as_str(), "/v1/Fragile/g/bump/send?delay=1s"] {
        assert_refused(&c, &base, path).await;
    }
}

/// A `/send` without an `Idempotency-Key` runs under a generated one: a 503
/// must give it back, or the client cannot retry without risking a second
/// message (exactly-once review #2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_refused_with_503_returns_its_generated_key_for_the_retry() {
    use statefn_store::{FaultyFs, StdFs};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultyFs::new(Arc::new(StdFs)));
    let faults = fs.faults();
    let runtime = Runtime::builder()
        .data_dir(dir.path())
        .shards(2)
        .file_system(fs)
        .register::<Fragile>()
        .open()
        .await
        .unwrap();
    let base = serve(runtime.clone(), IngressConfig::default()).await;
    let c = reqwest::Client::new();
    let send = format!("{base}/v1/Fragile/s/bump/send");

    faults.fail_syncs();
    let refused = post(&c, &send, None, None).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{refused:?}"
    );
    let id = refused.json["error"]["details"]["invocation_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no invocation id in {refused:?}"))
        .to_owned();
    let key = refused.headers["idempotency-key"]
        .to_str()
        .unwrap()
        .to_owned();
    // The invocation id names the instance and the key.
    assert_eq!(id, format!("Fragile.s.{key}"));
    faults.heal();

    // The retry with that key, once the shard is back: accepted once.
    let mut accepted = None;
    for _ in 0..2_000 {
        let reply = post(&c, &send, None, Some(&key)).await;
        if reply.status == StatusCode::ACCEPTED {
            accepted = Some(reply);
            break;
        }
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let accepted = accepted.expect("the shard came back");
    assert_eq!(accepted.json["invocation_id"], id.as_str());
    assert_eq!(
        post(&c, &send, None, Some(&key)).await.status,
        StatusCode::ACCEPTED
    );
    let count = format!("{base}/v1/Fragile/s/count");
    let mut seen = 0;
    for _ in 0..2_000 {
        seen = post(&c, &count, None, None)
            .await
            .json
            .as_u64()
            .unwrap_or(0);
        if seen > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(seen, 1, "the message ran once");
    runtime.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_answer_404_without_a_handle_and_render_the_given_one() {
    let runtime = fragile_runtime().await;
    let c = reqwest::Client::new();
    let off = serve(runtime.clone(), IngressConfig::default()).await;
    let reply = Reply::from(c.get(format!("{off}/metrics")).send().await.unwrap()).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{reply:?}");
    assert!(reply.message().contains("prometheus"), "{reply:?}");

    let handle = ingress::install_prometheus_recorder().unwrap();
    assert!(
        ingress::install_prometheus_recorder().is_ok(),
        "installing twice returns the same handle"
    );
    let on = serve(
        runtime.clone(),
        IngressConfig {
            prometheus: Some(handle),
            ..IngressConfig::default()
        },
    )
    .await;
    post(&c, &format!("{on}/v1/Fragile/m/bump"), None, None).await;
    let text = c
        .get(format!("{on}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            r#"statefn_http_requests_total{route="/v1/{type}/{id}/{handler}",status="200"}"#
        ),
        "{text}"
    );
    runtime.shutdown().await.unwrap();
}

/// Sends `explode` to a `Fragile` from inside a function: a poison message.
#[stateful_function]
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Detonator {}

#[stateful_function]
impl Detonator {
    #[handler]
    fn trigger(&mut self, ctx: &mut Context, target: String) {
        ctx.send::<Fragile>(&target).explode("fuse".into());
    }
}

#[tokio::test]
async fn dead_letters_are_listed_replayed_and_dropped_on_the_admin_surface() {
    let runtime = Runtime::builder()
        .in_memory()
        .retry_policy(statefn::RetryPolicy {
            max_attempts: 1,
            ..statefn::RetryPolicy::default()
        })
        .register::<Fragile>()
        .register::<Detonator>()
        .open()
        .await
        .unwrap();
    let config = IngressConfig {
        admin_token: Some("s3cret".into()),
        ..IngressConfig::default()
    };
    let base = serve(runtime.clone(), config).await;
    let c = reqwest::Client::new();
    runtime
        .handle::<Detonator>("d")
        .trigger("f".into())
        .await
        .unwrap();
    let get = || async {
        c.get(format!("{base}/admin/dead-letters"))
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let mut listed = get().await;
    for _ in 0..500 {
        if !listed["dead_letters"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        listed = get().await;
    }
    let letter = &listed["dead_letters"][0];
    assert_eq!(
        letter["target"],
        serde_json::json!({"type_name": "Fragile", "id": "f"}),
        "{listed}"
    );
    assert_eq!(
        letter["message"],
        serde_json::json!({"explode": {"secret": "fuse"}})
    );
    let id = letter["id"].as_str().unwrap().to_owned();
    let refused = c
        .get(format!("{base}/admin/dead-letters"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let unknown = c
        .post(format!("{base}/admin/dead-letters/0-999/replay"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let dropped = c
        .delete(format!("{base}/admin/dead-letters/{id}"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(dropped.status(), StatusCode::OK);
    assert_eq!(get().await, serde_json::json!({"dead_letters": []}));
    assert_eq!(runtime.handle::<Fragile>("f").count().await.unwrap(), 0);
}
