//! `embedded`: counter increments through the Rust API, durable vs in-memory.
//!
//! The grid is modes × key counts × callers. Each run opens a fresh runtime
//! (default workers) on the caller's tokio runtime, drives it with a closed
//! loop of callers picking keys uniformly at random, and shuts it down. In
//! each (keys, callers) cell in-memory runs first, so the durable row can
//! carry the durable/in-memory ratio: the price of one fsynced commit.
//! Right before each durable run, raw `append + fdatasync` of 256 B on the
//! same disk is measured for `--fsync-floor` seconds, so the durable row
//! carries its latency in units of the disk's fsync measured seconds apart
//! (`p50_vs_fsync_p50`, `p99_vs_fsync_p50`).

use std::{sync::Arc, time::Duration};

use statefn::{CommitPhases, Durability, Runtime};
use statefn_store::Faults;

use super::{Common, Mode};
use crate::{
    counter::{Counter, CounterKeys},
    diagnose::{ThreadTimes, counting_fs, format_busy},
    measure::{BoxError, Record, Summary, Window, closed_loop, ratio},
    scenarios::floor::{append_fdatasync, overwrite_fdatasync},
    scratch::Scratch,
};

/// Options of the `embedded` scenario; each list defaults to the full grid.
#[derive(Debug, Clone, clap::Args)]
pub struct EmbeddedArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Key counts (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 1_000, 1_000_000])]
    pub keys: Vec<u64>,
    /// Concurrent callers (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 64, 256])]
    pub callers: Vec<usize>,
    /// Modes (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', default_values = ["in-memory", "durable"])]
    pub mode: Vec<Mode>,
    /// Also report CPU per thread and, durable, invocations per fsync
    /// (through a counting file system: a mutex per append and sync).
    #[arg(long)]
    pub diagnose: bool,
    /// Seconds of raw append+fdatasync (256 B), then as many of
    /// overwrite+fdatasync of a pre-zeroed file, measured before each
    /// durable run, their rows printed as `floor: append+fdatasync 256B`
    /// and `floor: overwrite+fdatasync 256B`; 0 skips them.
    #[arg(long, default_value_t = 1.0)]
    pub fsync_floor: f64,
    /// Milliseconds added to every log sync (a steady slow disk, through
    /// the counting file system), so that the commit pipeline's shape shows
    /// through a noisy machine's disk; 0: none.
    #[arg(long, default_value_t = 0.0)]
    pub sync_delay_ms: f64,
}

/// Runs the grid.
///
/// # Errors
///
/// The first runtime or I/O error.
pub async fn run(args: &EmbeddedArgs) -> Result<(), BoxError> {
    Record::print_header();
    // In-memory first in every cell, whatever order the flags gave.
    let mut modes = args.mode.clone();
    modes.sort_by_key(|m| *m == Mode::Durable);
    modes.dedup();
    for &keys in &args.keys {
        for &callers in &args.callers {
            let mut in_memory_per_s = None;
            for &mode in &modes {
                let (floor_p50, overwrite_p50) = if mode == Mode::Durable && args.fsync_floor > 0.0
                {
                    let (append, overwrite) =
                        fsync_floor(&args.common, args.fsync_floor, keys, callers)?;
                    (Some(append), Some(overwrite))
                } else {
                    (None, None)
                };
                let options = RunOptions {
                    diagnose: args.diagnose,
                    sync_delay: Duration::from_secs_f64(args.sync_delay_ms.max(0.0) / 1000.0),
                };
                let (summary, prebuilt, diagnosis) =
                    run_one(&args.common, mode, keys, callers, options).await?;
                let mut record = Record::new("embedded", mode.name(), &summary)
                    .param("keys", keys)
                    .param("callers", callers)
                    .param("handles", if prebuilt { "prebuilt" } else { "per-call" });
                if mode == Mode::Durable && args.sync_delay_ms > 0.0 {
                    record = record.param("sync_delay_ms", args.sync_delay_ms);
                }
                match (mode, in_memory_per_s) {
                    (Mode::InMemory, _) => in_memory_per_s = Some(record.throughput_per_s()),
                    (Mode::Durable, Some(base)) => {
                        let durable_vs_memory = ratio(record.throughput_per_s(), base);
                        record = record.field("throughput_ratio_vs_in_memory", durable_vs_memory);
                    }
                    (Mode::Durable, None) => {}
                }
                if let Some(floor_p50) = floor_p50 {
                    let (p50, p99) = (record.p50_ms(), record.p99_ms());
                    record = record
                        .field("fsync_p50_ms", floor_p50)
                        .field("p50_vs_fsync_p50", ratio(p50, floor_p50))
                        .field("p99_vs_fsync_p50", ratio(p99, floor_p50));
                }
                if let Some(overwrite_p50) = overwrite_p50 {
                    record = record.field("overwrite_fsync_p50_ms", overwrite_p50);
                }
                if let Some(diagnosis) = diagnosis {
                    record = diagnosis.annotate(record, &summary);
                }
                record.emit();
            }
        }
    }
    Ok(())
}

