//! `Runtime::shutdown` never hangs: not while a log group cannot recover
//! (every fsync fails), not while the state store cannot write, not while a
//! thread is stuck in the disk. It returns by its deadline with an error
//! naming what did not finish, and the data directory can be opened again.
//!
//! Every shutdown here is guarded by a deadline far above the runtime's own:
//! the guard turns a hang into a failure, it measures nothing.

use std::{sync::Arc, time::Duration};

use statefn::{Address, prelude::*};
use statefn_examples::bank::Account;
use statefn_store::{FaultyFs, StdFs};

/// Fails the test instead of hanging it.
async fn guarded<T>(what: &str, future: impl std::future::IntoFuture<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future.into_future())
        .await
        .unwrap_or_else(|_| panic!("{what} hung (no answer within 60 s)"))
}

/// An account id owned by `shard` (of 2).
fn id_on_shard(shard: u16, tag: &str) -> String {
    (0..)
        .map(|i| format!("{tag}-{i}"))
        .find(|id| Address::new("Account", id).expect("valid").shard(2) == shard)
        .expect("some id lands on every shard")
}

/// A runtime of two shards in two log groups (shard 1 is group 1), on `fs`
/// if given.
async fn open_two_groups(
    dir: &std::path::Path,
    fs: Option<Arc<FaultyFs>>,
) -> Result<Runtime, Error> {
    let builder = Runtime::builder().data_dir(dir).shards(2).log_groups(2);
    let builder = match fs {
        Some(fs) => builder.file_system(fs),
        None => builder,
    };
    builder.register::<Account>().open().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_returns_while_a_log_group_cannot_recover() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = Arc::new(FaultyFs::new(Arc::new(StdFs)));
    let faults = fs.faults();
    let runtime = open_two_groups(dir.path(), Some(fs)).await?;
    let victim = runtime.handle::<Account>(id_on_shard(1, "victim"));
    let healthy = runtime.handle::<Account>(id_on_shard(0, "healthy"));
    guarded("deposit", victim.deposit(100))
        .await?
        .expect("positive");
    guarded("deposit", healthy.deposit(100))
        .await?
        .expect("positive");

    // Group 1's disk fails every fsync from now on: it cannot recover.
    faults.only_paths_containing("group-0001");
    faults.fail_syncs();
    let err = guarded("a deposit on the failing disk", victim.deposit(5))
        .await
        .expect_err("its log cannot sync");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    guarded("deposit", healthy.deposit(1))
        .await?
        .expect("positive");

    let err = guarded("shutdown", runtime.shutdown())
        .await
        .expect_err("group 1 never came back: not a clean shutdown");
    match &err {
        Error::ShutdownIncomplete { unfinished } => {
            assert!(
                unfinished.iter().any(|u| u.contains("log group 1")),
                "{err}"
            );
            // The group gave its shards up when the shutdown began: nothing
            // waited for them until the deadline.
            assert!(!unfinished.iter().any(|u| u.contains("in flight")), "{err}");
        }
        other => panic!("expected ShutdownIncomplete, got {other:?}"),
    }

    // The directory is released: the next open (disk healed) sees what was
    // committed.
    faults.heal();
    let runtime = open_two_groups(dir.path(), None).await?;
    let victim = runtime.handle::<Account>(id_on_shard(1, "victim"));
    let healthy = runtime.handle::<Account>(id_on_shard(0, "healthy"));
    // The refused deposit of 5 may have reached the page cache before its
    // fsync failed; whether it counts is issue 11's "not committed is
    // false" item, not this test's business.
    let balance = guarded("balance", victim.balance()).await?;
    assert!(matches!(balance, 100 | 105), "{balance}");
    assert_eq!(guarded("balance", healthy.balance()).await?, 101);
    guarded("shutdown", runtime.shutdown()).await
}

