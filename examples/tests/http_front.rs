//! A [`Server`](statefn::ingress::Server) serves the call route itself
//! (`POST /v1/{type}/{id}/{handler}`, issue 14: its front door) and every
//! other request through the router. It must answer exactly as
//! `ingress::router` under `axum::serve` does: the same statuses, bodies and
//! headers for good calls, bad paths, refused hosts and origins, wrong
//! methods and near-miss paths; and it must count its requests under the
//! same route label.
//!
//! Its own test binary: the `Server` installs the process's Prometheus
//! recorder.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use statefn::{
    Runtime,
    ingress::{self, IngressConfig},
};
use statefn_examples::bank::Account;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The ingress's settings for both sides: the same hosts (a `Server` on
/// loopback would otherwise pick its own), a small body limit, an origin.
fn config() -> IngressConfig {
    IngressConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        allowed_hosts: vec!["localhost".into(), "127.0.0.1".into()],
        allowed_origins: vec!["https://app.example".into()],
        body_limit: 1024,
        ..IngressConfig::default()
    }
}

async fn bank() -> Runtime {
    Runtime::builder()
        .in_memory()
        .workers(1)
        .shards(2)
        .register::<Account>()
        .open()
        .await
        .unwrap()
}

/// What a side answered, without what differs by nature (`date`).
#[derive(Debug, PartialEq)]
struct Answer {
    status_line: String,
    headers: Vec<String>,
    body: String,
}

/// Sends `request` (all of it, bytes as given) on a fresh connection that
/// it closes, and reads the whole answer.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("").to_owned();
    let mut headers: Vec<String> = lines
        .filter(|l| !l.to_ascii_lowercase().starts_with("date:"))
        .map(|l| l.to_ascii_lowercase())
        .collect();
    headers.sort();
    Answer {
        status_line,
        headers,
        body: body.to_owned(),
    }
}