/// Measures raw append+fdatasync, then overwrite+fdatasync of a pre-zeroed
/// file, on the data directory's disk for `seconds` each, prints their rows,
/// and returns their p50s in milliseconds.
fn fsync_floor(
    common: &Common,
    seconds: f64,
    keys: u64,
    callers: usize,
) -> Result<(f64, f64), BoxError> {
    let scratch = Scratch::new(&common.data_dir, "embedded-floor")?;
    let window = Window {
        warmup: Duration::from_millis(200),
        duration: Duration::from_secs_f64(seconds),
    };
    let summary = append_fdatasync(&scratch.path().join("append-256"), 256, window)?;
    let record = Record::new("embedded", "floor: append+fdatasync 256B", &summary)
        .param("keys", keys)
        .param("callers", callers)
        .param("bytes", 256);
    record.emit();
    let summary = overwrite_fdatasync(&scratch.path().join("overwrite-256"), 256, window)?;
    let overwrite = Record::new("embedded", "floor: overwrite+fdatasync 256B", &summary)
        .param("keys", keys)
        .param("callers", callers)
        .param("bytes", 256);
    overwrite.emit();
    Ok((record.p50_ms(), overwrite.p50_ms()))
}

/// What `--diagnose` saw during one run.
#[derive(Debug)]
struct Diagnosis {
    busy: Vec<(String, f64)>,
    syncs: Option<u64>,
    elapsed_s: f64,
    /// The syncers' phase sums over the run (warm-up included).
    phases: CommitPhases,
}

impl Diagnosis {
    /// Prints the per-thread CPU and adds the fsync fields to `record`.
    fn annotate(self, mut record: Record, summary: &Summary) -> Record {
        println!(
            "diagnose: cores busy per thread: {}",
            format_busy(&self.busy)
        );
        if let Some(syncs) = self.syncs {
            let per_s = syncs as f64 / self.elapsed_s.max(1e-9);
            record = record
                .field("fsyncs_per_s", per_s)
                .field("invocations_per_fsync", ratio(summary.ops_per_s(), per_s));
        }
        let p = self.phases;
        if p.commits > 0 {
            // Means in ms: per batch for the queueing, per group commit for
            // the rest; a call's mean latency against the commit cycle.
            let commits = p.commits as f64;
            let per_commit = |d: Duration| d.as_secs_f64() * 1e3 / commits;
            let queued = p.queued.as_secs_f64() * 1e3 / (p.batches.max(1) as f64);
            let (append, write, sync, release) = (
                per_commit(p.append),
                per_commit(p.write),
                per_commit(p.sync),
                per_commit(p.release),
            );
            let cycle_ms = self.elapsed_s * 1e3 / commits;
            let busy = append + write + sync + release;
            let mean_call_ms = summary.latencies.mean_ms();
            let rest = (mean_call_ms - queued - busy).max(0.0);
            println!(
                "diagnose: per group commit ({:.1} invocations, {:.1} batches; {:.3} ms apart): \
                 append {append:.4} ms, write {write:.4} ms, sync {sync:.4} ms, release {release:.4} ms, \
                 syncer idle {:.4} ms; a batch waited {queued:.4} ms for its commit; \
                 mean call {mean_call_ms:.4} ms = {:.2} commit cycles, of which {rest:.4} ms \
                 outside the syncer (mailbox, handler, hand-over, caller wake-up)",
                p.invocations as f64 / commits,
                p.batches as f64 / commits,
                cycle_ms,
                (cycle_ms - busy).max(0.0),
                mean_call_ms / cycle_ms.max(1e-9),
            );
            record = record
                .field("commit_cycle_ms", cycle_ms)
                .field("commit_append_ms", append)
                .field("commit_write_ms", write)
                .field("commit_sync_ms", sync)
                .field("commit_release_ms", release)
                .field("batch_queued_ms", queued)
                .field("mean_call_ms", mean_call_ms)
                .field("call_outside_syncer_ms", rest);
        }
        record
    }
}

