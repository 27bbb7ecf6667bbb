#![no_main]
//! See `harness::wal_recovery` for what is checked.

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../src/harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::wal_recovery(data));
