//! A cluster of real processes for the failure tests of
//! `cluster_failures.rs`: three NATS servers (`statefn_tests::nats`) and bank
//! nodes started with the fixed cluster flags, which the tests SIGKILL,
//! restart, SIGSTOP, SIGCONT and SIGTERM by PID. Clients are tolerant: a
//! keyed call is tried on random running nodes until one answers (200 or
//! 422), as a real client with an `Idempotency-Key` would.
//!
//! Every process is stopped when the cluster drops (also on a panic): banks
//! by `Bank`'s drop (SIGKILL after a SIGCONT), NATS servers by the harness.

// Not every test uses every helper.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    process::{Command, ExitStatus},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng, rngs::StdRng};
use reqwest::StatusCode;
use serde_json::{Value, json};
use statefn_tests::nats::{NatsCluster, NatsOptions};
use tempfile::TempDir;

use crate::common::Bank;

/// The admin token of every node.
pub(crate) const TOKEN: &str = "cluster-admin-token";
/// A hang detector, not a performance bound: how long a keyed call may
/// keep failing over before the test gives up on it.
pub(crate) const PATIENCE: Duration = Duration::from_secs(120);
/// One HTTP request's limit (above the nodes' 20 s `log_retry_for`, so
/// that a NATS leader election is waited for, not cut short).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);
/// The bank's defaults in cluster mode (its `--log-groups`, the shards).
pub(crate) const LOG_GROUPS: u16 = 8;
const SHARDS: u16 = 16;

/// The log group serving account `id` (the runtime's placement: shard =
/// key-group range, group = shard modulo groups).
pub(crate) fn group_of(id: &str) -> u16 {
    statefn::Address::new("Account", id)
        .expect("a valid id")
        .shard(SHARDS)
        % LOG_GROUPS
}

/// `count` account ids of log group `group`, named `prefix-N`.
pub(crate) fn accounts_in_group(prefix: &str, group: u16, count: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .filter(|id| group_of(id) == group)
        .take(count)
        .collect()
}

/// The run's seed: `STATEFN_CHAOS_SEED` to replay one, else a fresh one
/// (printed either way).
pub(crate) fn seed(test: &str) -> u64 {
    let seed = match std::env::var("STATEFN_CHAOS_SEED") {
        Ok(text) => text.parse().expect("STATEFN_CHAOS_SEED is a u64"),
        Err(_) => rand::random(),
    };
    eprintln!("{test}: seed {seed} (replay with STATEFN_CHAOS_SEED={seed})");
    seed
}

/// The nodes' base URLs by index, shared with client tasks: a restarted
/// node listens on a new port, a killed one on none.
#[derive(Debug, Clone, Default)]
pub(crate) struct Directory(Arc<Mutex<Vec<Option<String>>>>);

impl Directory {
    fn set(&self, i: usize, url: Option<String>) {
        let mut urls = self.0.lock().expect("directory");
        if urls.len() <= i {
            urls.resize(i + 1, None);
        }
        urls[i] = url;
    }

    /// The running nodes: `(index, base URL)`.
    pub(crate) fn up(&self) -> Vec<(usize, String)> {
        self.0
            .lock()
            .expect("directory")
            .iter()
            .enumerate()
            .filter_map(|(i, u)| u.clone().map(|u| (i, u)))
            .collect()
    }

    /// A snapshot holding only the running nodes `keep` accepts.
    pub(crate) fn only(&self, keep: impl Fn(usize) -> bool) -> Directory {
        let only = Directory::default();
        for (i, url) in self.up() {
            if keep(i) {
                only.set(i, Some(url));
            }
        }
        only
    }

    /// Node `i`'s base URL, if it runs.
    pub(crate) fn url(&self, i: usize) -> Option<String> {
        self.0.lock().expect("directory").get(i).cloned().flatten()
    }
}

/// Three NATS servers and bank nodes `n0`, `n1`, ... each with its own data
/// directory (kept across restarts).
pub(crate) struct TestCluster {
    /// The NATS servers (kill and restart them by index).
    pub(crate) nats: NatsCluster,
    nats_urls: String,
    /// Flags every node gets besides the fixed ones.
    node_args: Vec<String>,
    dirs: Vec<TempDir>,
    banks: Vec<Option<Bank>>,
    /// The nodes' current URLs.
    pub(crate) directory: Directory,
    /// A client with [`REQUEST_TIMEOUT`].
    pub(crate) client: reqwest::Client,
}

