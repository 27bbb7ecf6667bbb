//! Cluster mode, phase 2, with runtimes in one test process against a real
//! 3-server NATS JetStream cluster (the bank's `Account`): standbys follow
//! their groups' streams and a takeover by one replays only the tail;
//! snapshots let a node with an empty data directory serve a group whose
//! stream was trimmed; trimming keeps what a live standby still needs; and
//! exactly-once holds across a takeover after trimming.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use statefn::{
    Builder, Runtime,
    cluster::{GroupStatus, JetStreamBackend, LogGroupId},
};
use statefn_tests::nats::{NatsCluster, NatsOptions};

mod cluster_common;
use cluster_common::{
    GROUPS, PATIENCE, SHARDS, accounts_in, balance, bank, deposit, open_node, settled,
};

fn config(urls: &str, node: &str, snapshot_interval: Duration) -> statefn::cluster::ClusterConfig {
    let mut config = cluster_common::config(urls, node, "standby");
    config.snapshot_interval = snapshot_interval;
    config
}

/// The bank, checkpointing often.
fn checkpointing_bank(builder: Builder) -> Builder {
    bank(builder.checkpoint_interval(Duration::from_millis(200)))
}

async fn open(config: statefn::cluster::ClusterConfig, dir: &Path) -> Runtime {
    open_node(config, dir, SHARDS, checkpointing_bank)
        .await
        .expect("the node opens")
}

/// `group` as `node` sees it.
fn group_status(node: &Runtime, group: u16) -> GroupStatus {
    node.cluster_status().expect("cluster mode").groups[usize::from(group)].clone()
}

