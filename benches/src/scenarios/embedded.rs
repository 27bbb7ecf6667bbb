//! `embedded`: counter increments through the Rust API, durable vs in-memory.
//!
//! The grid is modes × key counts × callers. Each run opens a fresh runtime
//! (default workers) on the caller's tokio runtime, drives it with a closed
//! loop of callers picking keys uniformly at random, and shuts it down. In
//! each (keys, callers) cell in-memory runs first, so the durable row can
//! carry the durable/in-memory ratio: the price of one fsynced commit.

use std::sync::Arc;

use statefn::{Durability, Runtime};
use statefn_store::Faults;

use super::{Common, Mode};
use crate::{
    counter::{Counter, CounterKeys},
    diagnose::{ThreadTimes, counting_fs, format_busy},
    measure::{BoxError, Record, Summary, closed_loop, ratio},
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
                let (summary, prebuilt, diagnosis) =
                    run_one(&args.common, mode, keys, callers, args.diagnose).await?;
                let mut record = Record::new("embedded", mode.name(), &summary)
                    .param("keys", keys)
                    .param("callers", callers)
                    .param("handles", if prebuilt { "prebuilt" } else { "per-call" });
                match (mode, in_memory_per_s) {
                    (Mode::InMemory, _) => in_memory_per_s = Some(record.throughput_per_s()),
                    (Mode::Durable, Some(base)) => {
                        let durable_vs_memory = ratio(record.throughput_per_s(), base);
                        record = record.field("throughput_ratio_vs_in_memory", durable_vs_memory);
                    }
                    (Mode::Durable, None) => {}
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

/// What `--diagnose` saw during one run.
#[derive(Debug)]
struct Diagnosis {
    busy: Vec<(String, f64)>,
    syncs: Option<u64>,
    elapsed_s: f64,
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
        record
    }
}

/// One run: open, drive, shut down. Returns whether handles were prebuilt.
async fn run_one(
    common: &Common,
    mode: Mode,
    keys: u64,
    callers: usize,
    diagnose: bool,
) -> Result<(Summary, bool, Option<Diagnosis>), BoxError> {
    let builder = Runtime::builder().register::<Counter>();
    let (builder, counting) = if diagnose && mode == Mode::Durable {
        let (fs, faults) = counting_fs();
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
        }
    });
    runtime.shutdown().await?;
    drop(scratch);
    Ok((summary?, prebuilt, diagnosis))
}
