//! What a durable runtime keeps across a restart: state, stored replies,
//! timers; and what it refuses to open.

use std::{path::Path, time::Duration};

use statefn::prelude::*;
use statefn_examples::bank::Account;
use statefn_tests::{Emitter, Recorder, eventually};

async fn open(dir: &Path) -> Result<Runtime, Error> {
    Runtime::builder()
        .data_dir(dir)
        .register::<Account>()
        .register::<Emitter>()
        .register::<Recorder>()
        .open()
        .await
}

#[tokio::test]
async fn state_and_stored_replies_survive_a_restart() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = open(dir.path()).await?;
    let bob = runtime.handle::<Account>("bob");
    assert_eq!(bob.deposit(10).idempotency_key("order-991").await?, Ok(10));
    bob.deposit(5).await?.expect("a positive amount");
    runtime
        .handle::<Account>("ann")
        .deposit(100)
        .await?
        .expect("a positive amount");
    runtime.shutdown().await?;

    let runtime = open(dir.path()).await?;
    let bob = runtime.handle::<Account>("bob");
    // The retry is answered from the stored reply, not applied again.
    assert_eq!(bob.deposit(10).idempotency_key("order-991").await?, Ok(10));
    assert_eq!(bob.balance().await?, 15);
    assert_eq!(runtime.handle::<Account>("ann").balance().await?, 100);
    runtime.shutdown().await
}

/// On the virtual clock: the 400 ms timer is pending at the shutdown
/// whatever the machine's speed (on the real clock a slow machine fired it
/// before, and the test passed without testing the restart).
#[test]
fn a_timer_pending_at_shutdown_fires_once_after_the_restart() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rt = statefn::testing::TestRuntime::builder()
        .data_dir(dir.path())
        .register::<Emitter>()
        .register::<Recorder>()
        .start()?;
    rt.call(rt.handle::<Emitter>("e").emit_later("r".into(), 400))?;
    // And one that fires before the shutdown: it must not fire again.
    rt.call(rt.handle::<Emitter>("e2").emit_later("r".into(), 1))?;
    rt.advance(Duration::from_millis(1));
    let seen = |rt: &mut statefn::testing::TestRuntime| rt.call(rt.handle::<Recorder>("r").seen());
    assert_eq!(seen(&mut rt)?, vec![("e2".to_owned(), 0)]);
    rt.restart()?;
    // Pending across the restart, not fired by it...
    assert_eq!(seen(&mut rt)?, vec![("e2".to_owned(), 0)]);
    rt.advance(Duration::from_millis(398));
    assert_eq!(seen(&mut rt)?, vec![("e2".to_owned(), 0)]);
    // ...fired at its time, once, and not again after another restart.
    rt.advance(Duration::from_millis(1));
    let both = vec![("e2".to_owned(), 0), ("e".to_owned(), 0)];
    assert_eq!(seen(&mut rt)?, both);
    rt.restart()?;
    rt.advance(Duration::from_secs(3600));
    assert_eq!(seen(&mut rt)?, both, "no timer fired twice");
    Ok(())
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_data_dir() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = open(dir.path()).await?;
    let err = open(dir.path()).await.expect_err("locked");
    assert!(err.to_string().contains("lock"), "{err}");
    runtime.shutdown().await
}

