//! The egress logs against a real store: what a reader may see.

use std::{sync::Arc, time::Duration};

use statefn_store::StateStore;

use super::{Egress, Emitted, Stored, appender::Appender};
use crate::{
    clock::Clock,
    protocol::{
        ids::{EgressSeq, ShardId},
        record::encode,
    },
    service::{Service, Step},
};

fn emitted(seq: u64) -> Emitted {
    Emitted {
        shard: ShardId(0),
        seq: EgressSeq(seq),
        log: "orders".into(),
        record: serde_json::to_vec(&seq).expect("json"),
        at_ms: 1_000,
    }
}

fn offsets(egress: &Egress) -> Vec<u64> {
    egress
        .read("orders", 0, 100)
        .expect("readable")
        .iter()
        .map(|r| r.offset)
        .collect()
}

/// A record the store holds but the appender has not persisted yet (its
/// fsync is running, or failed) must not be read: after a crash its offset
/// would go to another record (exactly-once review #6).
#[test]
fn readers_see_only_what_the_appender_has_persisted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = StateStore::open(dir.path()).expect("store");
    let egress = Arc::new(
        Egress::open(
            store.egress(),
            1,
            Duration::from_secs(3600),
            Clock::virtual_at(1_000),
            crate::StoreFaults::default(),
        )
        .expect("opens"),
    );
    let mut appender = Appender::new(&egress).expect("durable");
    egress.submit((1..=3).map(emitted).collect());
    assert_eq!(appender.step(Duration::ZERO), Step::Worked);
    assert_eq!(offsets(&egress), vec![0, 1, 2]);
    // The oldest two are past their retention and swept...
    let mut swept = store.egress().batch();
    swept.delete_record("orders", 0);
    swept.delete_record("orders", 1);
    swept.commit_buffered().expect("swept");
    // ...and the next record is in the store, visible, not yet persisted:
    // the appender's write, before its fsync returned.
    let mut next = store.egress().batch();
    let stored = Stored {
        id: "s0-4".into(),
        at_ms: 1_000,
        record: b"4".to_vec(),
    };
    next.put_record("orders", 3, encode(&stored).expect("encodes"));
    next.commit_buffered().expect("written");
    assert_eq!(offsets(&egress), vec![2]);
}

/// An egress log row as record version 2 stores it (its layout has not
/// changed since version 1; see `docs/formats.md`): the version, then the
/// record's id, when it was emitted, and its bytes. A failure here is a
/// format change: see `protocol/golden.rs` for what to do.
#[test]
fn an_egress_row_encodes_to_its_golden_bytes_and_back() {
    let row = Stored {
        id: "s3-4".into(),
        at_ms: 1_767_225_600_000,
        record: b"{}".to_vec(),
    };
    let golden = [
        0x02, 0x04, b's', b'3', b'-', b'4', 0x80, 0xd0, 0xea, 0xb6, 0xb7, 0x33, 0x02, b'{', b'}',
    ];
    assert_eq!(encode(&row).expect("encodes"), golden);
    let back: Stored = crate::protocol::record::decode(&golden, "a golden row").expect("decodes");
    assert_eq!(
        (back.id.as_str(), back.at_ms, back.record.as_slice()),
        ("s3-4", row.at_ms, row.record.as_slice())
    );
    // Version 1 bytes read the same.
    let mut v1 = golden;
    v1[0] = 0x01;
    let back: Stored = crate::protocol::record::decode(&v1, "a version-1 row").expect("decodes");
    assert_eq!(back.id, "s3-4");
}
