//! `cluster`: the bank as three nodes on a three-server NATS JetStream
//! cluster, all on this machine, beside one bank node on its local log in
//! the same run.
//!
//! 1. Throughput and latency: closed-loop HTTP deposits, each with a unique
//!    `Idempotency-Key`, at each `--callers` (default 1, 32, 128); the
//!    callers' connections are spread evenly over the three nodes, so about
//!    two calls in three are forwarded to their group's owner (the share
//!    measured, from `statefn_cluster_forwarded_calls_total`). The same
//!    load against the single node first. Each run also prints the CPU
//!    milliseconds per 1,000 calls of the NATS servers, of the nodes (by
//!    thread name) and of this process (the load generator): on a shared
//!    machine that figure stays comparable when calls/s do not.
//! 2. Failover: `--kills` times, SIGKILL the node owning a chosen group
//!    while a probe sends keyed deposits to an account of that group
//!    through the other nodes; the gap is from the kill to the first
//!    successful call sent after it. The node is restarted (same data dir,
//!    same id) and the cluster settles before the next kill.
//!
//! The machine's load average is printed first: the numbers are only
//! comparable on a quiet machine.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, client::conn::http1::SendRequest, header};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use statefn_tests::nats::{NatsCluster, NatsOptions};
use tokio::{net::TcpStream, process::Command, sync::Mutex};

use super::Common;
use crate::{
    diagnose::{ThreadTimes, process_cpu_s},
    http::servers::ServerProcess,
    measure::{BoxError, Window, closed_loop_per_caller},
    record::Record,
    scratch::Scratch,
};

const TOKEN: &str = "bench-admin-token";
/// The bank's log groups and shards in cluster mode (its defaults).
const LOG_GROUPS: u16 = 8;
const SHARDS: u16 = 16;
/// How long the cluster may take to settle (a hang detector).
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

/// Options of the `cluster` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Shared options; the nodes' data dirs are subdirectories of `--data-dir`.
    #[command(flatten)]
    pub common: Common,
    /// Concurrent connections (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 32, 128])]
    pub callers: Vec<usize>,
    /// Accounts the deposits are spread over.
    #[arg(long, default_value_t = 1_000)]
    pub keys: u64,
    /// SIGKILLs for the failover measurement (0 skips it).
    #[arg(long, default_value_t = 10)]
    pub kills: usize,
    /// The bank binary (default: `bank` next to this binary; build it with
    /// `cargo build --release -p statefn-examples --bin bank`).
    #[arg(long)]
    pub bank_bin: Option<PathBuf>,
    /// The nodes' `--failure-timeout-ms` (default: the bank's).
    #[arg(long)]
    pub failure_timeout_ms: Option<u64>,
}