/// How one durable run is set up.
#[derive(Debug, Clone, Copy)]
struct RunOptions {
    diagnose: bool,
    sync_delay: Duration,
}

/// One run: open, drive, shut down. Returns whether handles were prebuilt.
async fn run_one(
    common: &Common,
    mode: Mode,
    keys: u64,
    callers: usize,
    options: RunOptions,
) -> Result<(Summary, bool, Option<Diagnosis>), BoxError> {
    let diagnose = options.diagnose;
    let builder = Runtime::builder().register::<Counter>();
    let delayed = !options.sync_delay.is_zero();
    let (builder, counting) = if (diagnose || delayed) && mode == Mode::Durable {
        let (fs, faults) = counting_fs();
        if delayed {
            faults.sync_delay(options.sync_delay);
        }
        (builder.file_system(fs), Some(faults))
    } else {
        (builder, None)
    };
    let (builder, scratch) = match mode {
        Mode::InMemory => (builder.in_memory(), None),
        Mode::Durable => {
            let scratch = Scratch::new(&common.data_dir, "embedded")?;
            let builder = builder
                .data_dir(scratch.path())
                .durability(Durability::Fsync);
            (builder, Some(scratch))
        }
    };
    let runtime = builder.open().await?;
    let space = Arc::new(CounterKeys::new(&runtime, keys));
    let prebuilt = space.prebuilt();
    let label = format!("embedded {} keys={keys} callers={callers}", mode.name());
    let before = (
        ThreadTimes::now(),
        counting.as_ref().map(Faults::sync_count),
        runtime.commit_phases(),
    );
    let summary = closed_loop(callers, common.window(), &label, move |random| {
        let call = space.add_one(random);
        async move {
            call.await?;
            Ok(())
        }
    })
    .await;
    let diagnosis = diagnose.then(|| {
        let now = ThreadTimes::now();
        Diagnosis {
            busy: now.busy_since(&before.0),
            syncs: counting
                .as_ref()
                .map(|f| f.sync_count() - before.1.unwrap_or(0)),
            elapsed_s: common.window().warmup.as_secs_f64()
                + summary.as_ref().map_or(0.0, |s| s.elapsed.as_secs_f64()),
            phases: minus(runtime.commit_phases(), before.2),
        }
    });
    runtime.shutdown().await?;
    drop(scratch);
    Ok((summary?, prebuilt, diagnosis))
}

/// What the syncers did between two readings.
fn minus(after: CommitPhases, before: CommitPhases) -> CommitPhases {
    CommitPhases {
        commits: after.commits - before.commits,
        batches: after.batches - before.batches,
        invocations: after.invocations - before.invocations,
        queued: after.queued.saturating_sub(before.queued),
        append: after.append.saturating_sub(before.append),
        write: after.write.saturating_sub(before.write),
        sync: after.sync.saturating_sub(before.sync),
        release: after.release.saturating_sub(before.release),
    }
}
