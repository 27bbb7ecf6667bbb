//! A process killed (SIGKILL) in the middle of a write to fjall's journal
//! leaves a torn entry in the journal's preallocated, zero-filled tail.
//! Opening the store again cuts it off, as fjall does in release builds,
//! also in the debug builds the tests and the examples' nodes run (fjall
//! checks that entry with a `debug_assert`, which panicked there: a bank
//! node restarted after a SIGKILL by `cluster_failures` died on it).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use statefn_store::{ShardId, StateStore};

/// The journal files under `dir`, newest (highest number) last.
fn journals(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "jnl") {
                found.push(path);
            }
        }
    }
    let number = |p: &PathBuf| -> u64 {
        p.file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    found.sort_by_key(number);
    found
}

#[test]
fn a_torn_journal_entry_in_the_zero_filled_tail_is_cut_off_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = StateStore::open(dir.path()).unwrap();
        let mut batch = store.shard(ShardId(3)).batch();
        batch.put_state("Counter", "1", Some(b"42".to_vec()));
        batch.commit().unwrap();
    }
    let journal = journals(dir.path()).pop().expect("a journal file");
    let mut bytes = std::fs::read(&journal).unwrap();
    // Every complete batch ends with a non-zero trailer: the written part
    // ends at the last non-zero byte; the preallocated rest is zeros.
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    // The start of a batch and the start of its item, cut before the
    // item's on-disk value length (the zeros that follow read as 0, its
    // value length says 66).
    let mut torn = vec![1u8];
    torn.extend_from_slice(&1u32.to_le_bytes()); // items
    torn.extend_from_slice(&(1u64 << 40).to_le_bytes()); // seqno
    torn.extend_from_slice(&[2, 0, 0]); // item, value type, no compression
    torn.extend_from_slice(&0u64.to_le_bytes()); // keyspace
    torn.extend_from_slice(&1u16.to_le_bytes()); // key length
    torn.extend_from_slice(&66u32.to_le_bytes()); // value length
    assert!(
        end + torn.len() < bytes.len(),
        "the journal is preallocated"
    );
    bytes[end..end + torn.len()].copy_from_slice(&torn);
    std::fs::write(&journal, &bytes).unwrap();

    let store = StateStore::open(dir.path()).expect("the torn entry is cut off");
    let mut batch = store.shard(ShardId(3)).batch();
    batch.put_state("Counter", "2", Some(b"7".to_vec()));
    batch.commit().unwrap();
    assert_eq!(
        store.shard(ShardId(3)).state("Counter", "2").unwrap(),
        Some(b"7".to_vec())
    );
}
