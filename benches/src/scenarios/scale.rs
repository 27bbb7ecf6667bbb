//! `scale`: many instances, most of them not in memory.
//!
//! One data dir gets `--instances` counters (each incremented once, in key
//! order, by `--populate-callers` callers). Then random increments over all
//! of them are measured twice, with the same durability:
//!
//! 1. `all cached`: in the runtime that populated them, whose cache is
//!    large enough to hold every state (a checkpoint moves written states
//!    into the cache), so no call reads fjall; measured once the
//!    checkpoint and compactions that populating started are done;
//! 2. `cache 1/10`: after a clean shutdown, reopened with a cache a tenth
//!    of the states' total size (as the runtime accounts it: key + state +
//!    64 bytes per entry), so about nine calls in ten miss and read fjall.
//!
//! The ratio of the two is the cost of instances living on disk.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressStyle};
use statefn::{Durability, Runtime};

use super::Common;
use crate::{
    counter::{Counter, CounterKeys, key_id},
    diagnose::ThreadTimes,
    measure::{BoxError, Record, closed_loop, ratio},
    scratch::{Scratch, dir_bytes},
};

/// Below this many busy cores the process counts as idle.
const IDLE_CORES: f64 = 0.1;

/// The longest [`settle`] waits.
const SETTLE_MAX: Duration = Duration::from_secs(120);

/// Options of the `scale` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct ScaleArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Instances to create.
    #[arg(long, default_value_t = 10_000_000)]
    pub instances: u64,
    /// Callers while populating.
    #[arg(long, default_value_t = 256)]
    pub populate_callers: usize,
    /// Callers while measuring.
    #[arg(long, default_value_t = 64)]
    pub callers: usize,
    /// `fsync` (per group commit) or a `periodic` sync every 10 ms, for
    /// populating and measuring alike.
    #[arg(long, default_value = "fsync")]
    pub durability: String,
}

/// The runtime's accounting of one cached counter: type name, id, a
/// 1–2 byte state and 64 bytes of overhead (`shard/tables.rs`).
fn state_bytes(instances: u64) -> u64 {
    // Ids are "k0".."k{n-1}": ids with d digits take d + 1 bytes.
    let mut ids = 0;
    let mut low = 0;
    for digits in 1..=20u32 {
        let high = 10u64.saturating_pow(digits).min(instances);
        ids += high.saturating_sub(low) * u64::from(digits + 1);
        low = high;
    }
    let type_name = "Counter".len() as u64;
    instances * (type_name + 2 + 64) + ids
}

/// Runs the scenario.
///
/// # Errors
///
/// Any runtime or I/O error.
pub async fn run(args: &ScaleArgs) -> Result<(), BoxError> {
    let durability = match args.durability.as_str() {
        "fsync" => Durability::Fsync,
        "periodic" => Durability::Periodic(Duration::from_millis(10)),
        other => return Err(format!("--durability {other}: want fsync or periodic").into()),
    };
    let total = state_bytes(args.instances);
    let small_cache = usize::try_from(total / 10)?;
    let big_cache = usize::try_from(total * 3)?;
    let scratch = Scratch::new(&args.common.data_dir, "scale")?;
    Record::print_header();

    let open = |cache: usize| {
        Runtime::builder()
            .data_dir(scratch.path())
            .durability(durability)
            .cache_bytes(cache)
            .register::<Counter>()
            .open()
    };
    let runtime = open(big_cache).await?;
    let populate_s = populate(&runtime, args.instances, args.populate_callers).await?;
    let settle_s = settle().await;
    let label = format!("scale all cached n={}", args.instances);
    let cached = measure(&runtime, args, &label).await?;
    let cached = Record::new("scale", "all cached", &cached)
        .param("instances", args.instances)
        .param("callers", args.callers)
        .param("durability", args.durability.as_str())
        .field("cache_mib", big_cache as f64 / f64::from(1 << 20))
        .field("populate_s", populate_s)
        .field("populate_per_s", args.instances as f64 / populate_s)
        .field("settle_s", settle_s);
    cached.emit();
    let shutdown = Instant::now();
    runtime.shutdown().await?;
    let shutdown_s = shutdown.elapsed().as_secs_f64();

    let reopen = Instant::now();
    let runtime = open(small_cache).await?;
    let reopen_s = reopen.elapsed().as_secs_f64();
    let label = format!("scale cache 1/10 n={}", args.instances);
    let small = measure(&runtime, args, &label).await?;
    runtime.shutdown().await?;
    let record = Record::new("scale", "cache 1/10 of states", &small)
        .param("instances", args.instances)
        .param("callers", args.callers)
        .param("durability", args.durability.as_str())
        .field("cache_mib", small_cache as f64 / f64::from(1 << 20))
        .field("state_mib", total as f64 / f64::from(1 << 20))
        .field("shutdown_s", shutdown_s)
        .field("reopen_s", reopen_s);
    let per_s = record.throughput_per_s();
    record
        .field(
            "throughput_ratio_vs_all_cached",
            ratio(per_s, cached.throughput_per_s()),
        )
        .emit();
    let disk = dir_bytes(scratch.path()) as f64 / f64::from(1 << 20);
    println!("scale: data dir {disk:.0} MiB after the run");
    Ok(())
}

/// Random `add(1)` over every instance for the common window.
async fn measure(
    runtime: &Runtime,
    args: &ScaleArgs,
    label: &str,
) -> Result<crate::measure::Summary, BoxError> {
    let space = Arc::new(CounterKeys::new(runtime, args.instances));
    closed_loop(args.callers, args.common.window(), label, move |random| {
        let call = space.add_one(random);
        async move {
            call.await?;
            Ok(())
        }
    })
    .await
}

/// Waits until the checkpoint and fjall compactions that populating
/// started are done (this process uses under [`IDLE_CORES`] for a second),
/// at most [`SETTLE_MAX`]: otherwise the all-cached run would measure them.
/// Returns the seconds waited.
async fn settle() -> f64 {
    let started = Instant::now();
    let mut before = ThreadTimes::now();
    while started.elapsed() < SETTLE_MAX {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = ThreadTimes::now();
        let busy: f64 = now.busy_since(&before).iter().map(|(_, share)| share).sum();
        if busy < IDLE_CORES {
            break;
        }
        before = now;
    }
    started.elapsed().as_secs_f64()
}

/// Increments every instance once, in key order; returns the seconds taken.
async fn populate(runtime: &Runtime, instances: u64, callers: usize) -> Result<f64, BoxError> {
    let bar = ProgressBar::new(instances);
    if let Ok(style) =
        ProgressStyle::with_template("populate {pos}/{len} [{bar:30}] {per_sec} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers.max(1))
        .map(|_| {
            let (runtime, next, bar) = (runtime.clone(), Arc::clone(&next), bar.clone());
            tokio::spawn(async move {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= instances {
                        return Ok::<(), statefn::Error>(());
                    }
                    runtime.handle::<Counter>(key_id(k)).add(1).await?;
                    if k % 4096 == 0 {
                        bar.set_position(k);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    bar.finish_and_clear();
    Ok(started.elapsed().as_secs_f64())
}