#[tokio::test]
async fn a_data_dir_from_a_newer_version_is_refused_clearly() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    open(dir.path()).await?.shutdown().await?;
    let format = dir.path().join("FORMAT");
    let text = std::fs::read_to_string(&format).expect("format file");
    let newer = text.replace("format_version = 2", "format_version = 99");
    std::fs::write(&format, newer).expect("rewrite");
    let err = open(dir.path()).await.expect_err("newer format");
    let message = err.to_string();
    assert!(
        message.contains("99") && message.contains("newer"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn a_different_shard_count_is_refused_clearly() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    open(dir.path()).await?.shutdown().await?;
    let err = Runtime::builder()
        .data_dir(dir.path())
        .shards(4)
        .register::<Account>()
        .open()
        .await
        .expect_err("shard count changed");
    assert!(err.to_string().contains("16 shards"), "{err}");
    Ok(())
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("wal").join("group-0000"))
        .expect("wal dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_everything_before_it_recovered() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = open(dir.path()).await?;
    for i in 1..=20 {
        runtime
            .handle::<Account>("a")
            .deposit(i)
            .await?
            .expect("a positive amount");
    }
    runtime.shutdown().await?;
    let last = segments(dir.path()).pop().expect("a segment");
    let len = statefn_tests::wal_files::used_len(&last);
    // A crash in the middle of writing a record leaves a partial one (over
    // the zeros written ahead of the records).
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .expect("open");
    use std::os::unix::fs::FileExt;
    file.write_all_at(&[0x20, 0, 0, 0, 0xde, 0xad], len)
        .expect("write garbage");
    drop(file);
    let runtime = open(dir.path()).await?;
    assert_eq!(runtime.handle::<Account>("a").balance().await?, 210);
    runtime.shutdown().await?;
    assert_eq!(
        statefn_tests::wal_files::used_len(&last),
        len,
        "the torn record was cut off"
    );
    Ok(())
}

#[tokio::test]
async fn corruption_in_the_middle_of_the_log_names_the_file_and_offset() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = open(dir.path()).await?;
    for i in 1..=20 {
        runtime
            .handle::<Account>("a")
            .deposit(i)
            .await?
            .expect("a positive amount");
    }
    runtime.shutdown().await?;
    let segment = segments(dir.path()).pop().expect("a segment");
    let mut bytes = std::fs::read(&segment).expect("read");
    // The middle of the records, not of the zeros written ahead of them.
    let middle = usize::try_from(statefn_tests::wal_files::used_len(&segment) / 2).expect("small");
    bytes[middle] ^= 0xff;
    std::fs::write(&segment, bytes).expect("write");
    let err = open(dir.path()).await.expect_err("corrupt log");
    let message = err.to_string();
    let name = segment
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(message.contains(&name), "{message}");
    assert!(message.contains("offset"), "{message}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_instances_with_a_cache_far_smaller_than_their_state() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let build = || {
        Runtime::builder()
            .data_dir(dir.path())
            .cache_bytes(32 << 10)
            .checkpoint_log_bytes(256 << 10)
            .register::<Account>()
    };
    let runtime = build().open().await?;
    let ids: Vec<String> = (0..5_000).map(|i| format!("user-{i}")).collect();
    for round in 1..=2 {
        futures::future::try_join_all(ids.iter().enumerate().map(|(i, id)| {
            let account = runtime.handle::<Account>(id);
            async move { account.deposit(i64::try_from(i).expect("small")).await }
        }))
        .await?;
        for (i, id) in ids.iter().enumerate().step_by(97) {
            let balance = runtime.handle::<Account>(id).balance().await?;
            assert_eq!(balance, round * i64::try_from(i).expect("small"));
        }
    }
    runtime.shutdown().await?;
    let runtime = build().open().await?;
    for (i, id) in ids.iter().enumerate() {
        let balance = runtime.handle::<Account>(id).balance().await?;
        assert_eq!(balance, 2 * i64::try_from(i).expect("small"), "{id}");
    }
    runtime.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_keep_the_log_small_and_lose_nothing() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let build = || {
        Runtime::builder()
            .data_dir(dir.path())
            .wal_segment_bytes(16 << 10)
            .checkpoint_log_bytes(64 << 10)
            .register::<Account>()
    };
    let runtime = build().open().await?;
    for round in 0..20 {
        futures::future::try_join_all((0..200).map(|i| {
            let account = runtime.handle::<Account>(format!("a{i}"));
            let key = format!("r{round}-a{i}");
            async move { account.deposit(1).idempotency_key(key).await }
        }))
        .await?;
    }
    // 4,000 keyed records (~400 KiB of log) were written; checkpoints must
    // have let most segments go.
    let live = eventually(20, || async {
        let n = segments(dir.path()).len();
        (n <= 8).then_some(n)
    })
    .await;
    assert!(live <= 8, "{live} segments left");
    runtime.shutdown().await?;
    let runtime = build().open().await?;
    for i in 0..200 {
        assert_eq!(
            runtime.handle::<Account>(format!("a{i}")).balance().await?,
            20
        );
    }
    // Stored replies made it into checkpoints too.
    assert_eq!(
        runtime
            .handle::<Account>("a3")
            .deposit(1)
            .idempotency_key("r0-a3")
            .await?,
        Ok(1)
    );
    assert_eq!(runtime.handle::<Account>("a3").balance().await?, 20);
    runtime.shutdown().await
}

