//! `http`: the bank server under a closed loop of HTTP/1.1 callers, against
//! a no-op axum endpoint (the HTTP floor) in the same run.
//!
//! Both servers are child processes started once (see
//! [`crate::http::servers`]); for each concurrency the floor, the bank
//! under this crate's load generator, and the bank under the shared
//! `loadgen` run back to back, so each ratio is between numbers taken
//! seconds apart. The raw `fdatasync` p50 of the data dir is measured first:
//! with it the C=1 target (`floor p50 + fdatasync p50 + 0.2 ms`) is computed
//! from this run's own numbers.

use std::{path::PathBuf, time::Instant};

use bytes::Bytes;

use super::{Common, floor};
use crate::{
    diagnose::process_cpu_s,
    http::{
        client,
        external::{self, Route},
        servers::ServerProcess,
    },
    measure::{BoxError, Record, Window, ratio},
    scratch::Scratch,
};

/// The C=1 latency allowance over floor + fdatasync that issue 6 sets.
const C1_ALLOWANCE_MS: f64 = 0.2;

/// Options of the `http` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Shared options; the bank's data dir is a subdirectory of `--data-dir`.
    #[command(flatten)]
    pub common: Common,
    /// Concurrent connections (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 32, 128])]
    pub callers: Vec<usize>,
    /// Accounts the deposits are spread over.
    #[arg(long, default_value_t = 1_000)]
    pub keys: u64,
    /// The bank binary (default: `bank` next to this binary; build it with
    /// `cargo build --release -p statefn-examples --bin bank`).
    #[arg(long)]
    pub bank_bin: Option<PathBuf>,
    /// The shared `loadgen` binary; without it those rows are skipped.
    #[arg(long)]
    pub loadgen: Option<PathBuf>,
}

/// Runs the scenario.
///
/// # Errors
///
/// A server that does not start, or a failed request.
pub async fn run(args: &HttpArgs) -> Result<(), BoxError> {
    let window = args.common.window();
    let bank_bin = match &args.bank_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("bank"),
    };
    Record::print_header();
    let fdatasync_p50 = fdatasync_p50(&args.common)?;
    let noop = ServerProcess::noop().await?;
    let data = Scratch::new(&args.common.data_dir, "http-bank")?;
    let bank = ServerProcess::bank(&bank_bin, data.path()).await?;
    for &callers in &args.callers {
        let floor = Record::new(
            "http",
            "floor: axum noop",
            &client::run(noop_target(&noop), callers, window, &label("noop", callers)).await?,
        )
        .param("callers", callers);
        floor.emit();
        let target = bank_target(&bank, args.keys);
        let cpu_before = cpu_now(&bank);
        let summary = client::run(target, callers, window, &label("bank", callers)).await?;
        let (server_cores, client_cores) = cores_busy(&bank, cpu_before);
        let mut bank_record = Record::new("http", "bank", &summary)
            .param("keys", args.keys)
            .param("callers", callers)
            .field(
                "throughput_ratio_vs_floor",
                ratio(summary.ops_per_s(), floor.throughput_per_s()),
            );
        bank_record = bank_record
            .field("server_cores", server_cores)
            .field("client_cores", client_cores);
        let p50 = bank_record.p50_ms();
        bank_record = bank_record.field("p50_minus_floor_ms", p50 - floor.p50_ms());
        if callers == 1 {
            let budget = floor.p50_ms() + fdatasync_p50 + C1_ALLOWANCE_MS;
            bank_record = bank_record
                .field("fdatasync_p50_ms", fdatasync_p50)
                .field("c1_budget_ms", budget);
        }
        bank_record.emit();
        if let Some(loadgen) = &args.loadgen {
            // Like with like: the floor under the same load generator.
            let (loadgen_floor, _) =
                external::loadgen(loadgen, noop.addr(), Route::Noop, callers, 1, window).await?;
            loadgen_floor.emit();
            let (record, _) = external::loadgen(
                loadgen,
                bank.addr(),
                Route::BankDeposit,
                callers,
                args.keys,
                window,
            )
            .await?;
            let per_s = record.throughput_per_s();
            record
                .field(
                    "throughput_ratio_vs_floor",
                    ratio(per_s, loadgen_floor.throughput_per_s()),
                )
                .field(
                    "throughput_ratio_vs_our_client_floor",
                    ratio(per_s, floor.throughput_per_s()),
                )
                .emit();
        }
    }
    bank.stop().await?;
    noop.stop().await?;
    Ok(())
}

/// The data dir's raw append+fdatasync median, measured for 2 s.
fn fdatasync_p50(common: &Common) -> Result<f64, BoxError> {
    let scratch = Scratch::new(&common.data_dir, "http-fdatasync")?;
    let window = Window {
        warmup: std::time::Duration::from_millis(200),
        duration: std::time::Duration::from_secs(2),
    };
    let summary = floor::append_fdatasync(&scratch.path().join("append"), 256, window)?;
    let record = Record::new("http", "floor: append+fdatasync", &summary).param("bytes", 256);
    record.emit();
    // The log overwrites zeros written ahead (preallocated segments).
    let summary = floor::overwrite_fdatasync(&scratch.path().join("overwrite"), 256, window)?;
    Record::new("http", "floor: overwrite+fdatasync", &summary)
        .param("bytes", 256)
        .emit();
    Ok(record.p50_ms())
}

/// CPU seconds of the server and of this process, and when they were read.
fn cpu_now(server: &ServerProcess) -> (f64, f64, Instant) {
    let server_s = server.pid().map_or(0.0, process_cpu_s);
    (server_s, process_cpu_s(std::process::id()), Instant::now())
}

/// Cores the server and this process (the load generator) kept busy since
/// `before`: whether the server or the client is the bottleneck.
fn cores_busy(server: &ServerProcess, before: (f64, f64, Instant)) -> (f64, f64) {
    let (server_s, client_s, at) = cpu_now(server);
    let wall = at.duration_since(before.2).as_secs_f64().max(1e-9);
    ((server_s - before.0) / wall, (client_s - before.1) / wall)
}

fn noop_target(server: &ServerProcess) -> client::Target {
    client::Target {
        addr: server.addr(),
        path_template: "/noop".into(),
        keys: 1,
        body: Bytes::from_static(br#"{"amount":1}"#),
    }
}

fn bank_target(server: &ServerProcess, keys: u64) -> client::Target {
    client::Target {
        addr: server.addr(),
        path_template: "/v1/Account/a{key}/deposit".into(),
        keys,
        body: Bytes::from_static(br#"{"amount":1}"#),
    }
}

fn label(what: &str, callers: usize) -> String {
    format!("http {what} callers={callers}")
}
