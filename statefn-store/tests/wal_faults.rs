//! Injected write and fsync failures surface as errors, poison the log, and
//! never lose a record that was synced before the fault.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use statefn_store::{Faults, FaultyFs, FileSystem};
use statefn_store::{Lsn, Wal, WalError, WalOptions};

fn faulty() -> (Arc<dyn FileSystem>, Faults) {
    let fs = FaultyFs::new(std_fs());
    let faults = fs.faults();
    (Arc::new(fs), faults)
}

fn open_on(fs: &Arc<dyn FileSystem>, dir: &std::path::Path, opts: WalOptions) -> Wal {
    Wal::open(Arc::clone(fs), dir, opts, Lsn(1)).unwrap().0
}

/// Reopens with the real file system and checks that the synced records come
/// back first, followed only by a prefix of the records that were in flight.
fn assert_recovered(dir: &std::path::Path, synced: u64, in_flight: u64) -> u64 {
    let (_, recovered) = open(dir, WalOptions::default(), 1);
    assert!(recovered.len() as u64 >= synced, "lost synced records");
    assert!(recovered.len() as u64 <= synced + in_flight);
    assert_eq!(recovered, expected(1..=recovered.len() as u64));
    recovered.len() as u64
}

#[test]
fn failed_append_surfaces_and_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let (fs, faults) = faulty();
    let mut wal = open_on(&fs, dir.path(), WalOptions::default());
    commit(&mut wal, &(1..=10).map(payload).collect::<Vec<_>>());

    faults.fail_nth_append(2);
    wal.append(&payload(11));
    let first = wal.write().unwrap(); // the first append still succeeds
    wal.append(&payload(12));
    assert!(matches!(wal.write(), Err(WalError::Io { .. })));
    assert!(wal.is_poisoned());
    wal.append(&payload(13));
    assert!(matches!(wal.write(), Err(WalError::Poisoned)));
    // Syncing work written before the failure is refused as well: the log
    // is in an unknown state.
    assert!(matches!(first.sync(), Err(WalError::Poisoned)));
    assert!(matches!(
        wal.truncate_before(Lsn(5)),
        Err(WalError::Poisoned)
    ));

    faults.heal();
    drop(wal);
    assert_eq!(assert_recovered(dir.path(), 10, 1), 11);
}

#[test]
fn failed_sync_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (fs, faults) = faulty();
    let mut wal = open_on(&fs, dir.path(), WalOptions::default());
    commit(&mut wal, &(1..=20).map(payload).collect::<Vec<_>>());

    faults.fail_syncs();
    for i in 21..=25 {
        wal.append(&payload(i));
    }
    let pending = wal.write().unwrap();
    match pending.sync() {
        Err(WalError::Io { path, .. }) => assert!(path.starts_with(dir.path())),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert!(wal.is_poisoned());

    // Even after the disk "recovers", this log stays poisoned: a later
    // fsync success would not prove the earlier pages reached the disk.
    faults.heal();
    wal.append(&payload(26));
    assert!(matches!(wal.write(), Err(WalError::Poisoned)));
    drop(wal);

    assert_recovered(dir.path(), 20, 5);
}

#[test]
fn short_write_leaves_a_torn_tail_that_recovery_cuts() {
    for short in [0, 5, 16, 17, 30, 60] {
        let dir = tempfile::tempdir().unwrap();
        let (fs, faults) = faulty();
        let mut wal = open_on(&fs, dir.path(), WalOptions::default());
        commit(&mut wal, &(1..=8).map(payload).collect::<Vec<_>>());

        faults.short_write(short);
        for i in 9..=12 {
            wal.append(&payload(i));
        }
        assert!(
            matches!(wal.write(), Err(WalError::Io { .. })),
            "short {short}"
        );
        assert!(wal.is_poisoned());
        drop(wal);

        faults.heal();
        // Reopen through the same (healed) faulty file system.
        let (mut wal, recovered) =
            Wal::open(fs, dir.path(), WalOptions::default(), Lsn(1)).unwrap();
        assert!(
            recovered.len() >= 8 && recovered.len() < 12,
            "short {short}"
        );
        assert_eq!(recovered, expected(1..=recovered.len() as u64));
        let next = wal.next_lsn();
        assert_eq!(wal.append(b"fresh"), next);
        assert_eq!(wal.write().unwrap().sync().unwrap(), next);
    }
}

