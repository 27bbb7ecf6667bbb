#![no_main]
//! See `harness::message_decode` for what is checked. Handlers may panic (the runtime
//! catches it); only a panic escaping the entry point is a crash.

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../src/harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::abort_on_escaping_panic(|| harness::message_decode(data)));
