//! Reopen after a crash: time `open()` over N unreplayed log records.
//!
//! The records are written by a child process (`statefn-bench populate`)
//! that is then SIGKILLed, so the data dir is exactly what a crash leaves:
//! no final checkpoint, log segments not closed.

use std::{
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use statefn::{Durability, Runtime};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

use super::{KEYS, PopulateArgs, open_for_populate, without_checkpoints};
use crate::{
    counter::{Counter, CounterKeys, key_id},
    measure::{BoxError, Latencies, Record},
    record::Quantiles,
    scenarios::Common,
    scratch::{Scratch, dir_bytes},
};

/// The populating child's durability: `Periodic` writes every record to the
/// OS at once (a SIGKILL loses nothing) without an fsync per batch, so a
/// million records take seconds. The log format does not depend on it.
pub const POPULATE_DURABILITY: Durability = Durability::Periodic(Duration::from_millis(10));

/// Concurrent callers in the populating child: large batches, quick fill.
const POPULATE_CALLERS: u64 = 256;

/// The line the child prints once every record is acknowledged.
const POPULATED: &str = "populated";

/// One size: populate in a child, kill it, time the reopen, check counts.
///
/// # Errors
///
/// The child failed, the reopen failed, or the counters do not add up.
pub async fn run(common: &Common, records: u64) -> Result<(), BoxError> {
    let scratch = Scratch::new(&common.data_dir, "recovery-reopen")?;
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .arg("populate")
        .arg("--data-dir")
        .arg(scratch.path())
        .args(["--records", &records.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut acked = None;
    while let Some(line) = lines.next_line().await? {
        if let Some(n) = line.strip_prefix(POPULATED) {
            acked = Some(n.trim().parse::<u64>()?);
            break;
        }
    }
    let acked = acked.ok_or("the populating child exited early")?;
    let populate_s = started.elapsed().as_secs_f64();
    child.kill().await?; // SIGKILL: the crash
    let log_bytes = dir_bytes(&scratch.path().join("wal"));

    let start = Instant::now();
    let runtime = without_checkpoints(Runtime::builder().data_dir(scratch.path()))
        .open()
        .await?;
    let open = start.elapsed();

    // Every acknowledged increment must be back: add(0) reads a counter.
    let mut total = 0;
    for k in 0..KEYS {
        total += runtime.handle::<Counter>(key_id(k)).add(0).await?;
    }
    runtime.shutdown().await?;
    if total != acked {
        return Err(format!("recovered {total} increments, {acked} were acknowledged").into());
    }
    // The latency columns hold the open time (one sample); the throughput
    // column is records replayed per second.
    let mut latencies = Latencies::new();
    latencies.record(open);
    Record::from_quantiles(
        "recovery",
        "reopen after SIGKILL",
        0.0,
        Quantiles::of(&latencies),
    )
    .param("records", records)
    .param("keys", KEYS)
    .throughput(acked as f64 / open.as_secs_f64().max(f64::MIN_POSITIVE))
    .field("open_s", open.as_secs_f64())
    .field("populate_s", populate_s)
    .field("log_mib", log_bytes as f64 / f64::from(1 << 20))
    .emit();
    Ok(())
}

/// The child: commit `records` increments over [`KEYS`] counters, print
/// how many were acknowledged, then wait to be killed.
///
/// # Errors
///
/// Opening the runtime or a call failed.
pub async fn populate(args: &PopulateArgs) -> Result<(), BoxError> {
    let runtime = open_for_populate(args).await?;
    let space = Arc::new(CounterKeys::new(&runtime, KEYS));
    let issued = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..POPULATE_CALLERS {
        let (space, issued, records) = (Arc::clone(&space), Arc::clone(&issued), args.records);
        tasks.push(tokio::spawn(async move {
            let mut acked = 0u64;
            loop {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= records {
                    return Ok::<u64, statefn::Error>(acked);
                }
                space.add_one(n).await?;
                acked += 1;
            }
        }));
    }
    let mut acked = 0;
    for task in tasks {
        acked += task.await??;
    }
    println!("{POPULATED} {acked}");
    // Killed here; never shut down (that would write a checkpoint).
    std::future::pending::<()>().await;
    Ok(())
}