/// Waits until `check` holds for `group` as `node` sees it.
async fn wait_for(node: &Runtime, group: u16, what: &str, check: impl Fn(&GroupStatus) -> bool) {
    let started = Instant::now();
    loop {
        let status = group_status(node, group);
        if check(&status) {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{what}: {status:#?} ({:#?})",
            node.cluster_status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first data record left in `group`'s stream (`None`: none).
async fn first_record(urls: &str, group: u16) -> Option<u64> {
    let url = urls.split(',').next().expect("a URL");
    let client = async_nats::connect(url).await.expect("NATS client");
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_stream(JetStreamBackend::stream_name("standby", LogGroupId(group)))
        .await
        .expect("the group's stream");
    stream
        .get_first_raw_message_by_subject(
            JetStreamBackend::data_subject("standby", LogGroupId(group)),
            1,
        )
        .await
        .ok()
        .map(|m| m.sequence)
}

/// The positions of `group`'s fences (never trimmed).
async fn fences(urls: &str, group: u16) -> Vec<u64> {
    let url = urls.split(',').next().expect("a URL");
    let client = async_nats::connect(url).await.expect("NATS client");
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_stream(JetStreamBackend::stream_name("standby", LogGroupId(group)))
        .await
        .expect("the group's stream");
    let subject = JetStreamBackend::fence_subject("standby", LogGroupId(group));
    let mut fences = Vec::new();
    let mut from = 1;
    while let Ok(fence) = stream
        .get_first_raw_message_by_subject(&subject, from)
        .await
    {
        fences.push(fence.sequence);
        from = fence.sequence + 1;
    }
    fences
}

/// Checks that `group`'s stream still holds every data record after the
/// standby's checkpoint: its first data record is at most the first
/// position after the checkpoint that is not a fence.
async fn assert_kept_for_standby(urls: &str, group: u16, standby: &Runtime) -> Option<u64> {
    // First the stream, then the standby: its checkpoint only moves up.
    let first = first_record(urls, group).await?;
    let checkpointed = group_status(standby, group).standby_checkpointed?;
    let fences = fences(urls, group).await;
    let needed = (checkpointed + 1..)
        .find(|p| !fences.contains(p))
        .expect("a position");
    assert!(
        first <= needed,
        "the stream starts at {first}, the standby needs {needed} (its checkpoint is at \
         {checkpointed}; fences at {fences:?})"
    );
    // Whether the stream was trimmed at all.
    Some(u64::from((1..first).any(|p| !fences.contains(&p))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_follows_its_group_and_a_takeover_by_it_replays_only_the_tail() {
    let nats = NatsCluster::start(NatsOptions::three()).expect("NATS");
    let urls = nats.client_urls().join(",");
    // No snapshot during the test: the standby alone makes the takeover warm.
    let slow = Duration::from_secs(3600);
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let n0 = open(config(&urls, "n0", slow), dirs[0].path()).await;
    let mut n1 = Some(open(config(&urls, "n1", slow), dirs[1].path()).await);
    let owners = settled(&[&n0, n1.as_ref().expect("running")]).await;
    let group = *owners
        .iter()
        .find(|(_, o)| *o == "n1")
        .expect("n1 serves a group")
        .0;
    let accounts = accounts_in(group, 8);

    // n0 follows n1's group: its applied position follows the owner's.
    wait_for(&n0, group, "n0 follows the group", |s| s.standbys == ["n0"]).await;
    let before = group_status(&n0, group).standby_applied.expect("following");
    let records = 48;
    for i in 0..records {
        let account = &accounts[i % accounts.len()];
        deposit(&n0, account, 1, &format!("d-{i}")).await;
    }
    wait_for(&n0, group, "the standby catches up", |s| {
        s.lag == Some(0)
            && s.standby_applied
                .is_some_and(|a| a >= before + records as u64)
    })
    .await;
    let status = group_status(n1.as_ref().expect("running"), group);
    assert_eq!(status.standbys, ["n0"], "the owner hears of its standby");
    assert_eq!(status.lag, Some(0));

    // n1 stops without a shutdown: n0, its standby, takes the group over
    // and replays only what it had not applied (nothing: it had caught up),
    // not the records of its stream.
    drop(n1.take());
    wait_for(&n0, group, "n0 takes the group over", |s| s.served_here).await;
    let replayed = group_status(&n0, group)
        .replayed_at_takeover
        .expect("taken over here");
    assert!(
        replayed < records as u64 / 4,
        "a takeover by the standby replayed {replayed} of the {records} records"
    );
    // Nothing acknowledged was lost, and retries with the same keys are
    // answered from the stored replies.
    let mut expected: BTreeMap<&str, i64> = BTreeMap::new();
    for i in 0..records {
        *expected.entry(&accounts[i % accounts.len()]).or_default() += 1;
    }
    for (account, amount) in &expected {
        assert_eq!(balance(&n0, account).await, *amount, "{account}");
    }
    for i in 0..records {
        let account = &accounts[i % accounts.len()];
        deposit(&n0, account, 1, &format!("d-{i}")).await;
    }
    for (account, amount) in &expected {
        assert_eq!(balance(&n0, account).await, *amount, "{account}: once");
    }
    n0.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_node_bootstraps_from_a_snapshot_after_trimming_and_applies_nothing_twice() {
    let nats = NatsCluster::start(NatsOptions::three()).expect("NATS");
    let urls = nats.client_urls().join(",");
    let often = Duration::from_millis(200);
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let n0 = open(config(&urls, "n0", often), dirs[0].path()).await;
    settled(&[&n0]).await;
    let accounts: Vec<String> = (0..GROUPS).flat_map(|g| accounts_in(g, 4)).collect();
    let mut expected: BTreeMap<&str, i64> = BTreeMap::new();
    for round in 0..4 {
        for (i, account) in accounts.iter().enumerate() {
            deposit(&n0, account, 10, &format!("b-{round}-{i}")).await;
            *expected.entry(account).or_default() += 10;
        }
    }
    // Every group's stream gets trimmed below its snapshot (checkpoints
    // happen on the owner's interval; snapshots follow them). Its first
    // record is a fence, its first data record was at 2.
    for group in 0..GROUPS {
        let started = Instant::now();
        while first_record(&urls, group)
            .await
            .is_none_or(|first| first <= 2)
        {
            assert!(
                started.elapsed() < PATIENCE,
                "group {group} never trimmed: first record {:?}",
                first_record(&urls, group).await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // n0 dies; n1 starts with an empty data directory and takes every group
    // over: its (empty) checkpoints are below what the streams still hold,
    // so it loads the snapshots, then the tails.
    drop(n0);
    let n1 = open(config(&urls, "n1", often), dirs[1].path()).await;
    settled(&[&n1]).await;
    for (account, amount) in &expected {
        assert_eq!(balance(&n1, account).await, *amount, "{account}");
    }
    // The idempotency table came with the snapshot: retries are answered
    // from the stored replies, not applied again.
    for (i, account) in accounts.iter().enumerate() {
        let reply = deposit(&n1, account, 10, &format!("b-3-{i}")).await;
        assert_eq!(
            reply,
            expected[account.as_str()],
            "{account}: the stored reply"
        );
    }
    for (account, amount) in &expected {
        assert_eq!(
            balance(&n1, account).await,
            *amount,
            "{account}: applied once"
        );
    }
    n1.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimming_keeps_what_a_live_standby_needs_and_a_takeover_after_it_loses_nothing() {
    let nats = NatsCluster::start(NatsOptions::three()).expect("NATS");
    let urls = nats.client_urls().join(",");
    let often = Duration::from_millis(200);
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let mut n0 = Some(open(config(&urls, "n0", often), dirs[0].path()).await);
    let n1 = open(config(&urls, "n1", often), dirs[1].path()).await;
    let owners = settled(&[n0.as_ref().expect("running"), &n1]).await;
    let group = *owners
        .iter()
        .find(|(_, o)| *o == "n0")
        .expect("n0 serves a group")
        .0;
    let accounts = accounts_in(group, 6);
    wait_for(&n1, group, "n1 follows the group", |s| s.standbys == ["n1"]).await;

    // Under load the owner snapshots and trims; the stream never loses a
    // record at or above the live standby's checkpoint.
    let mut expected: BTreeMap<&str, i64> = BTreeMap::new();
    let mut trimmed = false;
    for i in 0..150 {
        let account = &accounts[i % accounts.len()];
        deposit(n0.as_ref().expect("running"), account, 1, &format!("t-{i}")).await;
        *expected.entry(account).or_default() += 1;
        if i % 10 == 0 {
            trimmed |= assert_kept_for_standby(&urls, group, &n1).await == Some(1);
        }
    }
    let started = Instant::now();
    while !trimmed {
        tokio::time::sleep(Duration::from_millis(100)).await;
        trimmed = assert_kept_for_standby(&urls, group, &n1).await == Some(1);
        assert!(
            started.elapsed() < PATIENCE,
            "never trimmed: {:#?}",
            group_status(&n1, group)
        );
    }

    // The owner dies after trimming: the standby takes over and nothing
    // acknowledged is lost or applied twice.
    drop(n0.take());
    wait_for(&n1, group, "n1 takes the group over", |s| s.served_here).await;
    for (account, amount) in &expected {
        assert_eq!(balance(&n1, account).await, *amount, "{account}");
    }
    for i in 0..150 {
        let account = &accounts[i % accounts.len()];
        deposit(&n1, account, 1, &format!("t-{i}")).await;
    }
    for (account, amount) in &expected {
        assert_eq!(balance(&n1, account).await, *amount, "{account}: once");
    }
    n1.shutdown().await.expect("shutdown");
}
