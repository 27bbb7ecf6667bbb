//! The whole in-memory call path, and its encoding steps alone.
//!
//! `encode_message` is the first thing every call does and `decode_message`
//! the first thing its shard does (the stored form: the handler's name and
//! argument fingerprint, then the arguments); `*_positional` is the plain
//! postcard form of the message enum that releases before named messages
//! stored, for the ratio within one run. `invoke` is the rest: the call
//! through a `Handle` on an in-memory runtime with one caller, so no
//! batching hides the per-call cost.

use criterion::{Criterion, criterion_group, criterion_main};
use statefn::Runtime;
use statefn_benches::{Counter, counter::CounterMessage};
use std::hint::black_box;

fn encode(c: &mut Criterion) {
    let message = CounterMessage::Add { by: 1 };
    c.bench_function("dispatch/encode_message", |b| {
        b.iter(|| {
            statefn::encode_message::<Counter>(black_box(&message))
                .expect("a counter message encodes")
        });
    });
    c.bench_function("dispatch/encode_positional", |b| {
        b.iter(|| postcard::to_allocvec(black_box(&message)).expect("a counter message encodes"));
    });
    let named = statefn::encode_message::<Counter>(&message).expect("encodes");
    c.bench_function("dispatch/decode_message", |b| {
        b.iter(|| {
            statefn::decode_message::<Counter>(black_box(&named))
                .expect("a counter message decodes")
        });
    });
    let positional = postcard::to_allocvec(&message).expect("encodes");
    c.bench_function("dispatch/decode_positional", |b| {
        b.iter(|| {
            postcard::from_bytes::<CounterMessage>(black_box(&positional))
                .expect("a counter message decodes")
        });
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
