//! The JetStream log (`statefn::cluster`) against real `nats-server`
//! processes: appends, pipelined flushes, fencing by epoch, truncation, a
//! SIGKILLed stream leader, a full NATS restart, and the engine behaviours
//! the implementation relies on.
//!
//! The log's API is blocking and must not run on a tokio worker, so these are
//! plain `#[test]`s with their own runtime for the client.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, context::PublishErrorKind};
use statefn::cluster::{
    CommitLog, Epoch, JetStreamBackend, JetStreamOptions, LogBackend, LogError, LogGroupId,
    LogRecord, Lsn, OpenedLog, PendingFlush,
};
use statefn_tests::nats::{NatsCluster, NatsOptions};

const GROUP: LogGroupId = LogGroupId(7);

/// Records with the positions their flushes acknowledged.
type Acked = Vec<(Lsn, Vec<u8>)>;

struct Env {
    nats: NatsCluster,
    tokio: tokio::runtime::Runtime,
}

impl Env {
    fn start(options: NatsOptions) -> Env {
        let nats = NatsCluster::start(options).expect("start NATS");
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio");
        Env { nats, tokio }
    }

    fn backend(&self, writer: &str) -> JetStreamBackend {
        self.backend_with(writer, |_| {})
    }

    fn backend_with(
        &self,
        writer: &str,
        tune: impl FnOnce(&mut JetStreamOptions),
    ) -> JetStreamBackend {
        let mut options = JetStreamOptions::new("test", writer);
        options.replicas = self.nats.len().min(3);
        // These tests check what the log keeps, not how fast NATS answers:
        // on a loaded CI machine a JetStream API request (creating the fence
        // reader's consumer) took over the default 5 s once, and the runtime,
        // unlike these tests, retries such an open.
        options.ack_timeout = Duration::from_secs(20);
        tune(&mut options);
        JetStreamBackend::connect(
            &self.nats.client_urls().join(","),
            options,
            self.tokio.handle().clone(),
        )
        .expect("connect")
    }

    /// Index of the server leading the group's stream.
    fn stream_leader(&self, backend: &JetStreamBackend) -> usize {
        let name = JetStreamBackend::stream_name("test", GROUP);
        let js = backend.jetstream().clone();
        let leader = self.tokio.block_on(async move {
            let mut stream = js.get_stream(&name).await.expect("stream");
            stream
                .info()
                .await
                .expect("info")
                .cluster
                .clone()
                .and_then(|c| c.leader)
                .expect("a leader")
        });
        self.nats.index_of(&leader).expect("a known server")
    }
}

fn open(backend: &JetStreamBackend, epoch: u64, from: u64) -> (Box<dyn CommitLog>, Vec<LogRecord>) {
    let OpenedLog { log, records } = backend.open(GROUP, Epoch(epoch), Lsn(from)).expect("open");
    (
        log,
        records.collect::<Result<Vec<_>, _>>().expect("read back"),
    )
}

fn append_all(log: &mut dyn CommitLog, records: &[Vec<u8>]) -> Vec<Lsn> {
    records
        .iter()
        .map(|r| log.append(r).expect("append"))
        .collect()
}

fn append_and_flush(log: &mut dyn CommitLog, records: &[Vec<u8>]) -> Result<Lsn, LogError> {
    for record in records {
        log.append(record)?;
    }
    log.flush()?.wait()
}

fn payloads(records: &[LogRecord]) -> Vec<Vec<u8>> {
    records.iter().map(|r| r.payload.clone()).collect()
}

fn numbered(prefix: &str, range: std::ops::Range<u32>) -> Vec<Vec<u8>> {
    range
        .map(|i| format!("{prefix}-{i}").into_bytes())
        .collect()
}

