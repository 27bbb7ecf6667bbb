//! The state store keeps each shard's tables apart, scans them in key
//! order, and keeps synced batches across reopen.

use super::{StateStore, StoreError, Table};

fn kv(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
    (k.as_bytes().to_vec(), v.as_bytes().to_vec())
}

fn put(table: Table, k: &str, v: &str) -> (Table, Vec<u8>, Option<Vec<u8>>) {
    (table, k.as_bytes().to_vec(), Some(v.as_bytes().to_vec()))
}

fn del(table: Table, k: &str) -> (Table, Vec<u8>, Option<Vec<u8>>) {
    (table, k.as_bytes().to_vec(), None)
}

#[test]
fn apply_then_get_in_every_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let writes = Table::ALL
        .iter()
        .map(|&t| put(t, "k", t.keyspace_name()))
        .collect();
    store.apply(1, writes, false).unwrap();
    for table in Table::ALL {
        assert_eq!(
            store.get(1, table, b"k").unwrap(),
            Some(table.keyspace_name().as_bytes().to_vec()),
            "{table:?}"
        );
    }
    // Deletes and puts in one batch.
    store
        .apply(
            1,
            vec![del(Table::State, "k"), put(Table::Timer, "k", "new")],
            false,
        )
        .unwrap();
    assert_eq!(store.get(1, Table::State, b"k").unwrap(), None);
    assert_eq!(
        store.get(1, Table::Timer, b"k").unwrap(),
        Some(b"new".to_vec())
    );
    assert_eq!(store.get(1, Table::Meta, b"missing").unwrap(), None);
}

#[test]
fn shards_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    // Neighbouring prefixes (0x00FF / 0x0100) and the extremes.
    let shards = [0u16, 1, 255, 256, u16::MAX - 1, u16::MAX];
    for &shard in &shards {
        let writes = (0..5)
            .map(|i| put(Table::Outbox, &format!("key{i}"), &format!("{shard}/{i}")))
            .collect();
        store.apply(shard, writes, false).unwrap();
    }
    store
        .apply(256, vec![del(Table::Outbox, "key0")], false)
        .unwrap();
    for &shard in &shards {
        let scanned = store.scan(shard, Table::Outbox).unwrap();
        let first = if shard == 256 { 1 } else { 0 };
        let want: Vec<_> = (first..5)
            .map(|i| kv(&format!("key{i}"), &format!("{shard}/{i}")))
            .collect();
        assert_eq!(scanned, want, "shard {shard}");
        assert!(store.scan(shard, Table::State).unwrap().is_empty());
    }
    assert_eq!(store.get(2, Table::Outbox, b"key1").unwrap(), None);
}

#[test]
fn scan_is_in_key_order_and_empty_keys_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    store
        .apply(
            3,
            vec![
                put(Table::Timer, "b", "2"),
                put(Table::Timer, "", "0"),
                put(Table::Timer, "a", "1"),
            ],
            false,
        )
        .unwrap();
    assert_eq!(
        store.scan(3, Table::Timer).unwrap(),
        vec![kv("", "0"), kv("a", "1"), kv("b", "2")]
    );
}

#[test]
fn scan_from_pages_through_one_shard() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let entries: Vec<_> = (0u32..25)
        .map(|i| (i.to_be_bytes().to_vec(), vec![i as u8]))
        .collect();
    for shard in [4u16, 5] {
        let writes = entries
            .iter()
            .map(|(k, v)| (Table::Egress, k.clone(), Some(v.clone())))
            .collect();
        store.apply(shard, writes, false).unwrap();
    }

    let mut pages = Vec::new();
    let mut from = Vec::new();
    loop {
        let page = store.scan_from(4, Table::Egress, &from, 10).unwrap();
        if page.is_empty() {
            break;
        }
        from = page.last().unwrap().0.clone();
        from.push(0);
        pages.push(page);
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![10, 10, 5]
    );
    assert_eq!(pages.concat(), entries);

    let tail = store
        .scan_from(4, Table::Egress, &20u32.to_be_bytes(), 100)
        .unwrap();
    assert_eq!(tail, entries[20..].to_vec());
    assert!(
        store
            .scan_from(4, Table::Egress, b"", 0)
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .scan_from(4, Table::DeadLetter, b"", 10)
            .unwrap()
            .is_empty()
    );
    // The last shard has no "next shard" to stop at.
    store
        .apply(u16::MAX, vec![put(Table::Egress, "z", "last")], false)
        .unwrap();
    assert_eq!(
        store.scan_from(u16::MAX, Table::Egress, b"a", 10).unwrap(),
        vec![kv("z", "last")]
    );
}

#[test]
fn synced_batches_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = StateStore::open(dir.path()).unwrap();
        store
            .apply(
                7,
                vec![put(Table::State, "a", "1"), put(Table::Meta, "pos", "9")],
                true,
            )
            .unwrap();
        store
            .apply(
                7,
                vec![del(Table::State, "a"), put(Table::State, "b", "2")],
                true,
            )
            .unwrap();
    }
    let store = StateStore::open(dir.path()).unwrap();
    assert_eq!(store.scan(7, Table::State).unwrap(), vec![kv("b", "2")]);
    assert_eq!(
        store.get(7, Table::Meta, b"pos").unwrap(),
        Some(b"9".to_vec())
    );
    // An empty synced batch is fine too.
    store.apply(7, Vec::new(), true).unwrap();
}

#[test]
fn clones_share_the_store_across_threads() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let handles: Vec<_> = (0u16..4)
        .map(|shard| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    store
                        .apply(
                            shard,
                            vec![put(Table::State, &format!("{i:03}"), "v")],
                            i % 10 == 0,
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for shard in 0..4 {
        assert_eq!(store.scan(shard, Table::State).unwrap().len(), 50);
    }
}

#[test]
fn oversized_keys_are_rejected_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path()).unwrap();
    let long = vec![b'k'; 70_000];
    let result = store.apply(
        0,
        vec![
            put(Table::State, "ok", "1"),
            (Table::State, long.clone(), Some(vec![])),
        ],
        true,
    );
    assert!(matches!(
        result,
        Err(StoreError::KeyTooLong { len: 70_000, .. })
    ));
    assert_eq!(store.get(0, Table::State, b"ok").unwrap(), None);
    assert!(matches!(
        store.get(0, Table::State, &long),
        Err(StoreError::KeyTooLong { .. })
    ));
}

/// Set in the child process of [`a_synced_batch_survives_a_process_abort`].
const CHILD_DIR: &str = "STATEFN_STORE_TEST_ABORT_DIR";

#[test]
fn a_synced_batch_survives_a_process_abort() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        // Child: persist one batch, leave another unsynced, and die without
        // running destructors (fjall would persist on drop).
        let store = StateStore::open(std::path::Path::new(&dir)).unwrap();
        store
            .apply(9, vec![put(Table::Meta, "checkpoint", "42")], true)
            .unwrap();
        store
            .apply(9, vec![put(Table::State, "unsynced", "x")], false)
            .unwrap();
        std::process::abort();
    }
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "state::tests::a_synced_batch_survives_a_process_abort",
            "--nocapture",
        ])
        .env(CHILD_DIR, dir.path())
        .status()
        .unwrap();
    assert!(!status.success(), "the child should have aborted");
    let store = StateStore::open(dir.path()).unwrap();
    assert_eq!(
        store.get(9, Table::Meta, b"checkpoint").unwrap(),
        Some(b"42".to_vec())
    );
}
