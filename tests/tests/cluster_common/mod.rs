//! What the in-process cluster tests share: nodes on 8 shards in 4 log
//! groups with test timings, a NATS cluster with nodes on it and the wait
//! for its groups to settle, and the bank's `Account` with calls that
//! retry while the cluster says "try again" (a failover, a handoff).

#![allow(dead_code)] // each test file uses its own part

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::OnceLock,
    time::{Duration, Instant},
};

use statefn::{Address, Builder, Error, Runtime, cluster::ClusterConfig};
use statefn_examples::bank::Account;
use statefn_store::LogGroupId;
use statefn_tests::nats::{NatsCluster, NatsOptions};

pub(crate) const SHARDS: u16 = 8;
pub(crate) const GROUPS: u16 = 4;
/// A hang detector, not a performance bound.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// Logs to the test's output when `RUST_LOG` is set (for debugging).
pub(crate) fn logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// The log group of an account.
pub(crate) fn group_of(account: &str) -> u16 {
    group_of_instance("Account", account)
}

/// The log group of instance `id` of the function named `function`.
pub(crate) fn group_of_instance(function: &str, id: &str) -> u16 {
    let shard = Address::new(function, id).expect("valid").shard(SHARDS);
    LogGroupId::of(statefn_store::ShardId(shard), GROUPS).0
}

/// Accounts of `group`.
pub(crate) fn accounts_in(group: u16, count: usize) -> Vec<String> {
    (0..10_000)
        .map(|i| format!("acct-{i}"))
        .filter(|a| group_of(a) == group)
        .take(count)
        .collect()
}

/// A node's cluster settings with the tests' timings: failures detected
/// in 600 ms, re-sends after 300 ms.
pub(crate) fn config(urls: &str, node: &str, cluster: &str) -> ClusterConfig {
    let mut config = ClusterConfig::new(urls, node);
    config.cluster_name = cluster.into();
    config.failure_timeout = Duration::from_millis(600);
    config.heartbeat_interval = Duration::from_millis(50);
    config.retransmit_after = Duration::from_millis(300);
    config.forward_budget = Duration::from_secs(10);
    config.log_retry_for = Duration::from_secs(10);
    config
}

/// What a test adds to a node's builder: its functions, its settings.
pub(crate) type Setup = fn(Builder) -> Builder;

/// The bank's `Account`.
pub(crate) fn bank(builder: Builder) -> Builder {
    builder.register::<Account>()
}

/// Opens a node in `dir` with `shards` shards in [`GROUPS`] log groups.
pub(crate) async fn open_node(
    config: ClusterConfig,
    dir: &Path,
    shards: u16,
    setup: Setup,
) -> Result<Runtime, Error> {
    logs();
    let builder = Runtime::builder()
        .data_dir(dir)
        .shards(shards)
        .log_groups(GROUPS)
        .workers(2)
        .cluster(config);
    setup(builder).open().await
}

/// The NATS cluster the tests of one test binary share when none of them
/// kills, pauses or restarts a NATS server: starting three servers per
/// test was a good part of each test's time. Each test names its own
/// cluster (`ClusterConfig::cluster_name`), so their streams, buckets and
/// subjects never meet. Its servers stop with the test process (see
/// `statefn_tests::nats`).
pub(crate) fn shared_nats() -> &'static NatsCluster {
    static SHARED: OnceLock<NatsCluster> = OnceLock::new();
    SHARED.get_or_init(|| NatsCluster::start(NatsOptions::three()).expect("NATS"))
}

/// A NATS cluster and statefn nodes on it (`n0`, `n1`, ...), each with its
/// own data dir.
pub(crate) struct Cluster {
    /// Kept running for the nodes (stopped when dropped); `None` on the
    /// [`shared_nats`].
    _nats: Option<NatsCluster>,
    pub(crate) urls: String,
    pub(crate) nodes: Vec<Option<Runtime>>,
    dirs: Vec<tempfile::TempDir>,
    name: &'static str,
    setup: Setup,
    /// Changes a node's settings from [`config`]'s.
    tune: fn(&mut ClusterConfig),
}

impl Cluster {
    /// `nodes` nodes with the bank's `Account`, in cluster `test`.
    pub(crate) async fn start(nodes: usize) -> Cluster {
        Cluster::start_with(nodes, "test", bank).await
    }

    /// `nodes` nodes set up by `setup`, in cluster `name`.
    pub(crate) async fn start_with(nodes: usize, name: &'static str, setup: Setup) -> Cluster {
        Cluster::start_tuned(nodes, name, setup, |_| {}).await
    }

    /// The same, each node's settings changed by `tune`.
    pub(crate) async fn start_tuned(
        nodes: usize,
        name: &'static str,
        setup: Setup,
        tune: fn(&mut ClusterConfig),
    ) -> Cluster {
        let nats = NatsCluster::start(NatsOptions::three()).expect("NATS");
        let urls = nats.client_urls().join(",");
        Cluster::start_on(Some(nats), urls, nodes, name, setup, tune).await
    }

    /// `nodes` nodes set up by `setup`, in cluster `name` (unique among the
    /// binary's tests), on the [`shared_nats`].
    pub(crate) async fn start_shared(nodes: usize, name: &'static str, setup: Setup) -> Cluster {
        Cluster::start_shared_tuned(nodes, name, setup, |_| {}).await
    }

