//! The failures cluster mode must survive, with real processes (issue 12,
//! "Tests that must exist"): three NATS servers and bank nodes started with
//! the fixed cluster flags, clients with idempotency keys that retry on
//! other nodes, and SIGKILL, SIGSTOP/SIGCONT and SIGTERM of nodes and NATS
//! servers by PID. Each test checks the data afterwards: every answered
//! call applied exactly once (balances, and the stored reply of every
//! answered key from another node), money conserved, egress offsets dense.
//!
//! The tests run one at a time (each starts six processes; in parallel on
//! two cores they would mostly measure the scheduler). Randomised ones
//! print their seed; `STATEFN_CHAOS_SEED=N` replays it. No timing is
//! asserted: every wait is a hang detector.

mod cluster_harness;
mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use cluster_harness::{
    Answer, Directory, PATIENCE, TestCluster, Try, accounts_in_group, call_until_answered,
    deposit_path, egress_records, expect_balances, expect_stored_replies, seed, transfer_path,
    try_call,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// One test at a time (see the module docs).
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A call a client made, with the answer it got: `(path, body, key, answer)`.
type Answered = (String, Value, String, Answer);

/// A client's call: its kind (`deposit`, `transfer`), the account it was
/// made on, its amount, and the call.
type Made = (String, String, i64, Answered);

/// The bank's money, as the clients' answered calls say it must be.
#[derive(Debug, Default)]
struct Ledger {
    calls: Vec<Answered>,
    /// Transfer amounts (unique per transfer: they name it in egress).
    transfers: BTreeSet<i64>,
    /// Money brought in by deposits.
    deposited: i64,
    expected: BTreeMap<String, i64>,
    /// Nodes whose every answer is checked (paused or killed ones).
    suspects: BTreeSet<usize>,
}

impl Ledger {
    fn opened(accounts: &[String], initial: i64) -> Ledger {
        Ledger {
            expected: accounts.iter().map(|a| (a.clone(), initial)).collect(),
            deposited: initial * i64::try_from(accounts.len()).expect("few"),
            ..Ledger::default()
        }
    }

    fn deposit(&mut self, id: &str, amount: i64) {
        *self.expected.entry(id.to_owned()).or_default() += amount;
        self.deposited += amount;
    }

    /// A deposit with `key`, tried on random running nodes until answered,
    /// and recorded for [`verify`](Self::verify); returns the answer's body.
    /// (The expected balance is the caller's to count.)
    async fn keyed_deposit(
        &mut self,
        cluster: &TestCluster,
        rng: &mut StdRng,
        id: &str,
        amount: i64,
        key: String,
    ) -> Value {
        let path = deposit_path(id);
        let body = json!({ "amount": amount });
        let answer = call_until_answered(
            &cluster.client,
            &cluster.directory,
            rng,
            &path,
            Some(&body),
            Some(&key),
        )
        .await;
        let reply = answer.body.clone();
        self.calls.push((path, body, key, answer));
        reply
    }

    fn transfer(&mut self, from: &str, to: &str, amount: i64) {
        *self.expected.get_mut(from).expect("known") -= amount;
        *self.expected.get_mut(to).expect("known") += amount;
        assert!(self.transfers.insert(amount), "transfer amounts are unique");
    }

    /// Checks the balances on the cluster, money conservation, the stored
    /// replies of every answered call, and (when `egress`) that the
    /// `transfers` egress log holds every transfer once at dense offsets.
    async fn verify(&self, cluster: &TestCluster, egress: bool) {
        expect_balances(&cluster.client, &cluster.directory, &self.expected).await;
        let mut total = 0;
        for id in self.expected.keys() {
            total += cluster_harness::balance(&cluster.client, &cluster.directory, id).await;
        }
        assert_eq!(total, self.deposited, "money is conserved");
        // Every call that needed another try or was answered by a node
        // that was later killed or paused, and one in eight of the rest
        // (each check is a replicated append: all would double the run).
        let checked: Vec<Answered> = self
            .calls
            .iter()
            .enumerate()
            .filter(|(n, call)| {
                call.3.tries > 1 || n % 8 == 0 || self.suspects.contains(&call.3.node)
            })
            .map(|(_, call)| call.clone())
            .collect();
        expect_stored_replies(&cluster.client, &cluster.directory, &checked).await;
        if egress {
            let (_, base) = cluster.directory.up()[0].clone();
            let records = egress_records(&cluster.client, &base, "transfers").await;
            let offsets: Vec<u64> = records.iter().map(|(o, _)| *o).collect();
            let dense: Vec<u64> = (0..offsets.len() as u64).collect();
            assert_eq!(offsets, dense, "egress offsets are dense from 0");
            let mut seen = BTreeSet::new();
            for (offset, record) in &records {
                let amount = record["amount"].as_i64().expect("an amount");
                assert!(seen.insert(amount), "transfer {amount} twice (at {offset})");
            }
            assert_eq!(seen, self.transfers, "every transfer in egress, once");
        }
    }
}

/// Opens `accounts` with `initial` each (keyed deposits on random nodes).
async fn open_accounts(cluster: &TestCluster, accounts: &[String], initial: i64) -> Ledger {
    let mut ledger = Ledger::opened(accounts, initial);
    let mut rng = StdRng::seed_from_u64(7);
    for id in accounts {
        let key = format!("open-{id}");
        let reply = ledger
            .keyed_deposit(cluster, &mut rng, id, initial, key)
            .await;
        assert_eq!(reply, json!(initial), "{id} opened once");
    }
    ledger
}

/// Clients that make keyed deposits and transfers between `accounts` on
/// random nodes, each call retried (same key) until answered, until told
/// to stop.
struct Clients {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Made>>>,
}

impl Clients {
    fn start(cluster: &TestCluster, accounts: &[String], callers: usize, seed: u64) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicU64::new(1));
        let tasks = (0..callers)
            .map(|caller| {
                let stop = Arc::clone(&stop);
                let next = Arc::clone(&next);
                let client = cluster.client.clone();
                let directory = cluster.directory.clone();
                let accounts = accounts.to_vec();
                tokio::spawn(async move {
                    let mut rng = StdRng::seed_from_u64(seed ^ ((caller as u64 + 1) * 0x9e37));
                    let mut done = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        done.push(one_call(&client, &directory, &accounts, &next, &mut rng).await);
                    }
                    done
                })
            })
            .collect();
        Clients { stop, tasks }
    }

    /// Stops the clients (each finishes its call) and adds their answered
    /// calls to `ledger`; returns how many calls needed more than one try.
    async fn finish(self, ledger: &mut Ledger) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let mut retried = 0;
        for task in self.tasks {
            for (kind, from, to_or_amount, call) in task.await.expect("a client panicked") {
                assert_eq!(call.3.status, StatusCode::OK, "{call:?}");
                retried += usize::from(call.3.tries > 1);
                match kind.as_str() {
                    "deposit" => ledger.deposit(&from, to_or_amount),
                    _ => {
                        let to = call.1["to"].as_str().expect("to").to_owned();
                        ledger.transfer(&from, &to, to_or_amount);
                    }
                }
                ledger.calls.push(call);
            }
        }
        retried
    }
}

