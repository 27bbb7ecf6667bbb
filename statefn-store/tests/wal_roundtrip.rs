//! Records written and synced come back on reopen, across segments, and
//! truncation removes exactly the segments a checkpoint covers.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use statefn_store::{LogRecord, Lsn, WalOptions};

#[test]
fn synced_records_come_back_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, recovered) = open(dir.path(), WalOptions::default(), 1);
    assert!(recovered.is_empty());
    assert_eq!(wal.next_lsn(), Lsn(1));

    let payloads: Vec<_> = (1..=100).map(payload).collect();
    assert_eq!(commit(&mut wal, &payloads[..40]), Lsn(40));
    assert_eq!(commit(&mut wal, &payloads[40..]), Lsn(100));
    assert_eq!(wal.next_lsn(), Lsn(101));
    drop(wal);

    let (wal, recovered) = open(dir.path(), WalOptions::default(), 1);
    assert_eq!(recovered, expected(1..=100));
    assert_eq!(wal.next_lsn(), Lsn(101));
}

#[test]
fn appends_after_reopen_continue_the_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), small_segments(200), 1);
    commit(&mut wal, &(1..=10).map(payload).collect::<Vec<_>>());
    drop(wal);

    let (mut wal, _) = open(dir.path(), small_segments(200), 1);
    assert_eq!(wal.append(&payload(11)), Lsn(11));
    commit(&mut wal, &(12..=30).map(payload).collect::<Vec<_>>());
    drop(wal);

    let (_, recovered) = open(dir.path(), small_segments(200), 1);
    assert_eq!(recovered, expected(1..=30));
}

#[test]
fn records_rotate_across_small_segments() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_segments(256);
    let (mut wal, _) = open(dir.path(), opts, 1);
    for batch in (1..=120).collect::<Vec<u64>>().chunks(7) {
        commit(
            &mut wal,
            &batch.iter().map(|&i| payload(i)).collect::<Vec<_>>(),
        );
    }
    let files = segments(dir.path());
    assert!(
        files.len() > 5,
        "expected rotation, got {} segments",
        files.len()
    );
    assert_eq!(wal.segment_count(), files.len());
    // The log's size counts records, not the zeros written ahead of them,
    // which only the active segment has.
    let total: u64 = files.iter().map(|f| file_len(f)).sum();
    let (active, sealed) = files.split_last().unwrap();
    assert!(wal.size_bytes() <= total);
    assert!(total - wal.size_bytes() <= zero_tail(active));
    for file in sealed {
        // Sealed segments were cut to their records (the last may end in
        // a few zero bytes of its LSN, never in a zero record header).
        assert!(zero_tail(file) < RECORD_HEADER_LEN, "{}", file.display());
    }
    for file in &files {
        assert!(
            file_len(file) <= 256,
            "{} is larger than a segment",
            file.display()
        );
    }
    // Names are the first LSNs, and they increase.
    let firsts: Vec<u64> = files.iter().map(|f| first_lsn(f)).collect();
    assert_eq!(firsts.first(), Some(&1));
    assert!(firsts.windows(2).all(|w| w[0] < w[1]));
    drop(wal);

    let (_, recovered) = open(dir.path(), opts, 1);
    assert_eq!(recovered, expected(1..=120));
}

#[test]
fn a_record_larger_than_a_segment_gets_its_own_segment() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_segments(64);
    let (mut wal, _) = open(dir.path(), opts, 1);
    let big = vec![7u8; 500];
    commit(
        &mut wal,
        &[b"small".to_vec(), big.clone(), b"after".to_vec()],
    );
    assert_eq!(
        segments(dir.path())
            .iter()
            .map(|f| first_lsn(f))
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    drop(wal);
    let (_, recovered) = open(dir.path(), opts, 1);
    let pairs: Vec<(Lsn, Vec<u8>)> = recovered.into_iter().map(|r| (r.lsn, r.payload)).collect();
    assert_eq!(
        pairs,
        vec![
            (Lsn(1), b"small".to_vec()),
            (Lsn(2), big),
            (Lsn(3), b"after".to_vec())
        ]
    );
}

