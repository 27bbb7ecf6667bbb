//! End to end over real HTTP: the `bank` binary on a free port, each status
//! code the ingress promises, idempotent retries, `/send` with delays, the
//! admin surface, `/metrics`, bad input, and graceful shutdown.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Bank, Reply, balance, deposit, post};
use reqwest::{StatusCode, header};
use serde_json::json;

/// A hang detector for polls, not a performance bound.
const POLL_DEADLINE: Duration = Duration::from_secs(30);

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test]
async fn calls_answer_with_the_reply_or_the_status_that_fits() {
    let dir = tempfile::tempdir().unwrap();
    let bank = Bank::start(dir.path(), &[]);
    let c = client();

    // 200 with the reply as JSON.
    assert_eq!(deposit(&c, &bank, "alice", 100).await, 100);
    let transfer = post(
        &c,
        &bank.url("/v1/Account/alice/transfer"),
        Some(json!({"to": "bob", "amount": 30})),
        None,
    )
    .await;
    assert_eq!(
        (transfer.status, transfer.json),
        (StatusCode::OK, json!(70))
    );
    // No body and `{}` both mean "no arguments".
    assert_eq!(balance(&c, &bank, "bob").await, 30);
    let empty_object = post(
        &c,
        &bank.url("/v1/Account/bob/balance"),
        Some(json!({})),
        None,
    )
    .await;
    assert_eq!(
        (empty_object.status, empty_object.json),
        (StatusCode::OK, json!(30))
    );

    // 422: the handler's Err, serialized, changes nothing.
    let refused = post(
        &c,
        &bank.url("/v1/Account/alice/withdraw"),
        Some(json!({"amount": 1000})),
        None,
    )
    .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{refused:?}"
    );
    assert_eq!(refused.code(), "handler_error");
    assert_eq!(
        refused.json["error"]["details"],
        json!({"insufficient_funds": {"balance": 70, "asked": 1000}})
    );
    assert!(
        refused.message().contains("insufficient funds"),
        "{refused:?}"
    );

    // 400: a wrong argument names the field and the expected type.
    let wrong = post(
        &c,
        &bank.url("/v1/Account/alice/deposit"),
        Some(json!({"amount": "ten"})),
        None,
    )
    .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{wrong:?}");
    assert_eq!(wrong.code(), "invalid_arguments");
    assert!(
        wrong.message().contains("amount") && wrong.message().contains("i64"),
        "{wrong:?}"
    );
    let missing = post(&c, &bank.url("/v1/Account/alice/deposit"), None, None).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST, "{missing:?}");
    assert!(missing.message().contains("amount"), "{missing:?}");

    // 404: unknown type or handler, listing the known ones; unknown routes.
    let no_type = post(&c, &bank.url("/v1/Acount/alice/deposit"), None, None).await;
    assert_eq!(no_type.status, StatusCode::NOT_FOUND);
    assert_eq!(no_type.code(), "unknown_function");
    assert!(no_type.message().contains("Account"), "{no_type:?}");
    let no_handler = post(&c, &bank.url("/v1/Account/alice/steal"), None, None).await;
    assert_eq!(no_handler.status, StatusCode::NOT_FOUND);
    assert_eq!(no_handler.code(), "unknown_handler");
    for handler in ["deposit", "withdraw", "transfer", "balance"] {
        assert!(no_handler.message().contains(handler), "{no_handler:?}");
    }
    for path in ["/", "/v1", "/v1/Account/alice", "/v2/Account/alice/deposit"] {
        let reply = post(&c, &bank.url(path), None, None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}: {reply:?}");
        assert_eq!(reply.code(), "not_found", "{path}");
    }

    // 405: a known route with another method.
    let get = Reply::from(
        c.get(bank.url("/v1/Account/alice/balance"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED, "{get:?}");
    assert_eq!(get.code(), "method_not_allowed");

    // 415: a body that is not JSON.
    let form = Reply::from(
        c.post(bank.url("/v1/Account/alice/deposit"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("amount=5")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{form:?}");
    assert_eq!(form.code(), "unsupported_media_type");

    // None of the refused requests changed anything.
    assert_eq!(balance(&c, &bank, "alice").await, 70);
    assert_eq!(balance(&c, &bank, "bob").await, 30);
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_gets_the_stored_reply_and_applies_once() {
    let dir = tempfile::tempdir().unwrap();
    let bank = Bank::start(dir.path(), &[]);
    let c = client();
    let url = bank.url("/v1/Account/carol/deposit");

    deposit(&c, &bank, "carol", 1).await;
    let first = post(&c, &url, Some(json!({"amount": 10})), Some("order-1")).await;
    let retry = post(&c, &url, Some(json!({"amount": 10})), Some("order-1")).await;
    assert_eq!((first.status, &first.json), (StatusCode::OK, &json!(11)));
    assert_eq!((retry.status, &retry.json), (StatusCode::OK, &json!(11)));
    assert_eq!(balance(&c, &bank, "carol").await, 11);

    // 409: the key was used for another call on this instance.
    let reused = post(
        &c,
        &bank.url("/v1/Account/carol/withdraw"),
        Some(json!({"amount": 1})),
        Some("order-1"),
    )
    .await;
    assert_eq!(reused.status, StatusCode::CONFLICT, "{reused:?}");
    assert_eq!(reused.code(), "idempotency_key_reused");
    assert_eq!(balance(&c, &bank, "carol").await, 11);

    // A key that is not printable ASCII is refused before the call.
    let bad_key = post(&c, &url, Some(json!({"amount": 10})), Some("a key")).await;
    assert_eq!(bad_key.status, StatusCode::BAD_REQUEST, "{bad_key:?}");
    assert_eq!(bad_key.code(), "invalid_idempotency_key");
    assert_eq!(balance(&c, &bank, "carol").await, 11);
}

/// Polls `id`'s balance until it is `expected`.
async fn await_balance(c: &reqwest::Client, bank: &Bank, id: &str, expected: i64) {
    let deadline = Instant::now() + POLL_DEADLINE;
    loop {
        let now = balance(c, bank, id).await;
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id} stayed at {now}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn send_enqueues_durably_and_a_delay_defers_it() {
    let dir = tempfile::tempdir().unwrap();
    let bank = Bank::start(dir.path(), &[]);
    let c = client();
    let send = bank.url("/v1/Account/dave/deposit/send");

    // 202 with an invocation id; the handler runs later.
    let now = post(&c, &send, Some(json!({"amount": 5})), None).await;
    assert_eq!(now.status, StatusCode::ACCEPTED, "{now:?}");
    let id = now.json["invocation_id"].as_str().unwrap().to_owned();
    assert!(!id.is_empty());
    await_balance(&c, &bank, "dave", 5).await;
    // Without a key, each send is a new invocation with a new id.
    let other = post(&c, &send, Some(json!({"amount": 5})), None).await;
    assert_ne!(other.json["invocation_id"].as_str().unwrap(), id);
    await_balance(&c, &bank, "dave", 10).await;

    // A delayed send, retried with its key: the same id, enqueued once.
    let delayed = format!("{send}?delay=300ms");
    let first = post(&c, &delayed, Some(json!({"amount": 100})), Some("payday")).await;
    let retry = post(&c, &delayed, Some(json!({"amount": 100})), Some("payday")).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");
    // The id names the instance and the key (`DELETE /v1/invocations/{id}`
    // finds its shard from it).
    assert_eq!(first.json, json!({"invocation_id": "Account.dave.payday"}));
    assert_eq!(retry.json, first.json);
    await_balance(&c, &bank, "dave", 110).await;
    // A later timer fires after any duplicate of the first would have.
    let later = post(
        &c,
        &format!("{send}?delay=600ms"),
        Some(json!({"amount": 1})),
        None,
    )
    .await;
    assert_eq!(later.status, StatusCode::ACCEPTED);
    await_balance(&c, &bank, "dave", 111).await;

    // A delay of an hour is not run now.
    let hour = post(
        &c,
        &format!("{send}?delay=1h"),
        Some(json!({"amount": 1000})),
        None,
    )
    .await;
    assert_eq!(hour.status, StatusCode::ACCEPTED);
    assert_eq!(balance(&c, &bank, "dave").await, 111);

    // 400 for a delay that does not parse, before anything is enqueued.
    for bad in ["5", "5x", "-1s", "1.5s", "soon"] {
        let reply = post(
            &c,
            &format!("{send}?delay={bad}"),
            Some(json!({"amount": 1})),
            None,
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}: {reply:?}");
        assert_eq!(reply.code(), "invalid_delay");
    }
    // Unknown handlers and bad arguments are refused at enqueue time.
    let unknown = post(&c, &bank.url("/v1/Account/dave/rob/send"), None, None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{unknown:?}");
    let wrong = post(&c, &send, Some(json!({"amount": true})), None).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{wrong:?}");
    assert_eq!(balance(&c, &bank, "dave").await, 111);
}

#[tokio::test]
async fn admin_is_refused_without_the_token_and_off_without_one_configured() {
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    {
        // Every log line, at the most verbose level, to check that neither
        // the token nor the wrong ones tried show up in them.
        // (To a file: a pipe nobody reads yet would fill and stall the bank.)
        let log_path = dir.path().with_extension("log");
        let log_file = std::fs::File::create(&log_path).unwrap();
        let bank = Bank::start_with(
            dir.path(),
            &["--admin-token", "s3cret-token"],
            &[(
                "RUST_LOG",
                "trace,hyper=debug,hyper_util=debug,h2=debug,fjall=info,lsm_tree=info",
            )],
            std::process::Stdio::from(log_file),
        );
        let url = bank.url("/admin/functions");
        let no_token = Reply::from(c.get(&url).send().await.unwrap()).await;
        assert_eq!(no_token.status, StatusCode::UNAUTHORIZED, "{no_token:?}");
        assert_eq!(no_token.code(), "unauthorized");
        for wrong in [
            "Bearer s3cret-tokem",
            "Bearer s3cret",
            "Basic s3cret-token",
            "s3cret-token",
        ] {
            let reply = Reply::from(
                c.get(&url)
                    .header(header::AUTHORIZATION, wrong)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{wrong}: {reply:?}");
        }
        let served = Reply::from(
            c.get(&url)
                .bearer_auth("s3cret-token")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(served.status, StatusCode::OK, "{served:?}");
        let account = &served.json["functions"][0];
        assert_eq!(account["type"], "Account");
        let handlers: Vec<&str> = account["handlers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["name"].as_str().unwrap())
            .collect();
        assert_eq!(handlers, ["deposit", "withdraw", "transfer", "balance"]);
        assert_eq!(account["handlers"][2]["args"], json!(["to", "amount"]));

        let shards = Reply::from(
            c.get(bank.url("/admin/shards"))
                .bearer_auth("s3cret-token")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(shards.status, StatusCode::OK, "{shards:?}");
        let shards = shards.json["shards"].as_array().unwrap().clone();
        assert_eq!(shards.len(), usize::from(statefn::DEFAULT_SHARDS));
        assert!(shards.iter().all(|s| s["serving"] == true), "{shards:?}");
        assert!(shards[0]["checkpoint_lsn"].is_u64(), "{shards:?}");
        let refused = Reply::from(c.get(bank.url("/admin/shards")).send().await.unwrap()).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert!(bank.terminate().success());
        let logs = std::fs::read_to_string(&log_path).unwrap();
        std::fs::remove_file(&log_path).unwrap();
        // The requests above were logged (so the check below looks at
        // something)...
        assert!(logs.contains("/admin/shards"), "{logs}");
        // ...and no log line carries a token, right or wrong.
        assert!(!logs.contains("s3cret"), "a token reached the logs: {logs}");
    }
    let bank = Bank::start(dir.path(), &[]);
    for path in ["/admin/functions", "/admin/shards"] {
        let off = Reply::from(
            c.get(bank.url(path))
                .bearer_auth("s3cret-token")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(off.status, StatusCode::NOT_FOUND, "{path}: {off:?}");
    }
}

#[tokio::test]
async fn metrics_are_served_as_prometheus_text() {
    let dir = tempfile::tempdir().unwrap();
    let bank = Bank::start(dir.path(), &[]);
    let c = client();
    deposit(&c, &bank, "erin", 1).await;
    post(&c, &bank.url("/v1/Account/erin/nope"), None, None).await;

    let response = c.get(bank.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()[header::CONTENT_TYPE].to_str().unwrap();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.unwrap();

    assert!(
        text.contains("# TYPE statefn_http_requests_total counter"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE statefn_http_request_duration_seconds histogram"),
        "{text}"
    );
    let ok_calls = sample(
        &text,
        r#"statefn_http_requests_total{route="/v1/{type}/{id}/{handler}",status="200"}"#,
    );
    assert!(ok_calls >= 1.0, "{text}");
    let not_found = sample(
        &text,
        r#"statefn_http_requests_total{route="/v1/{type}/{id}/{handler}",status="404"}"#,
    );
    assert!(not_found >= 1.0, "{text}");
    // Invocations and call latencies by function and handler; an unknown
    // handler adds no series (bounded cardinality).
    let deposits = sample(
        &text,
        r#"statefn_invocations_total{function="Account",handler="deposit",outcome="applied"}"#,
    );
    assert!(deposits >= 1.0, "{text}");
    assert!(
        text.contains(
            r#"statefn_call_duration_seconds_count{function="Account",handler="deposit"}"#
        ),
        "{text}"
    );
    assert!(!text.contains(r#"handler="nope""#), "{text}");

    // Every line is a comment, blank, or `name{labels} value` with a number.
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let kind = rest.rsplit(' ').next().unwrap();
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "{line}"
                );
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        assert!(value.parse::<f64>().is_ok() || value == "+Inf", "{line}");
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':'),
            "{line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "{line}");
        }
    }
}

#[tokio::test]
async fn every_metric_type_has_help_text() {
    let text = served_metrics().await;
    let mut typed = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            typed += 1;
            assert!(
                text.lines().any(|l| l
                    .strip_prefix("# HELP ")
                    .and_then(|h| h.strip_prefix(name))
                    .is_some_and(|h| h.starts_with(' ') && h.trim().len() > 10)),
                "{name} has no HELP text: {text}"
            );
        }
    }
    assert!(typed >= 5, "{text}");
}

/// Set to skip the promtool check where Debian's `prometheus` package
/// cannot be installed (the test installs it under target/ otherwise).
const SKIP_PROMTOOL: &str = "STATEFN_SKIP_PROMTOOL";

#[tokio::test]
async fn metrics_pass_promtool_check_metrics() {
    let text = served_metrics().await;
    let promtool = match common::promtool() {
        Ok(path) => path,
        Err(e) if std::env::var_os(SKIP_PROMTOOL).is_some() => {
            eprintln!("promtool unavailable ({e}); skipped because {SKIP_PROMTOOL} is set");
            return;
        }
        Err(e) => panic!(
            "promtool is needed to check /metrics and could not be installed: {e} \
             (install Debian's `prometheus` package, or set {SKIP_PROMTOOL}=1 to skip)"
        ),
    };
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", promtool.display()));
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n--- the metrics:\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `/metrics` of a bank that has committed calls (so the storage metrics
/// exist), answered 404s, and refused a withdrawal.
async fn served_metrics() -> String {
    let dir = tempfile::tempdir().unwrap();
    let bank = Bank::start(dir.path(), &[]);
    let c = client();
    deposit(&c, &bank, "ivy", 5).await;
    balance(&c, &bank, "ivy").await;
    post(&c, &bank.url("/v1/Account/ivy/nope"), None, None).await;
    post(
        &c,
        &bank.url("/v1/Account/ivy/withdraw"),
        Some(json!({"amount": 50})),
        None,
    )
    .await;
    let response = c.get(bank.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

#[tokio::test]
async fn amounts_must_be_positive_and_balances_never_wrap() {
    let dir = tempfile::tempdir().unwrap();
    let bank = Bank::start(dir.path(), &[]);
    let c = client();
    assert_eq!(deposit(&c, &bank, "kim", 100).await, 100);
    for (path, body) in [
        ("/v1/Account/kim/deposit", json!({"amount": -5})),
        ("/v1/Account/kim/deposit", json!({"amount": 0})),
        ("/v1/Account/kim/withdraw", json!({"amount": -5})),
        ("/v1/Account/kim/withdraw", json!({"amount": 0})),
        (
            "/v1/Account/kim/transfer",
            json!({"to": "lee", "amount": -30}),
        ),
        (
            "/v1/Account/kim/transfer",
            json!({"to": "lee", "amount": 0}),
        ),
    ] {
        let refused = post(&c, &bank.url(path), Some(body.clone()), None).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path} {body}: {refused:?}"
        );
        assert_eq!(refused.code(), "handler_error");
        assert_eq!(
            refused.json["error"]["details"]["not_positive"]["amount"], body["amount"],
            "{refused:?}"
        );
    }
    // A deposit that would pass i64::MAX is refused, not wrapped.
    assert_eq!(deposit(&c, &bank, "max", i64::MAX - 1).await, i64::MAX - 1);
    let overflow = post(
        &c,
        &bank.url("/v1/Account/max/deposit"),
        Some(json!({"amount": 2})),
        None,
    )
    .await;
    assert_eq!(
        overflow.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{overflow:?}"
    );
    assert_eq!(
        overflow.json["error"]["details"]["overflow"],
        json!({"balance": i64::MAX - 1, "amount": 2}),
        "{overflow:?}"
    );
    // Nothing changed.
    assert_eq!(balance(&c, &bank, "kim").await, 100);
    assert_eq!(balance(&c, &bank, "lee").await, 0);
    assert_eq!(balance(&c, &bank, "max").await, i64::MAX - 1);
}

/// The value of the sample `series` in Prometheus text.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {series}"))
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_the_server_stays_up_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let bank = Bank::start(dir.path(), &[]);
    let c = client();
    deposit(&c, &bank, "frank", 50).await;
    deposit(&c, &bank, "gina", 50).await;
    let url = bank.url("/v1/Account/frank/deposit");

    let raw = |body: Vec<u8>| {
        c.post(&url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
    };
    let checks: Vec<(&str, reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            "oversized body",
            raw(format!(r#"{{"amount": 1, "pad": "{}"}}"#, "x".repeat(2 << 20)).into_bytes()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "invalid UTF-8",
            raw(b"{\"amount\": 1, \"note\": \"\xff\xfe\"}".to_vec()),
            StatusCode::BAD_REQUEST,
            "invalid_utf8",
        ),
        (
            "200-deep JSON",
            raw(format!(r#"{{"amount": {}1{}}}"#, "[".repeat(200), "]".repeat(200)).into_bytes()),
            StatusCode::BAD_REQUEST,
            "json_too_deep",
        ),
        (
            "malformed JSON",
            raw(br#"{"amount": 1"#.to_vec()),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "not an object",
            raw(b"[1]".to_vec()),
            StatusCode::BAD_REQUEST,
            "invalid_arguments",
        ),
        (
            "an id over the 1 KiB limit",
            c.post(bank.url(&format!("/v1/Account/{}/deposit", "x".repeat(10 << 10))))
                .json(&json!({"amount": 1})),
            StatusCode::BAD_REQUEST,
            "invalid_address",
        ),
        (
            "an empty id",
            c.post(bank.url("/v1/Account//deposit"))
                .json(&json!({"amount": 1})),
            StatusCode::BAD_REQUEST,
            "invalid_address",
        ),
        (
            "an id that is not UTF-8",
            c.post(bank.url("/v1/Account/%FF/deposit"))
                .json(&json!({"amount": 1})),
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
        (
            "an unknown route",
            c.post(bank.url("/v1/Account/frank/deposit/send/now"))
                .json(&json!({"amount": 1})),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (what, request, status, code) in checks {
        let reply = Reply::from(request.send().await.unwrap()).await;
        assert_eq!(
            (reply.status, reply.code()),
            (status, code),
            "{what}: {reply:?}"
        );
        assert!(!reply.message().is_empty(), "{what}: {reply:?}");
    }

    // A 100 KiB id is over the HTTP layer's URI limit (64 KiB; HTTP clients
    // refuse to send it, so it goes over a raw socket): 414 before the
    // ingress sees it.
    let status_line = raw_request(
        &bank,
        &format!(
            "POST /v1/Account/{}/deposit HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: 13\r\nConnection: close\r\n\r\n{{\"amount\": 1}}",
            "x".repeat(100 << 10)
        ),
    )
    .await;
    assert!(status_line.starts_with("HTTP/1.1 414"), "{status_line}");

    // Still up, and nothing changed.
    assert_eq!(balance(&c, &bank, "frank").await, 50);
    assert_eq!(balance(&c, &bank, "gina").await, 50);
    assert_eq!(deposit(&c, &bank, "frank", 1).await, 51);
}

/// Sends `request` as raw bytes; returns the response's status line.
async fn raw_request(bank: &Bank, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = bank.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before reading everything.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    text.lines().next().unwrap_or("").to_owned()
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_exits_0_and_a_restart_sees_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let bank = Bank::start(dir.path(), &[]);
    let c = client();
    deposit(&c, &bank, "hank", 1000).await;

    // Clients keep depositing 1 until the server goes away; SIGTERM arrives
    // once every client has had at least one answer.
    let (answered_tx, mut answered_rx) = tokio::sync::mpsc::channel::<()>(64);
    let clients: Vec<_> = (0..4)
        .map(|client_no| {
            let c = c.clone();
            let url = bank.url("/v1/Account/hank/deposit");
            let answered = answered_tx.clone();
            tokio::spawn(async move {
                let mut acked = 0i64;
                for i in 0.. {
                    let key = format!("term-{client_no}-{i}");
                    let sent = c
                        .post(&url)
                        .header("Idempotency-Key", key)
                        .json(&json!({"amount": 1}))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == StatusCode::OK => acked += 1,
                        // Refused while shutting down: not applied.
                        Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => break,
                        Ok(r) => panic!("unexpected {}", r.status()),
                        Err(_) => break,
                    }
                    let _ = answered.try_send(());
                }
                acked
            })
        })
        .collect();
    drop(answered_tx);
    for _ in 0..4 {
        tokio::time::timeout(common::EXIT_DEADLINE, answered_rx.recv())
            .await
            .expect("no answer within the deadline: the bank hangs")
            .expect("a client got an answer");
    }
    let status = tokio::task::spawn_blocking(move || bank.terminate())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(status.code(), Some(0));
    let mut acked = 0;
    for client in clients {
        acked += tokio::time::timeout(common::EXIT_DEADLINE, client)
            .await
            .expect("a client still waits after the bank exited")
            .unwrap();
    }
    assert!(acked >= 4);

    let bank = Bank::start(dir.path(), &[]);
    assert_eq!(balance(&c, &bank, "hank").await, 1000 + acked);
}

#[tokio::test]
async fn sigterm_does_not_wait_for_an_egress_long_poll() {
    let dir = tempfile::tempdir().unwrap();
    let bank = Bank::start(dir.path(), &[]);
    let c = client();
    // A consumer waits up to 60 s for a record that never comes.
    let url = bank.url("/v1/egress/transfers?from=0&wait=60s");
    let poll = tokio::spawn({
        let c = c.clone();
        async move { c.get(url).send().await.map(|r| r.status()) }
    });
    // Wait until the server holds the long-poll's connection (and this
    // one's): the shutdown below must meet it in flight.
    let started = Instant::now();
    loop {
        let metrics = c.get(bank.url("/metrics")).send().await.unwrap();
        let text = metrics.text().await.unwrap();
        let open = text
            .lines()
            .find_map(|l| l.strip_prefix("statefn_http_connections "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if open >= 2.0 {
            break;
        }
        assert!(
            started.elapsed() < POLL_DEADLINE,
            "the long-poll never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The guard is shorter than the long-poll: a shutdown that waited for
    // it would fail here.
    let status =
        tokio::task::spawn_blocking(move || bank.terminate_within(Duration::from_secs(30)))
            .await
            .unwrap();
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    let answered = tokio::time::timeout(Duration::from_secs(30), poll)
        .await
        .expect("the long-poll ended with the server")
        .unwrap();
    // Answered (empty) when the shutdown began, not cut off.
    assert_eq!(answered.expect("answered"), StatusCode::OK);
}

#[tokio::test]
async fn egress_is_read_by_offset_with_long_poll() {
    let dir = tempfile::tempdir().unwrap();
    let bank = Bank::start(dir.path(), &[]);
    let c = client();
    post(
        &c,
        &bank.url("/v1/Account/erin/deposit"),
        Some(json!({"amount": 100})),
        None,
    )
    .await;
    for amount in [10, 20, 30] {
        let r = post(
            &c,
            &bank.url("/v1/Account/erin/transfer"),
            Some(json!({"to": "finn", "amount": amount})),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
    }
    // Appended just after the commits: long-poll until all three are there.
    let mut records = Vec::new();
    while records.len() < 3 {
        let page: serde_json::Value = c
            .get(bank.url(&format!(
                "/v1/egress/transfers?from={}&limit=2&wait=5s",
                records.len()
            )))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let got = page["records"].as_array().unwrap().clone();
        assert!(!got.is_empty(), "no record within the wait: {page}");
        assert!(got.len() <= 2, "limit ignored: {page}");
        assert_eq!(page["next"], json!(records.len() + got.len()));
        records.extend(got);
    }
    let amounts: Vec<_> = records
        .iter()
        .map(|r| r["record"]["amount"].clone())
        .collect();
    assert_eq!(amounts, [json!(10), json!(20), json!(30)]);
    let offsets: Vec<_> = records.iter().map(|r| r["offset"].clone()).collect();
    assert_eq!(offsets, [json!(0), json!(1), json!(2)]);
    assert!(
        records
            .iter()
            .all(|r| r["id"].as_str().is_some_and(|id| !id.is_empty()))
    );
    // Past the end, a short wait returns nothing; a bad name is a 400.
    let empty: serde_json::Value = c
        .get(bank.url("/v1/egress/transfers?from=3&wait=50ms"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(empty, json!({"records": [], "next": 3}));
    let bad = c
        .get(bank.url("/v1/egress/no%20such?from=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}
