//! 100,000 calls over 10,000 instances from 16 client tasks: every reply and
//! every final state is checked.

use futures::future::join_all;
use statefn::prelude::*;
use statefn_examples::bank::Account;

const ACCOUNTS: u64 = 10_000;
const ROUNDS: u64 = 10;
const TASKS: u64 = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_calls_over_ten_thousand_instances() -> Result<(), Error> {
    let runtime = Runtime::builder()
        .in_memory()
        .register::<Account>()
        .open()
        .await?;
    let tasks = (0..TASKS).map(|task| {
        let runtime = runtime.clone();
        tokio::spawn(async move {
            let mine: Vec<u64> = (0..ACCOUNTS).filter(|i| i % TASKS == task).collect();
            for round in 1..=ROUNDS {
                let replies = join_all(mine.iter().map(|&i| {
                    let account = runtime.handle::<Account>(format!("acct-{i}"));
                    async move {
                        (
                            i,
                            account.deposit(i64::try_from(i).expect("small") + 1).await,
                        )
                    }
                }))
                .await;
                for (i, reply) in replies {
                    let expected = i64::try_from(round * (i + 1)).expect("small");
                    assert_eq!(reply?, Ok(expected), "reply of round {round} for acct-{i}");
                }
            }
            Ok::<_, Error>(mine.len())
        })
    });
    let mut calls = 0;
    for task in join_all(tasks).await {
        calls += task.expect("client task panicked")? as u64 * ROUNDS;
    }
    assert_eq!(calls, ACCOUNTS * ROUNDS);
    for i in 0..ACCOUNTS {
        let balance = runtime
            .handle::<Account>(format!("acct-{i}"))
            .balance()
            .await?;
        assert_eq!(
            balance,
            i64::try_from(ROUNDS * (i + 1)).expect("small"),
            "acct-{i}"
        );
    }
    runtime.shutdown().await
}
