//! How many heap allocations one in-memory call makes, across every thread
//! of the process (the caller's, the shard worker's): a regression guard
//! for issue 14's per-call CPU, where allocation was ~16% of an in-memory
//! call (glibc's malloc/free, worse when one thread frees what another
//! allocated). This binary counts allocations with its own global allocator;
//! no time is measured.
//!
//! What one call of a `&mut self` handler with a small reply allocates,
//! one caller at a time (so every call is also a whole batch):
//!
//! | allocation | thread | per |
//! | --- | --- | --- |
//! | the encoded message (`Vec<u8>`, `wire::encode`) | caller | call |
//! | the reply channel (`tokio::sync::oneshot`, one `Arc`) | caller | call |
//! | the encoded reply (`Vec<u8>`) | worker | call |
//! | the batch's reply list (`Effects::replies`) | worker | batch |
//!
//! Four, of which one is shared by every call of a batch under load (the
//! batch's counts by handler were a fifth until their first handler was
//! kept inline: 5.00 then, 4.00 now, issue 14's seventh pass). The
//! new state is encoded into the buffer of the state it replaces (no
//! allocation for a busy instance), the state table clones no address for
//! an instance already in it, and the call's future keeps no address. On
//! main 46bd1cf (before this guard) the same loop made 6.0 allocations a
//! call: the new state's buffer too (callgrind's count of `malloc` calls,
//! `statefn-bench embedded --callers 1 --mode in-memory`, agrees: 6.01 then,
//! 5.01 now; see BENCHMARKS.md, "Issue 14, sixth pass").

use serde::{Deserialize, Serialize};
use statefn::prelude::*;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

/// The system allocator, counting what every thread allocates.
#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

#[stateful_function]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Counter {
    n: u64,
}

#[stateful_function]
impl Counter {
    #[handler]
    fn add(&mut self, by: u64) -> u64 {
        self.n += by;
        self.n
    }
}

const KEYS: u64 = 8;
const CALLS: u64 = 4_000;
/// The four of the table in the module doc, and a quarter for what other
/// threads of the runtime may allocate meanwhile (none was seen).
const MOST_PER_CALL: f64 = 4.25;

#[tokio::test(flavor = "current_thread")]
async fn an_in_memory_call_allocates_its_message_reply_channel_reply_and_batch_lists_only()
-> Result<(), Error> {
    let runtime = Runtime::builder()
        .in_memory()
        .workers(1)
        .shards(1)
        .register::<Counter>()
        .open()
        .await?;
    let handles: Vec<_> = (0..KEYS)
        .map(|k| runtime.handle::<Counter>(format!("c-{k}")))
        .collect();
    // Warm: every instance written (and rewritten) once, queues grown.
    for round in 1..=4 {
        for handle in &handles {
            assert_eq!(handle.add(1).await?, round);
        }
    }
    let region = Region::new(GLOBAL);
    for i in 0..CALLS {
        let handle = &handles[usize::try_from(i % KEYS).expect("small")];
        handle.add(1).await?;
    }
    let change = region.change();
    // A reallocation is an allocation too (a buffer grown by pushes).
    let made = u64::try_from(change.allocations + change.reallocations).expect("small");
    #[expect(clippy::cast_precision_loss, reason = "small counts")]
    let per_call = made as f64 / CALLS as f64;
    println!("{per_call:.2} allocations per call ({made} in {CALLS} calls)");
    assert!(
        per_call <= MOST_PER_CALL,
        "{per_call:.2} allocations per in-memory call, more than the {MOST_PER_CALL} explained \
         in this file's doc: something on the call path allocates again"
    );
    // And the calls did what they should.
    for handle in &handles {
        assert_eq!(handle.add(0).await?, 4 + CALLS / KEYS);
    }
    runtime.shutdown().await
}
