//! Golden bytes of the stored formats (`docs/formats.md`): a log record of
//! every kind, a row of every checkpoint table, a checkpoint's meta, a state
//! with its header, and a named message, as this build writes them,
//! checked in here.
//!
//! A test failing here means a stored format changed. Bytes already on disk
//! keep their old meaning, so: bump the version that covers the format
//! (`RECORD_VERSION`, the data directory format, a message's tag), keep a
//! reader of the old bytes (with a fixture under `tests/fixtures/`), write
//! the change in `docs/formats.md`, and only then update the bytes here.
//!
//! (Over 500 lines: the bytes of every stored value, kept in one place so
//! that a format change shows up here in one diff.)

use serde::{Deserialize, Serialize};

use super::{
    envelope::{Outgoing, Provenance, ReplyRoute},
    ids::{DeadLetterSeq, EgressSeq, Lsn, Seq, ShardId, TimerId, TimerSlot},
    record::{
        DeadLetterEntry, Emitted, Entry, Input, InvocationOutcome, InvocationRecord, Sent,
        ShardRecord, StoredReply, TimerEntry, TimerKey, decode, encode,
    },
};
use crate::{Address, InvocationId, shard::freeze::ShardMeta, stateful_function};

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

/// What messages of record version 2 carry; version 1 reads as the default.
fn provenance(v2: bool) -> Provenance {
    if v2 {
        Provenance {
            caller: Some(address("w")),
            invocation: Some(Box::new(InvocationId::from_key("i"))),
            trace: None,
        }
    } else {
        Provenance::default()
    }
}

fn sent(seq: u64, v2: bool) -> Sent {
    Sent {
        dest: ShardId(1),
        seq: Seq(seq),
        target: address("y"),
        message: message(2),
        reply_to: Some(ReplyRoute {
            to: address("x"),
            handler: "add".into(),
            // Version 2: the reply message up to its last argument, and the
            // caller's timeout timer.
            prefix: v2.then(|| message(1)[..9].to_vec()),
            guard: v2.then_some(TimerId(8)),
            timeout: None,
        }),
        // Version 2: the timer a reply races.
        guard: v2.then_some(TimerId(2)),
        attempt: 1,
        provenance: provenance(v2),
    }
}

fn timer(id: u64, key: Option<TimerKey>, v2: bool) -> TimerEntry {
    let every_ms = matches!(key, Some(TimerKey::Named(_))).then_some(30_000);
    TimerEntry {
        id: TimerId(id),
        due_ms: AT_MS + 60_000,
        outgoing: Outgoing {
            target: address("x"),
            message: if key == Some(TimerKey::Expiry) {
                Vec::new()
            } else {
                message(3)
            },
            delay: None,
            reply_to: None,
            guard: None,
            attempt: 0,
            provenance: provenance(v2),
        },
        key,
        every_ms,
    }
}

fn stored_reply(outcome: Option<InvocationOutcome>) -> StoredReply {
    StoredReply {
        key: "k".into(),
        handler: "add".into(),
        reply: vec![0],
        at_ms: AT_MS,
        outcome,
    }
}

fn slot(id: u64) -> TimerSlot {
    TimerSlot {
        due_ms: AT_MS + 60_000,
        id: TimerId(id),
    }
}

