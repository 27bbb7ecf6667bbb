//! The state cache, durable mode: repeated calls on one key (always cached)
//! against calls spread over 100,000 keys with a cache far smaller than
//! their states (nearly every call loads its state from the store).
//!
//! Both pay one group-committed fdatasync per call (one caller); the
//! difference between them is the cost of a cache miss. The data lives
//! under `$STATEFN_BENCH_DIR` (default `./bench-data`), on the real disk.

use std::{hint::black_box, path::PathBuf, sync::Arc, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use statefn::Runtime;
use statefn_benches::{Counter, CounterKeys, scratch::Scratch};

/// Keys in the spread-out case.
const KEYS: u64 = 100_000;

/// Far below 100,000 states of any encoding: most calls miss.
const CACHE_BYTES: usize = 64 << 10;

/// Callers that write every key once before measuring, so that misses read
/// a stored state rather than find nothing.
const POPULATE_CALLERS: u64 = 256;

fn bench_dir() -> PathBuf {
    std::env::var_os("STATEFN_BENCH_DIR").map_or_else(|| PathBuf::from("bench-data"), PathBuf::from)
}

fn cache(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let scratch = Scratch::new(&bench_dir(), "criterion-cache").expect("a scratch directory");
    let runtime = tokio
        .block_on(
            Runtime::builder()
                .data_dir(scratch.path())
                .cache_bytes(CACHE_BYTES)
                .register::<Counter>()
                .open(),
        )
        .expect("a durable runtime opens");
    let space = Arc::new(CounterKeys::new(&runtime, KEYS));
    tokio.block_on(populate(&space));

    let mut group = c.benchmark_group("cache/durable");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    group.bench_function("one_key", |b| {
        b.to_async(&tokio).iter(|| async {
            space
                .add_one(black_box(0))
                .await
                .expect("the call succeeds")
        });
    });
    let mut rng = SmallRng::seed_from_u64(1);
    group.bench_function("100k_keys_small_cache", |b| {
        b.to_async(&tokio).iter(|| {
            let call = space.add_one(rng.random());
            async { call.await.expect("the call succeeds") }
        });
    });
    group.finish();
    tokio
        .block_on(runtime.shutdown())
        .expect("the runtime shuts down");
}

/// Calls every key once, from many callers so group commit keeps it short.
async fn populate(space: &Arc<CounterKeys>) {
    let tasks = (0..POPULATE_CALLERS).map(|caller| {
        let space = Arc::clone(space);
        tokio::spawn(async move {
            let mut key = caller;
            while key < KEYS {
                space.add_one(key).await.expect("populating succeeds");
                key += POPULATE_CALLERS;
            }
        })
    });
    for task in tasks.collect::<Vec<_>>() {
        task.await.expect("a populating task ran");
    }
}

criterion_group!(benches, cache);
criterion_main!(benches);
