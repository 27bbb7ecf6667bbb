//! Benchmarks for statefn (see BENCHMARKS.md).