/// One keyed call: a deposit of 1 to 9, or a transfer whose amount is the
/// call's unique number.
async fn one_call(
    client: &reqwest::Client,
    directory: &Directory,
    accounts: &[String],
    next: &AtomicU64,
    rng: &mut StdRng,
) -> Made {
    let n = next.fetch_add(1, Ordering::SeqCst);
    let from = accounts[rng.random_range(0..accounts.len())].clone();
    let key = format!("call-{n}");
    let (kind, path, body, amount) = if rng.random_bool(0.6) {
        let amount = rng.random_range(1..10);
        (
            "deposit",
            deposit_path(&from),
            json!({ "amount": amount }),
            amount,
        )
    } else {
        let mut to = from.clone();
        while to == from {
            to = accounts[rng.random_range(0..accounts.len())].clone();
        }
        let amount = i64::try_from(n).expect("small");
        let body = json!({ "to": to, "amount": amount });
        ("transfer", transfer_path(&from), body, amount)
    };
    let answer = call_until_answered(client, directory, rng, &path, Some(&body), Some(&key)).await;
    (kind.to_owned(), from, amount, (path, body, key, answer))
}

/// Repeated SIGKILLs and restarts of random bank nodes and one SIGKILL of a
/// NATS server, under concurrent keyed clients that retry on other nodes:
/// every answered call is applied exactly once (balances; the same stored
/// reply from another node), money is conserved, every transfer's deposit
/// arrives once, and the egress log holds every transfer once at dense
/// offsets.
#[test]
fn sigkills_of_nodes_and_a_nats_server_under_load_lose_and_duplicate_nothing() {
    let _serial = serial();
    let seed = seed("chaos");
    runtime().block_on(async move {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut cluster = TestCluster::start(3);
        cluster.settled().await;
        let epochs_before = cluster.epoch_sum(0).await;
        let accounts: Vec<String> = (0..16).map(|i| format!("acct-{i}")).collect();
        let mut ledger = open_accounts(&cluster, &accounts, 1_000_000_000).await;
        let clients = Clients::start(&cluster, &accounts, 6, seed);

        const NODE_KILLS: usize = 5;
        let nats_kill_round = rng.random_range(0..NODE_KILLS);
        let mut nats_killed = None;
        for round in 0..NODE_KILLS {
            tokio::time::sleep(Duration::from_millis(rng.random_range(800..2000))).await;
            if round == nats_kill_round {
                let server = rng.random_range(0..3);
                eprintln!("chaos: SIGKILL nats-server {server}");
                cluster.nats.kill(server).expect("kill a NATS server");
                nats_killed = Some(server);
            }
            let running = cluster.running();
            let victim = running[rng.random_range(0..running.len())];
            eprintln!("chaos: round {round}: SIGKILL n{victim}");
            cluster.kill(victim);
            ledger.suspects.insert(victim);
            tokio::time::sleep(Duration::from_millis(rng.random_range(200..1500))).await;
            if let Some(server) = nats_killed.take_if(|_| round > nats_kill_round) {
                eprintln!("chaos: restart nats-server {server}");
                tokio::task::block_in_place(|| cluster.nats.restart(server))
                    .expect("restart the NATS server");
            }
            eprintln!("chaos: restart n{victim}");
            tokio::task::block_in_place(|| cluster.restart(victim));
        }
        if let Some(server) = nats_killed {
            tokio::task::block_in_place(|| cluster.nats.restart(server))
                .expect("restart the NATS server");
        }
        // Some load after the last restart, then stop.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let retried = clients.finish(&mut ledger).await;
        eprintln!(
            "chaos: {} calls answered ({} transfers), {retried} needed another try",
            ledger.calls.len(),
            ledger.transfers.len()
        );
        cluster.settled().await;
        assert!(
            cluster.epoch_sum(0).await > epochs_before,
            "the kills moved groups (epochs went up)"
        );
        ledger.verify(&cluster, true).await;
    });
}

