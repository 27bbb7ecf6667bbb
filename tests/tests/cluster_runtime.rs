//! Cluster mode with several runtimes in one test process against a real
//! 3-server NATS JetStream cluster (the bank's `Account`): any node answers
//! any call, transfers across nodes apply once, a node that stops without
//! shutdown fails over without losing anything acknowledged, a graceful
//! shutdown hands its groups off, egress stays dense across a failover, a
//! deposed owner cannot commit (nor answer reads), and mismatched settings
//! are refused.
//!
//! (The bank as real processes, with a SIGKILLed node, is in
//! `examples/tests/bank_cluster.rs`.)

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use statefn::{
    Error, InvocationStatus, JsonReply, Runtime,
    cluster::{
        ClusterError, Epoch, JetStreamBackend, JetStreamOptions, LogBackend, LogGroupId, Lsn,
    },
};
use statefn_examples::bank::{Account, Transferred};
use statefn_tests::nats::{NatsCluster, NatsOptions};

mod cluster_common;
use cluster_common::{
    Cluster, PATIENCE, SHARDS, balance, bank, config, deposit, group_of, open_node, retrying,
};

async fn transfer(node: &Runtime, from: &str, to: &str, amount: i64, key: &str) -> i64 {
    retrying(
        &format!("transfer {amount} from {from} to {to}"),
        || async {
            node.handle::<Account>(from)
                .transfer(to.to_owned(), amount)
                .idempotency_key(key)
                .await
        },
    )
    .await
    .expect("the balance covers it")
}

