//! `timers`: millions of pending durable timers.
//!
//! `#[stateful_function(expire_after = "30d")]` arms one durable timer per
//! instance, so `--instances` sessions, each written once, are that many
//! pending timers (due in 30 days: none fires during the run). Measured:
//!
//! 1. populate: every session written once, in key order;
//! 2. once the process is idle, its resident memory (`VmRSS`, and the peak
//!    `VmHWM` so far);
//! 3. checkpoints while all those timers are pending: random writes for the
//!    measured window, every shard checkpointing every
//!    `--checkpoint-interval`; the runtime's own metrics give the bytes and
//!    seconds per checkpoint;
//! 4. after a clean shutdown, a reopen in a fresh process (so its memory is
//!    its own, `statefn-bench timers-reopen`): open time, resident memory,
//!    and the same checkpoint window.

use std::{
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use statefn::{Runtime, prelude::*};

use super::Common;
use crate::{
    counter::key_id,
    diagnose::ThreadTimes,
    measure::{BoxError, Record, closed_loop},
    scratch::{Scratch, dir_bytes},
};

/// A session: a counter that expires after 30 idle days, i.e. one pending
/// durable timer per instance.
#[stateful_function(name = "bench.Session", expire_after = "30d")]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Session {
    n: u64,
}

#[stateful_function]
impl Session {
    /// Adds `by` and returns the new count.
    #[handler]
    pub fn add(&mut self, by: u64) -> u64 {
        self.n += by;
        self.n
    }
}

/// Options of the `timers` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct TimersArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Sessions to create (one pending timer each).
    #[arg(long, default_value_t = 10_000_000)]
    pub instances: u64,
    /// Callers while populating.
    #[arg(long, default_value_t = 256)]
    pub populate_callers: usize,
    /// Callers while measuring checkpoints.
    #[arg(long, default_value_t = 64)]
    pub callers: usize,
    /// Each shard checkpoints at least this often (seconds) while it has
    /// changes.
    #[arg(long, default_value_t = 10.0)]
    pub checkpoint_interval: f64,
    /// Skip the reopen in a child process.
    #[arg(long)]
    pub skip_reopen: bool,
}

/// Options of the hidden `timers-reopen` subcommand (the reopening child).
#[derive(Debug, Clone, clap::Args)]
pub struct ReopenArgs {
    /// Shared options (`--data-dir` is the populated directory itself).
    #[command(flatten)]
    pub common: Common,
    /// Sessions the directory holds.
    #[arg(long)]
    pub instances: u64,
    /// Callers while measuring checkpoints.
    #[arg(long)]
    pub callers: usize,
    /// As for `timers`.
    #[arg(long)]
    pub checkpoint_interval: f64,
}

/// Below this many busy cores the process counts as idle.
const IDLE_CORES: f64 = 0.1;

/// The longest [`settle`] waits.
const SETTLE_MAX: Duration = Duration::from_secs(300);

async fn open(dir: &std::path::Path, checkpoint_interval: f64) -> Result<Runtime, BoxError> {
    Ok(Runtime::builder()
        .data_dir(dir)
        .checkpoint_interval(Duration::from_secs_f64(checkpoint_interval))
        .register::<Session>()
        .open()
        .await?)
}

/// Runs the scenario.
///
/// # Errors
///
/// Any runtime, I/O or process error.
pub async fn run(args: &TimersArgs) -> Result<(), BoxError> {
    let metrics = statefn::ingress::install_prometheus_recorder()?;
    let scratch = Scratch::new(&args.common.data_dir, "timers")?;
    Record::print_header();
    let runtime = open(scratch.path(), args.checkpoint_interval).await?;
    let populate_s = populate(&runtime, args.instances, args.populate_callers).await?;
    let settle_s = settle().await;
    let memory = Memory::now();
    let before = Checkpoints::read(&metrics.render());
    let label = format!("timers checkpoints n={}", args.instances);
    let summary = measure(&runtime, args.instances, args.callers, &args.common, &label).await?;
    let checkpoints = Checkpoints::read(&metrics.render()).since(&before);
    let shutdown = Instant::now();
    runtime.shutdown().await?;
    let shutdown_s = shutdown.elapsed().as_secs_f64();
    checkpoints
        .record(Record::new("timers", "populated", &summary), &memory)
        .param("instances", args.instances)
        .param("callers", args.callers)
        .param("checkpoint_interval_s", args.checkpoint_interval)
        .field("populate_s", populate_s)
        .field("populate_per_s", args.instances as f64 / populate_s)
        .field("settle_s", settle_s)
        .field("shutdown_s", shutdown_s)
        .field(
            "data_dir_mib",
            dir_bytes(scratch.path()) as f64 / f64::from(1 << 20),
        )
        .emit();
    if !args.skip_reopen {
        let status = tokio::process::Command::new(std::env::current_exe()?)
            .arg("timers-reopen")
            .arg("--data-dir")
            .arg(scratch.path())
            .args(["--instances", &args.instances.to_string()])
            .args(["--callers", &args.callers.to_string()])
            .args([
                "--checkpoint-interval",
                &args.checkpoint_interval.to_string(),
            ])
            .args(["--duration", &args.common.duration.to_string()])
            .args(["--warmup", &args.common.warmup.to_string()])
            .stdout(Stdio::inherit())
            .status()
            .await?;
        if !status.success() {
            return Err(format!("timers-reopen failed: {status}").into());
        }
    }
    Ok(())
}

