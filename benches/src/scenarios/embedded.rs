//! `embedded`: counter increments through the Rust API, durable vs in-memory.
//!
//! The grid is modes × key counts × callers. Each run opens a fresh runtime
//! (default workers) on the caller's tokio runtime, drives it with a closed
//! loop of callers picking keys uniformly at random, and shuts it down. In
//! each (keys, callers) cell in-memory runs first, so the durable row can
//! carry the durable/in-memory ratio: the price of one fsynced commit.

use std::sync::Arc;

use statefn::{Durability, Runtime};

use super::{Common, Mode};
use crate::{
    counter::{Counter, CounterKeys},
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
                let (summary, prebuilt) = run_one(&args.common, mode, keys, callers).await?;
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
                record.emit();
            }
        }
    }
    Ok(())
}

/// One run: open, drive, shut down. Returns whether handles were prebuilt.
async fn run_one(
    common: &Common,
    mode: Mode,
    keys: u64,
    callers: usize,
) -> Result<(Summary, bool), BoxError> {
    let builder = Runtime::builder().register::<Counter>();
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
    let summary = closed_loop(callers, common.window(), &label, move |random| {
        let call = space.add_one(random);
        async move {
            call.await?;
            Ok(())
        }
    })
    .await;
    runtime.shutdown().await?;
    drop(scratch);
    Ok((summary?, prebuilt))
}