#[test]
fn appends_flush_and_reopen_reads_them_back_in_order() {
    let env = Env::start(NatsOptions::three());
    let backend = env.backend("a");
    let (mut log, replay) = open(&backend, 1, 0);
    assert!(replay.is_empty());
    let fence = log.durable_lsn();
    assert!(fence > Lsn(0), "the fence takes a position");

    let first = numbered("r", 0..3);
    let lsns = append_all(log.as_mut(), &first);
    assert_eq!(
        lsns,
        vec![Lsn(fence.0 + 1), Lsn(fence.0 + 2), Lsn(fence.0 + 3)]
    );
    let flush = log.flush().expect("flush");
    assert_eq!(flush.up_to(), lsns[2]);
    assert_eq!(flush.wait().expect("durable"), lsns[2]);
    assert_eq!(log.durable_lsn(), lsns[2]);

    // Pipelined: five flushes in flight before the first is awaited.
    let mut pending: Vec<PendingFlush> = Vec::new();
    let mut all = first.clone();
    for batch in 0..5 {
        let records = numbered(&format!("p{batch}"), 0..20);
        append_all(log.as_mut(), &records);
        all.extend(records);
        pending.push(log.flush().expect("flush"));
    }
    let ups: Vec<Lsn> = pending.iter().map(PendingFlush::up_to).collect();
    let resolved: Vec<Lsn> = pending
        .into_iter()
        .map(|p| p.wait().expect("durable"))
        .collect();
    assert_eq!(resolved, ups);
    assert_eq!(log.durable_lsn(), *ups.last().expect("five"));
    // An empty flush resolves at the durable position.
    assert_eq!(
        log.flush().expect("flush").wait().expect("ok"),
        *ups.last().expect("five")
    );
    let stats = log.stats();
    assert!(
        stats.pieces >= all.len() as u64 && stats.bytes > 0,
        "{stats:?}"
    );
    drop(log);

    let (_log2, replay) = open(&backend, 2, 0);
    assert_eq!(payloads(&replay), all);
    let positions: Vec<u64> = replay.iter().map(|r| r.lsn.0).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(replay[0].lsn, lsns[0]);

    // From a position: only the tail.
    let from = replay[50].lsn;
    let (_log3, tail) = open(&backend, 3, from.0);
    assert_eq!(tail, replay[50..].to_vec());
}

#[test]
fn a_newer_epoch_fences_the_old_writer() {
    let env = Env::start(NatsOptions::three());
    let old_backend = env.backend("old");
    let new_backend = env.backend("new");
    let (mut old, _) = open(&old_backend, 1, 0);
    append_all(old.as_mut(), &numbered("before", 0..5));
    old.flush()
        .expect("flush")
        .wait()
        .expect("durable before the fence");

    // One of the old writer's flushes is in flight when the new writer fences.
    append_all(old.as_mut(), &numbered("racing", 0..5));
    let racing = old.flush().expect("flush");
    let (new, seen_by_new) = open(&new_backend, 2, 0);
    let racing = racing.wait();

    // Refused at the stream, or at once if the racing flush already learnt
    // of the fence.
    let after = append_and_flush(old.as_mut(), &numbered("after", 0..5));
    assert!(
        matches!(
            after,
            Err(LogError::Fenced {
                epoch: Epoch(1),
                ..
            })
        ),
        "{after:?}"
    );
    assert!(matches!(old.append(b"more"), Err(LogError::Fenced { .. })));
    assert!(matches!(old.flush(), Err(LogError::Fenced { .. })));

    // The old writer's stale records may have taken the positions the new
    // writer expected: it then reopens at a higher epoch, as the runtime would.
    let epoch = commit_as_owner(&new_backend, new, 2, &numbered("new", 0..3));

    let (_reader, all) = open(&env.backend("reader"), epoch + 1, 0);
    let all = payloads(&all);
    // The racing flush landed whole before the fence, or a prefix of it did
    // (every record is its own commit) and the rest was refused: the new
    // writer replays exactly what landed, and the old writer's durable
    // position says how far it got.
    let landed = seen_by_new.len() - 5;
    match racing {
        Ok(_) => assert_eq!(landed, 5),
        Err(ref e) => assert!(matches!(e, LogError::Fenced { .. }), "{e:?}"),
    }
    let mut expected = numbered("before", 0..5);
    expected.extend(numbered("racing", 0..5).into_iter().take(landed));
    assert_eq!(payloads(&seen_by_new), expected);
    if landed > 0 {
        assert_eq!(old.durable_lsn(), seen_by_new.last().expect("landed").lsn);
    }
    expected.extend(numbered("new", 0..3));
    assert_eq!(
        all, expected,
        "nothing the old writer appended after the fence is replayed"
    );
}

