//! Egress logs: records emitted with an invocation's commit, read by offset,
//! stable across restarts.

use std::time::Duration;

use futures::StreamExt;
use statefn::prelude::*;
use statefn_tests::Ledger;

async fn ledger(dir: &std::path::Path) -> Result<Runtime, Error> {
    Runtime::builder()
        .data_dir(dir)
        .register::<Ledger>()
        .open()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_read_by_offset_and_keep_their_offsets_and_ids_across_restarts()
-> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = ledger(dir.path()).await?;
    for i in 0..50 {
        runtime
            .handle::<Ledger>(format!("a{}", i % 7))
            .deposit(format!("d{i}"), 1)
            .await?;
    }
    let first = runtime
        .read_egress("deposits", 0, 100, Duration::from_secs(5))
        .await?;
    // The appender may still be writing the last ones: wait for all 50.
    let mut all = first;
    while all.len() < 50 {
        let more = runtime
            .read_egress("deposits", all.len() as u64, 100, Duration::from_secs(5))
            .await?;
        assert!(!more.is_empty(), "records missing");
        all.extend(more);
    }
    assert_eq!(
        all.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (0..50).collect::<Vec<_>>()
    );
    let mut ops: Vec<String> = all
        .iter()
        .map(|r| r.decode::<String>().expect("a string"))
        .collect();
    ops.sort();
    let mut expected: Vec<String> = (0..50).map(|i| format!("d{i}")).collect();
    expected.sort();
    assert_eq!(ops, expected);
    let page = runtime
        .read_egress("deposits", 10, 5, Duration::ZERO)
        .await?;
    assert_eq!(page, all[10..15].to_vec(), "paging by offset");
    runtime.shutdown().await?;

    let runtime = ledger(dir.path()).await?;
    let again = runtime
        .read_egress("deposits", 0, 100, Duration::ZERO)
        .await?;
    assert_eq!(again, all, "same offsets, ids and records after a restart");
    runtime
        .handle::<Ledger>("a1")
        .deposit("d50".into(), 1)
        .await?;
    let next = runtime
        .read_egress("deposits", 50, 10, Duration::from_secs(5))
        .await?;
    assert_eq!(next.len(), 1);
    assert_eq!(
        (next[0].offset, next[0].decode::<String>()?),
        (50, "d50".to_owned())
    );
    runtime.shutdown().await
}

#[tokio::test]
async fn a_stream_waits_for_new_records() -> Result<(), Error> {
    let runtime = Runtime::builder()
        .in_memory()
        .register::<Ledger>()
        .open()
        .await?;
    let mut stream = Box::pin(runtime.egress_stream("deposits", 0));
    let writer = runtime.clone();
    tokio::spawn(async move {
        for i in 0..3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            writer
                .handle::<Ledger>("s")
                .deposit(format!("s{i}"), 1)
                .await
                .expect("deposit");
        }
    });
    for i in 0..3 {
        let record = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("a record within the deadline")
            .expect("the stream goes on")?;
        assert_eq!(
            (record.offset, record.decode::<String>()?),
            (i, format!("s{i}"))
        );
    }
    runtime.shutdown().await
}

#[tokio::test]
async fn a_failed_invocation_emits_nothing_and_bad_names_are_refused() -> Result<(), Error> {
    let runtime = Runtime::builder()
        .in_memory()
        .register::<Ledger>()
        .open()
        .await?;
    let err = runtime
        .read_egress("no such/log", 0, 1, Duration::ZERO)
        .await
        .expect_err("invalid name");
    assert!(matches!(err, Error::InvalidAddress { .. }), "{err:?}");
    assert!(
        runtime
            .read_egress("deposits", 0, 10, Duration::ZERO)
            .await?
            .is_empty()
    );
    runtime.shutdown().await
}

#[tokio::test]
async fn records_older_than_the_retention_are_not_served() -> Result<(), Error> {
    let runtime = Runtime::builder()
        .in_memory()
        .egress_retention(Duration::from_millis(200))
        .register::<Ledger>()
        .open()
        .await?;
    runtime
        .handle::<Ledger>("r")
        .deposit("old".into(), 1)
        .await?;
    assert_eq!(
        runtime
            .read_egress("deposits", 0, 10, Duration::ZERO)
            .await?
            .len(),
        1
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        runtime
            .read_egress("deposits", 0, 10, Duration::ZERO)
            .await?
            .is_empty()
    );
    runtime.shutdown().await
}