impl TestCluster {
    /// Starts three NATS servers and `nodes` bank nodes.
    pub(crate) fn start(nodes: usize) -> TestCluster {
        TestCluster::start_with(nodes, &[])
    }

    /// The same, every node started with `node_args` too.
    pub(crate) fn start_with(nodes: usize, node_args: &[&str]) -> TestCluster {
        let nats = NatsCluster::start(NatsOptions::three()).expect("NATS");
        let nats_urls = nats.client_urls().join(",");
        let mut cluster = TestCluster {
            nats,
            nats_urls,
            node_args: node_args.iter().map(|a| (*a).to_owned()).collect(),
            dirs: Vec::new(),
            banks: Vec::new(),
            directory: Directory::default(),
            client: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("a client"),
        };
        for _ in 0..nodes {
            cluster.add_node();
        }
        cluster
    }

    /// Starts a new node `n<i>` with a fresh data directory; returns `i`.
    pub(crate) fn add_node(&mut self) -> usize {
        self.dirs.push(tempfile::tempdir().expect("a data dir"));
        self.banks.push(None);
        let i = self.banks.len() - 1;
        self.restart(i);
        i
    }

    /// Node `i`'s id.
    pub(crate) fn id(i: usize) -> String {
        format!("n{i}")
    }

    /// (Re)starts node `i` on its data directory (a new port).
    pub(crate) fn restart(&mut self, i: usize) {
        assert!(self.banks[i].is_none(), "n{i} runs already");
        // `STATEFN_CHAOS_LOG` (a `RUST_LOG` filter) shows the nodes' logs.
        let log = std::env::var("STATEFN_CHAOS_LOG").unwrap_or_else(|_| "error".into());
        let id = Self::id(i);
        let mut args = vec![
            "--nats",
            &self.nats_urls,
            "--node-id",
            &id,
            "--replicas",
            "3",
            "--admin-token",
            TOKEN,
        ];
        args.extend(self.node_args.iter().map(String::as_str));
        let bank = Bank::start_with(
            self.dirs[i].path(),
            &args,
            &[("RUST_LOG", &log)],
            std::process::Stdio::inherit(),
        );
        self.directory.set(i, Some(bank.base.clone()));
        self.banks[i] = Some(bank);
    }

    /// SIGKILLs node `i`.
    pub(crate) fn kill(&mut self, i: usize) {
        self.directory.set(i, None);
        self.banks[i].take().expect("running").kill();
    }

    /// SIGTERMs node `i` and waits for its exit.
    pub(crate) fn terminate(&mut self, i: usize) -> ExitStatus {
        self.directory.set(i, None);
        self.banks[i].take().expect("running").terminate()
    }

