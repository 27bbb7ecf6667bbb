//! The workload's stateful function: a counter per key.
//!
//! It is the smallest handler that still reads, changes and writes state, so
//! what a benchmark of it measures is the framework's per-invocation cost.

use serde::{Deserialize, Serialize};
use statefn::prelude::*;

/// A counter: one `u64` of state per instance.
#[stateful_function]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Counter {
    n: u64,
}

#[stateful_function]
impl Counter {
    /// Adds `by` and returns the new count.
    #[handler]
    pub fn add(&mut self, by: u64) -> u64 {
        self.n += by;
        self.n
    }
}

/// Key spaces up to this size get their handles built once, up front;
/// larger ones build a handle per call so that a million-key run does not
/// spend its memory on handles.
pub const PREBUILT_HANDLES_MAX: u64 = 100_000;

/// Maps a random number to a counter handle in a key space of `len` keys.
///
/// Instances are virtual, so nothing is created here: the first call to a
/// key creates its instance.
#[derive(Debug)]
pub struct CounterKeys {
    runtime: Runtime,
    len: u64,
    prebuilt: Vec<Handle<Counter>>,
}

impl CounterKeys {
    /// A key space of `len` keys (`len >= 1`) on `runtime`.
    pub fn new(runtime: &Runtime, len: u64) -> CounterKeys {
        let len = len.max(1);
        let prebuilt = if len <= PREBUILT_HANDLES_MAX {
            (0..len).map(|k| runtime.handle(key_id(k))).collect()
        } else {
            Vec::new()
        };
        CounterKeys {
            runtime: runtime.clone(),
            len,
            prebuilt,
        }
    }

    /// Whether handles are built once (`true`) or per call.
    pub fn prebuilt(&self) -> bool {
        !self.prebuilt.is_empty()
    }

    /// The number of keys.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always false: a key space has at least one key.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// `add(1)` on the key `random` picks (uniformly, up to a negligible
    /// modulo bias).
    pub fn add_one(&self, random: u64) -> statefn::Call<u64> {
        let key = random % self.len;
        match usize::try_from(key).ok().and_then(|k| self.prebuilt.get(k)) {
            Some(handle) => handle.add(1),
            None => self.runtime.handle::<Counter>(key_id(key)).add(1),
        }
    }
}

/// The instance id of key number `k`.
pub fn key_id(k: u64) -> String {
    format!("k{k}")
}
