//! `statefn-bench`: runs one benchmark scenario and prints, per result, a
//! table row and a JSON line.
//!
//! ```sh
//! cargo run --release -p statefn-benches --bin statefn-bench -- floor
//! cargo run --release -p statefn-benches --bin statefn-bench -- embedded --keys 1000 --callers 64
//! cargo run --release -p statefn-benches --bin statefn-bench -- actors
//! ```

use clap::{Parser, Subcommand};
use statefn_benches::{
    measure::BoxError,
    scenarios::{Common, actors, embedded, floor},
    scratch::warn_if_not_real_disk,
};

/// Benchmarks statefn against the disk's limits and a baseline.
#[derive(Debug, Parser)]
#[command(name = "statefn-bench", version)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Raw append+fdatasync and synced fjall batches: the physical limits.
    Floor(Common),
    /// Counter increments through the Rust API, durable and in-memory.
    Embedded(embedded::EmbeddedArgs),
    /// statefn in-memory against kameo actors on the same workload.
    Actors(actors::ActorsArgs),
}

/// Callers run on two tokio worker threads (the machine's cores, and a
/// fixed number so results compare across machines of that size); statefn
/// adds its own worker threads for handlers.
const TOKIO_WORKERS: usize = 2;

fn main() -> Result<(), BoxError> {
    let cli = Cli::parse();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(TOKIO_WORKERS)
        .enable_all()
        .build()?;
    match &cli.scenario {
        Scenario::Floor(common) => {
            warn_if_not_real_disk(&common.data_dir);
            floor::run(common)
        }
        Scenario::Embedded(args) => {
            warn_if_not_real_disk(&args.common.data_dir);
            tokio.block_on(embedded::run(args))
        }
        Scenario::Actors(args) => tokio.block_on(actors::run(args)),
    }
}
