//! SIGKILL under load, over HTTP: client tasks send deposits and transfers
//! to the `bank` server, each with its own Idempotency-Key, and retry every
//! request with the same key until they get a 2xx, across restarts. The
//! server is killed 6 times per seed at seeded random moments. At the end
//! every acknowledged request must be applied exactly once (each account's
//! balance is exactly what the acknowledged requests make it) and money is
//! conserved.
//!
//! It runs each seed of `STATEFN_HTTP_CRASH_SEEDS` (a comma-separated list,
//! decimal or `0x` hex; `STATEFN_HTTP_CRASH_SEED` names one), by default
//! [`SEEDS`]; each seed draws other requests and other kill moments.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::Bank;
use rand::{Rng, SeedableRng, rngs::StdRng};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ACCOUNTS: usize = 8;
const OPENING: i64 = 1_000_000;
const CLIENTS: u64 = 4;
/// Kills per seed.
const KILLS: usize = 6;
/// The seeds run by default (CI).
const SEEDS: [u64; 3] = [0x5eed_0005, 0x5eed_0006, 0x5eed_0007];
/// Requests acknowledged between two kills, so each kill lands under load.
const ACKS_BETWEEN_KILLS: u64 = 16;
/// A hang detector, not a performance bound.
const DEADLINE: Duration = Duration::from_secs(45);

/// The current server's base URL, replaced at each restart (port 0 gives a
/// new port each time).
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<String>>);

impl Shared {
    fn get(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    fn set(&self, base: String) {
        *self.0.lock().unwrap() = base;
    }
}

fn account(i: usize) -> String {
    format!("acct-{i}")
}

/// Posts until a 2xx, with the same key each time; returns the reply.
async fn until_acknowledged(
    client: &reqwest::Client,
    base: &Shared,
    path: &str,
    body: &Value,
    key: &str,
) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        assert!(
            Instant::now() < deadline,
            "{path} ({key}) never acknowledged"
        );
        let sent = client
            .post(format!("{}{path}", base.get()))
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                // A kill between the head and the body: ask again.
                if let Ok(value) = r.json::<Value>().await {
                    return value;
                }
            }
            // The server is restarting, or refused for now: retry.
            Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {}
            Ok(r) => {
                let status = r.status();
                panic!(
                    "{path} ({key}): {status} {}",
                    r.text().await.unwrap_or_default()
                );
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One client: random deposits and transfers until `stop`; returns the
/// balance changes its acknowledged requests made.
async fn client_task(
    no: u64,
    seed: u64,
    base: Shared,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicU64>,
) -> [i64; ACCOUNTS] {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut rng = StdRng::seed_from_u64(seed ^ (no << 32));
    let mut change = [0i64; ACCOUNTS];
    let mut op = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let key = format!("client-{no}-op-{op}");
        op += 1;
        let from = rng.random_range(0..ACCOUNTS);
        let amount = rng.random_range(1..100i64);
        if rng.random_bool(0.5) {
            let path = format!("/v1/Account/{}/deposit", account(from));
            until_acknowledged(&client, &base, &path, &json!({ "amount": amount }), &key).await;
            change[from] += amount;
        } else {
            let to = (from + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
            let path = format!("/v1/Account/{}/transfer", account(from));
            let body = json!({ "to": account(to), "amount": amount });
            until_acknowledged(&client, &base, &path, &body, &key).await;
            change[from] -= amount;
            change[to] += amount;
        }
        acks.fetch_add(1, Ordering::SeqCst);
    }
    change
}

async fn start(dir: std::path::PathBuf) -> Bank {
    tokio::task::spawn_blocking(move || Bank::start(&dir, &[]))
        .await
        .unwrap()
}

/// The seeds to run: `STATEFN_HTTP_CRASH_SEEDS`, `STATEFN_HTTP_CRASH_SEED`,
/// or [`SEEDS`].
fn seeds() -> Vec<u64> {
    statefn_tests::seeds::from_env(
        "STATEFN_HTTP_CRASH_SEEDS",
        "STATEFN_HTTP_CRASH_SEED",
        &SEEDS,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_http_load_applies_every_acknowledged_request_exactly_once() {
    for seed in seeds() {
        // A failure's output names its seed (`STATEFN_HTTP_CRASH_SEEDS`
        // replays it).
        eprintln!("seed {seed:#x}: running");
        let started = Instant::now();
        let acks = run(seed).await;
        eprintln!(
            "seed {seed:#x}: {KILLS} kills, {acks} acknowledged requests applied exactly once \
             ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
    }
}

/// One seed's run; returns how many requests were acknowledged.
async fn run(seed: u64) -> u64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let base = Shared::default();
    let mut bank = start(dir.path().to_owned()).await;
    base.set(bank.base.clone());

    let opener = reqwest::Client::new();
    for i in 0..ACCOUNTS {
        let path = format!("/v1/Account/{}/deposit", account(i));
        let key = format!("open-{i}");
        until_acknowledged(&opener, &base, &path, &json!({ "amount": OPENING }), &key).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|no| {
            tokio::spawn(client_task(
                no,
                seed,
                base.clone(),
                Arc::clone(&stop),
                Arc::clone(&acks),
            ))
        })
        .collect();

    for kill in 0..KILLS {
        let deadline = Instant::now() + DEADLINE;
        let target = acks.load(Ordering::SeqCst) + ACKS_BETWEEN_KILLS;
        while acks.load(Ordering::SeqCst) < target {
            assert!(
                Instant::now() < deadline,
                "seed {seed:#x}: no progress before kill {kill}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..150))).await;
        tokio::task::spawn_blocking(move || bank.kill())
            .await
            .unwrap();
        bank = start(dir.path().to_owned()).await;
        base.set(bank.base.clone());
    }

    stop.store(true, Ordering::SeqCst);
    let mut expected = [OPENING; ACCOUNTS];
    for client in clients {
        for (e, c) in expected.iter_mut().zip(client.await.unwrap()) {
            *e += c;
        }
    }
    assert!(
        acks.load(Ordering::SeqCst) >= KILLS as u64 * ACKS_BETWEEN_KILLS,
        "too little load"
    );

    // A transfer's deposit may still be on its way: wait for the total.
    let total: i64 = expected.iter().sum();
    let deadline = Instant::now() + DEADLINE;
    let balances = loop {
        let mut balances = [0i64; ACCOUNTS];
        for (i, b) in balances.iter_mut().enumerate() {
            let path = format!("/v1/Account/{}/balance", account(i));
            let reply = opener
                .post(format!("{}{path}", bank.base))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status(), StatusCode::OK);
            *b = reply.json::<i64>().await.unwrap();
        }
        let sum: i64 = balances.iter().sum();
        // Deposits still on their way only raise the sum: above the total
        // is final.
        if sum >= total || Instant::now() > deadline {
            break balances;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        balances.iter().sum::<i64>(),
        total,
        "money is not conserved (seed {seed})"
    );
    assert_eq!(
        balances, expected,
        "some request was lost or applied twice (seed {seed})"
    );
    let status = tokio::task::spawn_blocking(move || bank.terminate())
        .await
        .unwrap();
    assert!(status.success());
    acks.load(Ordering::SeqCst)
}