    /// Sends `signal` (`STOP`, `CONT`) to node `i`.
    pub(crate) fn signal(&self, i: usize, signal: &str) {
        let pid = self.banks[i].as_ref().expect("running").pid();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// The running nodes' indexes.
    pub(crate) fn running(&self) -> Vec<usize> {
        (0..self.banks.len())
            .filter(|&i| self.banks[i].is_some())
            .collect()
    }

    /// Node `i`'s base URL (it must run).
    pub(crate) fn url(&self, i: usize) -> String {
        self.directory.url(i).expect("running")
    }

    /// Node `i`'s `GET /admin/cluster`, or `None` if it does not answer.
    pub(crate) async fn status(&self, i: usize) -> Option<Value> {
        status_at(&self.client, &self.directory.url(i)?).await
    }

    /// Waits until every running node agrees on one owner per group, each
    /// served by exactly that node, and every running node serves one at
    /// least; returns each group's owner.
    pub(crate) async fn settled(&self) -> BTreeMap<u16, String> {
        let started = Instant::now();
        loop {
            let mut statuses = Vec::new();
            for i in self.running() {
                if let Some(status) = self.status(i).await {
                    statuses.push(status);
                }
            }
            if statuses.len() == self.running().len()
                && let Some(owners) = agreed_owners(&statuses)
            {
                return owners;
            }
            assert!(started.elapsed() < PATIENCE, "not settled: {statuses:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The sum of the epochs of every group, as node `i` sees them.
    pub(crate) async fn epoch_sum(&self, i: usize) -> u64 {
        let status = self.status(i).await.expect("status");
        status["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| g["epoch"].as_u64().unwrap_or(0))
            .sum()
    }

    /// A counter of node `i`'s `/metrics` (0 when absent).
    pub(crate) async fn metric(&self, i: usize, name: &str) -> f64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.url(i)))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // A stopped process cannot die before it is continued: SIGCONT first.
        for bank in self.banks.iter().flatten() {
            let _ = Command::new("kill")
                .args(["-CONT", &bank.pid().to_string()])
                .status();
        }
        self.banks.clear();
    }
}

/// `GET /admin/cluster` of the node at `base`.
pub(crate) async fn status_at(client: &reqwest::Client, base: &str) -> Option<Value> {
    let response = client
        .get(format!("{base}/admin/cluster"))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if response.status() != StatusCode::OK {
        return None;
    }
    response.json().await.ok()
}

fn agreed_owners(statuses: &[Value]) -> Option<BTreeMap<u16, String>> {
    let groups = statuses.first()?["groups"].as_array()?.len();
    let mut owners = BTreeMap::new();
    for g in 0..groups {
        let serving: Vec<&str> = statuses
            .iter()
            .filter(|s| s["groups"][g]["served_here"] == json!(true))
            .filter_map(|s| s["node"].as_str())
            .collect();
        let [node] = serving[..] else { return None };
        if statuses
            .iter()
            .any(|s| s["groups"][g]["owner"].as_str() != Some(node))
        {
            return None;
        }
        owners.insert(u16::try_from(g).ok()?, node.to_owned());
    }
    let serving: std::collections::BTreeSet<&String> = owners.values().collect();
    (serving.len() == statuses.len()).then_some(owners)
}

/// What one try of a call got.
#[derive(Debug)]
pub(crate) enum Try {
    /// 200 or 422: the call's outcome, committed.
    Answered {
        /// The status.
        status: StatusCode,
        /// The body.
        body: Value,
    },
    /// 503 (with `Retry-After`, checked): not applied, or unknown as the
    /// message says; retry with the same key.
    Unavailable {
        /// `error.message`.
        message: String,
    },
    /// No answer: connection refused or reset, timeout (a killed or stopped
    /// node). The outcome is unknown; retry with the same key.
    NoAnswer {
        /// What went wrong.
        error: String,
    },
}

/// One `POST base+path` with `body` and `Idempotency-Key: key`. Panics on
/// any answer but 200, 422 and a 503 with `Retry-After`.
pub(crate) async fn try_call(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    body: Option<&Value>,
    key: Option<&str>,
) -> Try {
    let mut request = client
        .post(format!("{base}{path}"))
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    if let Some(body) = body {
        request = request.json(body);
    }
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            return Try::NoAnswer {
                error: describe(&error),
            };
        }
    };
    let status = response.status();
    let retry_after = response.headers().contains_key("retry-after");
    let text = match response.text().await {
        Ok(text) => text,
        Err(error) => {
            return Try::NoAnswer {
                error: describe(&error),
            };
        }
    };
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    match status {
        StatusCode::OK | StatusCode::UNPROCESSABLE_ENTITY => Try::Answered { status, body },
        StatusCode::SERVICE_UNAVAILABLE => {
            assert!(retry_after, "a 503 says when to retry: {text}");
            Try::Unavailable {
                message: body["error"]["message"].as_str().unwrap_or("").to_owned(),
            }
        }
        _ => panic!("{path} (key {key:?}) on {base}: unexpected {status}: {text}"),
    }
}

/// An error with its sources (reqwest's display hides the cause).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// How a keyed call ended: the answer, the node that gave it, and how many
/// tries it took.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    /// 200 or 422.
    pub(crate) status: StatusCode,
    /// The reply body.
    pub(crate) body: Value,
    /// The index of the node that answered.
    pub(crate) node: usize,
    /// Tries, the answered one included.
    pub(crate) tries: u32,
}