/// Appends `records` as the owner at `epoch`; if a fenced writer's stale
/// records broke its chain (`Unavailable`), reopens one epoch higher and
/// appends them there. Returns the epoch that committed them.
fn commit_as_owner(
    backend: &JetStreamBackend,
    log: Box<dyn CommitLog>,
    epoch: u64,
    records: &[Vec<u8>],
) -> u64 {
    let mut log = log;
    let mut epoch = epoch;
    loop {
        match append_and_flush(log.as_mut(), records) {
            Ok(_) => return epoch,
            Err(LogError::Unavailable { detail, .. })
                if detail.contains("reopen at a higher epoch") && epoch < 10 =>
            {
                epoch += 1;
                log = open(backend, epoch, 0).0;
            }
            Err(e) => panic!("the owner at epoch {epoch} could not commit: {e:?}"),
        }
    }
}

/// The fence takes the position the old writer's next record expected, so
/// that record is refused; its later pipelined records expect the positions
/// the stream reaches next, so they may land after the fence (a stale tail).
/// The old writer must never confirm them, and no reader may replay them.
#[test]
fn a_fenced_writers_stale_records_are_never_confirmed_nor_replayed() {
    for options in [NatsOptions::single(), NatsOptions::three()] {
        stale_records_are_skipped(options);
    }
}

fn stale_records_are_skipped(options: NatsOptions) {
    let env = Env::start(options);
    let new_backend = env.backend("new");
    let (mut old, _) = open(&env.backend("old"), 1, 0);
    append_all(old.as_mut(), &numbered("before", 0..3));
    let durable = old.flush().expect("flush").wait().expect("durable");
    let (new, _) = open(&new_backend, 2, 0);
    append_all(old.as_mut(), &numbered("stale", 0..5));
    let stale = old.flush().and_then(PendingFlush::wait);
    assert!(matches!(stale, Err(LogError::Fenced { .. })), "{stale:?}");
    assert_eq!(
        old.durable_lsn(),
        durable,
        "nothing after the fence is confirmed"
    );

    let epoch = commit_as_owner(&new_backend, new, 2, &numbered("new", 0..2));
    let (_reader, all) = open(&env.backend("reader"), epoch + 1, 0);
    let mut expected = numbered("before", 0..3);
    expected.extend(numbered("new", 0..2));
    assert_eq!(payloads(&all), expected);
}