#[test]
fn failed_directory_sync_on_rotation_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let (fs, faults) = faulty();
    let opts = small_segments(120);
    let mut wal = open_on(&fs, dir.path(), opts);
    commit(&mut wal, &(1..=3).map(payload).collect::<Vec<_>>());
    let syncs = faults.sync_count();

    faults.fail_syncs();
    for i in 4..=30 {
        wal.append(&payload(i));
    }
    let pending = wal.write().unwrap(); // rotates, but fsyncs nothing
    assert_eq!(faults.sync_count(), syncs);
    assert!(pending.sync().is_err());
    assert!(wal.is_poisoned());
    drop(wal);
    faults.heal();
    assert_recovered(dir.path(), 3, 27);
}

#[test]
fn faults_restricted_to_one_shard_leave_others_serving() {
    let root = tempfile::tempdir().unwrap();
    let (fs, faults) = faulty();
    let healthy_dir = root.path().join("shard-0000");
    let broken_dir = root.path().join("shard-0001");
    let mut healthy = open_on(&fs, &healthy_dir, WalOptions::default());
    let mut broken = open_on(&fs, &broken_dir, WalOptions::default());

    faults.only_paths_containing("shard-0001");
    faults.fail_syncs();
    broken.append(b"lost");
    assert!(broken.write().unwrap().sync().is_err());
    assert!(broken.is_poisoned());

    assert_eq!(commit(&mut healthy, &[payload(1), payload(2)]), Lsn(2));
    assert!(!healthy.is_poisoned());
}

#[test]
fn slow_syncs_overlap_with_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (fs, faults) = faulty();
    faults.sync_delay(Duration::from_millis(20));
    let opts = small_segments(200);
    let mut wal = open_on(&fs, dir.path(), opts);

    let (tx, rx) = std::sync::mpsc::channel::<statefn_store::PendingSync>();
    let syncer = std::thread::spawn(move || {
        let mut durable = Lsn(0);
        // Group commit: merge whatever queued up while the last sync ran.
        while let Ok(mut pending) = rx.recv() {
            while let Ok(more) = rx.try_recv() {
                pending.merge(more);
            }
            let up_to = pending.sync().unwrap();
            assert!(up_to >= durable);
            durable = up_to;
        }
        durable
    });
    for batch in (1..=60).collect::<Vec<u64>>().chunks(5) {
        for &i in batch {
            wal.append(&payload(i));
        }
        tx.send(wal.write().unwrap()).unwrap();
    }
    drop(tx);
    assert_eq!(syncer.join().unwrap(), Lsn(60));
    drop(wal);
    faults.heal();
    let (_, recovered) = open(dir.path(), opts, 1);
    assert_eq!(recovered, expected(1..=60));
}

/// A segment whose removal fails stays in the log's list: the next
/// truncation removes it first, so the log never has a hole that stops the
/// next open (exactly-once review #10).
#[test]
fn a_failed_segment_delete_leaves_no_hole() {
    let dir = tempfile::tempdir().unwrap();
    let (fs, faults) = faulty();
    let opts = small_segments(120);
    let mut wal = open_on(&fs, dir.path(), opts);
    commit(&mut wal, &(1..=40).map(payload).collect::<Vec<_>>());
    let before = segments(dir.path());
    assert!(before.len() >= 5, "{before:?}");
    let third = first_lsn(&before[2]);

    faults.fail_removes();
    assert!(matches!(
        wal.truncate_before(Lsn(third)),
        Err(WalError::Io { .. })
    ));
    assert_eq!(segments(dir.path()), before, "nothing was removed");
    faults.heal();
    // A later checkpoint truncates further: the segment that could not be
    // removed goes first, then its successors.
    let fifth = first_lsn(&before[4]);
    wal.truncate_before(Lsn(fifth)).unwrap();
    assert_eq!(segments(dir.path()), before[4..].to_vec());
    drop(wal);
    let (_, recovered) = open(dir.path(), opts, fifth);
    assert_eq!(recovered, expected(fifth..=40));
}

