//! A seam to make the state store (fjall) fail on command, for tests of
//! what a runtime does when its checkpoints or egress appends cannot be
//! written.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use crate::{Error, error::StorageError};

/// Faults injected into the runtime's state-store writes (checkpoints and
/// egress appends).
/// Clones share one configuration; a runtime built without one never fails
/// here.
///
/// # Examples
///
// The example needs the test kit: it runs with `--features testing`
// (as `cargo test --workspace` does).
#[cfg_attr(feature = "testing", doc = "```")]
#[cfg_attr(not(feature = "testing"), doc = "```ignore")]
/// # use serde::{Deserialize, Serialize};
/// # use statefn::prelude::*;
/// # #[stateful_function]
/// # #[derive(Default, Serialize, Deserialize)]
/// # pub struct Counter { n: u64 }
/// # #[stateful_function]
/// # impl Counter { #[handler] pub fn add(&mut self, by: u64) -> u64 { self.n += by; self.n } }
/// use statefn::testing::{StoreFaults, TestRuntime};
///
/// let faults = StoreFaults::default();
/// let mut rt = TestRuntime::builder()
///     .shards(1)
///     .store_faults(faults.clone())
///     .register::<Counter>()
///     .start()?;
/// faults.fail_writes();
/// rt.call(rt.handle::<Counter>("c").add(1))?; // the log has it
/// rt.checkpoint();
/// assert_eq!(faults.failed_writes(), 1);
/// assert_eq!(rt.runtime().shard_status()[0].checkpoint_failures, 1);
/// # Ok::<(), statefn::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct StoreFaults {
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    fail: AtomicBool,
    failed: AtomicU64,
}

impl StoreFaults {
    /// Makes every checkpoint write and egress append fail from now on, as a full disk or a
    /// poisoned store would, until [`heal`](Self::heal).
    pub fn fail_writes(&self) {
        self.state.fail.store(true, Ordering::SeqCst);
    }

    /// Writes succeed again.
    pub fn heal(&self) {
        self.state.fail.store(false, Ordering::SeqCst);
    }

    /// How many writes failed here so far.
    pub fn failed_writes(&self) -> u64 {
        self.state.failed.load(Ordering::SeqCst)
    }

    /// Fails `doing` if writes are to fail.
    pub(crate) fn check(&self, doing: &str) -> Result<(), Error> {
        if !self.state.fail.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.state.failed.fetch_add(1, Ordering::SeqCst);
        Err(StorageError::Io {
            doing: format!("{doing} (injected state-store fault)"),
            source: Arc::new(std::io::Error::other("injected state-store fault")),
        }
        .into())
    }
}
