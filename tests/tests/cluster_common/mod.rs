//! What the in-process cluster tests share: the bank's `Account` on 8
//! shards in 4 log groups, and calls that retry while the cluster says
//! "try again" (a failover, a handoff).

#![allow(dead_code)] // each test file uses its own part

use std::time::{Duration, Instant};

use statefn::{Address, Error, Runtime};
use statefn_examples::bank::Account;
use statefn_store::LogGroupId;

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
    let shard = Address::new("Account", account)
        .expect("valid")
        .shard(SHARDS);
    LogGroupId::of(statefn_store::ShardId(shard), GROUPS).0
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
