//! The bank in cluster mode as real processes: three NATS servers and bank
//! nodes (`cluster_harness`, shared with `cluster_failures.rs`) started with
//! the fixed flags
//! `--nats URL[,URL...]`, `--node-id NAME`, `--replicas N`. Any node answers
//! any call over HTTP, a retry with the same `Idempotency-Key` on another
//! node gets the stored reply, transfers between accounts of different
//! nodes apply once, and after a SIGKILL of a node the others take its
//! groups over without losing anything acknowledged. Every process a test
//! starts is stopped by PID when it ends (the harness and `Bank` drop).

mod cluster_harness;
mod common;

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use cluster_harness::{TestCluster, Try, try_call};
use reqwest::StatusCode;
use serde_json::{Value, json};
use statefn_tests::nats::{NatsCluster, NatsOptions};

/// A hang detector, not a performance bound.
const PATIENCE: Duration = Duration::from_secs(60);

/// Posts to node `i` until the answer is not a 503 (a failover or handoff
/// in progress); returns that answer (200 or 422).
async fn call(
    cluster: &TestCluster,
    i: usize,
    path: &str,
    body: Option<&Value>,
    key: Option<&str>,
) -> (StatusCode, Value) {
    let started = Instant::now();
    loop {
        match try_call(&cluster.client, &cluster.url(i), path, body, key).await {
            Try::Answered { status, body } => return (status, body),
            Try::Unavailable { message } => {
                assert!(started.elapsed() < PATIENCE, "still 503: {message}");
            }
            Try::NoAnswer { error } => panic!("n{i} did not answer {path}: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn deposit(cluster: &TestCluster, i: usize, id: &str, amount: i64, key: &str) -> i64 {
    let body = json!({ "amount": amount });
    let path = format!("/v1/Account/{id}/deposit");
    let (status, reply) = call(cluster, i, &path, Some(&body), Some(key)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply.as_i64().expect("a balance")
}

async fn balance(cluster: &TestCluster, i: usize, id: &str) -> i64 {
    let path = format!("/v1/Account/{id}/balance");
    let (status, reply) = call(cluster, i, &path, None, None).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply.as_i64().expect("a balance")
}

/// Waits for `id`'s balance on node `i` to reach `expected` (deposits sent
/// by transfers arrive after the transfer's reply); it must never pass it.
async fn wait_for_balance(cluster: &TestCluster, i: usize, id: &str, expected: i64) {
    let started = Instant::now();
    loop {
        let now = balance(cluster, i, id).await;
        if now == expected {
            return;
        }
        assert!(
            now < expected && started.elapsed() < PATIENCE,
            "{id}: balance {now}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_nodes_answer_any_call_apply_transfers_once_and_survive_a_sigkill() {
    let mut cluster = TestCluster::start(3);
    cluster.settled().await;

    let accounts: Vec<String> = (0..12).map(|i| format!("acct-{i}")).collect();
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    // Deposits through every node; each retried with its key on the next
    // node gets the stored reply and applies nothing.
    for (i, id) in accounts.iter().enumerate() {
        let key = format!("d-{i}");
        let first = deposit(&cluster, i % 3, id, 100, &key).await;
        let again = deposit(&cluster, (i + 1) % 3, id, 100, &key).await;
        assert_eq!((first, again), (100, 100), "{id}");
        expected.insert(id.clone(), 100);
    }
    // Transfers between accounts (most cross nodes), each retried on
    // another node with its key.
    for (i, from) in accounts.iter().enumerate() {
        let to = &accounts[(i + 5) % accounts.len()];
        let key = format!("t-{i}");
        let body = json!({ "to": to, "amount": 30 });
        let path = format!("/v1/Account/{from}/transfer");
        for node in [i % 3, (i + 2) % 3] {
            let (status, reply) = call(&cluster, node, &path, Some(&body), Some(&key)).await;
            assert_eq!(status, StatusCode::OK, "{reply}");
        }
        *expected.get_mut(from).expect("known") -= 30;
        *expected.get_mut(to).expect("known") += 30;
    }
    for (id, amount) in &expected {
        wait_for_balance(&cluster, 0, id, *amount).await;
    }

    // Invocations enqueued through one node: their status (waiting too)
    // and cancel work through every node, two of which do not serve the
    // instance (they ask the one that does).
    let request = |method: reqwest::Method, url: String, body: Option<(Value, &'static str)>| {
        let client = cluster.client.clone();
        async move {
            let mut request = client.request(method, url);
            if let Some((body, key)) = body {
                request = request.json(&body).header("Idempotency-Key", key);
            }
            let response = request.send().await.expect("send the request");
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    use reqwest::Method;
    let later = cluster.url(0) + "/v1/Account/inv-later/deposit/send?delay=1h";
    let (status, sent) =
        request(Method::POST, later, Some((json!({ "amount": 1 }), "later"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    let id = sent["invocation_id"].as_str().expect("an id").to_owned();
    let at = |i: usize, query: &str| format!("{}/v1/invocations/{id}{query}", cluster.url(i));
    for i in 0..3 {
        let (status, body) = request(Method::GET, at(i, ""), None).await;
        assert_eq!(
            (status, body["status"].clone()),
            (StatusCode::OK, json!("scheduled")),
            "n{i}: {body}"
        );
    }
    let (status, body) = request(Method::DELETE, at(1, ""), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = request(Method::DELETE, at(2, ""), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    for i in 0..3 {
        let (_, body) = request(Method::GET, at(i, ""), None).await;
        assert_eq!(body["status"], "cancelled", "n{i}: {body}");
    }
    let now = cluster.url(1) + "/v1/Account/inv-now/deposit/send";
    let (_, sent) = request(Method::POST, now, Some((json!({ "amount": 3 }), "now"))).await;
    let id = sent["invocation_id"].as_str().expect("an id").to_owned();
    for i in [2, 0] {
        let url = format!("{}/v1/invocations/{id}?wait=30s", cluster.url(i));
        let (_, done) = request(Method::GET, url, None).await;
        assert_eq!(
            (done["status"].clone(), done["reply"].clone()),
            (json!("done"), json!(3)),
            "n{i}: {done}"
        );
    }

    // SIGKILL a node: the others take its groups over.
    cluster.kill(2);
    let owners = cluster.settled().await;
    assert!(owners.values().all(|o| o != "n2"), "{owners:?}");
    for (i, id) in accounts.iter().enumerate() {
        let node = cluster.running()[i % 2];
        deposit(&cluster, node, id, 1, &format!("e-{i}")).await;
        *expected.get_mut(id).expect("known") += 1;
    }
    for (id, amount) in &expected {
        for node in cluster.running() {
            wait_for_balance(&cluster, node, id, *amount).await;
        }
    }
    assert_eq!(
        expected.values().sum::<i64>(),
        12 * 101,
        "money is conserved"
    );
    let status = cluster.status(0).await.expect("GET /admin/cluster");
    let n2 = status["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["node"] == json!("n2")))
        .cloned();
    assert_eq!(
        n2.map(|n| n["live"].clone()),
        Some(json!(false)),
        "{status:#}"
    );

    // SIGTERM: the last two shut down cleanly.
    for node in cluster.running() {
        assert!(cluster.terminate(node).success());
    }
}

#[test]
fn cluster_flags_are_checked_with_clear_errors() {
    // --replicas above the NATS servers: refused at start, naming the flag.
    let nats = NatsCluster::start(NatsOptions::single()).expect("NATS");
    let dir = tempfile::tempdir().expect("dir");
    let url = nats.client_url(0);
    let replicas = run_to_exit(
        dir.path(),
        &["--nats", &url, "--node-id", "a", "--replicas", "3"],
    );
    assert!(!replicas.0, "3 replicas on 1 server must fail");
    assert!(replicas.1.contains("--replicas"), "{}", replicas.1);
    // --nats without --node-id.
    let anonymous = run_to_exit(dir.path(), &["--nats", &url]);
    assert!(!anonymous.0);
    assert!(anonymous.1.contains("--node-id"), "{}", anonymous.1);
}

/// Runs the bank to its exit (killed after [`PATIENCE`]); returns whether
/// it succeeded and its stderr.
fn run_to_exit(dir: &Path, args: &[&str]) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bank"))
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the bank");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            return (status.success(), stderr);
        }
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the bank did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