/// A log left with a hole below the replay start by an older build opens
/// (the records missing are checkpointed), and the segment before the hole
/// goes with the next truncation.
#[test]
fn a_hole_below_the_replay_start_does_not_stop_an_open() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_segments(120);
    let (mut wal, _) = open(dir.path(), opts, 1);
    commit(&mut wal, &(1..=40).map(payload).collect::<Vec<_>>());
    drop(wal);
    let before = segments(dir.path());
    // The first segment stays, its successors up to the fourth are gone.
    for path in &before[1..4] {
        std::fs::remove_file(path).unwrap();
    }
    let from = first_lsn(&before[4]);
    let (mut wal, recovered) = open(dir.path(), opts, from);
    assert_eq!(recovered, expected(from..=40));
    wal.truncate_before(Lsn(from)).unwrap();
    assert_eq!(segments(dir.path()), before[4..].to_vec());
    assert_eq!(wal.append(b"more"), Lsn(41));
    // A hole above the replay start is still corruption.
    drop(wal);
    let later = segments(dir.path());
    std::fs::remove_file(&later[1]).unwrap();
    assert!(matches!(
        Wal::open(std_fs(), dir.path(), opts, Lsn(from)),
        Err(WalError::Corrupt { .. })
    ));
}

/// After a failed fsync, reopening with the last position known durable
/// drops the records written after it, though they are intact in the page
/// cache: their callers were told they were not committed.
#[test]
fn reopening_after_a_failed_sync_drops_what_was_not_synced() {
    let dir = tempfile::tempdir().unwrap();
    let (fs, faults) = faulty();
    let mut wal = open_on(&fs, dir.path(), WalOptions::default());
    let durable = commit(&mut wal, &(1..=10).map(payload).collect::<Vec<_>>());
    faults.fail_syncs();
    for i in 11..=15 {
        wal.append(&payload(i));
    }
    assert!(wal.write().unwrap().sync().is_err());
    drop(wal);
    faults.heal();

    let (mut wal, recovered) = Wal::reopen_after_failure(
        Arc::clone(&fs),
        dir.path(),
        WalOptions::default(),
        Lsn(1),
        durable,
    )
    .unwrap();
    assert_eq!(recovered, expected(1..=10));
    assert_eq!(wal.append(&payload(11)), Lsn(11));
    commit(&mut wal, &[]);
    drop(wal);
    // The cut is on disk: a plain open sees it too.
    let (_, recovered) = open(dir.path(), WalOptions::default(), 1);
    assert_eq!(recovered, expected(1..=11));
}

/// A short write leaves complete records of the first batches in the
/// chunk: reopening after the failure drops them too.
#[test]
fn reopening_after_a_short_write_drops_the_complete_records_it_left() {
    let dir = tempfile::tempdir().unwrap();
    let (fs, faults) = faulty();
    let mut wal = open_on(&fs, dir.path(), WalOptions::default());
    let durable = commit(&mut wal, &(1..=8).map(payload).collect::<Vec<_>>());
    // Records 9 and 10 complete, 11 torn.
    let offsets = record_offsets(9, 3);
    faults.short_write((offsets[2] - offsets[0] + 3) as usize);
    for i in 9..=12 {
        wal.append(&payload(i));
    }
    assert!(wal.write().is_err());
    drop(wal);
    faults.heal();
    // A plain open keeps 9 and 10: what the page cache holds.
    let copy = tempfile::tempdir().unwrap();
    for path in segments(dir.path()) {
        std::fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
    }
    assert_eq!(
        open(copy.path(), WalOptions::default(), 1).1,
        expected(1..=10)
    );

    let (_, recovered) =
        Wal::reopen_after_failure(fs, dir.path(), WalOptions::default(), Lsn(1), durable).unwrap();
    assert_eq!(recovered, expected(1..=8));
}

/// The cut can fall in an earlier segment than the last: the segments after
/// it go, the one holding it is cut and becomes the active one.
#[test]
fn reopening_after_a_failure_cuts_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (fs, faults) = faulty();
    let opts = small_segments(120);
    let mut wal = open_on(&fs, dir.path(), opts);
    let durable = commit(&mut wal, &(1..=3).map(payload).collect::<Vec<_>>());
    faults.fail_syncs();
    for i in 4..=30 {
        wal.append(&payload(i));
    }
    assert!(wal.write().unwrap().sync().is_err());
    drop(wal);
    faults.heal();
    assert!(segments(dir.path()).len() > 2);

    let (mut wal, recovered) =
        Wal::reopen_after_failure(Arc::clone(&fs), dir.path(), opts, Lsn(1), durable).unwrap();
    assert_eq!(recovered, expected(1..=3));
    assert_eq!(segments(dir.path()).len(), 1);
    commit(&mut wal, &(4..=30).map(payload).collect::<Vec<_>>());
    drop(wal);
    assert_eq!(open(dir.path(), opts, 1).1, expected(1..=30));
}
