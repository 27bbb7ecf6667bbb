//! A crash in the middle of the last write leaves a torn tail; reopening
//! cuts it off, keeps everything before it, and the log goes on.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use statefn_store::{Lsn, WalOptions};

const N: u64 = 6;

/// Writes payloads 1..=N synced, returns the segment path.
fn write_records(dir: &std::path::Path) -> std::path::PathBuf {
    let (mut wal, _) = open(dir, growing(), 1);
    commit(&mut wal, &(1..=N).map(payload).collect::<Vec<_>>());
    segments(dir).pop().unwrap()
}

fn assert_recovers_and_continues(dir: &std::path::Path, context: &str) {
    let (mut wal, recovered) = open(dir, growing(), 1);
    assert_eq!(recovered, expected(1..=N - 1), "{context}");
    assert_eq!(wal.next_lsn(), Lsn(N), "{context}");
    assert_eq!(wal.append(b"after the tear"), Lsn(N));
    assert_eq!(wal.write().unwrap().sync().unwrap(), Lsn(N));
    drop(wal);

    let (_, recovered) = open(dir, WalOptions::default(), 1);
    let mut want = expected(1..=N - 1);
    want.push(statefn_store::LogRecord {
        lsn: Lsn(N),
        payload: b"after the tear".to_vec(),
    });
    assert_eq!(recovered, want, "{context}: after appending");
}

#[test]
fn torn_tail_is_truncated_at_every_offset_of_the_last_record() {
    // Make sure the last record has a payload, so the tear can fall into it.
    assert!(!payload(N).is_empty());
    let offsets = record_offsets(1, N);
    let last_start = offsets[(N - 1) as usize];
    let last_end = last_start + RECORD_HEADER_LEN + payload(N).len() as u64;

    for cut in last_start..last_end {
        let dir = tempfile::tempdir().unwrap();
        let segment = write_records(dir.path());
        assert_eq!(file_len(&segment), last_end);
        set_len(&segment, cut);
        assert_recovers_and_continues(dir.path(), &format!("cut at {cut}"));
        // The tear was removed from the file, not just skipped.
        assert_eq!(
            file_len(&segment),
            last_start + RECORD_HEADER_LEN + "after the tear".len() as u64
        );
    }
}

#[test]
fn checksum_failure_in_the_last_record_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let segment = write_records(dir.path());
    let len = file_len(&segment);
    flip_byte(&segment, len - 1);
    assert_recovers_and_continues(dir.path(), "flipped last byte");
}

#[test]
fn zero_bytes_at_the_end_are_a_clean_end_and_kept() {
    for zeros in [1, 15, 16, 17, 4096] {
        let dir = tempfile::tempdir().unwrap();
        let segment = write_records(dir.path());
        // Drop the last record and leave preallocated zeros in its place.
        let last_start = record_offsets(1, N)[(N - 1) as usize];
        set_len(&segment, last_start);
        set_len(&segment, last_start + zeros);
        assert_recovers_and_continues(dir.path(), &format!("{zeros} zeros"));
        // Kept as zeros written ahead: the next record went over them.
        assert!(file_len(&segment) >= last_start + zeros);
    }
}

#[test]
fn torn_header_of_a_new_segment_is_rewritten() {
    let opts = small_segments(120);
    // Tear the newest segment anywhere in its header or first record.
    for cut in 0..HEADER_LEN + RECORD_HEADER_LEN {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(dir.path(), opts, 1);
        commit(&mut wal, &(1..=20).map(payload).collect::<Vec<_>>());
        drop(wal);
        let files = segments(dir.path());
        let newest = files.last().unwrap();
        let first = first_lsn(newest);
        set_len(newest, cut);

        let (mut wal, recovered) = open(dir.path(), opts, 1);
        assert_eq!(recovered, expected(1..=first - 1), "cut at {cut}");
        assert_eq!(wal.next_lsn(), Lsn(first));
        commit(&mut wal, &(first..=25).map(payload).collect::<Vec<_>>());
        drop(wal);
        let (_, recovered) = open(dir.path(), opts, 1);
        assert_eq!(recovered, expected(1..=25), "cut at {cut}");
    }
}

#[test]
fn truncation_is_logged_with_file_offset_and_bytes_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let segment = write_records(dir.path());
    let last_start = record_offsets(1, N)[(N - 1) as usize];
    set_len(&segment, last_start + 5);

    let ((), logged) = logged(|| {
        open(dir.path(), WalOptions::default(), 1);
    });
    assert!(logged.contains("WARN"), "{logged}");
    assert!(logged.contains(&segment.display().to_string()), "{logged}");
    assert!(logged.contains(&format!("offset={last_start}")), "{logged}");
    assert!(logged.contains("bytes_dropped=5"), "{logged}");
}