/// Waits until `account`'s balance is `expected` (messages between nodes
/// arrive after the sender's reply).
async fn wait_for_balance(node: &Runtime, account: &str, expected: i64) {
    let started = Instant::now();
    loop {
        let now = balance(node, account).await;
        if now == expected {
            return;
        }
        assert!(
            now < expected && started.elapsed() < PATIENCE,
            "{account}: balance {now}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two accounts whose groups different nodes own.
fn accounts_on_two_nodes(owners: &BTreeMap<u16, String>) -> (String, String) {
    let accounts: Vec<String> = (0..200).map(|i| format!("acct-{i}")).collect();
    for a in &accounts {
        for b in &accounts {
            if owners[&group_of(a)] != owners[&group_of(b)] {
                return (a.clone(), b.clone());
            }
        }
    }
    panic!("all groups on one node: {owners:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_answers_any_call_and_transfers_across_nodes_apply_once() {
    let cluster = Cluster::start_shared(3, "any", bank).await;
    let owners = cluster.settled().await;
    let nodes: BTreeSet<&String> = owners.values().collect();
    assert!(nodes.len() >= 2, "groups spread over nodes: {owners:?}");

    // Every node answers for every account, whoever serves it.
    for i in 0..12 {
        let node = cluster.node(i % 3);
        let account = format!("any-{i}");
        assert_eq!(deposit(node, &account, 10, &format!("d-{i}")).await, 10);
        for reader in 0..3 {
            assert_eq!(balance(cluster.node(reader), &account).await, 10);
        }
    }

    // A retry with the same key on another node gets the stored reply.
    let first = deposit(cluster.node(0), "retried", 7, "same-key").await;
    let again = deposit(cluster.node(1), "retried", 7, "same-key").await;
    let third = deposit(cluster.node(2), "retried", 7, "same-key").await;
    assert_eq!((first, again, third), (7, 7, 7));
    assert_eq!(balance(cluster.node(2), "retried").await, 7, "applied once");

    // Invocations enqueued through a node that does not serve the instance:
    // their status (waiting too) and cancel through another such node.
    let account = (0..)
        .map(|i| format!("inv-{i}"))
        .find(|a| owners.get(&group_of(a)).is_some_and(|o| o == "n0"))
        .expect("n0 serves a group");
    let later = cluster
        .node(1)
        .handle::<Account>(&account)
        .deposit(5)
        .send_after(Duration::from_secs(3600))
        .await
        .expect("enqueued");
    let cluster = &cluster;
    let status = |i: usize, id, wait| async move { cluster.node(i).invocation(id, wait).await };
    assert_eq!(
        status(2, &later, Duration::ZERO)
            .await
            .expect("the status, from a node that does not serve the instance"),
        InvocationStatus::Scheduled
    );
    cluster
        .node(2)
        .cancel_invocation(&later)
        .await
        .expect("a cancel, from a node that does not serve the instance");
    assert_eq!(
        status(1, &later, Duration::ZERO).await.expect("status"),
        InvocationStatus::Cancelled
    );
    assert!(matches!(
        cluster.node(1).cancel_invocation(&later).await,
        Err(Error::InvocationNotPending { .. })
    ));
    let now = cluster
        .node(1)
        .handle::<Account>(&account)
        .deposit(5)
        .send()
        .await
        .expect("enqueued");
    assert_eq!(
        status(2, &now, Duration::from_secs(30))
            .await
            .expect("waited for"),
        InvocationStatus::Done(JsonReply::Ok(serde_json::json!(5)))
    );

    // Transfers between accounts whose groups different nodes serve: the
    // deposit message crosses nodes and is applied exactly once, even when
    // each transfer is retried on another node.
    let (from, to) = accounts_on_two_nodes(&owners);
    deposit(cluster.node(0), &from, 100, "seed").await;
    for t in 0..10 {
        let key = format!("t-{t}");
        transfer(cluster.node(t % 3), &from, &to, 5, &key).await;
        transfer(cluster.node((t + 1) % 3), &from, &to, 5, &key).await;
    }
    wait_for_balance(cluster.node(1), &to, 50).await;
    assert_eq!(balance(cluster.node(2), &from).await, 50);
    // Re-sends and retransmissions are dropped by the receiver's watermark.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(balance(cluster.node(0), &to).await, 50, "each deposit once");
    let egress = cluster
        .node(2)
        .read_egress("transfers", 0, 100, Duration::from_secs(5))
        .await
        .expect("egress");
    let offsets: Vec<u64> = egress.iter().map(|r| r.offset).collect();
    assert_eq!(
        offsets,
        (0..10).collect::<Vec<u64>>(),
        "one record per transfer"
    );
    for record in &egress {
        assert_eq!(
            record.decode::<Transferred>().expect("a transfer").amount,
            5
        );
    }

    let status = cluster.node(0).cluster_status().expect("cluster mode");
    assert_eq!(status.nodes.len(), 3);
    assert!(
        status
            .nodes
            .iter()
            .all(|n| n.live && n.ready && !n.draining)
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_without_shutdown_fails_over_and_loses_nothing_acknowledged() {
    let mut cluster = Cluster::start_shared(3, "stop", bank).await;
    let owners = cluster.settled().await;
    let victim = 2;
    let victim_name = format!("n{victim}");
    let accounts: Vec<String> = (0..16).map(|i| format!("fo-{i}")).collect();
    assert!(
        accounts.iter().any(|a| owners[&group_of(a)] == victim_name),
        "some account lives on the victim: {owners:?}"
    );
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for (i, account) in accounts.iter().enumerate() {
        deposit(cluster.node(i % 3), account, 100, &format!("a-{i}")).await;
        *expected.entry(account.clone()).or_default() += 100;
    }
    // Transfers out of the victim's accounts, so that egress and messages
    // are in flight on it.
    let mut transfers = 0;
    for (i, account) in accounts.iter().enumerate() {
        let to = &accounts[(i + 1) % accounts.len()];
        transfer(cluster.node(i % 2), account, to, 10, &format!("t-{i}")).await;
        *expected.get_mut(account).expect("known") -= 10;
        *expected.get_mut(to).expect("known") += 10;
        transfers += 1;
    }

    // Reads through every node: in cluster mode each read-only batch
    // appends a barrier record, which the new owners replay.
    for (i, account) in accounts.iter().enumerate() {
        wait_for_balance(cluster.node(i % 3), account, expected[account]).await;
    }

    // The victim stops without a shutdown: no handoff; its heartbeats stop.
    let stopped = Instant::now();
    cluster.stop(victim);
    let after = cluster.settled().await;
    assert!(
        after.values().all(|o| *o != victim_name),
        "its groups moved: {after:?}"
    );
    eprintln!("groups served again {:?} after the stop", stopped.elapsed());

    // Calls go on, through both survivors, to every account.
    for (i, account) in accounts.iter().enumerate() {
        deposit(cluster.node(i % 2), account, 1, &format!("b-{i}")).await;
        *expected.get_mut(account).expect("known") += 1;
    }
    for (account, amount) in &expected {
        wait_for_balance(cluster.node(0), account, *amount).await;
        assert_eq!(
            balance(cluster.node(1), account).await,
            *amount,
            "{account}"
        );
    }
    let total: i64 = expected.values().sum();
    assert_eq!(total, 16 * 101, "money is conserved");

    // Every transfer's egress record is there once, at dense offsets. The
    // new owners append the victim's pending records after the failover,
    // and a read answers as soon as any record is there: read on until all
    // are (the deadline only detects a hang).
    let mut egress = Vec::new();
    let reading = Instant::now();
    while (egress.len() as u64) < transfers && reading.elapsed() < Duration::from_secs(60) {
        let more = cluster
            .node(1)
            .read_egress(
                "transfers",
                egress.len() as u64,
                1000,
                Duration::from_secs(5),
            )
            .await
            .expect("egress");
        egress.extend(more);
    }
    let offsets: Vec<u64> = egress.iter().map(|r| r.offset).collect();
    let ids: BTreeSet<&str> = egress.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(offsets, (0..transfers).collect::<Vec<u64>>());
    assert_eq!(ids.len(), egress.len(), "each record once: {ids:?}");

    let status = cluster.node(0).cluster_status().expect("cluster mode");
    let victim_status = status.nodes.iter().find(|n| n.node == victim_name);
    assert!(victim_status.is_some_and(|n| !n.live), "{status:#?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_hands_the_groups_off() {
    let mut cluster = Cluster::start_shared(2, "graceful", bank).await;
    let before = cluster.settled().await;
    let leaving = "n1";
    let epochs_before = cluster.node(0).cluster_status().expect("status").groups;
    assert!(before.values().any(|o| o == leaving), "{before:?}");
    for i in 0..8 {
        deposit(cluster.node(i % 2), &format!("h-{i}"), 5, &format!("h-{i}")).await;
    }
    let left = cluster.nodes[1].take().expect("running");
    left.shutdown().await.expect("shutdown");
    // Handed off before it returned (the owners table names the survivor);
    // the survivor then fences and serves every group, each at a higher
    // epoch than before where it moved.
    let owners = cluster.settled().await;
    assert!(owners.values().all(|o| o == "n0"), "{owners:?}");
    let status = cluster.node(0).cluster_status().expect("status");
    for group in &status.groups {
        assert!(group.served_here, "{status:#?}");
        assert_eq!(group.owner.as_deref(), Some("n0"));
        let old = &epochs_before[usize::from(group.group)];
        if old.owner.as_deref() == Some(leaving) {
            assert!(group.epoch > old.epoch, "{old:?} -> {group:?}");
        }
    }
    for i in 0..8 {
        assert_eq!(balance(cluster.node(0), &format!("h-{i}")).await, 5);
    }
    cluster.node(0).shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_owner_cannot_commit_nor_answer_reads_and_its_callers_get_503() {
    let cluster = Cluster::start_shared(1, "deposed", bank).await;
    let owners = cluster.settled().await;
    let account = "deposed";
    let group = group_of(account);
    assert_eq!(owners[&group], "n0");
    deposit(cluster.node(0), account, 10, "before").await;
    let epoch = cluster.node(0).cluster_status().expect("status").groups[usize::from(group)]
        .epoch
        .expect("owned");

    // Another writer fences the group's stream (as a new owner would), out
    // of the owners table's sight.
    let urls = cluster.urls.clone();
    let intruder = tokio::task::spawn_blocking(move || {
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio");
        let mut options = JetStreamOptions::new("deposed", "intruder");
        options.replicas = 3;
        let backend =
            JetStreamBackend::connect(&urls, options, tokio.handle().clone()).expect("connect");
        let opened = backend
            .open(LogGroupId(group), Epoch(epoch + 1), Lsn(0))
            .expect("fence");
        drop(opened);
        tokio
    })
    .await
    .expect("fenced");

    // A read on the deposed owner appends a barrier, which the fence
    // refuses: no answer from state a newer owner may have changed.
    let read = cluster.node(0).handle::<Account>(account).balance().await;
    match read {
        Err(Error::Unavailable { reason, .. }) => {
            assert!(reason.contains("lost the ownership"), "{reason}");
            assert!(reason.contains("not committed"), "{reason}");
        }
        other => panic!("a deposed owner answered a read: {other:?}"),
    }
    // It steps down, wins the group back at a higher epoch (the owners
    // table still names it), and the call retried with its key applies once.
    let after = deposit(cluster.node(0), account, 5, "after").await;
    let again = deposit(cluster.node(0), account, 5, "after").await;
    assert_eq!((after, again), (15, 15));
    assert_eq!(balance(cluster.node(0), account).await, 15);
    let epoch_now = cluster.node(0).cluster_status().expect("status").groups[usize::from(group)]
        .epoch
        .expect("owned");
    assert!(
        epoch_now > epoch + 1,
        "re-acquired above the intruder's fence"
    );
    cluster.node(0).shutdown().await.expect("shutdown");
    tokio::task::spawn_blocking(move || drop(intruder))
        .await
        .expect("dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_other_settings_or_too_many_replicas_are_refused() {
    let cluster = Cluster::start_shared(1, "settings", bank).await;
    let dir = tempfile::tempdir().expect("dir");
    let other = open_node(
        config(&cluster.urls, "other", "settings"),
        dir.path(),
        SHARDS * 2,
        bank,
    )
    .await;
    match other {
        Err(Error::Cluster(ClusterError::Mismatch { .. })) => {}
        other => panic!(
            "a node with another shard count joined: {:?}",
            other.map(|_| ())
        ),
    }
    cluster.node(0).shutdown().await.expect("shutdown");

    let single = NatsCluster::start(NatsOptions::single()).expect("NATS");
    let dir = tempfile::tempdir().expect("dir");
    let mut config = config(&single.client_url(0), "lonely", "test");
    config.replicas = 3;
    let error = open_node(config, dir.path(), SHARDS, bank)
        .await
        .map(|_| ())
        .expect_err("3 replicas on 1 server");
    assert!(
        matches!(
            error,
            Error::Cluster(ClusterError::TooFewServers { replicas: 3, .. })
        ),
        "{error}"
    );
    assert!(error.to_string().contains("--replicas"), "{error}");
}

/// A call that holds its shard's worker until the test opens the gate.
mod gated {
    use std::sync::{
        Condvar, Mutex,
        atomic::{AtomicU32, Ordering},
    };

    use serde::{Deserialize, Serialize};
    use statefn::prelude::*;

    static OPEN: Mutex<bool> = Mutex::new(false);
    static OPENED: Condvar = Condvar::new();
    /// How many `hold` calls have started.
    pub(crate) static ENTERED: AtomicU32 = AtomicU32::new(0);

    /// Lets every `hold` call (held or to come) finish.
    pub(crate) fn open() {
        *OPEN.lock().expect("gate") = true;
        OPENED.notify_all();
    }

    #[stateful_function(name = "held.Gate")]
    #[derive(Debug, Default, Serialize, Deserialize)]
    pub(crate) struct Gate {
        held: u32,
    }

    #[stateful_function]
    impl Gate {
        /// Counts itself, once the gate is open.
        #[handler]
        pub(crate) fn hold(&mut self) -> u32 {
            ENTERED.fetch_add(1, Ordering::SeqCst);
            let mut open = OPEN.lock().expect("gate");
            while !*open {
                open = OPENED.wait(open).expect("gate");
            }
            self.held += 1;
            self.held
        }

        #[handler]
        pub(crate) fn held(&self) -> u32 {
            self.held
        }
    }
}

fn gated_bank(builder: statefn::Builder) -> statefn::Builder {
    bank(builder).register::<gated::Gate>()
}

/// A forwarded call its owner took and then dropped as it went away (the
/// owner stops while the call is in its commit path): the owner may have
/// committed it, so a keyless one is refused with "may or may not have
/// been applied", never sent again to the next owner (before: sent again,
/// and applied there); the same call with a key applies once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_held_by_an_owner_that_goes_away_is_not_sent_again_without_its_key() {
    use std::sync::atomic::Ordering;

    // Failures detected in 3 s: the owner's answer that it dropped the call
    // comes first (a dead owner's calls are refused the same way; see
    // `cluster_failures`).
    let mut cluster = Cluster::start_shared_tuned(3, "held", gated_bank, |config| {
        config.failure_timeout = Duration::from_secs(3);
    })
    .await;
    let owners = cluster.settled().await;
    let owner = owners[&0].clone();
    let forwarder = (0..3)
        .find(|&i| format!("n{i}") != owner)
        .expect("another node");
    let gate = (0..)
        .map(|i| format!("gate-{i}"))
        .find(|id| cluster_common::group_of_instance("held.Gate", id) == 0)
        .expect("an id");

    // A keyless call, forwarded to the owner, runs there and waits.
    let node = cluster.node(forwarder).clone();
    let id = gate.clone();
    let keyless = tokio::spawn(async move { node.handle::<gated::Gate>(&id).hold().await });
    cluster_common::until("the held call runs on its owner", || async {
        (gated::ENTERED.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    // The owner stops without a shutdown while the call runs: its syncer
    // may still commit the call, or the owner drops it.
    cluster.stop(Cluster::index_of(&owner));
    gated::open();
    let answer = keyless.await.expect("the caller");
    // Either way the call ran on its owner only: it was not sent again.
    assert_eq!(
        gated::ENTERED.load(Ordering::SeqCst),
        1,
        "a keyless call its owner took ran again on another node ({answer:?})"
    );
    let applied = match answer {
        Ok(held) => held,
        Err(Error::Unavailable { reason, .. }) => {
            assert!(
                reason.contains("may or may not have been applied"),
                "{reason}"
            );
            0
        }
        Err(other) => panic!("a keyless call its owner went away with: {other}"),
    };
    // The same with a key: applied once, after it if it committed.
    let node = cluster.node(forwarder);
    let keyed = retrying("a keyed hold", || async {
        node.handle::<gated::Gate>(&gate)
            .hold()
            .idempotency_key("held-keyed")
            .await
    })
    .await;
    assert_eq!(keyed, applied + 1);
    let again = retrying("the keyed hold again", || async {
        node.handle::<gated::Gate>(&gate)
            .hold()
            .idempotency_key("held-keyed")
            .await
    })
    .await;
    assert_eq!(again, keyed, "the stored reply");
    cluster.shutdown().await;
}

/// A node that starts while the NATS servers elect a new JetStream meta
/// leader (the old one was just SIGKILLed; two of three servers run, a
/// quorum) waits for the election instead of refusing to start with
/// "JetStream system temporarily unavailable" (seen failing a restart of a
/// bank node in `cluster_failures`' chaos test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starting_while_jetstream_elects_a_meta_leader_waits_for_it() {
    let (mut nats, leader) = tokio::task::spawn_blocking(|| {
        let mut nats = NatsCluster::start(NatsOptions::three()).expect("NATS");
        let (_, jsz) = nats.monitor_get(0, "/jsz").expect("/jsz");
        let jsz: serde_json::Value = serde_json::from_str(&jsz).expect("JSON");
        let leader = jsz["meta_cluster"]["leader"]
            .as_str()
            .expect("a meta leader");
        let leader = nats.index_of(leader).expect("one of ours");
        nats.kill(leader).expect("SIGKILL the meta leader");
        (nats, leader)
    })
    .await
    .expect("NATS");
    let urls: Vec<String> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| nats.client_url(i))
        .collect();
    // The old leader comes back meanwhile (the election may otherwise take
    // tens of seconds with two servers).
    let restarted = tokio::task::spawn_blocking(move || {
        nats.restart(leader).expect("restart the old meta leader");
        nats
    });
    let dir = tempfile::tempdir().expect("dir");
    let mut config = config(&urls.join(","), "n0", "election");
    // A hang detector: the election takes seconds.
    config.log_retry_for = PATIENCE;
    let node = open_node(config, dir.path(), SHARDS, bank)
        .await
        .expect("the node opens once JetStream has a meta leader again");
    let nats = restarted.await.expect("NATS");
    assert_eq!(deposit(&node, "elected", 5, "elected").await, 5);
    node.shutdown().await.expect("shutdown");
    tokio::task::spawn_blocking(move || drop(nats))
        .await
        .expect("stopped");
}
