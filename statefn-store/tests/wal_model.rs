//! Property test: any sequence of append / write / sync / truncate / reopen
//! behaves like a simple in-memory model of the log.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use proptest::prelude::*;
use statefn_store::{LogRecord, Lsn, PendingSync};

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    Write,
    Sync,
    /// Truncate before `written_last + 1 - back` (a checkpoint somewhere
    /// behind the written end).
    Truncate {
        back: u8,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(any::<u8>(), 0..48).prop_map(Op::Append),
        3 => Just(Op::Write),
        2 => Just(Op::Sync),
        1 => any::<u8>().prop_map(|back| Op::Truncate { back: back % 16 }),
        1 => Just(Op::Reopen),
    ]
}

/// What the log should contain.
#[derive(Debug, Default)]
struct Model {
    /// Records handed to the OS (they survive a reopen on a real file system).
    written: Vec<(Lsn, Vec<u8>)>,
    buffered: Vec<Vec<u8>>,
    /// Replay position: the highest truncation point so far.
    from: u64,
}

impl Model {
    fn written_last(&self) -> u64 {
        self.written.last().map_or(0, |(lsn, _)| lsn.0)
    }

    fn visible(&self) -> Vec<LogRecord> {
        self.written
            .iter()
            .filter(|(lsn, _)| lsn.0 >= self.from)
            .map(|(lsn, payload)| LogRecord {
                lsn: *lsn,
                payload: payload.clone(),
            })
            .collect()
    }
}

fn run(ops: Vec<Op>, segment_bytes: u64, preallocate: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = small_segments(segment_bytes);
    if !preallocate {
        opts.preallocate_bytes = 0;
    }
    let mut model = Model {
        from: 1,
        ..Model::default()
    };
    let (mut wal, recovered) = open(dir.path(), opts, 1);
    assert!(recovered.is_empty());
    let mut pending: Option<PendingSync> = None;

    for op in ops {
        match op {
            Op::Append(payload) => {
                let lsn = wal.append(&payload);
                let want = model.written_last() + model.buffered.len() as u64 + 1;
                assert_eq!(lsn, Lsn(want));
                model.buffered.push(payload);
            }
            Op::Write => {
                let first = model.written_last() + 1;
                for (i, payload) in model.buffered.drain(..).enumerate() {
                    model.written.push((Lsn(first + i as u64), payload));
                }
                let written = wal.write().unwrap();
                assert_eq!(written.up_to(), Lsn(model.written_last()));
                match &mut pending {
                    Some(p) => p.merge(written),
                    None => pending = Some(written),
                }
            }
            Op::Sync => {
                if let Some(p) = pending.take() {
                    assert_eq!(p.sync().unwrap(), Lsn(model.written_last()));
                }
            }
            Op::Truncate { back } => {
                let lsn = (model.written_last() + 1)
                    .saturating_sub(u64::from(back))
                    .max(1);
                wal.truncate_before(Lsn(lsn)).unwrap();
                model.from = model.from.max(lsn);
                let files = segments(dir.path());
                assert_eq!(files.len(), wal.segment_count());
                // Every segment fully below the checkpoint is gone...
                if let Some(second) = files.get(1) {
                    assert!(first_lsn(second) > lsn);
                }
                // ...and no needed record went with it.
                assert!(first_lsn(&files[0]) <= model.from.min(model.written_last() + 1));
            }
            Op::Reopen => {
                drop(pending.take());
                drop(wal);
                model.buffered.clear();
                let (reopened, recovered) = open(dir.path(), opts, model.from);
                assert_eq!(recovered, model.visible());
                assert_eq!(reopened.next_lsn(), Lsn(model.written_last() + 1));
                wal = reopened;
            }
        }
        // The log counts its records, not the zeros written ahead of them
        // (only in the active segment, never past the segment size).
        let files = segments(dir.path());
        let on_disk: u64 = files.iter().map(|f| file_len(f)).sum();
        if preallocate {
            assert!(wal.size_bytes() <= on_disk);
            assert!(on_disk - wal.size_bytes() <= segment_bytes.max(HEADER_LEN));
        } else {
            assert_eq!(wal.size_bytes(), on_disk);
        }
    }

    drop(pending);
    drop(wal);
    let (_, recovered) = open(dir.path(), opts, model.from);
    assert_eq!(recovered, model.visible());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(
        ops in prop::collection::vec(op(), 1..80),
        segment_bytes in prop_oneof![Just(0u64), 40u64..400, Just(1 << 20)],
        preallocate in any::<bool>(),
    ) {
        run(ops, segment_bytes, preallocate);
    }
}
