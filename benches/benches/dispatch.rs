//! The whole in-memory call path, and its encoding step alone.
//!
//! `encode` is the first thing every call does (the generated message enum
//! through postcard); `invoke` is the rest: the call through a `Handle` on an
//! in-memory runtime with one caller, so no batching hides the per-call cost.

use criterion::{Criterion, criterion_group, criterion_main};
use statefn::Runtime;
use statefn_benches::{Counter, counter::CounterMessage};
use std::hint::black_box;

fn encode(c: &mut Criterion) {
    let message = CounterMessage::Add { by: 1 };
    c.bench_function("dispatch/encode_message", |b| {
        b.iter(|| postcard::to_allocvec(black_box(&message)).expect("a counter message encodes"));
    });
}

fn invoke(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let runtime = tokio
        .block_on(Runtime::builder().in_memory().register::<Counter>().open())
        .expect("an in-memory runtime opens");
    let counter = runtime.handle::<Counter>("k0");
    c.bench_function("dispatch/invoke_in_memory_1_caller", |b| {
        b.to_async(&tokio)
            .iter(|| async { counter.add(black_box(1)).await.expect("the call succeeds") });
    });
    tokio
        .block_on(runtime.shutdown())
        .expect("the runtime shuts down");
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = encode, invoke
}
criterion_main!(benches);