/// Runs the scenario.
///
/// # Errors
///
/// A process that does not start, a cluster that does not settle, or a
/// failed request during a measured run.
pub async fn run(args: &ClusterArgs) -> Result<(), BoxError> {
    let window = args.common.window();
    let bank_bin = match &args.bank_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("bank"),
    };
    println!(
        "# load average before (1, 5, 15 min): {}",
        load_average().unwrap_or_default()
    );
    let nats = tokio::task::spawn_blocking(|| NatsCluster::start(NatsOptions::three())).await??;
    let urls = nats.client_urls().join(",");
    let data = Scratch::new(&args.common.data_dir, "cluster")?;
    let single = ServerProcess::bank(&bank_bin, &data.path().join("single")).await?;
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(Some(
            start_node(&bank_bin, data.path(), &urls, i, args.failure_timeout_ms).await?,
        ));
    }
    let admin = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    settled(&admin, &nodes).await?;

    Record::print_header();
    let mut costs = Vec::new();
    for &callers in &args.callers {
        let before = CpuSample::take(None, &[&single]);
        let (summary, calls) = keyed_deposits(&[single.addr()], callers, args.keys, window).await?;
        let cost = CpuSample::take(None, &[&single]).per_1k_calls(&before, calls);
        cost.fields(Record::new("cluster", "bank, 1 node (local log)", &summary))
            .param("callers", callers)
            .emit();
        costs.push((format!("1 node, C={callers}"), cost));
        let running: Vec<&ServerProcess> = nodes.iter().flatten().collect();
        let addrs: Vec<SocketAddr> = running.iter().map(|n| n.addr()).collect();
        let forwarded_before = forwarded(&admin, &nodes).await;
        let before = CpuSample::take(Some(&nats), &running);
        let (summary, calls) = keyed_deposits(&addrs, callers, args.keys, window).await?;
        let cost = CpuSample::take(Some(&nats), &running).per_1k_calls(&before, calls);
        let forwarded_calls = forwarded(&admin, &nodes).await - forwarded_before;
        // Warm-up calls are forwarded too: divide by every call made.
        cost.fields(Record::new("cluster", "bank, 3 nodes (NATS R3)", &summary))
            .param("callers", callers)
            .field("forwarded_share", forwarded_calls / (calls as f64).max(1.0))
            .emit();
        costs.push((format!("3 nodes, C={callers}"), cost));
    }
    for (run, cost) in &costs {
        println!("# cpu ms per 1,000 calls, {run}: {cost}");
    }
    single.stop().await?;
    // No false failover under load: a node whose heartbeats came late
    // enough would have lost its groups (counted as failovers elsewhere).
    let longest = metric_values(&admin, &nodes, "statefn_cluster_heartbeat_gap_max_seconds")
        .await
        .into_iter()
        .fold(0.0, f64::max);
    let failovers_under_load: f64 =
        metric_values(&admin, &nodes, "statefn_cluster_failovers_total")
            .await
            .iter()
            .sum::<f64>()
            + 0.0;
    let step_downs: f64 = metric_values(&admin, &nodes, "statefn_cluster_step_downs_total")
        .await
        .iter()
        .sum::<f64>()
        + 0.0;
    println!(
        "under load: longest heartbeat gap {:.0} ms (failure timeout {}); failovers {failovers_under_load}, step-downs {step_downs}",
        longest * 1e3,
        args.failure_timeout_ms
            .map_or_else(|| "default".to_owned(), |ms| format!("{ms} ms")),
    );
    println!(
        "{}",
        serde_json::json!({
            "scenario": "cluster", "variant": "heartbeats under load",
            "longest_heartbeat_gap_ms": longest * 1e3,
            "failure_timeout_ms": args.failure_timeout_ms,
            "failovers": failovers_under_load, "step_downs": step_downs,
        })
    );

    if args.kills > 0 {
        let gaps = failovers(
            &bank_bin,
            data.path(),
            &urls,
            &admin,
            &mut nodes,
            args.kills,
            args.failure_timeout_ms,
        )
        .await?;
        let mut sorted = gaps.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        let max = sorted[sorted.len() - 1];
        println!(
            "failover: kills {}, gap median {median:.0} ms, max {max:.0} ms, all {:?}",
            gaps.len(),
            gaps.iter().map(|g| g.round()).collect::<Vec<_>>()
        );
        println!(
            "{}",
            serde_json::json!({
                "scenario": "cluster", "variant": "failover gap",
                "kills": gaps.len(), "median_ms": median, "max_ms": max, "gaps_ms": gaps,
            })
        );
    }
    println!(
        "# load average after (1, 5, 15 min): {}",
        load_average().unwrap_or_default()
    );
    for node in nodes.into_iter().flatten() {
        node.stop().await?;
    }
    drop(nats);
    Ok(())
}

/// CPU seconds (user + system) of every process of a run at one moment:
/// on a shared 2-core machine, CPU time per call is the figure that stays
/// comparable when wall-clock throughput does not.
struct CpuSample {
    nats: f64,
    nodes: Vec<ThreadTimes>,
    client: f64,
}

/// CPU milliseconds per 1,000 calls between two samples.
struct CpuCost {
    nats: f64,
    nodes: f64,
    client: f64,
    /// The nodes' threads, summed by name over the nodes, busiest first.
    node_threads: Vec<(String, f64)>,
}

impl CpuSample {
    fn take(nats: Option<&NatsCluster>, nodes: &[&ServerProcess]) -> CpuSample {
        let nats = nats.map_or(0.0, |nats| {
            (0..nats.len())
                .filter_map(|i| nats.pid(i))
                .filter_map(|pid| u32::try_from(pid).ok())
                .map(process_cpu_s)
                .sum()
        });
        CpuSample {
            nats,
            nodes: nodes
                .iter()
                .filter_map(|n| n.pid())
                .map(ThreadTimes::of_process)
                .collect(),
            client: process_cpu_s(std::process::id()),
        }
    }

    fn per_1k_calls(&self, before: &CpuSample, calls: u64) -> CpuCost {
        #[expect(clippy::cast_precision_loss, reason = "a ratio")]
        let per = 1e6 / (calls as f64).max(1.0);
        let mut threads: BTreeMap<String, f64> = BTreeMap::new();
        for (after, earlier) in self.nodes.iter().zip(&before.nodes) {
            for (name, s) in after.seconds_since(earlier) {
                *threads.entry(name).or_default() += s * per;
            }
        }
        let mut node_threads: Vec<(String, f64)> =
            threads.into_iter().filter(|(_, ms)| *ms >= 0.5).collect();
        node_threads.sort_by(|a, b| b.1.total_cmp(&a.1));
        CpuCost {
            nats: (self.nats - before.nats) * per,
            nodes: node_threads.iter().map(|(_, ms)| ms).sum(),
            client: (self.client - before.client) * per,
            node_threads,
        }
    }
}

