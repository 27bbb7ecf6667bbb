//! Zeros written ahead of the writer: a commit overwrites them in place and
//! changes no file length; recovery reads zeros after the last record as the
//! clean end of a segment, and tells them apart from tears and damage.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use statefn_store::{FaultyFs, FileSystem, LogRecord, Lsn, Wal, WalError, WalOptions};

fn overwrite(path: &std::path::Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

#[test]
fn a_commit_overwrites_zeros_in_place_and_changes_no_file_length() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), WalOptions::default(), 1);
    commit(&mut wal, &[payload(1)]);
    let segment = segments(dir.path()).pop().unwrap();
    assert!(
        file_len(&segment) > wal.size_bytes(),
        "the first commit wrote zeros ahead of its record"
    );
    let (mut in_place, mut crossed) = (0, 0);
    for i in 2..=3_000u64 {
        let before = file_len(&segment);
        commit(&mut wal, &[vec![i as u8; 200]]);
        let after = file_len(&segment);
        if after == before {
            in_place += 1;
        } else {
            // Only a commit whose record did not fit in the zeros grows the
            // file, and it writes the next chunk of zeros after its record.
            assert!(wal.size_bytes() > before, "commit {i} grew the file");
            assert!(after > wal.size_bytes(), "commit {i} wrote no zeros ahead");
            crossed += 1;
        }
    }
    assert!(
        crossed >= 1,
        "3,000 records of 216 bytes pass the first chunk"
    );
    assert!(in_place > 2_900, "{in_place} in place, {crossed} crossed");
    drop(wal);
    let (_, recovered) = open(dir.path(), WalOptions::default(), 1);
    assert_eq!(recovered.len(), 3_000);
}

#[test]
fn chunks_never_go_past_the_segment_size_and_sealed_segments_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_segments(1_000);
    let (mut wal, _) = open(dir.path(), opts, 1);
    for batch in (1..=200u64).collect::<Vec<_>>().chunks(3) {
        commit(
            &mut wal,
            &batch.iter().map(|&i| payload(i)).collect::<Vec<_>>(),
        );
    }
    let files = segments(dir.path());
    let (active, sealed) = files.split_last().unwrap();
    assert!(sealed.len() > 3);
    assert_eq!(
        file_len(active),
        1_000,
        "the active segment is zeroed to its size"
    );
    for file in sealed {
        assert!(file_len(file) <= 1_000);
        assert!(
            zero_tail(file) < RECORD_HEADER_LEN,
            "{} kept its zeros",
            file.display()
        );
    }
}

#[test]
fn a_zero_tail_is_the_clean_end_of_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), WalOptions::default(), 1);
    commit(&mut wal, &(1..=20).map(payload).collect::<Vec<_>>());
    drop(wal);
    let segment = segments(dir.path()).pop().unwrap();
    let len = file_len(&segment);
    assert!(zero_tail(&segment) > RECORD_HEADER_LEN);

    let ((mut wal, recovered), log) = logged(|| open(dir.path(), WalOptions::default(), 1));
    assert_eq!(recovered, expected(1..=20));
    assert!(!log.contains("WARN"), "a clean end is no tear: {log}");
    assert_eq!(
        file_len(&segment),
        len,
        "the zeros are kept for the next records"
    );
    commit(&mut wal, &(21..=30).map(payload).collect::<Vec<_>>());
    assert_eq!(file_len(&segment), len, "written over the zeros");
    drop(wal);
    let (_, recovered) = open(dir.path(), WalOptions::default(), 1);
    assert_eq!(recovered, expected(1..=30));
}

#[test]
fn a_torn_record_followed_by_zeros_is_cut() {
    let n = 12;
    let offsets = record_offsets(1, n);
    let last = offsets[(n - 1) as usize];
    let end = last + RECORD_HEADER_LEN + payload(n).len() as u64;
    // Torn anywhere: the tail of the record never reached the disk (zeros
    // remain), or the record is half-overwritten by garbage.
    for tear in (last + 1..end).step_by(3) {
        for garbage in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (mut wal, _) = open(dir.path(), WalOptions::default(), 1);
            commit(&mut wal, &(1..=n).map(payload).collect::<Vec<_>>());
            drop(wal);
            let segment = segments(dir.path()).pop().unwrap();
            let fill = if garbage { 0x5a } else { 0 };
            overwrite(&segment, tear, &vec![fill; (end - tear) as usize]);

            let context = format!("tear at {tear}, garbage {garbage}");
            let ((mut wal, recovered), log) = logged(|| open(dir.path(), WalOptions::default(), 1));
            assert_eq!(recovered, expected(1..=n - 1), "{context}");
            assert!(log.contains("torn tail"), "{context}: {log}");
            assert_eq!(file_len(&segment), last, "{context}: cut at the tear");
            commit(&mut wal, &[payload(n)]);
            drop(wal);
            let (_, recovered) = open(dir.path(), WalOptions::default(), 1);
            assert_eq!(recovered, expected(1..=n), "{context}");
        }
    }
}

