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
