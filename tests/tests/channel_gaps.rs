//! After a restart every shard re-sends its recovered outbox while new
//! messages cross shards at once: a receiver must never apply a new message
//! before the re-sent ones, nor stall its channel waiting for them
//! (exactly-once review #1). Every deposit arrives, once.

use std::{collections::BTreeMap, future::IntoFuture};

use statefn::{prelude::*, testing::TestRuntime};
use statefn_examples::bank::Account;
use statefn_tests::eventually;

const SHARDS: u16 = 8;
const ACCOUNTS: usize = 24;

fn id(n: usize) -> String {
    format!("acct-{n}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_outboxes_at_open_and_new_cross_shard_traffic_lose_nothing() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    // Outboxes hold every message sent since the last checkpoint (acks are
    // not durable): a run of transfers without a checkpoint, then a stop
    // without one, leaves thousands to re-send at the next open.
    {
        let mut rt = TestRuntime::builder()
            .data_dir(dir.path())
            .shards(SHARDS)
            .register::<Account>()
            .start()?;
        for n in 0..ACCOUNTS {
            rt.call(rt.handle::<Account>(id(n)).deposit(1_000))?
                .expect("a positive amount");
            expected.insert(id(n), 1_000);
        }
        for round in 0..60 {
            for n in 0..ACCOUNTS {
                let to = (n * 7 + round + 1) % ACCOUNTS;
                let started = rt.start(rt.handle::<Account>(id(n)).transfer(id(to), 1));
                assert!(started.take().is_none(), "runs below");
                *expected.get_mut(&id(n)).expect("known") -= 1;
                *expected.get_mut(&id(to)).expect("known") += 1;
            }
            rt.run_until_idle();
        }
        // A last round stops half-way: transfers committed, their deposits
        // not yet applied (receivers' watermarks behind the outboxes).
        let mut in_flight = Vec::new();
        for n in 0..ACCOUNTS {
            let to = (n * 11 + 5) % ACCOUNTS;
            in_flight.push((
                n,
                to,
                rt.start(rt.handle::<Account>(id(n)).transfer(id(to), 1)),
            ));
        }
        // Stop as soon as every transfer is answered: the deposits of the
        // last ones are still in the receivers' mailboxes, and go with them.
        while in_flight
            .iter_mut()
            .any(|(_, _, call)| call.result().is_none())
        {
            assert!(rt.step(), "the transfers finish");
        }
        for (n, to, mut call) in in_flight {
            assert!(matches!(call.result(), Some(Ok(Ok(_)))), "committed");
            *expected.get_mut(&id(n)).expect("known") -= 1;
            *expected.get_mut(&id(to)).expect("known") += 1;
        }
    }
    // Open on threads, and at once send more across shards.
    let runtime = Runtime::builder()
        .data_dir(dir.path())
        .shards(SHARDS)
        .workers(2)
        .register::<Account>()
        .open()
        .await?;
    let mut calls = Vec::new();
    for round in 0..20 {
        for n in 0..ACCOUNTS {
            let to = (n * 5 + round + 3) % ACCOUNTS;
            calls.push(
                runtime
                    .handle::<Account>(id(n))
                    .transfer(id(to), 1)
                    .into_future(),
            );
            *expected.get_mut(&id(n)).expect("known") -= 1;
            *expected.get_mut(&id(to)).expect("known") += 1;
        }
    }
    for result in futures::future::join_all(calls).await {
        assert!(matches!(result, Ok(Ok(_))), "{result:?}");
    }
    // Every deposit arrives: each balance is exactly what was sent to it.
    for (account, balance) in &expected {
        let handle = runtime.handle::<Account>(account);
        let seen = eventually(30, || async {
            let seen = handle.balance().await.ok()?;
            (seen == *balance).then_some(seen)
        })
        .await;
        assert_eq!(seen, *balance, "{account}");
    }
    runtime.shutdown().await
}
