#![no_main]
//! See `harness::log_record_decode` for what is checked.

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../src/harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::log_record_decode(data));