/// One record of every kind (and both forms of the optional parts), as
/// record version 2 writes them.
fn records() -> Vec<ShardRecord> {
    let mut records = base(true);
    let Some(Entry::Invocation(invocation)) = records.first_mut().map(|r| &mut r.entry) else {
        unreachable!("the first record is an invocation");
    };
    invocation.timers = vec![
        timer(9, None, true),
        timer(10, Some(TimerKey::Expiry), true),
        timer(12, Some(TimerKey::Named("tick".into())), true),
        timer(13, Some(TimerKey::Invocation("inv-1".into())), true),
        timer(16, Some(TimerKey::Reply(TimerId(16))), true),
    ];
    invocation.cancelled = vec![
        (TimerKey::Named("idle".into()), slot(8)),
        (TimerKey::Reply(TimerId(7)), slot(7)),
    ];
    // Every kind of invocation id a message carries.
    let with_invocation = |id: InvocationId, mut sent: Sent| {
        sent.provenance.invocation = Some(Box::new(id));
        sent
    };
    let fired_keyed = InvocationRecord {
        target: address("x"),
        input: Input::Timer {
            timer: slot(12),
            key: TimerKey::Named("tick".into()),
        },
        state: None,
        sent: vec![
            with_invocation(InvocationId::message(2, 7), sent(8, true)),
            with_invocation(InvocationId::call(3, AT_MS, 1), sent(9, true)),
            with_invocation(
                InvocationId::enqueued(address("x"), "inv-1"),
                sent(10, true),
            ),
            with_invocation(InvocationId::timer(3, AT_MS + 60_000, 12), sent(11, true)),
        ],
        timers: vec![timer(14, Some(TimerKey::Named("tick".into())), true)],
        cancelled: Vec::new(),
        reply: Some(stored_reply(Some(InvocationOutcome::Failed("boom".into())))),
        egress: Vec::new(),
        dead_letter: None,
    };
    let mut entries: Vec<Entry> = records.into_iter().map(|r| r.entry).collect();
    for entry in &mut entries {
        *entry = match std::mem::replace(entry, Entry::Invocation(empty_client())) {
            Entry::TimerFiredV1 { timer, sent } => Entry::TimerFired {
                timer: slot(timer.0),
                sent,
            },
            Entry::ExpiredV1 {
                timer,
                target,
                rearm,
            } => Entry::Expired {
                timer: slot(timer.0),
                target,
                rearm,
            },
            other => other,
        };
    }
    entries.push(Entry::Invocation(fired_keyed));
    // The other outcomes of an enqueued invocation.
    for outcome in [InvocationOutcome::Pending, InvocationOutcome::Cancelled] {
        entries.push(Entry::Invocation(InvocationRecord {
            reply: Some(stored_reply(Some(outcome))),
            ..empty_client()
        }));
    }
    entries.push(Entry::Deleted {
        target: address("x"),
        timers: vec![
            (TimerKey::Named("tick".into()), slot(14)),
            (TimerKey::Expiry, slot(15)),
        ],
    });
    entries
        .into_iter()
        .map(|entry| ShardRecord {
            shard: ShardId(3),
            entry,
        })
        .collect()
}

fn empty_client() -> InvocationRecord {
    InvocationRecord {
        target: address("z"),
        input: Input::Client,
        state: None,
        sent: Vec::new(),
        timers: Vec::new(),
        cancelled: Vec::new(),
        reply: None,
        egress: Vec::new(),
        dead_letter: None,
    }
}

/// What the records of version 1 (`RECORDS_V1`) read as today.
fn records_v1() -> Vec<ShardRecord> {
    base(false)
}

