//! Replays every input kept from fuzzing (`fuzz/`) through the same harness
//! the fuzz targets use, so the regressions run in a plain `cargo test` on
//! stable. Each directory of `tests/fuzz_inputs/` holds the seed corpus of one
//! target plus every crashing input the fuzzer found (`crash-*`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use statefn_store::{Lsn, Wal, WalError, WalOptions};

#[allow(dead_code)]
#[path = "../../fuzz/src/harness.rs"]
mod harness;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_inputs")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).expect("reading an input");
            (path, bytes)
        })
        .collect()
}

fn replay(target: &str, run: fn(&[u8])) {
    for (path, bytes) in inputs(target) {
        eprintln!("replaying {}", path.display());
        run(&bytes);
    }
}

#[test]
fn wal_recovery_inputs() {
    replay("wal_recovery", harness::wal_recovery);
}

#[test]
fn log_record_decode_inputs() {
    replay("log_record_decode", harness::log_record_decode);
}

/// Every kept `log_record_decode` input decodes to exactly what
/// `fuzz_golden/log_record_decode.txt` says (one line per file: the record,
/// or why it does not decode), so that a change of the record format fails
/// here, not only a panic.
///
/// `v2-record-*` are the records of the format-2 fixture
/// (`tests/fixtures/data-v2`, written by `write-fixture-v2`), of record
/// version 1: each decodes, upgraded to the shapes of record version 2 (a
/// timer's expiry flag is its key, a fired timer is named by its id).
/// `r2-record-*` are the records of `tests/fixtures/data-v2-records-v2`
/// (written by `write-fixture-records-v2`), of record version 2 (keyed
/// timers, reply routes, outcomes, provenance, `Deleted`).
/// `record-*` were taken from a development build older than format 1
/// (states without a version header, timers without the expiry flag): those
/// holding a timer do not decode, which is what a format change without a
/// version bump does to records on disk.
#[test]
fn log_record_inputs_decode_to_their_golden_values() {
    let got: String = inputs("log_record_decode")
        .into_iter()
        .map(|(path, bytes)| {
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            match statefn::__fuzz::describe_log_record(&bytes) {
                Ok(record) => format!("{name}: {record}\n"),
                Err(e) => format!("{name}: does not decode: {e}\n"),
            }
        })
        .collect();
    let golden_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_golden/log_record_decode.txt");
    let golden = std::fs::read_to_string(&golden_path).unwrap_or_default();
    assert!(
        got == golden,
        "the inputs decode otherwise than {} says; this build decodes them as:\n{got}",
        golden_path.display()
    );
    assert!(
        got.lines()
            .filter(|l| l.starts_with("v2-record-") || l.starts_with("r2-record-"))
            .all(|l| !l.contains("does not decode")),
        "a record of a fixture does not decode"
    );
}

#[test]
fn message_decode_inputs() {
    replay("message_decode", harness::message_decode);
}

#[test]
fn json_args_inputs() {
    replay("json_args", harness::json_args);
}

/// `wal_recovery` found (`crash-find-valid-record-lsn-bound-overflow`) that
/// near the top of the LSN range the bound on the LSNs worth checking after
/// damage overflowed: a panic in debug builds; in release it wrapped, so a
/// valid record after the damage went unseen and the damage passed for a
/// torn tail, silently dropping that record. Likewise a record carrying the
/// last u64 as its LSN overflowed the next LSN. Both must be `Corrupt`
/// errors (these two inputs are hand-made, with valid checksums).
#[test]
fn lsns_at_the_top_of_the_range_are_corruption_not_a_panic() {
    for name in [
        "crash-damage-before-a-valid-record-near-the-last-lsn",
        "crash-record-with-last-u64-lsn",
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fuzz_inputs/wal_recovery")
            .join(name);
        let input = std::fs::read(path).expect("reading the input");
        let (files, from) = harness::wal_files(&input);
        let fs = Arc::new(harness::MemFs::default());
        for (path, bytes) in files {
            fs.put(path, bytes);
        }
        let opts = WalOptions::default();
        match Wal::open(fs, Path::new(harness::WAL_DIR), opts, from) {
            Err(WalError::Corrupt { .. }) => {}
            Err(e) => panic!("{name}: expected a corrupt-log error, got {e}"),
            Ok((wal, records)) => panic!(
                "{name}: expected a corrupt-log error, recovered {} records up to lsn {}",
                records.len(),
                Lsn(wal.next_lsn().0 - 1)
            ),
        }
    }
}