/// A stale record of a fenced writer can take the position the new
/// writer's next record expected: that record is refused, but the new
/// writer's *following* pipelined record expects the position the stale one
/// took, so it lands. Its writer never confirms it (its predecessor was
/// refused), so no reader may apply it either: a writer's records count
/// only while its chain after its fence is unbroken.
#[test]
fn a_record_after_a_break_in_its_writers_chain_is_not_replayed() {
    let env = Env::start(NatsOptions::single());
    let (mut old, _) = open(&env.backend("old"), 1, 0);
    append_and_flush(old.as_mut(), &numbered("old", 0..2)).expect("old commits");
    let backend = env.backend("new");
    let (mut new, _) = open(&backend, 2, 0);
    let fence = new.durable_lsn().0;
    // The old writer's pipelined record, in flight when the fence landed,
    // expected the fence's position: it lands right after the fence.
    let js = backend.jetstream().clone();
    let subject = JetStreamBackend::data_subject("test", GROUP);
    env.tokio.block_on(async {
        let stale = jetstream::message::PublishMessage::build()
            .payload("stale".into())
            .expected_last_sequence(fence)
            .message_id(format!("1:{}", fence + 1));
        let ack = js.send_publish(subject, stale).await.expect("sent").await;
        assert_eq!(ack.expect("the stale record lands").sequence, fence + 1);
    });
    // The new writer's first record expected that position and is refused;
    // its second expects the stale record's and lands.
    let broken = append_and_flush(new.as_mut(), &numbered("new", 0..2));
    assert!(
        matches!(&broken, Err(LogError::Unavailable { detail, .. }) if detail.contains("reopen")),
        "{broken:?}"
    );
    assert_eq!(
        new.durable_lsn().0,
        fence,
        "nothing of the new writer confirmed"
    );
    drop(new);
    let (_reader, replay) = open(&env.backend("reader"), 3, 0);
    assert_eq!(
        payloads(&replay),
        numbered("old", 0..2),
        "the new writer's record after the break was never confirmed: not replayed"
    );
}

/// After its writer failed, the log is reopened with the last position the
/// writer knew durable: records after it were refused as not committed,
/// and no reader counts them even where the stream stored them.
#[test]
fn reopening_after_a_failure_cuts_what_the_failed_writer_never_confirmed() {
    let env = Env::start(NatsOptions::single());
    let backend = env.backend("a");
    let (mut log, _) = open(&backend, 1, 0);
    let durable = append_and_flush(log.as_mut(), &numbered("kept", 0..3)).expect("durable");
    // Stored by the stream, but (say) the writer's wait failed: it knows
    // only `durable`.
    append_and_flush(log.as_mut(), &numbered("refused", 0..2)).expect("stored");
    drop(log);
    let OpenedLog { mut log, records } = backend
        .reopen_after_failure(GROUP, Epoch(2), Lsn(0), durable)
        .expect("reopen");
    let records = records.collect::<Result<Vec<_>, _>>().expect("read back");
    assert_eq!(payloads(&records), numbered("kept", 0..3));
    append_and_flush(log.as_mut(), &numbered("after", 0..2)).expect("durable");
    drop(log);
    // The cut stays: every later reader skips the refused records.
    let (_log, records) = open(&backend, 3, 0);
    let mut expected = numbered("kept", 0..3);
    expected.extend(numbered("after", 0..2));
    assert_eq!(payloads(&records), expected);
}

#[test]
fn an_open_at_or_below_the_last_fence_fails() {
    let env = Env::start(NatsOptions::single());
    let backend = env.backend("a");
    let (_log, _) = open(&backend, 5, 0);
    for epoch in [3, 5] {
        let result = backend.open(GROUP, Epoch(epoch), Lsn(0));
        assert!(
            matches!(result, Err(LogError::Fenced { epoch: e, .. }) if e == Epoch(epoch)),
            "epoch {epoch}: {:?}",
            result.map(|_| ())
        );
    }
    let (_log, _) = open(&env.backend("b"), 6, 0);
}

#[test]
fn truncate_purges_below_and_keeps_the_rest() {
    let env = Env::start(NatsOptions::single());
    let backend = env.backend("a");
    let (mut log, _) = open(&backend, 1, 0);
    let records = numbered("t", 0..10);
    let lsns = append_all(log.as_mut(), &records);
    log.flush().expect("flush").wait().expect("durable");
    let before = log.stats();
    log.truncate_before(lsns[6]).expect("truncate");
    assert!(
        log.stats().pieces < before.pieces,
        "{:?} -> {:?}",
        before,
        log.stats()
    );
    drop(log);
    // A second open still sees the first fence's epoch (fences are kept).
    assert!(matches!(
        backend.open(GROUP, Epoch(1), Lsn(0)),
        Err(LogError::Fenced { .. })
    ));
    // A read from below what the stream still holds is refused rather than
    // answered with a hole (cluster mode then loads the group's snapshot)...
    let opened = backend.open(GROUP, Epoch(2), Lsn(0)).expect("open");
    let error = opened
        .records
        .collect::<Result<Vec<_>, _>>()
        .expect_err("records below the trim point are gone");
    assert!(error.to_string().contains("trimmed"), "{error}");
    drop(opened.log);
    // ... and a read from the trim point gets the rest: the first record
    // left is still attributed to its writer's epoch by the fence before
    // it, which trimming keeps.
    let (_log, replay) = open(&backend, 3, lsns[6].0);
    assert_eq!(payloads(&replay), records[6..].to_vec());
    assert_eq!(replay[0].lsn, lsns[6]);
}