/// One record of every kind version 1 had (and both forms of the optional
/// parts), as this build reads them; `v2`: with the provenance of record
/// version 2 (else as version 1 reads).
fn base(v2: bool) -> Vec<ShardRecord> {
    let invocation = InvocationRecord {
        target: address("x"),
        input: Input::Function {
            source: ShardId(2),
            seq: Seq(7),
        },
        state: Some(vec![3, 0x80, 0x01, 5]),
        sent: vec![sent(4, v2)],
        timers: vec![timer(9, None, v2), timer(10, Some(TimerKey::Expiry), v2)],
        cancelled: Vec::new(),
        reply: Some(stored_reply(v2.then(|| InvocationOutcome::Done(vec![1])))),
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
            provenance: provenance(v2),
        })),
    };
    let client = empty_client();
    let entries = vec![
        Entry::Invocation(invocation),
        Entry::Invocation(client),
        Entry::TimerFiredV1 {
            timer: TimerId(9),
            sent: sent(5, v2),
        },
        Entry::DeadLetterResolved {
            id: DeadLetterSeq(1),
            resent: Some(sent(6, v2)),
        },
        Entry::DeadLetterResolved {
            id: DeadLetterSeq(2),
            resent: None,
        },
        Entry::ExpiredV1 {
            timer: TimerId(10),
            target: address("x"),
            rearm: Some(timer(11, Some(TimerKey::Expiry), v2)),
        },
        Entry::ExpiredV1 {
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

/// `records()`, encoded by this build (record version 2; named messages).
const RECORDS: [&str; 11] = [
    "02 03 00 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 78 01 02 07 01 \
     04 03 80 01 05 01 01 04 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 \
     79 0c a1 03 61 64 64 8c b8 09 9b 02 01 6e 01 0e 67 6f 6c 64 65 6e 2e 43 \
     6f 75 6e 74 65 72 01 78 03 61 64 64 01 09 a1 03 61 64 64 8c b8 09 9b 01 \
     08 01 02 01 01 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 77 01 00 \
     01 69 05 09 e0 a4 ee b6 b7 33 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 \
     72 01 78 0c a1 03 61 64 64 8c b8 09 9b 03 01 6e 00 00 00 00 01 0e 67 6f \
     6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 77 01 00 01 69 00 00 0a e0 a4 ee \
     b6 b7 33 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 78 00 00 00 00 \
     00 01 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 77 01 00 01 69 01 \
     02 00 0c e0 a4 ee b6 b7 33 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 \
     01 78 0c a1 03 61 64 64 8c b8 09 9b 03 01 6e 00 00 00 00 01 0e 67 6f 6c \
     64 65 6e 2e 43 6f 75 6e 74 65 72 01 77 01 00 01 69 01 00 04 74 69 63 6b \
     01 b0 ea 01 0d e0 a4 ee b6 b7 33 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 \
     65 72 01 78 0c a1 03 61 64 64 8c b8 09 9b 03 01 6e 00 00 00 00 01 0e 67 \
     6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 77 01 00 01 69 01 01 05 69 6e \
     76 2d 31 00 10 e0 a4 ee b6 b7 33 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 \
     65 72 01 78 0c a1 03 61 64 64 8c b8 09 9b 03 01 6e 00 00 00 00 01 0e 67 \
     6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 77 01 00 01 69 01 03 10 00 02 \
     00 04 69 64 6c 65 e0 a4 ee b6 b7 33 08 03 07 e0 a4 ee b6 b7 33 07 01 01 \
     6b 03 61 64 64 01 00 80 d0 ea b6 b7 33 01 01 01 01 01 00 03 03 6c 6f 67 \
     01 35 80 d0 ea b6 b7 33 01 01 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 \
     72 01 78 0c a1 03 61 64 64 8c b8 09 9b 04 01 6e 00 04 62 6f 6f 6d 03 80 \
     d0 ea b6 b7 33 01 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 77 01 \
     00 01 69",
    "02 03 00 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 7a 00 00 00 00 \
     00 00 00 00",
    "02 03 01 e0 a4 ee b6 b7 33 09 01 05 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e \
     74 65 72 01 79 0c a1 03 61 64 64 8c b8 09 9b 02 01 6e 01 0e 67 6f 6c 64 \
     65 6e 2e 43 6f 75 6e 74 65 72 01 78 03 61 64 64 01 09 a1 03 61 64 64 8c \
     b8 09 9b 01 08 01 02 01 01 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 \
     01 77 01 00 01 69",
    "02 03 02 01 01 01 06 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 79 \
     0c a1 03 61 64 64 8c b8 09 9b 02 01 6e 01 0e 67 6f 6c 64 65 6e 2e 43 6f \
     75 6e 74 65 72 01 78 03 61 64 64 01 09 a1 03 61 64 64 8c b8 09 9b 01 08 \
     01 02 01 01 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 77 01 00 01 \
     69",
    "02 03 02 02 00",
    "02 03 03 e0 a4 ee b6 b7 33 0a 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 \
     72 01 78 01 0b e0 a4 ee b6 b7 33 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 \
     65 72 01 78 00 00 00 00 00 01 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 \
     72 01 77 01 00 01 69 01 02 00",
    "02 03 03 e0 a4 ee b6 b7 33 0b 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 \
     72 01 78 00",
    "02 03 00 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 78 02 e0 a4 ee \
     b6 b7 33 0c 00 04 74 69 63 6b 00 04 01 08 0e 67 6f 6c 64 65 6e 2e 43 6f \
     75 6e 74 65 72 01 79 0c a1 03 61 64 64 8c b8 09 9b 02 01 6e 01 0e 67 6f \
     6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 78 03 61 64 64 01 09 a1 03 61 64 \
     64 8c b8 09 9b 01 08 01 02 01 01 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 \
     65 72 01 77 01 01 02 07 01 09 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 \
     72 01 79 0c a1 03 61 64 64 8c b8 09 9b 02 01 6e 01 0e 67 6f 6c 64 65 6e \
     2e 43 6f 75 6e 74 65 72 01 78 03 61 64 64 01 09 a1 03 61 64 64 8c b8 09 \
     9b 01 08 01 02 01 01 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 77 \
     01 02 03 80 d0 ea b6 b7 33 01 01 0a 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e \
     74 65 72 01 79 0c a1 03 61 64 64 8c b8 09 9b 02 01 6e 01 0e 67 6f 6c 64 \
     65 6e 2e 43 6f 75 6e 74 65 72 01 78 03 61 64 64 01 09 a1 03 61 64 64 8c \
     b8 09 9b 01 08 01 02 01 01 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 \
     01 77 01 03 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 78 05 69 6e \
     76 2d 31 01 0b 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 79 0c a1 \
     03 61 64 64 8c b8 09 9b 02 01 6e 01 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e \
     74 65 72 01 78 03 61 64 64 01 09 a1 03 61 64 64 8c b8 09 9b 01 08 01 02 \
     01 01 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 77 01 04 03 e0 a4 \
     ee b6 b7 33 0c 01 0e e0 a4 ee b6 b7 33 0e 67 6f 6c 64 65 6e 2e 43 6f 75 \
     6e 74 65 72 01 78 0c a1 03 61 64 64 8c b8 09 9b 03 01 6e 00 00 00 00 01 \
     0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 77 01 00 01 69 01 00 04 \
     74 69 63 6b 01 b0 ea 01 00 01 01 6b 03 61 64 64 01 00 80 d0 ea b6 b7 33 \
     01 02 04 62 6f 6f 6d 00 00",
    "02 03 00 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 7a 00 00 00 00 \
     00 01 01 6b 03 61 64 64 01 00 80 d0 ea b6 b7 33 01 00 00 00",
    "02 03 00 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 7a 00 00 00 00 \
     00 01 01 6b 03 61 64 64 01 00 80 d0 ea b6 b7 33 01 03 00 00",
    "02 03 04 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 78 02 00 04 74 \
     69 63 6b e0 a4 ee b6 b7 33 0e 02 e0 a4 ee b6 b7 33 0f",
];

/// `records_v1()` as record version 1 wrote them (named messages): never
/// change these, older logs hold them.
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
    let records = records();
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
fn log_records_of_version_1_still_read() {
    for (record, golden) in records_v1().iter().zip(RECORDS_V1) {
        let back: ShardRecord = decode(&unhex(golden), "a golden record").expect("decodes");
        assert_eq!(format!("{back:?}"), format!("{record:?}"));
    }
    // A timer of version 1, as checkpoints of that version stored it.
    let timer_v1 = "01 0a e0 a4 ee b6 b7 33 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 \
                    01 78 00 00 00 00 01";
    let back: TimerEntry = decode(&unhex(timer_v1), "a golden timer").expect("decodes");
    assert_eq!(back, timer(10, Some(TimerKey::Expiry), false));
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
    let back: ShardMeta = decode(&unhex(golden), "a golden meta").expect("decodes");
    assert_eq!(format!("{back:?}"), format!("{meta:?}"));
    // Its layout did not change in record version 2: version 1 still reads.
    let v1 = "01 2a 0c 01 01 06 01 02 07 04 03";
    let back: ShardMeta = decode(&unhex(v1), "a version-1 meta").expect("decodes");
    assert_eq!(format!("{back:?}"), format!("{meta:?}"));
}

#[test]
fn a_state_and_its_header_encode_to_their_golden_bytes_and_back() {
    let state = Counter {
        n: 300,
        label: "hi".into(),
    };
    // (version 3, written at AT_MS), then the struct.
    let golden = "03 80 d0 ea b6 b7 33 ac 02 02 68 69";
    let bytes = crate::function::encode_state(&state, AT_MS, vec![9; 3]).expect("encodes");
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

/// A dead letter of an enqueued invocation (its id in the provenance).
fn letter() -> DeadLetterEntry {
    DeadLetterEntry {
        id: DeadLetterSeq(2),
        target: address("x"),
        message: message(4),
        reply_to: None,
        error: "boom".into(),
        attempts: 1,
        at_ms: AT_MS,
        provenance: Provenance {
            caller: None,
            invocation: Some(Box::new(InvocationId::enqueued(address("x"), "inv-1"))),
            trace: None,
        },
    }
}

fn emitted() -> Emitted {
    Emitted {
        shard: ShardId(3),
        seq: EgressSeq(4),
        log: "log".into(),
        record: b"5".to_vec(),
        at_ms: AT_MS,
    }
}

/// One value of every checkpoint table that holds a record value, as
/// record version 2 stores it on its own (the log records above hold the
/// same types inside), with its `Debug` form: a keyed periodic timer, a
/// delayed invocation's timer, a request's timeout timer, an outbox entry
/// (a request with its reply route), a dead letter, a stored reply with
/// its outcome, a pending egress record. `tests/fixtures/data-v2-records-v2`
/// holds such rows too.
fn rows() -> Vec<(&'static str, Vec<u8>, String)> {
    fn row<T: Serialize + std::fmt::Debug>(
        what: &'static str,
        value: &T,
    ) -> (&'static str, Vec<u8>, String) {
        (what, encode(value).expect("encodes"), format!("{value:?}"))
    }
    vec![
        row(
            "timer (named, periodic)",
            &timer(12, Some(TimerKey::Named("tick".into())), true),
        ),
        row(
            "timer (delayed invocation)",
            &timer(13, Some(TimerKey::Invocation("inv-1".into())), true),
        ),
        row(
            "timer (request timeout)",
            &timer(16, Some(TimerKey::Reply(TimerId(16))), true),
        ),
        row("outbox entry", &sent(4, true)),
        row("dead letter", &letter()),
        row(
            "stored reply",
            &stored_reply(Some(InvocationOutcome::Done(vec![1]))),
        ),
        row("pending egress record", &emitted()),
    ]
}

/// `rows()`, encoded by this build (record version 2).
const ROWS: [&str; 7] = [
    "02 0c e0 a4 ee b6 b7 33 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 \
     78 0c a1 03 61 64 64 8c b8 09 9b 03 01 6e 00 00 00 00 01 0e 67 6f 6c 64 \
     65 6e 2e 43 6f 75 6e 74 65 72 01 77 01 00 01 69 01 00 04 74 69 63 6b 01 \
     b0 ea 01",
    "02 0d e0 a4 ee b6 b7 33 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 \
     78 0c a1 03 61 64 64 8c b8 09 9b 03 01 6e 00 00 00 00 01 0e 67 6f 6c 64 \
     65 6e 2e 43 6f 75 6e 74 65 72 01 77 01 00 01 69 01 01 05 69 6e 76 2d 31 \
     00",
    "02 10 e0 a4 ee b6 b7 33 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 \
     78 0c a1 03 61 64 64 8c b8 09 9b 03 01 6e 00 00 00 00 01 0e 67 6f 6c 64 \
     65 6e 2e 43 6f 75 6e 74 65 72 01 77 01 00 01 69 01 03 10 00",
    "02 01 04 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 79 0c a1 03 61 \
     64 64 8c b8 09 9b 02 01 6e 01 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 \
     72 01 78 03 61 64 64 01 09 a1 03 61 64 64 8c b8 09 9b 01 08 01 02 01 01 \
     0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 77 01 00 01 69",
    "02 02 0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 78 0c a1 03 61 64 \
     64 8c b8 09 9b 04 01 6e 00 04 62 6f 6f 6d 01 80 d0 ea b6 b7 33 00 01 03 \
     0e 67 6f 6c 64 65 6e 2e 43 6f 75 6e 74 65 72 01 78 05 69 6e 76 2d 31",
    "02 01 6b 03 61 64 64 01 00 80 d0 ea b6 b7 33 01 01 01 01",
    "02 03 04 03 6c 6f 67 01 35 80 d0 ea b6 b7 33",
];

#[test]
fn checkpoint_rows_of_every_table_encode_to_their_golden_bytes_and_back() {
    let rows = rows();
    let encoded: Vec<(&str, String)> = rows.iter().map(|(what, b, _)| (*what, hex(b))).collect();
    let golden: Vec<(&str, String)> = rows
        .iter()
        .zip(ROWS)
        .map(|((what, _, _), g)| (*what, hex(&unhex(g))))
        .collect();
    assert_eq!(encoded, golden, "this build's bytes, then the golden ones");
    // And back, each as its table's type.
    let back: Vec<String> = ROWS
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let bytes = unhex(g);
            match i {
                0..=2 => format!(
                    "{:?}",
                    decode::<TimerEntry>(&bytes, "a timer").expect("decodes")
                ),
                3 => format!(
                    "{:?}",
                    decode::<Sent>(&bytes, "an outbox entry").expect("decodes")
                ),
                4 => format!(
                    "{:?}",
                    decode::<DeadLetterEntry>(&bytes, "a letter").expect("decodes")
                ),
                5 => format!(
                    "{:?}",
                    decode::<StoredReply>(&bytes, "a reply").expect("decodes")
                ),
                _ => format!(
                    "{:?}",
                    decode::<Emitted>(&bytes, "an egress record").expect("decodes")
                ),
            }
        })
        .collect();
    let values: Vec<String> = rows.into_iter().map(|(_, _, debug)| debug).collect();
    assert_eq!(back, values);
}
