//! `statefn-bench`: runs one benchmark scenario and prints, per result, a
//! table row and a JSON line.
//!
//! ```sh
//! cargo run --release -p statefn-benches --bin statefn-bench -- floor
//! cargo run --release -p statefn-benches --bin statefn-bench -- embedded --keys 1000 --callers 64
//! cargo run --release -p statefn-benches --bin statefn-bench -- actors
//! cargo run --release -p statefn-benches --bin statefn-bench -- http --loadgen PATH
//! cargo run --release -p statefn-benches --bin statefn-bench -- recovery
//! cargo run --release -p statefn-benches --bin statefn-bench -- scale
//! cargo run --release -p statefn-benches --bin statefn-bench -- timers
//! cargo run --release -p statefn-benches --bin statefn-bench -- jetstream
//! cargo run --release -p statefn-benches --bin statefn-bench -- cluster
//! cargo run --release -p statefn-benches --bin statefn-bench -- plot --input results.txt
//! ```

use std::net::SocketAddr;

use clap::{Parser, Subcommand};
use statefn_benches::{
    http::servers::serve_noop,
    measure::BoxError,
    plot,
    scenarios::{
        Common, actors, cluster, embedded, floor, http, jetstream, recovery, scale, timers,
    },
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
    /// The bank over HTTP against a no-op axum endpoint.
    Http(http::HttpArgs),
    /// Reopen time after a crash; healthy shards while a log group recovers.
    Recovery(recovery::RecoveryArgs),
    /// Millions of instances with a cache a tenth of their state.
    Scale(scale::ScaleArgs),
    /// Millions of pending durable timers (`expire_after` on every
    /// instance): memory and checkpoint cost.
    Timers(timers::TimersArgs),
    /// NATS JetStream facts for cluster mode: fencing, dedup, latency,
    /// failover, KV, object store, reads (starts its own nats-servers).
    Jetstream(jetstream::JetStreamArgs),
    /// The bank as 3 nodes on 3 NATS servers beside 1 node: keyed HTTP
    /// deposits (throughput, p50, p99, share forwarded) and the failover
    /// gap after SIGKILLs (starts its own nats-servers and bank nodes).
    Cluster(cluster::ClusterArgs),
    /// SVG charts from saved output.
    Plot(plot::PlotArgs),
    /// The HTTP floor's server (started by `http` as a child process).
    #[command(hide = true)]
    ServeNoop {
        /// Where to listen; port 0 picks one (printed).
        #[arg(long)]
        listen: SocketAddr,
    },
    /// The reopening child of `timers`.
    #[command(hide = true)]
    TimersReopen(timers::ReopenArgs),
    /// The crashing child of `recovery`.
    #[command(hide = true)]
    Populate(recovery::PopulateArgs),
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
        Scenario::Http(args) => {
            warn_if_not_real_disk(&args.common.data_dir);
            tokio.block_on(http::run(args))
        }
        Scenario::Recovery(args) => {
            warn_if_not_real_disk(&args.common.data_dir);
            tokio.block_on(recovery::run(args))
        }
        Scenario::Scale(args) => {
            warn_if_not_real_disk(&args.common.data_dir);
            tokio.block_on(scale::run(args))
        }
        Scenario::Timers(args) => {
            warn_if_not_real_disk(&args.common.data_dir);
            tokio.block_on(timers::run(args))
        }
        Scenario::TimersReopen(args) => tokio.block_on(timers::reopen(args)),
        Scenario::Jetstream(args) => jetstream::run(args, &tokio),
        Scenario::Cluster(args) => {
            warn_if_not_real_disk(&args.common.data_dir);
            tokio.block_on(cluster::run(args))
        }
        Scenario::Plot(args) => plot::run(args),
        Scenario::ServeNoop { listen } => tokio.block_on(serve_noop(*listen)),
        Scenario::Populate(args) => tokio.block_on(recovery::reopen::populate(args)),
    }
}