#[test]
fn too_few_servers_for_the_replicas_is_a_clear_error() {
    let env = Env::start(NatsOptions::single());
    let backend = env.backend_with("a", |o| o.replicas = 3);
    let error = backend
        .open(GROUP, Epoch(1), Lsn(0))
        .map(|_| ())
        .expect_err("R3 on one server");
    let text = error.to_string();
    assert!(matches!(error, LogError::Unavailable { .. }), "{error:?}");
    assert!(
        text.contains("3 replicas") && text.contains("at least 3"),
        "{text}"
    );
}

/// A writer appends and flushes (two flushes in flight) while the stream's
/// leader is SIGKILLed. Every acknowledged record must be read back, at its
/// position; unacknowledged ones may be there, but in order and only once.
#[test]
fn a_sigkilled_stream_leader_loses_nothing_acknowledged() {
    let mut env = Env::start(NatsOptions::three());
    let backend = env.backend_with("a", |o| {
        o.ack_timeout = Duration::from_secs(2);
        o.retry_for = Duration::from_secs(15);
    });
    let (log, _) = open(&backend, 1, 0);
    let leader = env.stream_leader(&backend);

    let killed = Arc::new(AtomicBool::new(false));
    let writer = {
        let backend = backend.clone();
        let killed = killed.clone();
        thread::spawn(move || {
            let mut log = log;
            let mut epoch = 1;
            let mut acked: Acked = Vec::new();
            let mut in_flight: std::collections::VecDeque<(PendingFlush, Acked)> =
                Default::default();
            let mut next = 0u32;
            let mut after_kill = 0;
            let deadline = Instant::now() + Duration::from_secs(40);
            while after_kill < 60 && Instant::now() < deadline {
                let batch: Acked = (0..10)
                    .map(|_| {
                        next += 1;
                        let payload = format!("k-{next}").into_bytes();
                        (log.append(&payload).expect("append"), payload)
                    })
                    .collect();
                in_flight.push_back((log.flush().expect("flush"), batch));
                if in_flight.len() < 2 {
                    continue;
                }
                let (flush, batch) = in_flight.pop_front().expect("two");
                match flush.wait() {
                    Ok(_) => {
                        acked.extend(batch);
                        if killed.load(Ordering::Acquire) {
                            after_kill += 1;
                        }
                    }
                    Err(error) => {
                        // As the runtime would: reopen at a higher epoch.
                        assert!(matches!(error, LogError::Unavailable { .. }), "{error:?}");
                        in_flight.clear();
                        epoch += 1;
                        log = loop {
                            match backend.open(GROUP, Epoch(epoch), Lsn(0)) {
                                Ok(opened) => break opened.log,
                                Err(_) => thread::sleep(Duration::from_millis(200)),
                            }
                        };
                    }
                }
            }
            for (flush, batch) in in_flight {
                if flush.wait().is_ok() {
                    acked.extend(batch);
                }
            }
            (acked, epoch)
        })
    };
    thread::sleep(Duration::from_millis(300));
    env.nats.kill(leader).expect("SIGKILL the stream leader");
    killed.store(true, Ordering::Release);
    let (acked, epoch) = writer.join().expect("writer");
    eprintln!(
        "acked {} records; the writer ended at epoch {epoch}",
        acked.len()
    );
    assert!(
        acked.len() > 100,
        "the writer made progress after the kill: {}",
        acked.len()
    );
    env.nats.restart(leader).expect("restart");

    let (_log, replay) = open(&env.backend("reader"), epoch + 1, 0);
    let positions: Vec<u64> = replay.iter().map(|r| r.lsn.0).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "in order");
    let distinct: HashSet<&Vec<u8>> = replay.iter().map(|r| &r.payload).collect();
    assert_eq!(distinct.len(), replay.len(), "no record twice");
    let stored: std::collections::HashMap<u64, &Vec<u8>> =
        replay.iter().map(|r| (r.lsn.0, &r.payload)).collect();
    for (lsn, payload) in &acked {
        if stored.get(&lsn.0) != Some(&payload) {
            let name = JetStreamBackend::stream_name("test", GROUP);
            let js = backend.jetstream().clone();
            let probe = lsn.0;
            let diag = env.tokio.block_on(async move {
                let mut stream = js.get_stream(&name).await.expect("stream");
                let state = stream.info().await.expect("info").state.clone();
                let mut around = Vec::new();
                for seq in probe.saturating_sub(3)..probe + 4 {
                    around.push((
                        seq,
                        stream
                            .get_raw_message(seq)
                            .await
                            .map(|m| {
                                (
                                    m.subject.to_string(),
                                    String::from_utf8_lossy(&m.payload).into_owned(),
                                    m.headers.get("Nats-Msg-Id").map(|v| v.to_string()),
                                )
                            })
                            .map_err(|e| e.to_string()),
                    ));
                }
                format!("state {state:?}\naround {around:#?}")
            });
            let first: Vec<u64> = positions.iter().take(40).copied().collect();
            panic!(
                "acknowledged record {lsn} lost or moved; epoch {epoch}; replay starts {first:?}\n{diag}"
            );
        }
    }
}