    /// The same, each node's settings changed by `tune`.
    pub(crate) async fn start_shared_tuned(
        nodes: usize,
        name: &'static str,
        setup: Setup,
        tune: fn(&mut ClusterConfig),
    ) -> Cluster {
        let urls = tokio::task::spawn_blocking(|| shared_nats().client_urls().join(","))
            .await
            .expect("NATS");
        Cluster::start_on(None, urls, nodes, name, setup, tune).await
    }

    async fn start_on(
        nats: Option<NatsCluster>,
        urls: String,
        nodes: usize,
        name: &'static str,
        setup: Setup,
        tune: fn(&mut ClusterConfig),
    ) -> Cluster {
        let mut cluster = Cluster {
            _nats: nats,
            urls,
            nodes: Vec::new(),
            dirs: Vec::new(),
            name,
            setup,
            tune,
        };
        for _ in 0..nodes {
            cluster.add().await;
        }
        cluster
    }

    /// Starts one more node; returns its index.
    pub(crate) async fn add(&mut self) -> usize {
        self.add_with(self.setup).await
    }

    /// Starts one more node set up by `setup` (another build); returns its
    /// index.
    pub(crate) async fn add_with(&mut self, setup: Setup) -> usize {
        let index = self.nodes.len();
        let dir = tempfile::tempdir().expect("data dir");
        let mut config = config(&self.urls, &format!("n{index}"), self.name);
        (self.tune)(&mut config);
        let node = open_node(config, dir.path(), SHARDS, setup)
            .await
            .expect("the node opens");
        self.nodes.push(Some(node));
        self.dirs.push(dir);
        index
    }

    pub(crate) fn node(&self, i: usize) -> &Runtime {
        self.nodes[i].as_ref().expect("a running node")
    }

    /// The index of node `name` (`n0`, ...).
    pub(crate) fn index_of(name: &str) -> usize {
        name.trim_start_matches('n').parse().expect("a node name")
    }

    pub(crate) fn running(&self) -> Vec<&Runtime> {
        self.nodes.iter().flatten().collect()
    }

    /// Node `i` stops without a shutdown (no handoff): its heartbeats stop
    /// and the others take its groups over, as after a crash.
    pub(crate) fn stop(&mut self, i: usize) {
        drop(self.nodes[i].take());
    }

    /// Shuts every running node down.
    pub(crate) async fn shutdown(&self) {
        for node in self.running() {
            node.shutdown().await.expect("shutdown");
        }
    }

    /// [`settled`] over the running nodes.
    pub(crate) async fn settled(&self) -> BTreeMap<u16, String> {
        settled(&self.running()).await
    }
}

/// Waits until each group is served by exactly one of `nodes`, as the
/// owners table says on each of them, and the groups are spread over every
/// node; returns each group's owner.
pub(crate) async fn settled(nodes: &[&Runtime]) -> BTreeMap<u16, String> {
    let started = Instant::now();
    loop {
        if let Some(owners) = owners_if_settled(nodes) {
            return owners;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "groups not settled: {:#?}",
            nodes.iter().map(|n| n.cluster_status()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn owners_if_settled(nodes: &[&Runtime]) -> Option<BTreeMap<u16, String>> {
    let statuses: Vec<_> = nodes
        .iter()
        .map(|n| n.cluster_status().expect("cluster mode"))
        .collect();
    let mut owners = BTreeMap::new();
    for group in 0..GROUPS {
        let serving: Vec<&str> = statuses
            .iter()
            .filter(|s| s.groups[usize::from(group)].served_here)
            .map(|s| s.node.as_str())
            .collect();
        let [node] = serving[..] else { return None };
        for status in &statuses {
            if status.groups[usize::from(group)].owner.as_deref() != Some(node) {
                return None;
            }
        }
        owners.insert(group, node.to_owned());
    }
    let serving: BTreeSet<&String> = owners.values().collect();
    (serving.len() == statuses.len().min(usize::from(GROUPS))).then_some(owners)
}

/// Waits until `probe` answers `Some`, for at most [`PATIENCE`].
pub(crate) async fn until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(started.elapsed() < PATIENCE, "waited too long: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Retries a call while the cluster says "try again"; any other error
/// fails the test.
pub(crate) async fn retrying<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let started = Instant::now();
    loop {
        match call().await {
            Ok(value) => return value,
            Err(Error::Unavailable { .. } | Error::ShuttingDown | Error::Overloaded { .. })
                if started.elapsed() < PATIENCE =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("{what}: {error}"),
        }
    }
}

pub(crate) async fn deposit(node: &Runtime, account: &str, amount: i64, key: &str) -> i64 {
    retrying(&format!("deposit {amount} to {account}"), || async {
        node.handle::<Account>(account)
            .deposit(amount)
            .idempotency_key(key)
            .await
    })
    .await
    .expect("a positive deposit is accepted")
}

pub(crate) async fn balance(node: &Runtime, account: &str) -> i64 {
    retrying(&format!("balance of {account}"), || async {
        node.handle::<Account>(account).balance().await
    })
    .await
}