/// Records 1..=60 committed in segments of 300 bytes: the data directory,
/// its options and its segment files, oldest first.
fn sixty_records_in_small_segments() -> (tempfile::TempDir, WalOptions, Vec<std::path::PathBuf>) {
    let opts = small_segments(300);
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), opts, 1);
    commit(&mut wal, &(1..=60).map(payload).collect::<Vec<_>>());
    drop(wal);
    let files = segments(dir.path());
    (dir, opts, files)
}

#[test]
fn garbage_after_a_zero_header_is_corrupt_in_a_sealed_segment_and_torn_in_the_last() {
    let (dir, opts, files) = sixty_records_in_small_segments();
    assert!(files.len() >= 3);

    // The last segment: zeros ahead, then garbage far after the records.
    let last = files.last().unwrap();
    let used = file_len(last) - zero_tail(last);
    overwrite(last, used + 64, b"not zeros");
    let (wal, log) = logged(|| Wal::open(std_fs(), dir.path(), opts, Lsn(1)));
    let (_, recovered) = wal.unwrap();
    assert_eq!(recovered, expected(1..=60));
    assert!(log.contains("torn tail"), "{log}");

    // A sealed segment: zeros, then something that is not zeros.
    let sealed = &files[1];
    let len = file_len(sealed);
    overwrite(sealed, len, &[0; 16]);
    overwrite(sealed, len + 16, b"damage");
    match Wal::open(std_fs(), dir.path(), opts, Lsn(1)) {
        Err(WalError::Corrupt { path, offset, .. }) => {
            assert_eq!(&path, sealed);
            assert_eq!(offset, len);
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|(_, r)| r.len())),
    }
}

#[test]
fn a_sealed_segment_with_a_zero_tail_opens_and_is_sealed_again() {
    // A crash before the seal's truncation was durable leaves the zeros.
    let (dir, opts, files) = sixty_records_in_small_segments();
    let sealed = &files[0];
    let len = file_len(sealed);
    set_len(sealed, 300);

    let ((mut wal, recovered), log) = logged(|| open(dir.path(), opts, 1));
    assert_eq!(recovered, expected(1..=60));
    assert!(!log.contains("WARN"), "{log}");
    assert_eq!(file_len(sealed), len, "cut to its records again");
    commit(&mut wal, &(61..=70).map(payload).collect::<Vec<_>>());
    drop(wal);
    let (_, recovered) = open(dir.path(), opts, 1);
    assert_eq!(recovered, expected(1..=70));
}

/// Commits `synced` records, then writes `unsynced` more (in several writes,
/// in place over the zeros) without a sync, and cuts the power.
fn power_cut_after_unsynced_overwrites(seed: Option<u64>) -> Vec<LogRecord> {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new(std_fs());
    let faults = fs.faults();
    let fs: Arc<dyn FileSystem> = Arc::new(fs);
    let (mut wal, _) =
        Wal::open(Arc::clone(&fs), dir.path(), WalOptions::default(), Lsn(1)).unwrap();
    assert_eq!(
        commit(&mut wal, &(1..=30).map(payload).collect::<Vec<_>>()),
        Lsn(30)
    );
    let segment = segments(dir.path()).pop().unwrap();
    let len = file_len(&segment);
    let mut pending = Vec::new();
    for batch in (31..=60u64).collect::<Vec<_>>().chunks(4) {
        for &i in batch {
            wal.append(&payload(i));
        }
        pending.push(wal.write().unwrap());
    }
    assert_eq!(file_len(&segment), len, "written in place");
    drop(pending);
    drop(wal);
    match seed {
        None => faults.power_cut().unwrap(),
        Some(seed) => faults.power_cut_tearing(seed).unwrap(),
    }
    let (mut wal, recovered) = open(dir.path(), WalOptions::default(), 1);
    // The log goes on from what it recovered.
    let next = wal.next_lsn().0;
    commit(&mut wal, &[payload(next)]);
    drop(wal);
    let (_, again) = open(dir.path(), WalOptions::default(), 1);
    assert_eq!(again, expected(1..=next));
    recovered
}

#[test]
fn a_power_cut_loses_unsynced_overwrites_in_place() {
    assert_eq!(power_cut_after_unsynced_overwrites(None), expected(1..=30));
}

