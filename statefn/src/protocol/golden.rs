//! Golden bytes of the stored formats (`docs/formats.md`): a log record of
//! every kind, a checkpoint's meta, a state with its header, and a named
//! message, as this build writes them, checked in here.
//!
//! A test failing here means a stored format changed. Bytes already on disk
//! keep their old meaning, so: bump the version that covers the format
//! (`RECORD_VERSION`, the data directory format, a message's tag), keep a
//! reader of the old bytes (with a fixture under `tests/fixtures/`), write
//! the change in `docs/formats.md`, and only then update the bytes here.

use serde::{Deserialize, Serialize};

use super::{
    envelope::{Outgoing, ReplyRoute},
    ids::{DeadLetterSeq, EgressSeq, Lsn, Seq, ShardId, TimerId},
    record::{
        DeadLetterEntry, Emitted, Entry, Input, InvocationRecord, Sent, ShardRecord, StoredReply,
        TimerEntry, decode, encode,
    },
};
use crate::{Address, shard::freeze::ShardMeta, stateful_function};

/// 2026-01-01T00:00:00Z.
const AT_MS: u64 = 1_767_225_600_000;

#[stateful_function(name = "golden.Counter", version = 3)]
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Counter {
    n: u64,
    label: String,
}

#[stateful_function(message_derive(Debug, PartialEq))]
impl Counter {
    #[handler]
    fn add(&mut self, by: u64, note: String) {
        self.n += by;
        self.label = note;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    let text: String = text.split_whitespace().collect();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2).expect("even length"), 16).expect("hex"))
        .collect()
}

fn address(id: &str) -> Address {
    Address::new("golden.Counter", id).expect("valid")
}

fn message(by: u64) -> Vec<u8> {
    crate::encode_message::<Counter>(&CounterMessage::Add {
        by,
        note: "n".into(),
    })
    .expect("encodes")
}

/// Which record version's values to build: version 1 has no reply prefix,
/// no guards and nothing disarmed (what its reader gives those fields).
#[derive(Clone, Copy, PartialEq)]
enum V {
    One,
    Two,
}

fn sent(seq: u64, v: V) -> Sent {
    Sent {
        dest: ShardId(1),
        seq: Seq(seq),
        target: address("y"),
        message: message(2),
        reply_to: Some(ReplyRoute {
            to: address("x"),
            handler: "add".into(),
            // The reply message up to its last argument.
            prefix: (v == V::Two).then(|| message(1)[..9].to_vec()),
            guard: (v == V::Two).then_some(TimerId(8)),
            timeout: None,
        }),
        guard: (v == V::Two).then_some(TimerId(2)),
        attempt: 1,
    }
}

fn timer(id: u64, expiry: bool, v: V) -> TimerEntry {
    TimerEntry {
        id: TimerId(id),
        due_ms: AT_MS + 60_000,
        outgoing: Outgoing {
            target: address("x"),
            message: if expiry { Vec::new() } else { message(3) },
            delay: None,
            reply_to: None,
            guard: (v == V::Two && !expiry).then_some(TimerId(5)),
            attempt: 0,
        },
        expiry,
    }
}

/// One record of every kind (and both forms of the optional parts).
fn records(v: V) -> Vec<ShardRecord> {
    let invocation = InvocationRecord {
        target: address("x"),
        input: Input::Function {
            source: ShardId(2),
            seq: Seq(7),
        },
        state: Some(vec![3, 0x80, 0x01, 5]),
        sent: vec![sent(4, v)],
        timers: vec![timer(9, false, v), timer(10, true, v)],
        reply: Some(StoredReply {
            key: "k".into(),
            handler: "add".into(),
            reply: vec![0],
            at_ms: AT_MS,
        }),
        egress: vec![Emitted {
            shard: ShardId(0),
            seq: EgressSeq(3),
            log: "log".into(),
            record: b"5".to_vec(),
            at_ms: AT_MS,
        }],
        dead_letter: Some(Box::new(DeadLetterEntry {
            id: DeadLetterSeq(1),
            target: address("x"),
            message: message(4),
            reply_to: None,
            error: "boom".into(),
            attempts: 3,
            at_ms: AT_MS,
        })),
        disarmed: (v == V::Two).then_some(TimerId(8)),
    };
    let client = InvocationRecord {
        target: address("z"),
        input: Input::Client,
        state: None,
        sent: Vec::new(),
        timers: Vec::new(),
        reply: None,
        egress: Vec::new(),
        dead_letter: None,
        disarmed: None,
    };
    let entries = vec![
        Entry::Invocation(invocation),
        Entry::Invocation(client),
        Entry::TimerFired {
            timer: TimerId(9),
            sent: sent(5, v),
        },
        Entry::DeadLetterResolved {
            id: DeadLetterSeq(1),
            resent: Some(sent(6, v)),
        },
        Entry::DeadLetterResolved {
            id: DeadLetterSeq(2),
            resent: None,
        },
        Entry::Expired {
            timer: TimerId(10),
            target: address("x"),
            rearm: Some(timer(11, true, v)),
        },
        Entry::Expired {
            timer: TimerId(11),
            target: address("x"),
            rearm: None,
        },
    ];
    entries
        .into_iter()
        .map(|entry| ShardRecord {
            shard: ShardId(3),
            entry,
        })
        .collect()
}

