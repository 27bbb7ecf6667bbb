//! The request metrics reach a Prometheus recorder installed after the
//! runtime opened and after requests were served: the hot paths keep the
//! metric handles of the global recorder (issue 14), and a handle kept for
//! the no-op recorder in effect before must not swallow later counts.
//!
//! Its own test binary, so its own process: no other test installs the
//! global recorder first.

#![allow(clippy::unwrap_used)]

mod common;

use common::post;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use statefn::{
    ingress::{self, IngressConfig},
    prelude::*,
};

#[stateful_function]
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Tally {
    count: u64,
}

#[stateful_function]
impl Tally {
    #[handler]
    fn bump(&mut self) -> u64 {
        self.count += 1;
        self.count
    }
}

/// The value of the series named exactly `series` (name and labels) in a
/// Prometheus text exposition.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_metrics_reach_a_recorder_installed_after_requests_were_served() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::builder()
        .data_dir(dir.path())
        .workers(1)
        .shards(1)
        .register::<Tally>()
        .open()
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = ingress::router(
        runtime.clone(),
        IngressConfig {
            allowed_origins: vec!["https://app.example".into()],
            ..IngressConfig::default()
        },
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let c = reqwest::Client::new();
    let bump = format!("{base}/v1/Tally/t/bump");

    // Served before any recorder: counted nowhere.
    for _ in 0..2 {
        assert_eq!(post(&c, &bump, None, None).await.status, StatusCode::OK);
    }
    let handle = ingress::install_prometheus_recorder().unwrap();
    for _ in 0..3 {
        assert_eq!(post(&c, &bump, None, None).await.status, StatusCode::OK);
    }
    // Refused by the origin check, which runs inside the observing
    // middleware: counted and timed under its route.
    let refused = c
        .post(&bump)
        .header("content-type", "application/json")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    // An allowed origin passes.
    let allowed = c
        .post(&bump)
        .header("content-type", "application/json")
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);

    let text = handle.render();
    let route = r#"route="/v1/{type}/{id}/{handler}""#;
    for (series, expected) in [
        (
            format!(r#"statefn_http_requests_total{{{route},status="200"}}"#),
            4.0,
        ),
        (
            format!(r#"statefn_http_requests_total{{{route},status="403"}}"#),
            1.0,
        ),
        (
            format!("statefn_http_request_duration_seconds_count{{{route}}}"),
            5.0,
        ),
        (
            r#"statefn_invocations_total{function="Tally",handler="bump",outcome="applied"}"#
                .to_owned(),
            4.0,
        ),
        (
            r#"statefn_call_duration_seconds_count{function="Tally",handler="bump"}"#.to_owned(),
            4.0,
        ),
    ] {
        assert_eq!(
            value(&text, &series),
            Some(expected),
            "{series} in:\n{text}"
        );
    }
    // Per commit and per batch: at least the four calls' commits.
    for series in [
        "statefn_commit_batch_invocations_count",
        "statefn_fsync_duration_seconds_count",
    ] {
        let seen = value(&text, series).unwrap_or(0.0);
        assert!(seen >= 4.0, "{series} = {seen} in:\n{text}");
    }
    assert!(
        value(&text, r#"statefn_mailbox_depth{shard="0"}"#).is_some(),
        "{text}"
    );
    assert!(
        value(&text, r#"statefn_commit_queue_bytes{group="0"}"#).is_some(),
        "{text}"
    );
    server.abort();
    runtime.shutdown().await.unwrap();
}