/// Tries a keyed call on random running nodes (another one after each
/// failure) until one answers; panics after [`PATIENCE`].
pub(crate) async fn call_until_answered(
    client: &reqwest::Client,
    directory: &Directory,
    rng: &mut StdRng,
    path: &str,
    body: Option<&Value>,
    key: Option<&str>,
) -> Answer {
    let started = Instant::now();
    let mut last = None;
    let mut tries = 0;
    loop {
        let up = directory.up();
        if !up.is_empty() {
            let (node, base) = &up[rng.random_range(0..up.len())];
            tries += 1;
            match try_call(client, base, path, body, key).await {
                Try::Answered { status, body } => {
                    return Answer {
                        status,
                        body,
                        node: *node,
                        tries,
                    };
                }
                other => last = Some(other),
            }
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{path} (key {key:?}) not answered in {PATIENCE:?}; last: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(20 + rng.random_range(0..60))).await;
    }
}

/// The bank's deposit path.
pub(crate) fn deposit_path(id: &str) -> String {
    format!("/v1/Account/{id}/deposit")
}

/// The bank's transfer path.
pub(crate) fn transfer_path(id: &str) -> String {
    format!("/v1/Account/{id}/transfer")
}

/// `id`'s balance from any node.
pub(crate) async fn balance(client: &reqwest::Client, directory: &Directory, id: &str) -> i64 {
    let mut rng = StdRng::seed_from_u64(0);
    let path = format!("/v1/Account/{id}/balance");
    let answer = call_until_answered(client, directory, &mut rng, &path, None, None).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    answer.body.as_i64().expect("a balance")
}

/// Waits for every account's balance to reach its expected value (deposits
/// sent by transfers arrive after the transfer's reply); a balance above
/// it means something was applied twice.
pub(crate) async fn expect_balances(
    client: &reqwest::Client,
    directory: &Directory,
    expected: &BTreeMap<String, i64>,
) {
    for (id, amount) in expected {
        let started = Instant::now();
        loop {
            let now = balance(client, directory, id).await;
            if now == *amount {
                break;
            }
            assert!(
                now < *amount,
                "{id}: balance {now} is above {amount}: applied twice"
            );
            assert!(
                started.elapsed() < PATIENCE,
                "{id}: balance {now}, expected {amount}: a transfer's deposit was lost"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// How many stored-reply checks run at once (each is a call that appends
/// a barrier record; one at a time, thousands of them took most of the
/// chaos test's verification).
const CHECKS_AT_ONCE: usize = 16;

/// Sends every answered call again with its key to a node other than the
/// one that answered: the stored reply must come back, the same.
pub(crate) async fn expect_stored_replies(
    client: &reqwest::Client,
    directory: &Directory,
    calls: &[(String, Value, String, Answer)],
) {
    for (chunk_index, chunk) in calls.chunks(CHECKS_AT_ONCE).enumerate() {
        let mut checks = tokio::task::JoinSet::new();
        for (n, call) in chunk.iter().enumerate() {
            let (client, directory, call) = (client.clone(), directory.clone(), call.clone());
            let seed = (chunk_index * CHECKS_AT_ONCE + n) as u64;
            checks.spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed);
                let (path, body, key, answer) = call;
                let single = directory.up().len() == 1;
                let others = directory.only(|i| i != answer.node || single);
                let again =
                    call_until_answered(&client, &others, &mut rng, &path, Some(&body), Some(&key))
                        .await;
                assert_eq!(
                    (again.status, &again.body),
                    (answer.status, &answer.body),
                    "{path} key {key}: a retry got another reply than the first answer \
                     (from n{}): the first was not what committed",
                    answer.node
                );
            });
        }
        while let Some(checked) = checks.join_next().await {
            match checked {
                Ok(()) => {}
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(error) => panic!("a stored-reply check did not finish: {error}"),
            }
        }
    }
}

/// Every record of egress log `name`, read from the node at `base` until
/// an empty page: `(offset, record)`.
pub(crate) async fn egress_records(
    client: &reqwest::Client,
    base: &str,
    name: &str,
) -> Vec<(u64, Value)> {
    let mut records = Vec::new();
    let mut from = 0;
    loop {
        let page: Value = client
            .get(format!(
                "{base}/v1/egress/{name}?from={from}&limit=1000&wait=200ms"
            ))
            .send()
            .await
            .expect("read egress")
            .json()
            .await
            .expect("egress JSON");
        let batch = page["records"].as_array().expect("records").clone();
        if batch.is_empty() {
            return records;
        }
        for record in batch {
            records.push((
                record["offset"].as_u64().expect("offset"),
                record["record"].clone(),
            ));
        }
        from = page["next"].as_u64().expect("next");
    }
}