#[test]
fn truncate_before_deletes_only_covered_segments() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_segments(200);
    let (mut wal, _) = open(dir.path(), opts, 1);
    commit(&mut wal, &(1..=80).map(payload).collect::<Vec<_>>());
    let firsts: Vec<u64> = segments(dir.path()).iter().map(|f| first_lsn(f)).collect();
    assert!(firsts.len() >= 4);

    // A checkpoint up to the middle of the third segment covers only the first two.
    let cut = firsts[2] + 1;
    wal.truncate_before(Lsn(cut)).unwrap();
    let left: Vec<u64> = segments(dir.path()).iter().map(|f| first_lsn(f)).collect();
    assert_eq!(left, firsts[2..]);
    assert_eq!(wal.segment_count(), left.len());

    // Exactly at a segment boundary, the segment before it is covered.
    wal.truncate_before(Lsn(firsts[3])).unwrap();
    let left: Vec<u64> = segments(dir.path()).iter().map(|f| first_lsn(f)).collect();
    assert_eq!(left, firsts[3..]);
    drop(wal);

    let (mut wal, recovered) = open(dir.path(), opts, firsts[3]);
    assert_eq!(recovered, expected(firsts[3]..=80));

    // Past the end: everything but the active segment goes.
    wal.truncate_before(Lsn(1_000)).unwrap();
    assert_eq!(segments(dir.path()).len(), 1);
    assert_eq!(wal.segment_count(), 1);
    assert_eq!(wal.next_lsn(), Lsn(81));
    commit(&mut wal, &[payload(81)]);
    drop(wal);
    let (_, recovered) = open(dir.path(), opts, 81);
    assert_eq!(recovered, expected(81..=81));
}

#[test]
fn reopen_from_skips_older_records() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_segments(300);
    let (mut wal, _) = open(dir.path(), opts, 1);
    commit(&mut wal, &(1..=50).map(payload).collect::<Vec<_>>());
    drop(wal);

    for from in [1, 2, 17, 49, 50, 51] {
        let (wal, recovered) = open(dir.path(), opts, from);
        assert_eq!(recovered, expected(from..=50), "from {from}");
        assert_eq!(wal.next_lsn(), Lsn(51));
    }
}

#[test]
fn buffered_but_unwritten_records_are_not_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), WalOptions::default(), 1);
    commit(&mut wal, &[payload(1), payload(2)]);
    wal.append(b"never written");
    assert_eq!(wal.next_lsn(), Lsn(4));
    drop(wal);

    let (wal, recovered) = open(dir.path(), WalOptions::default(), 1);
    assert_eq!(recovered, expected(1..=2));
    assert_eq!(wal.next_lsn(), Lsn(3));
}

#[test]
fn a_new_log_starts_at_the_requested_position() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, recovered) = open(dir.path(), WalOptions::default(), 42);
    assert!(recovered.is_empty());
    assert_eq!(wal.append(b"x"), Lsn(42));
    assert_eq!(wal.write().unwrap().sync().unwrap(), Lsn(42));
    drop(wal);
    let (_, recovered) = open(dir.path(), WalOptions::default(), 42);
    assert_eq!(
        recovered,
        vec![LogRecord {
            lsn: Lsn(42),
            payload: b"x".to_vec()
        }]
    );
}

#[test]
fn pending_syncs_merge_and_sync_on_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_segments(100);
    let (mut wal, _) = open(dir.path(), opts, 1);
    for i in 1..=5 {
        wal.append(&payload(i));
    }
    let mut group = wal.write().unwrap();
    assert_eq!(group.up_to(), Lsn(5));
    for i in 6..=20 {
        wal.append(&payload(i));
    }
    // The second write rotates; the merged sync covers both batches.
    group.merge(wal.write().unwrap());
    assert_eq!(group.up_to(), Lsn(20));
    let syncer = std::thread::spawn(move || group.sync());

    // The writer goes on while the syncer runs.
    for i in 21..=30 {
        wal.append(&payload(i));
    }
    let later = wal.write().unwrap();
    assert_eq!(syncer.join().unwrap().unwrap(), Lsn(20));
    assert_eq!(later.sync().unwrap(), Lsn(30));

    // With nothing buffered, a write still yields a sync up to what was written.
    let empty = wal.write().unwrap();
    assert_eq!(empty.sync().unwrap(), Lsn(30));
    drop(wal);
    let (_, recovered) = open(dir.path(), opts, 1);
    assert_eq!(recovered, expected(1..=30));
}

#[test]
fn segment_names_are_zero_padded_first_lsns() {
    let dir = tempfile::tempdir().unwrap();
    let (_wal, _) = open(dir.path(), WalOptions::default(), 1);
    let names: Vec<String> = segments(dir.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["00000000000000000001.wal".to_string()]);
}
