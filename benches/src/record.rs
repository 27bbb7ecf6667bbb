//! One result: a human-readable table row plus one JSON line.
//!
//! Quantiles are taken from the histogram when the record is made, so a
//! record can also carry numbers measured elsewhere (the external `loadgen`
//! reports only percentiles). Every JSON line carries a coarse CDF
//! (`cdf_ms`), which is what `statefn-bench plot` draws latency
//! distributions from: the JSON lines are the only data the plots need.

use serde_json::{Map, Value, json};

use crate::measure::{Latencies, Summary};

/// Quantiles written as the CDF of every record: dense in the tail, where
/// durable systems differ.
const CDF_QUANTILES: [f64; 17] = [
    0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999, 1.0,
];

/// Latency percentiles of one result, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Quantiles {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Samples the percentiles are over.
    pub samples: u64,
    /// `(quantile, ms)` pairs; empty when only percentiles are known.
    pub cdf: Vec<(f64, f64)>,
}

impl Quantiles {
    /// The quantiles of a histogram.
    pub fn of(latencies: &Latencies) -> Quantiles {
        Quantiles {
            p50_ms: latencies.quantile_ms(0.5),
            p99_ms: latencies.quantile_ms(0.99),
            p999_ms: latencies.quantile_ms(0.999),
            samples: latencies.len(),
            cdf: CDF_QUANTILES
                .iter()
                .map(|&q| (q, latencies.quantile_ms(q)))
                .collect(),
        }
    }
}

/// One result, printed by [`Record::emit`] (find the JSON lines with
/// `grep '^{'`).
#[derive(Debug, Clone)]
pub struct Record {
    scenario: &'static str,
    variant: String,
    params: Map<String, Value>,
    throughput_per_s: f64,
    quantiles: Quantiles,
    extra: Map<String, Value>,
}

impl Record {
    /// A result whose throughput is the summary's operations per second.
    pub fn new(scenario: &'static str, variant: impl Into<String>, summary: &Summary) -> Record {
        Record::from_quantiles(
            scenario,
            variant,
            summary.ops_per_s(),
            Quantiles::of(&summary.latencies),
        )
    }

    /// A result measured elsewhere (an external tool, a timed operation).
    pub fn from_quantiles(
        scenario: &'static str,
        variant: impl Into<String>,
        throughput_per_s: f64,
        quantiles: Quantiles,
    ) -> Record {
        Record {
            scenario,
            variant: variant.into(),
            params: Map::new(),
            throughput_per_s,
            quantiles,
            extra: Map::new(),
        }
    }

    /// Adds a parameter of the run (keys, callers, batch size...).
    pub fn param(mut self, name: &str, value: impl Into<Value>) -> Record {
        self.params.insert(name.to_owned(), value.into());
        self
    }

    /// Adds a top-level field (a ratio, a second throughput...).
    pub fn field(mut self, name: &str, value: f64) -> Record {
        self.extra.insert(name.to_owned(), json!(round(value, 4)));
        self
    }

    /// Overrides the throughput, for results counted in items rather than
    /// operations (a batch of 64 writes is 64 items).
    pub fn throughput(mut self, per_s: f64) -> Record {
        self.throughput_per_s = per_s;
        self
    }

    /// The throughput this record reports.
    pub fn throughput_per_s(&self) -> f64 {
        self.throughput_per_s
    }

    /// The median latency, in milliseconds.
    pub fn p50_ms(&self) -> f64 {
        self.quantiles.p50_ms
    }

    /// The 99th percentile latency, in milliseconds.
    pub fn p99_ms(&self) -> f64 {
        self.quantiles.p99_ms
    }

    /// Prints the column headers of [`Record::emit`]'s rows.
    pub fn print_header() {
        println!(
            "{:<9} {:<26} {:<30} {:>12} {:>9} {:>9} {:>9} {:>9}  extra",
            "scenario", "variant", "params", "per_s", "p50_ms", "p99_ms", "p999_ms", "samples"
        );
    }

    /// Prints the table row, then the JSON line.
    pub fn emit(&self) {
        let q = &self.quantiles;
        println!(
            "{:<9} {:<26} {:<30} {:>12.1} {:>9.3} {:>9.3} {:>9.3} {:>9}  {}",
            self.scenario,
            self.variant,
            join(&self.params),
            self.throughput_per_s,
            q.p50_ms,
            q.p99_ms,
            q.p999_ms,
            q.samples,
            join(&self.extra),
        );
        println!("{}", self.json());
    }

    /// The JSON object of this result.
    pub fn json(&self) -> Value {
        let q = &self.quantiles;
        let mut object = Map::new();
        object.insert("scenario".into(), json!(self.scenario));
        object.insert("variant".into(), json!(self.variant));
        object.insert("params".into(), Value::Object(self.params.clone()));
        object.insert(
            "throughput_per_s".into(),
            json!(round(self.throughput_per_s, 1)),
        );
        object.insert("p50_ms".into(), json!(round(q.p50_ms, 4)));
        object.insert("p99_ms".into(), json!(round(q.p99_ms, 4)));
        object.insert("p999_ms".into(), json!(round(q.p999_ms, 4)));
        object.insert("samples".into(), json!(q.samples));
        object.extend(self.extra.clone());
        if !q.cdf.is_empty() {
            let cdf: Vec<Value> = q
                .cdf
                .iter()
                .map(|&(quantile, ms)| json!([quantile, round(ms, 4)]))
                .collect();
            object.insert("cdf_ms".into(), Value::Array(cdf));
        }
        Value::Object(object)
    }
}

/// `a=1 b=2`, strings without quotes.
fn join(map: &Map<String, Value>) -> String {
    map.iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Rounds to `digits` decimals, so JSON lines stay readable.
fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// `a / b`, or NaN-free 0 when `b` is 0.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}