/// The reopening child: open the populated directory, measure, shut down.
///
/// # Errors
///
/// Any runtime or I/O error.
pub async fn reopen(args: &ReopenArgs) -> Result<(), BoxError> {
    let metrics = statefn::ingress::install_prometheus_recorder()?;
    let dir: PathBuf = args.common.data_dir.clone();
    let started = Instant::now();
    let runtime = open(&dir, args.checkpoint_interval).await?;
    let open_s = started.elapsed().as_secs_f64();
    let opened = Memory::now();
    let settle_s = settle().await;
    let memory = Memory::now();
    let before = Checkpoints::read(&metrics.render());
    let label = format!("timers checkpoints after reopen n={}", args.instances);
    let summary = measure(&runtime, args.instances, args.callers, &args.common, &label).await?;
    let checkpoints = Checkpoints::read(&metrics.render()).since(&before);
    runtime.shutdown().await?;
    checkpoints
        .record(Record::new("timers", "reopened", &summary), &memory)
        .param("instances", args.instances)
        .param("callers", args.callers)
        .param("checkpoint_interval_s", args.checkpoint_interval)
        .field("open_s", open_s)
        .field("rss_after_open_mib", opened.rss_mib)
        .field("settle_s", settle_s)
        .emit();
    Ok(())
}

/// Random `add(1)` over every session for the common window.
async fn measure(
    runtime: &Runtime,
    instances: u64,
    callers: usize,
    common: &Common,
    label: &str,
) -> Result<crate::measure::Summary, BoxError> {
    let runtime = runtime.clone();
    let instances = instances.max(1);
    closed_loop(callers, common.window(), label, move |random| {
        let call = runtime.handle::<Session>(key_id(random % instances)).add(1);
        async move {
            call.await?;
            Ok(())
        }
    })
    .await
}

/// Writes every session once, in key order; returns the seconds taken.
async fn populate(runtime: &Runtime, instances: u64, callers: usize) -> Result<f64, BoxError> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers.max(1))
        .map(|_| {
            let (runtime, next) = (runtime.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= instances {
                        return Ok::<(), statefn::Error>(());
                    }
                    runtime.handle::<Session>(key_id(k)).add(1).await?;
                    if k % 1_000_000 == 0 && k > 0 {
                        eprintln!(
                            "populated {k} in {:.0} s ({:.0} MiB resident)",
                            started.elapsed().as_secs_f64(),
                            Memory::now().rss_mib
                        );
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Waits until the checkpoints and compactions that populating started are
/// done (the process uses under [`IDLE_CORES`] for a second), at most
/// [`SETTLE_MAX`]. Returns the seconds waited.
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

/// This process's resident memory, from `/proc/self/status`.
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    rss_mib: f64,
    peak_mib: f64,
}

impl Memory {
    fn now() -> Memory {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |field: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Memory {
            rss_mib: kib("VmRSS:") / 1024.0,
            peak_mib: kib("VmHWM:") / 1024.0,
        }
    }
}

/// Checkpoint totals from the runtime's metrics (Prometheus text).
#[derive(Debug, Clone, Copy, Default)]
struct Checkpoints {
    count: f64,
    seconds: f64,
    bytes: f64,
}

impl Checkpoints {
    fn read(text: &str) -> Checkpoints {
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Checkpoints {
            count: value("statefn_checkpoint_duration_seconds_count"),
            seconds: value("statefn_checkpoint_duration_seconds_sum"),
            bytes: value("statefn_checkpoint_bytes_sum"),
        }
    }

    fn since(&self, earlier: &Checkpoints) -> Checkpoints {
        Checkpoints {
            count: self.count - earlier.count,
            seconds: self.seconds - earlier.seconds,
            bytes: self.bytes - earlier.bytes,
        }
    }

    /// Adds the checkpoint and memory fields to `record`.
    fn record(&self, record: Record, memory: &Memory) -> Record {
        let per = |total: f64| total / self.count.max(1.0);
        record
            .field("rss_mib", memory.rss_mib)
            .field("peak_rss_mib", memory.peak_mib)
            .field("checkpoints", self.count)
            .field("checkpoint_mean_s", per(self.seconds))
            .field("checkpoint_mean_mib", per(self.bytes) / f64::from(1 << 20))
            .field("checkpoint_total_mib", self.bytes / f64::from(1 << 20))
    }
}
