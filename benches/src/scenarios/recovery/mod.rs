//! `recovery`: how long a crashed runtime takes to open again, and what a
//! failing, recovering log group costs the shards that keep serving.
//!
//! - [`reopen`]: a child process writes N log records (no checkpoint in
//!   between) and is SIGKILLed; `Runtime::builder().open()` on its data dir
//!   is timed in this process.
//! - [`healthy`]: four shards on four log groups; one group's fsyncs fail
//!   for a while, then heal; healthy-shard latencies are compared across
//!   the phases of one run.

use std::{path::PathBuf, time::Duration};

use statefn::{Builder, Runtime};

use super::Common;
use crate::{
    counter::Counter,
    measure::{BoxError, Record},
};

pub mod healthy;
pub mod reopen;

/// Options of the `recovery` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct RecoveryArgs {
    /// Shared options (`--duration` is each phase of the healthy-shard run).
    #[command(flatten)]
    pub common: Common,
    /// Log records since the last checkpoint (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', default_values_t = [10_000, 100_000, 1_000_000])]
    pub records: Vec<u64>,
    /// Records in the failing group's log before it fails, so that its
    /// recovery replays real work while the healthy shards are measured.
    #[arg(long, default_value_t = 100_000)]
    pub victim_records: u64,
    /// Callers on the healthy shards.
    #[arg(long, default_value_t = 32)]
    pub callers: usize,
    /// Skip the reopen timings.
    #[arg(long)]
    pub skip_reopen: bool,
    /// Skip the healthy-shard run.
    #[arg(long)]
    pub skip_healthy: bool,
}

/// Options of the hidden `populate` subcommand (the child that crashes).
#[derive(Debug, Clone, clap::Args)]
pub struct PopulateArgs {
    /// The data dir to write.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Invocations (= log records) to commit.
    #[arg(long)]
    pub records: u64,
}

/// Keys of the counters the records go to: few enough that no
/// dirty-bytes checkpoint starts (a shard's threshold is at least 1 MiB).
pub const KEYS: u64 = 1_000;

/// Never checkpoint on time or log size during the run: every record stays
/// in the log, to be replayed.
fn without_checkpoints(builder: Builder) -> Builder {
    builder
        .register::<Counter>()
        .checkpoint_interval(Duration::from_secs(24 * 60 * 60))
        .checkpoint_log_bytes(u64::MAX / 2)
}

/// Runs the scenario.
///
/// # Errors
///
/// Any runtime, I/O or process error.
pub async fn run(args: &RecoveryArgs) -> Result<(), BoxError> {
    Record::print_header();
    if !args.skip_reopen {
        for &records in &args.records {
            reopen::run(&args.common, records).await?;
        }
    }
    if !args.skip_healthy {
        healthy::run(args).await?;
    }
    Ok(())
}

/// Opens a runtime on `args.data_dir` and returns it for [`reopen::populate`].
async fn open_for_populate(args: &PopulateArgs) -> Result<Runtime, BoxError> {
    let runtime = without_checkpoints(Runtime::builder().data_dir(&args.data_dir))
        .durability(reopen::POPULATE_DURABILITY)
        .open()
        .await?;
    Ok(runtime)
}