#[test]
fn records_survive_a_full_nats_restart() {
    let mut env = Env::start(NatsOptions::three());
    let backend = env.backend("a");
    let (mut log, _) = open(&backend, 1, 0);
    let records = numbered("d", 0..50);
    append_all(log.as_mut(), &records);
    log.flush().expect("flush").wait().expect("durable");
    drop(log);
    env.nats
        .restart_all()
        .expect("SIGKILL and restart every server");
    let backend = env.backend("b");
    let deadline = Instant::now() + Duration::from_secs(30);
    let replay = loop {
        match backend.open(GROUP, Epoch(2), Lsn(0)) {
            Ok(opened) => break opened.records.collect::<Result<Vec<_>, _>>().expect("read"),
            Err(e) if Instant::now() < deadline => {
                eprintln!("open after restart: {e}");
                thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("open after restart: {e}"),
        }
    };
    assert_eq!(payloads(&replay), records);
}

/// What the fence at open relies on for an empty stream: on a replicated
/// stream, `Nats-Expected-Last-Sequence: 0` is checked, not ignored.
#[test]
fn the_engine_checks_an_expected_last_sequence_of_zero() {
    let env = Env::start(NatsOptions::three());
    let url = env.nats.client_url(0);
    env.tokio.block_on(async {
        let js = jetstream::new(async_nats::connect(url).await.expect("connect"));
        js.create_stream(jetstream::stream::Config {
            name: "facts".into(),
            subjects: vec!["facts".into()],
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .expect("stream");
        let publish = |expected: u64| {
            let message = jetstream::message::PublishMessage::build()
                .payload("x".into())
                .expected_last_sequence(expected);
            let js = js.clone();
            async move { js.send_publish("facts", message).await.expect("sent").await }
        };
        let first = publish(0).await.expect("expect 0 on an empty stream");
        assert_eq!(first.sequence, 1);
        let error = publish(0)
            .await
            .expect_err("expect 0 on a non-empty stream");
        assert_eq!(error.kind(), PublishErrorKind::WrongLastSequence, "{error}");
    });
}