/// A paused owner (SIGSTOP) whose group moves meanwhile, then resumes
/// (SIGCONT): the calls it had in flight are answered with 503 +
/// `Retry-After` or with the committed reply, nothing it does after the
/// fence commits (every 200 it gives is the reply another node returns
/// for the same key), nothing is applied twice, and it steps down.
#[test]
fn a_paused_owner_resumes_fenced_and_commits_nothing() {
    let _serial = serial();
    runtime().block_on(async move {
        let cluster = TestCluster::start(3);
        let owners = cluster.settled().await;
        let zombie = 0;
        let (&group, _) = owners
            .iter()
            .find(|(_, node)| **node == TestCluster::id(zombie))
            .expect("n0 serves a group");
        let accounts = accounts_in_group("z", group, 4);
        let mut ledger = open_accounts(&cluster, &accounts, 1_000).await;
        let zombie_url = cluster.url(zombie);

        // Callers on the owner itself, several calls in flight at once.
        let next = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let callers: Vec<_> = (0..8)
            .map(|c| {
                let (client, url) = (cluster.client.clone(), zombie_url.clone());
                let (next, stop, id) = (Arc::clone(&next), Arc::clone(&stop), accounts[c % 4].clone());
                tokio::spawn(async move {
                    let mut tries = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let key = format!("zombie-{}", next.fetch_add(1, Ordering::SeqCst));
                        let body = json!({ "amount": 1 });
                        let got = try_call(&client, &url, &deposit_path(&id), Some(&body), Some(&key)).await;
                        tries.push((id.clone(), key, got));
                    }
                    tries
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.signal(zombie, "STOP");
        ledger.suspects.insert(zombie);
        let stopped = Instant::now();
        stop.store(true, Ordering::SeqCst);
        // Calls forwarded to the paused owner before its group moves: the
        // owners table still names it, so they reach its subscription, which
        // holds them (as a SIGKILLed owner's does until its server notices).
        // When it is declared dead, the keyed one is sent again to the new
        // owner; the keyless one is refused, saying it may have been
        // applied. (Before: both waited out the 30 s forward timeout.)
        let held: Vec<_> = [Some("held-keyed"), None]
            .into_iter()
            .map(|key| {
                let (client, url, id) = (cluster.client.clone(), cluster.url(1), accounts[0].clone());
                tokio::spawn(async move {
                    let body = json!({ "amount": if key.is_some() { 1_000 } else { 7 } });
                    try_call(&client, &url, &deposit_path(&id), Some(&body), key).await
                })
            })
            .collect();

        // Wait for another node to serve the group.
        let new_owner = loop {
            let status = cluster.status(1).await.expect("n1 answers");
            let owner = status["groups"][usize::from(group)]["owner"].clone();
            if let Some(owner) = owner.as_str().filter(|o| *o != TestCluster::id(zombie)) {
                let idx: usize = owner[1..].parse().expect("nN");
                let served = cluster.status(idx).await.expect("the new owner answers");
                if served["groups"][usize::from(group)]["served_here"] == json!(true) {
                    break idx;
                }
            }
            assert!(stopped.elapsed() < PATIENCE, "group {group} never moved: {status:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        eprintln!("zombie: group {group} moved to n{new_owner} {:?} after SIGSTOP", stopped.elapsed());
        // Calls through the third node are forwarded to the new owner and
        // commit there (the stream moves past the fence). The paused node
        // must not take them: it no longer owns the group, and it would
        // hold them until the forward timeout.
        let forwarder = cluster.url(3 - zombie - new_owner);
        for round in 0..2 {
            for (n, id) in accounts.iter().enumerate() {
                let path = deposit_path(id);
                let body = json!({ "amount": 100 });
                let key = format!("after-fence-{round}-{n}");
                match try_call(&cluster.client, &forwarder, &path, Some(&body), Some(&key)).await {
                    Try::Answered { status, body: reply } => {
                        assert_eq!(status, StatusCode::OK);
                        ledger.deposit(id, 100);
                        let answer = Answer { status, body: reply, node: 3 - zombie - new_owner, tries: 1 };
                        ledger.calls.push((path, body, key, answer));
                    }
                    other => panic!(
                        "a call forwarded to group {group}'s new owner n{new_owner} was not answered \
                         ({:?} after SIGSTOP): {other:?}",
                        stopped.elapsed()
                    ),
                }
            }
        }
        let [keyed, keyless] = <[_; 2]>::try_from(held).expect("two");
        match keyed.await.expect("a caller panicked") {
            Try::Answered { status, body } => {
                assert_eq!(status, StatusCode::OK);
                ledger.deposit(&accounts[0], 1_000);
                let answer = Answer { status, body, node: 1, tries: 1 };
                ledger.calls.push((deposit_path(&accounts[0]), json!({ "amount": 1_000 }), "held-keyed".into(), answer));
            }
            other => panic!(
                "a keyed call held by the paused owner was not sent again to the new owner \
                 ({:?} after SIGSTOP): {other:?}",
                stopped.elapsed()
            ),
        }
        // Never applied (the paused node cannot commit after the fence),
        // but the forwarding node cannot know that: it says so.
        match keyless.await.expect("a caller panicked") {
            Try::Unavailable { message } => assert!(
                message.contains("stopped answering") && message.contains("may or may not have been applied"),
                "{message}"
            ),
            other => panic!("a keyless call held by the paused owner: {other:?}"),
        }
        eprintln!("zombie: the calls held by the paused owner were settled {:?} after SIGSTOP", stopped.elapsed());
        let mut rng = StdRng::seed_from_u64(3);

        cluster.signal(zombie, "CONT");
        let mut answered = 0;
        let mut refused = Vec::new();
        let mut unknown = Vec::new();
        for caller in callers {
            for (id, key, got) in caller.await.expect("a caller panicked") {
                let path = deposit_path(&id);
                let body = json!({ "amount": 1 });
                match got {
                    Try::Answered { status, body: reply } => {
                        assert_eq!(status, StatusCode::OK);
                        answered += 1;
                        ledger.deposit(&id, 1);
                        let answer = Answer { status, body: reply, node: zombie, tries: 1 };
                        ledger.calls.push((path, body, key, answer));
                    }
                    Try::Unavailable { message } => refused.push((id, key, message)),
                    Try::NoAnswer { error } => unknown.push((id, key, error)),
                }
            }
        }
        eprintln!(
            "zombie: {answered} answered, {} refused with 503, {} without answer; 503s: {:?}",
            refused.len(),
            unknown.len(),
            refused.iter().map(|r| &r.2).collect::<BTreeSet<_>>()
        );
        assert!(unknown.is_empty(), "a resumed node answers its callers: {unknown:?}");
        // Over HTTP, a 503 says what happened and that the call was not
        // committed (or not accepted, for one that came in while the group
        // was being given up), or, for a call whose batch of several
        // records the fence cut part-way (its first records were confirmed
        // before the fence: whether this call's record was among them is
        // not known per call), that it may or may not have been committed.
        // Either way it is retried with its key below and applied once.
        for (_, _, message) in &refused {
            assert!(
                message.contains("not committed")
                    || message.contains("not accepted")
                    || message.contains("not sent")
                    || (message.contains("failed part-way through this call's batch")
                        && message.contains("may or may not have been committed")),
                "{message}"
            );
        }
        // Whether any call was inside the zombie's commit path at the
        // SIGSTOP is up to timing (all may be answered); when some were
        // refused, the fence is named.
        assert!(
            refused.is_empty()
                || refused.iter().any(|(_, _, m)| {
                    m.contains("this node lost the ownership of log group")
                        || m.contains("was taken over by a newer writer")
                }),
            "{refused:?}"
        );
        // The refused calls, retried with their keys anywhere: applied once.
        for (id, key, _) in refused {
            ledger.keyed_deposit(&cluster, &mut rng, &id, 1, key).await;
            ledger.deposit(&id, 1);
        }
        // The resumed node learns that it lost the group and steps down.
        let started = Instant::now();
        while cluster.metric(zombie, "statefn_cluster_step_downs_total").await < 1.0 {
            assert!(started.elapsed() < PATIENCE, "n0 never stepped down");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cluster.settled().await;
        ledger.verify(&cluster, false).await;
    });
}

/// NATS loses its quorum (two of three servers SIGKILLed): calls are
/// refused with 503 + `Retry-After` (nothing answers 200 without a
/// quorum), nothing answered before is lost, and when the servers are back
/// the refused calls, retried with their keys, apply once.
#[test]
fn losing_the_nats_quorum_refuses_calls_with_503_and_loses_nothing() {
    let _serial = serial();
    runtime().block_on(async move {
        // Appends the servers do not confirm are refused after 4 s of
        // retries rather than the default 20 s: what happens is the same,
        // sooner.
        let mut cluster = TestCluster::start_with(3, &["--log-retry-ms", "4000"]);
        cluster.settled().await;
        let accounts: Vec<String> = (0..cluster_harness::LOG_GROUPS)
            .map(|g| accounts_in_group("q", g, 1).remove(0))
            .collect();
        let mut ledger = open_accounts(&cluster, &accounts, 1_000).await;

        cluster.nats.kill(1).expect("kill nats-server 1");
        cluster.nats.kill(2).expect("kill nats-server 2");
        let lost = Instant::now();
        // One keyed deposit per account (every group), one try each.
        let tries: Vec<_> = accounts
            .iter()
            .enumerate()
            .map(|(n, id)| {
                let client = cluster.client.clone();
                let (_, base) = cluster.directory.up()[n % 3].clone();
                let id = id.clone();
                tokio::spawn(async move {
                    let key = format!("during-{n}");
                    let body = json!({ "amount": 10 });
                    let got =
                        try_call(&client, &base, &deposit_path(&id), Some(&body), Some(&key)).await;
                    (id, key, got)
                })
            })
            .collect();
        let read = try_call(
            &cluster.client,
            &cluster.url(0),
            &format!("/v1/Account/{}/balance", accounts[0]),
            None,
            None,
        )
        .await;
        assert!(
            matches!(read, Try::Unavailable { .. }),
            "a read needs the quorum too: {read:?}"
        );
        let mut refused = Vec::new();
        for task in tries {
            let (id, key, got) = task.await.expect("a caller panicked");
            match got {
                // The body says why (the NATS servers did not confirm the
                // append), and that the outcome is unknown (or, for a call
                // still queued, that it was not committed). Through another
                // node too: a forwarded call is not left waiting out the
                // forward timeout (30 s) when core NATS lost its request or
                // its answer as the servers died; it is asked again.
                Try::Unavailable { message }
                    if message.contains("NATS servers did not confirm")
                        && (message.contains("may or may not")
                            || message.contains("not committed")) =>
                {
                    refused.push((id, key, message));
                }
                other => panic!("without a NATS quorum {id} got {other:?}"),
            }
        }
        eprintln!(
            "quorum: every call refused within {:?}; messages: {:?}",
            lost.elapsed(),
            refused.iter().map(|r| &r.2).collect::<BTreeSet<_>>()
        );

        tokio::task::block_in_place(|| cluster.nats.restart_several(&[1, 2]))
            .expect("restart nats-servers 1 and 2");
        let back = Instant::now();
        let mut rng = StdRng::seed_from_u64(5);
        for (id, key, _) in refused {
            ledger.keyed_deposit(&cluster, &mut rng, &id, 10, key).await;
            ledger.deposit(&id, 10);
        }
        eprintln!(
            "quorum: every refused call answered {:?} after the servers were back",
            back.elapsed()
        );
        cluster.settled().await;
        ledger.verify(&cluster, false).await;
    });
}

/// The failovers n1 and n2 have done.
async fn failovers(cluster: &TestCluster) -> f64 {
    cluster.metric(1, "statefn_cluster_failovers_total").await
        + cluster.metric(2, "statefn_cluster_failovers_total").await
}

/// One node under load, two nodes join: groups move to them by handoff and
/// no keyed call fails for good (each is retried with its key until
/// answered, and applied once); then a SIGTERM of the first node hands its
/// groups off (no failover on the others) before it exits.
#[test]
fn joining_nodes_take_groups_under_load_and_a_sigterm_hands_them_off() {
    let _serial = serial();
    let seed = seed("rebalance");
    runtime().block_on(async move {
        let mut cluster = TestCluster::start(1);
        let owners = cluster.settled().await;
        assert!(owners.values().all(|o| o == "n0"), "{owners:?}");
        let accounts: Vec<String> = (0..12).map(|i| format!("acct-{i}")).collect();
        let mut ledger = open_accounts(&cluster, &accounts, 1_000_000_000).await;
        let clients = Clients::start(&cluster, &accounts, 4, seed);
        tokio::time::sleep(Duration::from_millis(500)).await;

        tokio::task::block_in_place(|| {
            cluster.add_node();
            cluster.add_node();
        });
        let owners = cluster.settled().await;
        eprintln!("rebalance: owners after the joins: {owners:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;

        let before = failovers(&cluster).await;
        let exit = tokio::task::block_in_place(|| cluster.terminate(0));
        assert!(exit.success(), "n0 exits cleanly: {exit:?}");
        let owners = cluster.settled().await;
        assert!(owners.values().all(|o| o != "n0"), "{owners:?}");
        assert_eq!(
            failovers(&cluster).await,
            before,
            "n0's groups were handed off, not failed over"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let retried = clients.finish(&mut ledger).await;
        eprintln!(
            "rebalance: {} calls answered, {retried} needed another try",
            ledger.calls.len()
        );
        ledger.verify(&cluster, true).await;
    });
}
