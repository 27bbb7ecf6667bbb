//! Benchmarks for statefn (see BENCHMARKS.md).
//!
//! Two entry points share this library:
//!
//! - the scenario runner `statefn-bench` (`src/main.rs`), which measures
//!   end-to-end throughput and latency percentiles against the physical
//!   limits of the machine (`floor`) and against a baseline actor framework
//!   (`actors`), printing a table row and a JSON line per result; `plot`
//!   turns saved JSON lines into the SVG charts of `benches/plots/`;
//! - the criterion micro-benchmarks in `benches/`, which isolate one cost
//!   each (dispatch, codec, write-ahead log, state cache).

pub mod counter;
pub mod diagnose;
pub mod http;
pub mod measure;
pub mod plot;
pub mod record;
pub mod scenarios;
pub mod scratch;

pub use counter::{Counter, CounterKeys};