impl CpuCost {
    fn fields(&self, record: Record) -> Record {
        record
            .field("cpu_ms_per_1k_nats", self.nats)
            .field("cpu_ms_per_1k_nodes", self.nodes)
            .field("cpu_ms_per_1k_client", self.client)
            .field("cpu_ms_per_1k_total", self.nats + self.nodes + self.client)
    }
}

impl std::fmt::Display for CpuCost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "total {:.0} = nats-servers {:.0} + nodes {:.0} + client {:.0}; nodes' threads:",
            self.nats + self.nodes + self.client,
            self.nats,
            self.nodes,
            self.client
        )?;
        for (name, ms) in &self.node_threads {
            write!(f, " {name}={ms:.0}")?;
        }
        Ok(())
    }
}

fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

async fn start_node(
    bank_bin: &Path,
    data: &Path,
    urls: &str,
    i: usize,
    failure_timeout_ms: Option<u64>,
) -> Result<ServerProcess, BoxError> {
    let mut command = Command::new(bank_bin);
    if let Some(ms) = failure_timeout_ms {
        command.arg("--failure-timeout-ms").arg(ms.to_string());
    }
    command
        .arg("--data-dir")
        .arg(data.join(format!("n{i}")))
        .args(["--listen", "127.0.0.1:0", "--nats", urls, "--node-id"])
        .arg(format!("n{i}"))
        .args(["--replicas", "3", "--admin-token", TOKEN])
        .env("RUST_LOG", "error");
    ServerProcess::start(command).await
}

/// Every node's `GET /admin/cluster`.
async fn statuses(admin: &reqwest::Client, nodes: &[Option<ServerProcess>]) -> Option<Vec<Value>> {
    let mut all = Vec::new();
    for node in nodes.iter().flatten() {
        let response = admin
            .get(format!("http://{}/admin/cluster", node.addr()))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()?;
        all.push(response.json().await.ok()?);
    }
    Some(all)
}

