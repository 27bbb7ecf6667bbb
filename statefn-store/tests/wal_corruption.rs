//! Damage that cannot be a torn tail is reported with the file and the
//! offset, never skipped.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use statefn_store::{Lsn, WalError, WalOptions};

fn write_records(dir: &std::path::Path, count: u64, opts: WalOptions) {
    let (mut wal, _) = open(dir, opts, 1);
    commit(&mut wal, &(1..=count).map(payload).collect::<Vec<_>>());
}

fn expect_corrupt(dir: &std::path::Path, from: u64) -> (std::path::PathBuf, u64, String) {
    match try_open(dir, from) {
        Err(WalError::Corrupt {
            path,
            offset,
            reason,
        }) => (path, offset, reason),
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok((_, records)) => panic!("expected Corrupt, recovered {} records", records.len()),
    }
}

#[test]
fn flipped_byte_in_a_middle_record_is_corruption_at_its_offset() {
    let count = 8;
    let middle = 4u64;
    let offsets = record_offsets(1, count);
    let start = offsets[(middle - 1) as usize];
    let end = offsets[middle as usize];
    // Every byte of the record: length, checksum, lsn and payload.
    for at in start..end {
        let dir = tempfile::tempdir().unwrap();
        write_records(dir.path(), count, WalOptions::default());
        let segment = segments(dir.path()).pop().unwrap();
        flip_byte(&segment, at);

        let (path, offset, reason) = expect_corrupt(dir.path(), 1);
        assert_eq!(path, segment, "byte {at}");
        assert_eq!(offset, start, "byte {at}: {reason}");
        let message = WalError::Corrupt {
            path,
            offset,
            reason,
        }
        .to_string();
        assert!(message.contains(&format!("offset {start}")), "{message}");
        assert!(message.contains("00000000000000000001.wal"), "{message}");
    }
}

#[test]
fn corruption_in_a_segment_that_is_not_the_last_is_an_error() {
    let opts = small_segments(150);
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 40, opts);
    let files = segments(dir.path());
    assert!(files.len() >= 3);
    let victim = &files[1];
    // Damage the *last* record of a non-last segment: a torn tail only
    // happens at the end of the log, so this is corruption.
    let len = file_len(victim);
    flip_byte(victim, len - 1);
    let (path, offset, reason) = expect_corrupt(dir.path(), 1);
    assert_eq!(&path, victim);
    let count = first_lsn(&files[2]) - first_lsn(victim);
    let last_offset = record_offsets(first_lsn(victim), count)[(count - 1) as usize];
    assert_eq!(offset, last_offset, "{reason}");

    // Truncating a non-last segment is corruption too.
    set_len(victim, len - 3);
    let (path, _, _) = expect_corrupt(dir.path(), 1);
    assert_eq!(&path, victim);
}

#[test]
fn corruption_before_the_replay_point_still_fails_open() {
    let opts = small_segments(150);
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 40, opts);
    let files = segments(dir.path());
    flip_byte(&files[0], HEADER_LEN + 9);
    let (path, offset, _) = expect_corrupt(dir.path(), 39);
    assert_eq!(path, files[0]);
    assert_eq!(offset, HEADER_LEN);
}

#[test]
fn newer_format_version_is_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 3, WalOptions::default());
    let segment = segments(dir.path()).pop().unwrap();
    let mut data = std::fs::read(&segment).unwrap();
    data[8..10].copy_from_slice(&2u16.to_le_bytes());
    std::fs::write(&segment, data).unwrap();

    match try_open(dir.path(), 1) {
        Err(WalError::UnsupportedVersion {
            path,
            found,
            supported,
        }) => {
            assert_eq!(path, segment);
            assert_eq!(found, 2);
            assert_eq!(supported, 1);
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}

#[test]
fn bad_magic_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 3, WalOptions::default());
    let segment = segments(dir.path()).pop().unwrap();
    flip_byte(&segment, 0);
    let (path, offset, _) = expect_corrupt(dir.path(), 1);
    assert_eq!((path, offset), (segment, 0));
}

#[test]
fn a_missing_middle_segment_is_corruption() {
    let opts = small_segments(150);
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 40, opts);
    let files = segments(dir.path());
    std::fs::remove_file(&files[1]).unwrap();
    let (path, _, reason) = expect_corrupt(dir.path(), 1);
    assert_eq!(path, files[2], "{reason}");
}

#[test]
fn a_renamed_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 3, WalOptions::default());
    let segment = segments(dir.path()).pop().unwrap();
    let renamed = dir.path().join("00000000000000000002.wal");
    std::fs::rename(&segment, &renamed).unwrap();
    let (path, _, _) = expect_corrupt(dir.path(), 1);
    assert_eq!(path, renamed);
}

#[test]
fn missing_records_before_the_oldest_segment_are_reported() {
    let opts = small_segments(150);
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), opts, 1);
    commit(&mut wal, &(1..=40).map(payload).collect::<Vec<_>>());
    wal.truncate_before(Lsn(30)).unwrap();
    drop(wal);
    // The checkpoint says we need lsn 2 on, but those segments are gone.
    expect_corrupt(dir.path(), 2);
    // A checkpoint ahead of the log means records were lost.
    expect_corrupt(dir.path(), 50);
    // The exact end of the log is fine.
    let (wal, records) = try_open(dir.path(), 41).unwrap();
    assert!(records.is_empty());
    assert_eq!(wal.next_lsn(), Lsn(41));
}
