//! The shared `loadgen` tool (`/work/shared/tools/loadgen`, built apart from
//! this workspace): the issue's peer figures (Restate, PostgreSQL) were
//! measured with it, so running it against the bank in the same run makes
//! them comparable like with like. Its one JSON line becomes a [`Record`].

use std::{net::SocketAddr, path::Path};

use serde_json::Value;
use tokio::process::Command;

use crate::{
    measure::{BoxError, Window},
    record::{Quantiles, Record},
};

/// What `loadgen` drives: the bank's deposit route, or the no-op floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/Account/a{key}/deposit` on the bank.
    BankDeposit,
    /// `POST /noop` on `statefn-bench serve-noop`, the same body sent.
    Noop,
}

/// Runs `loadgen` against `route` for `window` and returns its result as an
/// `http` record (no CDF: it reports percentiles only), named
/// `bank (shared loadgen)` or `floor: axum noop (shared loadgen)`.
///
/// # Errors
///
/// The tool could not run, failed, or printed no JSON.
pub async fn loadgen(
    binary: &Path,
    addr: SocketAddr,
    route: Route,
    concurrency: usize,
    keys: u64,
    window: Window,
) -> Result<(Record, Value), BoxError> {
    let (path, variant) = match route {
        Route::BankDeposit => ("/v1/Account/{key}/deposit", "bank (shared loadgen)"),
        Route::Noop => ("/noop", "floor: axum noop (shared loadgen)"),
    };
    let output = Command::new(binary)
        .arg("--url-template")
        .arg(format!("http://{addr}{path}"))
        .args(["--body", r#"{"amount":1}"#, "--key-prefix", "a"])
        .args(["--concurrency", &concurrency.to_string()])
        .args(["--keys", &keys.to_string()])
        .args(["--warmup", &window.warmup.as_secs_f64().to_string()])
        .args(["--duration", &window.duration.as_secs_f64().to_string()])
        .output()
        .await?;
    if !output.status.success() {
        return Err(format!(
            "loadgen failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .ok_or("loadgen printed no JSON line")?;
    let result: Value = serde_json::from_str(line)?;
    let number = |name: &str| result.get(name).and_then(Value::as_f64).unwrap_or(0.0);
    let quantiles = Quantiles {
        p50_ms: number("p50_ms"),
        p99_ms: number("p99_ms"),
        p999_ms: number("p999_ms"),
        samples: result.get("requests").and_then(Value::as_u64).unwrap_or(0),
        cdf: Vec::new(),
    };
    let errors = number("errors");
    let record = Record::from_quantiles("http", variant, number("rps"), quantiles)
        .param("callers", concurrency)
        .field("errors", errors);
    let record = match route {
        Route::BankDeposit => record.param("keys", keys),
        Route::Noop => record,
    };
    Ok((record, result))
}