/// Waits until the running nodes agree on one serving owner per group and
/// each serves some; returns the owners.
async fn settled(
    admin: &reqwest::Client,
    nodes: &[Option<ServerProcess>],
) -> Result<BTreeMap<u16, String>, BoxError> {
    let started = Instant::now();
    loop {
        if let Some(statuses) = statuses(admin, nodes).await
            && let Some(owners) = agreed(&statuses)
        {
            return Ok(owners);
        }
        if started.elapsed() > SETTLE_LIMIT {
            return Err("the cluster did not settle".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn agreed(statuses: &[Value]) -> Option<BTreeMap<u16, String>> {
    let mut owners = BTreeMap::new();
    for g in 0..LOG_GROUPS {
        let index = usize::from(g);
        let serving: Vec<&str> = statuses
            .iter()
            .filter(|s| s["groups"][index]["served_here"] == Value::Bool(true))
            .filter_map(|s| s["node"].as_str())
            .collect();
        let [node] = serving[..] else { return None };
        if statuses
            .iter()
            .any(|s| s["groups"][index]["owner"].as_str() != Some(node))
        {
            return None;
        }
        owners.insert(g, node.to_owned());
    }
    let serving: std::collections::BTreeSet<&String> = owners.values().collect();
    (serving.len() == statuses.len()).then_some(owners)
}

/// The sum of `statefn_cluster_forwarded_calls_total` over the nodes.
/// The values of metric `name` on every node (all its label sets).
async fn metric_values(
    admin: &reqwest::Client,
    nodes: &[Option<ServerProcess>],
    name: &str,
) -> Vec<f64> {
    let mut values = Vec::new();
    for node in nodes.iter().flatten() {
        let Ok(response) = admin
            .get(format!("http://{}/metrics", node.addr()))
            .send()
            .await
        else {
            continue;
        };
        let text = response.text().await.unwrap_or_default();
        values.extend(
            text.lines()
                .filter(|l| l.split([' ', '{']).next() == Some(name))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()),
        );
    }
    values
}

async fn forwarded(admin: &reqwest::Client, nodes: &[Option<ServerProcess>]) -> f64 {
    metric_values(admin, nodes, "statefn_cluster_forwarded_calls_total")
        .await
        .iter()
        .sum::<f64>()
}

type Connection = Arc<Mutex<SendRequest<Full<Bytes>>>>;

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Closed-loop deposits of 1 to random accounts of `keys`, each with a
/// unique `Idempotency-Key`; caller `c` keeps one connection to
/// `addrs[c % addrs.len()]`. Any non-2xx answer fails the run. Returns
/// the summary and every call made (warm-up included).
async fn keyed_deposits(
    addrs: &[SocketAddr],
    callers: usize,
    keys: u64,
    window: Window,
) -> Result<(crate::measure::Summary, u64), BoxError> {
    let calls = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&calls);
    let mut connections = Vec::new();
    for caller in 0..callers.max(1) {
        let addr = addrs[caller % addrs.len()];
        connections.push((addr, Arc::new(Mutex::new(connect(addr).await?))));
    }
    let connections: Arc<Vec<(SocketAddr, Connection)>> = Arc::new(connections);
    let label = format!("cluster {} node(s) callers={callers}", addrs.len());
    let summary = closed_loop_per_caller(callers, window, &label, move |caller, random| {
        let connection = connections.get(caller).cloned();
        let counted = Arc::clone(&counted);
        async move {
            let (addr, connection) = connection.ok_or("no connection for the caller")?;
            let request = Request::builder()
                .method(Method::POST)
                .uri(format!("/v1/Account/a{}/deposit", random % keys.max(1)))
                .header(header::HOST, addr.to_string())
                .header(header::CONTENT_TYPE, "application/json")
                .header("idempotency-key", format!("{caller}-{random:016x}"))
                .body(Full::new(Bytes::from_static(br#"{"amount":1}"#)))?;
            let mut sender = connection.lock().await;
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            if !status.is_success() {
                return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)).into());
            }
            counted.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    })
    .await?;
    Ok((summary, calls.load(Ordering::Relaxed)))
}

/// The log group of account `id` (the runtime's placement).
fn group_of(id: &str) -> Option<u16> {
    let address = statefn::Address::new("Account", id).ok()?;
    Some(address.shard(SHARDS) % LOG_GROUPS)
}

/// `kills` SIGKILLs of a group's owner (round robin over the nodes), each
/// with a probe on an account of that group through the other nodes;
/// returns each gap (kill → first success sent after it) in milliseconds.
async fn failovers(
    bank_bin: &Path,
    data: &Path,
    urls: &str,
    admin: &reqwest::Client,
    nodes: &mut [Option<ServerProcess>],
    kills: usize,
    failure_timeout_ms: Option<u64>,
) -> Result<Vec<f64>, BoxError> {
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut gaps = Vec::new();
    for kill in 0..kills {
        let owners = settled(admin, nodes).await?;
        let victim = kill % nodes.len();
        let victim_id = format!("n{victim}");
        let group = *owners
            .iter()
            .find(|(_, o)| **o == victim_id)
            .ok_or("the victim serves no group")?
            .0;
        let account = (0..)
            .map(|i| format!("probe-{i}"))
            .find(|id| group_of(id) == Some(group))
            .ok_or("no account in the group")?;
        let others: Vec<SocketAddr> = nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != victim)
            .filter_map(|(_, n)| n.as_ref().map(ServerProcess::addr))
            .collect();
        // One success before the kill: the probe path works.
        probe_once(&probe, others[0], &account, &format!("k{kill}-warm")).await?;
        let node = nodes[victim].take().ok_or("victim not running")?;
        let killed = Instant::now();
        node.stop().await?;
        let mut attempt = 0u64;
        let gap = loop {
            let addr = others[usize::try_from(attempt).unwrap_or(0) % others.len()];
            attempt += 1;
            let key = format!("k{kill}-{attempt}");
            if probe_once(&probe, addr, &account, &key).await.is_ok() {
                break killed.elapsed();
            }
            if killed.elapsed() > SETTLE_LIMIT {
                return Err("no successful call after a kill".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        eprintln!(
            "failover {kill}: SIGKILL n{victim} (owner of group {group}): {} ms, {attempt} tries",
            gap.as_millis()
        );
        gaps.push(gap.as_secs_f64() * 1e3);
        nodes[victim] = Some(start_node(bank_bin, data, urls, victim, failure_timeout_ms).await?);
    }
    settled(admin, nodes).await?;
    Ok(gaps)
}

async fn probe_once(
    client: &reqwest::Client,
    addr: SocketAddr,
    account: &str,
    key: &str,
) -> Result<(), BoxError> {
    let response = client
        .post(format!("http://{addr}/v1/Account/{account}/deposit"))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(r#"{"amount":1}"#)
        .send()
        .await?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", response.status()).into())
    }
}