/// A request as bytes: `Connection: close` so the answer ends the stream.
fn request(method: &str, path: &str, headers: &[&str], body: &str) -> Vec<u8> {
    let mut text = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for header in headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    if !headers.iter().any(|h| h.starts_with("Transfer-Encoding")) {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text.into_bytes()
}

const HOST: &str = "Host: 127.0.0.1";
const JSON: &str = "Content-Type: application/json";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_door_answers_calls_exactly_as_the_router_does() {
    // The same runtime state on both sides: two banks, the same requests.
    let front_runtime = bank().await;
    let server = ingress::Server::bind(front_runtime, config())
        .await
        .unwrap();
    let front = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    let router_runtime = bank().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let routed = listener.local_addr().unwrap();
    let app = ingress::router(router_runtime.clone(), config());
    let router_serving = tokio::spawn(async move { axum::serve(listener, app).await });

    let deposit = r#"{"amount": 5}"#;
    let big = format!(r#"{{"amount": 1, "note": "{}"}}"#, "x".repeat(2000));
    let chunked = "7\r\n{\"amoun\r\n7\r\nt\": 3}\r\n0\r\n\r\n";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a call",
            request("POST", "/v1/Account/alice/deposit", &[HOST, JSON], deposit),
        ),
        (
            "again",
            request("POST", "/v1/Account/alice/deposit", &[HOST, JSON], deposit),
        ),
        (
            "a query is ignored",
            request(
                "POST",
                "/v1/Account/alice/deposit?x=1",
                &[HOST, JSON],
                deposit,
            ),
        ),
        (
            "no body",
            request("POST", "/v1/Account/alice/balance", &[HOST, JSON], ""),
        ),
        (
            "an Idempotency-Key",
            request(
                "POST",
                "/v1/Account/bob/deposit",
                &[HOST, JSON, "Idempotency-Key: k1"],
                deposit,
            ),
        ),
        (
            "its retry",
            request(
                "POST",
                "/v1/Account/bob/deposit",
                &[HOST, JSON, "Idempotency-Key: k1"],
                deposit,
            ),
        ),
        (
            "a reused key",
            request(
                "POST",
                "/v1/Account/bob/withdraw",
                &[HOST, JSON, "Idempotency-Key: k1"],
                deposit,
            ),
        ),
        (
            "a bad key",
            request(
                "POST",
                "/v1/Account/bob/deposit",
                &[HOST, JSON, "Idempotency-Key: a b"],
                deposit,
            ),
        ),
        (
            "a traceparent",
            request(
                "POST",
                "/v1/Account/carol/deposit",
                &[
                    HOST,
                    JSON,
                    "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ],
                deposit,
            ),
        ),
        (
            "a handler error",
            request(
                "POST",
                "/v1/Account/dave/withdraw",
                &[HOST, JSON],
                r#"{"amount": 500}"#,
            ),
        ),
        (
            "a chunked body",
            request(
                "POST",
                "/v1/Account/erin/deposit",
                &[HOST, JSON, "Transfer-Encoding: chunked"],
                chunked,
            ),
        ),
        (
            "an encoded id",
            request(
                "POST",
                "/v1/Account/a%20b%2Fc/deposit",
                &[HOST, JSON],
                deposit,
            ),
        ),
        (
            "an encoded type",
            request(
                "POST",
                "/v1/Acc%6Funt/frank/deposit",
                &[HOST, JSON],
                deposit,
            ),
        ),
        (
            "a type not UTF-8",
            request("POST", "/v1/%FF/frank/deposit", &[HOST, JSON], deposit),
        ),
        (
            "an id not UTF-8",
            request("POST", "/v1/Account/%FF/deposit", &[HOST, JSON], deposit),
        ),
        (
            "a handler not UTF-8",
            request("POST", "/v1/Account/frank/%C3", &[HOST, JSON], deposit),
        ),
        (
            "two bad segments",
            request("POST", "/v1/Account/%FF/%FF", &[HOST, JSON], deposit),
        ),
        (
            "an empty id",
            request("POST", "/v1/Account//deposit", &[HOST, JSON], deposit),
        ),
        (
            "an empty type",
            request("POST", "/v1//frank/deposit", &[HOST, JSON], deposit),
        ),
        (
            "an empty handler",
            request("POST", "/v1/Account/frank/", &[HOST, JSON], deposit),
        ),
        (
            "a trailing slash",
            request("POST", "/v1/Account/frank/deposit/", &[HOST, JSON], deposit),
        ),
        (
            "an unknown type",
            request("POST", "/v1/Nope/frank/deposit", &[HOST, JSON], deposit),
        ),
        (
            "an unknown handler",
            request("POST", "/v1/Account/frank/nope", &[HOST, JSON], deposit),
        ),
        (
            "under invocations",
            request("POST", "/v1/invocations/x/y", &[HOST, JSON], deposit),
        ),
        (
            "under egress",
            request("POST", "/v1/egress/x/y", &[HOST, JSON], deposit),
        ),
        (
            "under openapi.json",
            request("POST", "/v1/openapi.json/x/y", &[HOST, JSON], deposit),
        ),
        (
            "no content type",
            request("POST", "/v1/Account/gina/deposit", &[HOST], deposit),
        ),
        (
            "a form",
            request(
                "POST",
                "/v1/Account/gina/deposit",
                &[HOST, "Content-Type: application/x-www-form-urlencoded"],
                deposit,
            ),
        ),
        (
            "a +json type",
            request(
                "POST",
                "/v1/Account/gina/deposit",
                &[
                    HOST,
                    "Content-Type: Application/Merge-Patch+JSON; charset=utf-8",
                ],
                deposit,
            ),
        ),
        (
            "bad JSON",
            request(
                "POST",
                "/v1/Account/gina/deposit",
                &[HOST, JSON],
                r#"{"amount": "#,
            ),
        ),
        (
            "bad arguments",
            request("POST", "/v1/Account/gina/deposit", &[HOST, JSON], "[1]"),
        ),
        (
            "too large",
            request("POST", "/v1/Account/gina/deposit", &[HOST, JSON], &big),
        ),
        (
            "an allowed origin",
            request(
                "POST",
                "/v1/Account/gina/deposit",
                &[HOST, JSON, "Origin: https://app.example"],
                deposit,
            ),
        ),
        (
            "a refused origin",
            request(
                "POST",
                "/v1/Account/gina/deposit",
                &[HOST, JSON, "Origin: https://evil.example"],
                deposit,
            ),
        ),
        (
            "a refused host",
            request(
                "POST",
                "/v1/Account/gina/deposit",
                &["Host: evil.example", JSON],
                deposit,
            ),
        ),
        (
            "a refused host in capitals",
            request(
                "POST",
                "/v1/Account/gina/deposit",
                &["Host: Evil.EXAMPLE:8080", JSON],
                deposit,
            ),
        ),
        (
            "an allowed host in capitals",
            request(
                "POST",
                "/v1/Account/gina/deposit",
                &["Host: LocalHost:8080", JSON],
                deposit,
            ),
        ),
        (
            "a GET of a call",
            request("GET", "/v1/Account/gina/deposit", &[HOST], ""),
        ),
        (
            "a PUT of a call",
            request("PUT", "/v1/Account/gina/deposit", &[HOST, JSON], deposit),
        ),
        (
            "a send",
            request(
                "POST",
                "/v1/Account/gina/deposit/send",
                &[HOST, JSON, "Idempotency-Key: s1"],
                deposit,
            ),
        ),
        (
            "another route",
            request("GET", "/v1/invocations/nope", &[HOST], ""),
        ),
        (
            "no route",
            request("POST", "/v2/Account/gina/deposit", &[HOST, JSON], deposit),
        ),
        (
            "the balance after all",
            request("POST", "/v1/Account/gina/balance", &[HOST, JSON], ""),
        ),
    ];
    let mut statuses = Vec::new();
    for (what, bytes) in &cases {
        let from_front = exchange(front, bytes).await;
        let from_router = exchange(routed, bytes).await;
        assert_eq!(from_front, from_router, "{what}");
        statuses.push(from_front.status_line.clone());
    }
    // The cases reach what they are named for (not all one answer).
    for status in [
        "200", "202", "400", "403", "404", "405", "409", "413", "415", "422",
    ] {
        assert!(
            statuses.iter().any(|s| s.contains(&format!(" {status} "))),
            "no {status} among {statuses:?}"
        );
    }

    // Counted under the call route's label, as the router counts them (the
    // recorder is shared: the front's count is the total minus the router's).
    let metrics = exchange(front, &request("GET", "/metrics", &[HOST], "")).await;
    assert!(metrics.status_line.contains(" 200 "), "{metrics:?}");
    let calls_answered_200 = cases
        .iter()
        .zip(&statuses)
        .filter(|((_, bytes), status)| {
            status.contains(" 200 ")
                && bytes.starts_with(b"POST /v1/")
                && String::from_utf8_lossy(bytes)
                    .split(' ')
                    .nth(1)
                    .is_some_and(|path| path.split('?').next().unwrap().split('/').count() == 5)
        })
        .count();
    let series = "statefn_http_requests_total{route=\"/v1/{type}/{id}/{handler}\",status=\"200\"} ";
    let counted: f64 = metrics
        .body
        .lines()
        .find_map(|line| line.strip_prefix(series)?.parse().ok())
        .unwrap_or_else(|| panic!("no {series}in {}", metrics.body));
    assert_eq!(counted, 2.0 * calls_answered_200 as f64, "{}", metrics.body);

    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
    router_serving.abort();
    router_runtime.shutdown().await.unwrap();
}
