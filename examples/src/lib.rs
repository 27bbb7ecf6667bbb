//! Example applications built on statefn. The binaries in `src/bin/` run
//! them; the function types live here so tests and benchmarks reuse them.

pub mod bank;
pub mod cart;