/// `records(V::Two)`, encoded by this build (record version 2; named messages).
const RECORDS: [&str; 7] = [
    "02 03 00 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 78 01 02 07 01 \
     04 03 80 01 05 01 01 04 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 \
     79 0c a1 03 61 64 64 8c b8 09 9b 02 01 6e 01 0e 67 6f 6c 64 65 6e 2e 43 \
     6f 75 6e 74 65 72 01 78 03 61 64 64 01 09 a1 03 61 64 64 8c b8 09 9b 01 \
     08 01 02 01 02 09 e0 a4 ee b6 b7 33 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e \
     74 65 72 01 78 0c a1 03 61 64 64 8c b8 09 9b 03 01 6e 00 00 01 05 00 00 \
     0a e0 a4 ee b6 b7 33 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 78 \
     00 00 00 00 00 01 01 01 6b 03 61 64 64 01 00 80 d0 ea b6 b7 33 01 00 03 \
     03 6c 6f 67 01 35 80 d0 ea b6 b7 33 01 01 0e 67 6f 6c 64 65 6e 2e 43 6f \
     75 6e 74 65 72 01 78 0c a1 03 61 64 64 8c b8 09 9b 04 01 6e 00 04 62 6f \
     6f 6d 03 80 d0 ea b6 b7 33 01 08",
    "02 03 00 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 7a 00 00 00 00 \
     00 00 00 00",
    "02 03 01 09 01 05 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 79 0c \
     a1 03 61 64 64 8c b8 09 9b 02 01 6e 01 0e 67 6f 6c 64 65 6e 2e 43 6f 75 \
     6e 74 65 72 01 78 03 61 64 64 01 09 a1 03 61 64 64 8c b8 09 9b 01 08 01 \
     02 01",
    "02 03 02 01 01 01 06 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 79 \
     0c a1 03 61 64 64 8c b8 09 9b 02 01 6e 01 0e 67 6f 6c 64 65 6e 2e 43 6f \
     75 6e 74 65 72 01 78 03 61 64 64 01 09 a1 03 61 64 64 8c b8 09 9b 01 08 \
     01 02 01",
    "02 03 02 02 00",
    "02 03 03 0a 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 78 01 0b e0 \
     a4 ee b6 b7 33 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 78 00 00 \
     00 00 00 01",
    "02 03 03 0b 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 78 00",
];

/// `records(V::One)` as record version 1 wrote it (statefn until requests
/// carried a correlation and a timeout): read by the version-1 reader.
const RECORDS_V1: [&str; 7] = [
    "01 03 00 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 78 01 02 07 01 \
     04 03 80 01 05 01 01 04 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 \
     79 0c a1 03 61 64 64 8c b8 09 9b 02 01 6e 01 0e 67 6f 6c 64 65 6e 2e 43 \
     6f 75 6e 74 65 72 01 78 03 61 64 64 01 02 09 e0 a4 ee b6 b7 33 0e 67 6f \
     6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 78 0c a1 03 61 64 64 8c b8 09 9b \
     03 01 6e 00 00 00 00 0a e0 a4 ee b6 b7 33 0e 67 6f 6c 64 65 6e 2e 43 6f \
     75 6e 74 65 72 01 78 00 00 00 00 01 01 01 6b 03 61 64 64 01 00 80 d0 ea \
     b6 b7 33 01 00 03 03 6c 6f 67 01 35 80 d0 ea b6 b7 33 01 01 0e 67 6f 6c \
     64 65 6e 2e 43 6f 75 6e 74 65 72 01 78 0c a1 03 61 64 64 8c b8 09 9b 04 \
     01 6e 00 04 62 6f 6f 6d 03 80 d0 ea b6 b7 33",
    "01 03 00 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 7a 00 00 00 00 \
     00 00 00",
    "01 03 01 09 01 05 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 79 0c \
     a1 03 61 64 64 8c b8 09 9b 02 01 6e 01 0e 67 6f 6c 64 65 6e 2e 43 6f 75 \
     6e 74 65 72 01 78 03 61 64 64 01",
    "01 03 02 01 01 01 06 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 79 \
     0c a1 03 61 64 64 8c b8 09 9b 02 01 6e 01 0e 67 6f 6c 64 65 6e 2e 43 6f \
     75 6e 74 65 72 01 78 03 61 64 64 01",
    "01 03 02 02 00",
    "01 03 03 0a 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 78 01 0b e0 \
     a4 ee b6 b7 33 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 78 00 00 \
     00 00 01",
    "01 03 03 0b 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 78 00",
];

