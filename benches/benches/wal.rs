//! The write-ahead log's costs, split: `append` + `write` (buffer and hand to
//! the OS) for batches of 1, 64 and 256 records, and the same plus `sync`
//! (the fdatasync one group commit pays).
//!
//! The log lives under `$STATEFN_BENCH_DIR` (default `./bench-data`, on the
//! real disk: a tmpfs would make `sync` free). It is truncated outside the
//! timed region whenever it grows past a few segments.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use statefn_benches::scratch::Scratch;
use statefn_store::{Lsn, StdFs, Wal, WalOptions};

/// A typical small invocation record.
const RECORD: [u8; 128] = [0x5A; 128];

/// Truncate once the log holds this much, to keep disk use bounded.
const MAX_LOG_BYTES: u64 = 64 << 20;

fn bench_dir() -> PathBuf {
    std::env::var_os("STATEFN_BENCH_DIR").map_or_else(|| PathBuf::from("bench-data"), PathBuf::from)
}

/// Times `iters` batches of `records` appends and a write, optionally synced.
fn run(wal: &mut Wal, records: usize, sync: bool, iters: u64) -> Duration {
    let mut timed = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        for _ in 0..records {
            wal.append(&RECORD);
        }
        let pending = wal.write().expect("the log writes");
        if sync {
            pending.sync().expect("the log syncs");
        } else {
            // Not synced on purpose: this variant measures buffering only.
            drop(pending);
        }
        timed += start.elapsed();
        if wal.size_bytes() > MAX_LOG_BYTES {
            wal.truncate_before(wal.next_lsn())
                .expect("the log truncates");
        }
    }
    timed
}

fn wal(c: &mut Criterion) {
    let scratch = Scratch::new(&bench_dir(), "criterion-wal").expect("a scratch directory");
    let options = WalOptions {
        segment_bytes: 8 << 20,
        ..WalOptions::default()
    };
    let (mut wal, _) =
        Wal::open(Arc::new(StdFs), scratch.path(), options, Lsn(1)).expect("the log opens");
    for (name, sync) in [("append_write", false), ("append_write_sync", true)] {
        let mut group = c.benchmark_group(format!("wal/{name}"));
        if sync {
            group.measurement_time(Duration::from_secs(3));
        }
        for records in [1usize, 64, 256] {
            group.throughput(Throughput::Elements(records as u64));
            group.bench_function(BenchmarkId::from_parameter(records), |b| {
                b.iter_custom(|iters| run(&mut wal, records, sync, iters));
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1));
    targets = wal
}
criterion_main!(benches);