#[test]
fn a_power_cut_keeps_a_prefix_of_unsynced_overwrites_possibly_torn() {
    let mut lengths = std::collections::BTreeSet::new();
    for seed in 0..40 {
        let recovered = power_cut_after_unsynced_overwrites(Some(seed));
        let n = recovered.len() as u64;
        assert!((30..=60).contains(&n), "seed {seed}: {n} records");
        assert_eq!(recovered, expected(1..=n), "seed {seed}");
        lengths.insert(n);
    }
    assert!(
        lengths.len() > 3,
        "the cuts kept different prefixes: {lengths:?}"
    );
}

#[test]
fn an_idle_writer_zeroes_the_next_chunk_so_that_commits_stay_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), WalOptions::default(), 1);
    commit(&mut wal, &[payload(1)]);
    let segment = segments(dir.path()).pop().unwrap();
    assert!(!wal.preallocate().unwrap(), "a whole chunk is left");
    // Fill the first chunk past its middle, in place.
    let before = file_len(&segment);
    let mut i = 2;
    while wal.size_bytes() < before / 2 + 1 {
        commit(&mut wal, &[vec![i as u8; 1_000]]);
        i += 1;
    }
    assert_eq!(file_len(&segment), before);
    assert!(wal.preallocate().unwrap(), "less than half a chunk is left");
    let extended = file_len(&segment);
    assert!(extended > before);
    assert!(!wal.preallocate().unwrap());
    // The commits that would have crossed the old end now stay in place.
    while wal.size_bytes() < before + 1_000 {
        commit(&mut wal, &[vec![i as u8; 1_000]]);
        i += 1;
    }
    assert_eq!(file_len(&segment), extended);
    drop(wal);
    let (_, recovered) = open(dir.path(), WalOptions::default(), 1);
    assert_eq!(recovered.len() as u64, i - 1);
}

#[test]
fn a_failed_sync_of_the_zeros_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new(std_fs());
    let faults = fs.faults();
    let fs: Arc<dyn FileSystem> = Arc::new(fs);
    let (mut wal, _) = Wal::open(fs, dir.path(), WalOptions::default(), Lsn(1)).unwrap();
    commit(&mut wal, &[vec![1; 40_000]]);
    commit(&mut wal, &[vec![2; 40_000]]);
    faults.fail_syncs();
    assert!(matches!(wal.preallocate(), Err(WalError::Io { .. })));
    assert!(wal.is_poisoned());
    faults.heal();
    wal.append(b"refused");
    assert!(matches!(wal.write(), Err(WalError::Poisoned)));
}

/// A power cut during the `fdatasync` of a commit that spans several pages
/// may leave a later page of it on the disk and not an earlier one: with
/// records written over zeros, the earlier page reads back as zeros and
/// valid records follow the hole. None of that commit was acknowledged (its
/// sync never returned), so the log opens with it cut off as a torn tail.
#[test]
fn a_power_cut_that_kept_a_later_page_of_the_last_commit_but_not_an_earlier_one_is_a_torn_tail() {
    let big = |i: u64| vec![i as u8 | 1; 300];
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = open(dir.path(), WalOptions::default(), 1);
    commit(&mut wal, &(1..=5).map(payload).collect::<Vec<_>>());
    let durable = wal.size_bytes();
    commit(&mut wal, &(6..=100).map(big).collect::<Vec<_>>());
    let end = wal.size_bytes();
    drop(wal);
    let segment = segments(dir.path()).pop().unwrap();
    // The disk lost the first whole page the last commit wrote.
    let page = durable.next_multiple_of(4096);
    assert!(page + 2 * 4096 < end, "the last commit spans several pages");
    overwrite(&segment, page, &[0; 4096]);

    let ((mut wal, recovered), log) = logged(|| open(dir.path(), WalOptions::default(), 1));
    let kept = recovered.len() as u64;
    assert!(
        (5..100).contains(&kept),
        "the durable records stay and the torn commit is cut: kept {kept}"
    );
    let want: Vec<_> = (1..=5)
        .map(payload)
        .chain((6..=kept).map(big))
        .collect::<Vec<_>>();
    assert_eq!(
        recovered
            .iter()
            .map(|r| r.payload.clone())
            .collect::<Vec<_>>(),
        want
    );
    assert!(log.contains("torn tail"), "{log}");
    // The log goes on from the cut.
    commit(&mut wal, &[payload(kept + 1)]);
    drop(wal);
    let (_, recovered) = open(dir.path(), WalOptions::default(), 1);
    assert_eq!(recovered.len() as u64, kept + 1);
}