#[tokio::test]
async fn periodic_durability_recovers_after_a_clean_shutdown() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let build = || {
        Runtime::builder()
            .data_dir(dir.path())
            .durability(statefn::Durability::Periodic(Duration::from_millis(20)))
            .register::<Account>()
    };
    let runtime = build().open().await?;
    for _ in 0..50 {
        runtime
            .handle::<Account>("p")
            .deposit(2)
            .await?
            .expect("a positive amount");
    }
    runtime.shutdown().await?;
    let runtime = build().open().await?;
    assert_eq!(runtime.handle::<Account>("p").balance().await?, 100);
    runtime.shutdown().await
}

#[tokio::test]
async fn a_key_older_than_the_retention_is_a_new_call() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::builder()
        .data_dir(dir.path())
        .idempotency_retention(Duration::from_millis(300))
        .register::<Account>()
        .open()
        .await?;
    let a = runtime.handle::<Account>("a");
    a.deposit(5)
        .idempotency_key("k")
        .await?
        .expect("a positive amount");
    a.deposit(5)
        .idempotency_key("k")
        .await?
        .expect("a positive amount");
    assert_eq!(a.balance().await?, 5, "within the retention: applied once");
    // Waiting longer than the retention (a lower bound, not a timing check).
    tokio::time::sleep(Duration::from_millis(400)).await;
    a.deposit(5)
        .idempotency_key("k")
        .await?
        .expect("a positive amount");
    assert_eq!(
        a.balance().await?,
        10,
        "after the retention the key is forgotten"
    );
    runtime.shutdown().await
}

#[tokio::test]
async fn shutdown_checkpoints_every_shard() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = open(dir.path()).await?;
    for i in 0..100 {
        runtime
            .handle::<Account>(format!("s{i}"))
            .deposit(1)
            .await?
            .expect("a positive amount");
    }
    assert!(runtime.shard_status().iter().all(|s| s.checkpoint_lsn == 0));
    runtime.shutdown().await?;
    let runtime = open(dir.path()).await?;
    let status = runtime.shard_status();
    assert!(
        status
            .iter()
            .all(|s| s.checkpoint_lsn > 0 && s.serving && s.log_group == Some(0)),
        "{status:?}"
    );
    assert_eq!(runtime.handle::<Account>("s42").balance().await?, 1);
    runtime.shutdown().await
}

/// The log writes its records over zeros written ahead of them, and an idle
/// syncer writes the next chunk of zeros early (less than half a chunk
/// left), so that a commit seldom has to extend the segment itself.
#[test]
fn an_idle_syncer_keeps_zeros_ahead_of_the_log() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rt = statefn::testing::TestRuntime::builder()
        .data_dir(dir.path())
        .log_groups(1)
        .register::<Account>()
        .start()?;
    let mut extended = 0;
    let mut last_len = 0;
    for i in 1..=1_500 {
        rt.call(rt.handle::<Account>(format!("acct-{}", i % 7)).deposit(1))?
            .expect("a positive amount");
        // The call returned once the runtime was idle: the syncer had its
        // idle step after the call's commit.
        let active = segments(dir.path()).pop().expect("a segment");
        let len = std::fs::metadata(&active).expect("meta").len();
        let ahead = len - statefn_tests::wal_files::used_len(&active);
        assert!(
            ahead >= 32 << 10,
            "after call {i}: only {ahead} bytes of zeros ahead of the records"
        );
        if len != last_len {
            extended += 1;
            last_len = len;
        }
    }
    assert!(extended > 2, "the zeros were extended {extended} times");
    Ok(())
}
