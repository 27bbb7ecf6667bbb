//! postcard encoding and decoding of instance state: paid on every state
//! load from disk and every checkpoint write, so its size dependence matters.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use std::hint::black_box;

/// A counter-sized state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Small {
    n: u64,
}

/// A state of about 1 KiB: a few fields and a byte payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Kib {
    id: String,
    version: u64,
    tags: Vec<String>,
    payload: Vec<u8>,
}

fn kib() -> Kib {
    Kib {
        id: "account-000042".to_owned(),
        version: 7,
        tags: vec!["gold".to_owned(), "eu-west".to_owned()],
        payload: (0..960u32).map(|i| (i % 251) as u8).collect(),
    }
}

fn bench_state<T>(c: &mut Criterion, name: &str, state: &T)
where
    T: Serialize + for<'de> Deserialize<'de>,
{
    let bytes = postcard::to_allocvec(state).expect("the state encodes");
    let mut group = c.benchmark_group(format!("codec/{name}"));
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("encode", |b| {
        b.iter(|| postcard::to_allocvec(black_box(state)).expect("the state encodes"));
    });
    group.bench_function("decode", |b| {
        b.iter(|| postcard::from_bytes::<T>(black_box(&bytes)).expect("the state decodes"));
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    bench_state(c, "small", &Small { n: 42 });
    bench_state(c, "1kib", &kib());
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = codec
}
criterion_main!(benches);