/// A runtime of one shard on `fs` whose shutdown deadline is 300 ms.
async fn open_with_short_deadline(
    dir: &std::path::Path,
    fs: Arc<FaultyFs>,
) -> Result<Runtime, Error> {
    Runtime::builder()
        .data_dir(dir)
        .shards(1)
        .file_system(fs)
        .shutdown_timeout(Duration::from_millis(300))
        .register::<Account>()
        .open()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_at_its_deadline_and_names_what_is_stuck() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = Arc::new(FaultyFs::new(Arc::new(StdFs)));
    let faults = fs.faults();
    let runtime = open_with_short_deadline(dir.path(), fs).await?;
    let account = runtime.handle::<Account>("a");
    guarded("deposit", account.deposit(1))
        .await?
        .expect("positive");
    // The disk stalls: the next fsync takes far longer than the deadline
    // (and than the guard), so waiting for it would hang the test.
    let synced = faults.sync_count();
    faults.sync_delay(Duration::from_secs(120));
    let stalled = tokio::spawn(async move { account.deposit(1).await });
    // Let the deposit reach the stalled fsync.
    while faults.sync_count() == synced {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let err = guarded("shutdown", runtime.shutdown())
        .await
        .expect_err("a commit is stuck in the disk");
    match &err {
        Error::ShutdownIncomplete { unfinished } => {
            assert!(unfinished.iter().any(|u| u.contains("in flight")), "{err}");
            assert!(
                unfinished.iter().any(|u| u.contains("statefn-log-0")),
                "{err}"
            );
        }
        other => panic!("expected ShutdownIncomplete, got {other:?}"),
    }
    assert!(err.to_string().contains("300ms"), "{err}");
    stalled.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_drain_closes_a_request_stuck_in_the_disk() -> Result<(), Error> {
    use statefn::ingress::{IngressConfig, ServeError, Server};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().expect("temp dir");
    let fs = Arc::new(FaultyFs::new(Arc::new(StdFs)));
    let faults = fs.faults();
    let runtime = open_with_short_deadline(dir.path(), fs).await?;
    guarded("deposit", runtime.handle::<Account>("a").deposit(1))
        .await?
        .expect("positive");
    let config = IngressConfig {
        listen: "127.0.0.1:0".parse().expect("an address"),
        drain_timeout: Duration::from_millis(300),
        ..IngressConfig::default()
    };
    let server = Server::bind(runtime, config).await.expect("binds");
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));

    // A deposit whose fsync takes far longer than the guard.
    let synced = faults.sync_count();
    faults.sync_delay(Duration::from_secs(120));
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let body = r#"{"amount": 1}"#;
    let request = format!(
        "POST /v1/Account/a/deposit HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("sends");
    while faults.sync_count() == synced {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let _ = stop.send(());
    let served = guarded("the HTTP server's shutdown", serving)
        .await
        .expect("the server task");
    match served {
        Err(ServeError::Runtime(Error::ShutdownIncomplete { .. })) => {}
        other => panic!("expected an incomplete runtime shutdown, got {other:?}"),
    }
    // The stuck request's connection was closed, not left open.
    let mut rest = Vec::new();
    guarded(
        "reading the closed connection",
        stream.read_to_end(&mut rest),
    )
    .await
    .expect("reads");
    Ok(())
}

/// A group still retrying its recovery when the disk comes back and the
/// shutdown begins at once tries once more before giving up: a healed disk
/// gives a clean shutdown (model_bank found the group abandoned while its
/// retry slept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_whose_disk_healed_recovers_at_shutdown_instead_of_giving_up() -> Result<(), Error>
{
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = Arc::new(FaultyFs::new(Arc::new(StdFs)));
    let faults = fs.faults();
    let runtime = open_two_groups(dir.path(), Some(fs)).await?;
    let victim = runtime.handle::<Account>(id_on_shard(1, "victim"));
    guarded("deposit", victim.deposit(100))
        .await?
        .expect("positive");
    faults.only_paths_containing("group-0001");
    faults.fail_syncs();
    let err = guarded("a deposit on the failing disk", victim.deposit(5))
        .await
        .expect_err("its log cannot sync");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    // Let the recovery fail a few times: its retry now sleeps for longer
    // than the shutdown below takes to begin.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    faults.heal();
    guarded("shutdown", runtime.shutdown()).await?;

    let runtime = open_two_groups(dir.path(), None).await?;
    let victim = runtime.handle::<Account>(id_on_shard(1, "victim"));
    assert_eq!(guarded("balance", victim.balance()).await?, 100);
    runtime.shutdown().await
}