#[test]
fn log_records_of_every_kind_encode_to_their_golden_bytes_and_back() {
    let records = records(V::Two);
    let encoded: Vec<String> = records
        .iter()
        .map(|r| hex(&encode(r).expect("encodes")))
        .collect();
    let golden: Vec<String> = RECORDS.iter().map(|g| hex(&unhex(g))).collect();
    assert_eq!(encoded, golden, "this build's bytes, then the golden ones");
    for (record, golden) in records.iter().zip(RECORDS) {
        let back: ShardRecord = decode(&unhex(golden), "a golden record").expect("decodes");
        assert_eq!(format!("{back:?}"), format!("{record:?}"));
    }
}

#[test]
fn log_records_of_version_1_are_still_read() {
    for (record, golden) in records(V::One).iter().zip(RECORDS_V1) {
        let back: ShardRecord = decode(&unhex(golden), "a golden record").expect("decodes");
        assert_eq!(format!("{back:?}"), format!("{record:?}"));
    }
}

#[test]
fn a_checkpoint_meta_encodes_to_its_golden_bytes_and_back() {
    let meta = ShardMeta {
        checkpoint_lsn: Lsn(42),
        next_timer: TimerId(12),
        next_seq: vec![(ShardId(1), Seq(6))],
        watermarks: vec![(ShardId(2), Seq(7))],
        next_egress: EgressSeq(4),
        next_dead_letter: DeadLetterSeq(3),
    };
    let golden = "02 2a 0c 01 01 06 01 02 07 04 03";
    assert_eq!(hex(&encode(&meta).expect("encodes")), hex(&unhex(golden)));
    // Version 1 wrote the same bytes after its version byte.
    for golden in [golden, "01 2a 0c 01 01 06 01 02 07 04 03"] {
        let back: ShardMeta = decode(&unhex(golden), "a golden meta").expect("decodes");
        assert_eq!(format!("{back:?}"), format!("{meta:?}"));
    }
}

#[test]
fn a_state_and_its_header_encode_to_their_golden_bytes_and_back() {
    let state = Counter {
        n: 300,
        label: "hi".into(),
    };
    // (version 3, written at AT_MS), then the struct.
    let golden = "03 80 d0 ea b6 b7 33 ac 02 02 68 69";
    let bytes = crate::function::encode_state(&state, AT_MS).expect("encodes");
    assert_eq!(hex(&bytes), hex(&unhex(golden)));
    assert_eq!(
        crate::function::state_written_ms(&unhex(golden)),
        Some(AT_MS)
    );
    let back: Counter =
        crate::function::decode_state_of::<Counter>("x", &unhex(golden)).expect("decodes");
    assert_eq!(back, state);
}

#[test]
fn a_named_message_encodes_to_its_golden_bytes_and_back() {
    // 0xA1, the name's length and bytes, the argument fingerprint (LE),
    // then each argument.
    let golden = "a1 03 61 64 64 8c b8 09 9b ac 02 02 68 69";
    let message = CounterMessage::Add {
        by: 300,
        note: "hi".into(),
    };
    let bytes = crate::encode_message::<Counter>(&message).expect("encodes");
    assert_eq!(hex(&bytes), hex(&unhex(golden)));
    assert_eq!(
        crate::decode_message::<Counter>(&unhex(golden)).expect("decodes"),
        message
    );
}
