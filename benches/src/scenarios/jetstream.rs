//! `jetstream`: the NATS JetStream facts cluster mode (issue 12) is built on,
//! checked and measured on a 3-node cluster on loopback (nats-server 2.14.6,
//! async-nats 0.51), with the server's default `sync_interval` and with
//! `always`.
//!
//! Prints `FACT` lines (what the engine did, with the exact error shapes
//! async-nats surfaced) and table rows with JSON lines for the numbers.
//! See docs/cluster-engine.md for what each fact means for statefn.
//!
//! (Over 500 lines: one section per fact of issue 12, each short and
//! independent; splitting them would scatter the one report.)

use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self, Context,
    context::{PublishAckFuture, PublishError},
    kv,
    message::PublishMessage,
    object_store,
    stream::{self, Stream},
};
use bytes::Bytes;
use futures::StreamExt;
use statefn_tests::nats::{NatsCluster, NatsOptions, SyncInterval};
use tokio::runtime::Runtime;

use crate::{
    measure::{BoxError, Latencies},
    record::{Quantiles, Record},
};

/// What to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct JetStreamArgs {
    /// Sequential (synchronous) publishes per sync mode.
    #[arg(long, default_value_t = 3000)]
    pub sync_publishes: u32,
    /// Pipelined publishes per sync mode.
    #[arg(long, default_value_t = 30000)]
    pub pipelined: u32,
    /// Publishes in flight in the pipelined run.
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// SIGKILLs of a stream leader.
    #[arg(long, default_value_t = 10)]
    pub kills: usize,
    /// Messages in the stream read back by the reader runs.
    #[arg(long, default_value_t = 100_000)]
    pub read_messages: u64,
}

const PAYLOAD: usize = 256;

fn fact(name: &str, detail: impl std::fmt::Display) {
    println!("FACT {name}: {detail}");
}

fn r3(name: &str) -> stream::Config {
    stream::Config {
        name: name.into(),
        subjects: vec![format!("{name}.>")],
        num_replicas: 3,
        ..Default::default()
    }
}

/// Creates a stream and waits until it has a leader and takes publishes
/// (right after creation a publish may find no responders yet).
async fn create(js: &Context, config: stream::Config) -> Result<Stream, BoxError> {
    let mut stream = js.create_stream(config).await?;
    let started = Instant::now();
    while stream
        .info()
        .await?
        .cluster
        .as_ref()
        .and_then(|c| c.leader.as_ref())
        .is_none()
    {
        if started.elapsed() > Duration::from_secs(10) {
            return Err("no stream leader after 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(stream)
}

fn context(client: async_nats::Client, timeout: Duration) -> Context {
    jetstream::context::ContextBuilder::new()
        .timeout(timeout)
        .build(client)
}

async fn connect(urls: &[String]) -> Result<async_nats::Client, BoxError> {
    let addrs = urls
        .iter()
        .map(|u| u.parse())
        .collect::<Result<Vec<async_nats::ServerAddr>, _>>()?;
    Ok(async_nats::connect(addrs).await?)
}

/// A record of the log: msg id, expected last sequence and, optionally, the
/// last fence as the last message of the fence subject.
fn record(name: &str, seq: u64, fence: Option<u64>) -> PublishMessage {
    let message = PublishMessage::build()
        .payload(Bytes::from(vec![b'x'; PAYLOAD]))
        .message_id(format!("w:{seq}"))
        .expected_last_sequence(seq - 1);
    match fence {
        Some(fence) => message.expected_last_subject_sequence(fence).header(
            "Nats-Expected-Last-Subject-Sequence-Subject",
            format!("{name}.fence"),
        ),
        None => message,
    }
}

async fn publish(
    js: &Context,
    subject: String,
    message: PublishMessage,
) -> Result<jetstream::publish::PublishAck, PublishError> {
    js.send_publish(subject, message).await?.await
}

fn shape(error: &PublishError) -> String {
    format!(
        "kind {:?}, Display {:?}, Debug {:?}",
        error.kind(),
        error.to_string(),
        error
    )
}

/// Runs the scenario.
///
/// # Errors
/// A cluster that does not start, or a client error outside the facts checked.
pub fn run(args: &JetStreamArgs, tokio: &Runtime) -> Result<(), BoxError> {
    Record::print_header();
    let mut cluster = NatsCluster::start(NatsOptions::three())?;
    tokio.block_on(facts(&mut cluster))?;
    tokio.block_on(kv_and_objects(&cluster))?;
    tokio.block_on(reading(&cluster, args.read_messages))?;
    for sync in [SyncInterval::Default, SyncInterval::Always] {
        let mode = match sync {
            SyncInterval::Default => "default",
            SyncInterval::Always => "always",
        };
        let mut cluster = NatsCluster::start(NatsOptions::three().sync(sync))?;
        tokio.block_on(latency(&cluster, mode, args))?;
        tokio.block_on(failover(&mut cluster, mode, args.kills))?;
    }
    Ok(())
}

async fn facts(cluster: &mut NatsCluster) -> Result<(), BoxError> {
    let js = context(
        connect(&cluster.client_urls()).await?,
        Duration::from_secs(2),
    );

    // One writer pipelines 1000 records, each expecting the previous sequence.
    let stream_name = "pipe";
    create(&js, r3(stream_name)).await?;
    let subject = format!("{stream_name}.log");
    let mut acks = Vec::new();
    for seq in 1..=1000 {
        acks.push(
            js.send_publish(subject.clone(), record(stream_name, seq, None))
                .await?,
        );
    }
    let mut in_order = 0;
    for (i, ack) in acks.into_iter().enumerate() {
        if ack.await.map(|a| a.sequence).ok() == Some(i as u64 + 1) {
            in_order += 1;
        }
    }
    fact(
        "pipelined expected-last-sequence",
        format!("{in_order}/1000 acked at their expected positions"),
    );

    // A second writer fences with the last sequence it saw; the first keeps
    // pipelining, with and without the last-fence expectation.
    for with_fence_check in [false, true] {
        let name = if with_fence_check {
            "fencechk"
        } else {
            "fenceseq"
        };
        create(&js, r3(name)).await?;
        let data = format!("{name}.log");
        let fence_subject = format!("{name}.fence");
        let first_fence = publish(
            &js,
            fence_subject.clone(),
            PublishMessage::build()
                .payload("f1".into())
                .expected_last_sequence(0),
        )
        .await?;
        let mine = with_fence_check.then_some(first_fence.sequence);
        for seq in 2..=50 {
            publish(&js, data.clone(), record(name, seq, mine)).await?;
        }
        let fence = publish(
            &js,
            fence_subject,
            PublishMessage::build()
                .payload("f2".into())
                .expected_last_sequence(50),
        )
        .await?;
        let mut pending: Vec<PublishAckFuture> = Vec::new();
        for seq in 51..=60 {
            pending.push(
                js.send_publish(data.clone(), record(name, seq, mine))
                    .await?,
            );
        }
        let mut landed = 0;
        let mut first_error = None;
        for ack in pending {
            match ack.await {
                Ok(_) => landed += 1,
                Err(e) => {
                    first_error.get_or_insert_with(|| shape(&e));
                }
            }
        }
        let how = if with_fence_check {
            "sequence + last-fence expectation"
        } else {
            "sequence expectation only"
        };
        fact(
            &format!(
                "fence at {} vs 10 stale pipelined records ({how})",
                fence.sequence
            ),
            format!(
                "{landed} landed after the fence; first refusal: {}",
                first_error.unwrap_or_default()
            ),
        );
    }

    // A per-subject expectation (on the fence subject) on pipelined records.
    {
        let name = "persubj";
        create(&js, r3(name)).await?;
        let fence = publish(
            &js,
            format!("{name}.fence"),
            PublishMessage::build()
                .payload("f".into())
                .expected_last_sequence(0),
        )
        .await?
        .sequence;
        let mut pending = Vec::new();
        for seq in fence + 1..=fence + 200 {
            pending.push(
                js.send_publish(format!("{name}.log"), record(name, seq, Some(fence)))
                    .await?,
            );
        }
        let (mut ok, mut refused, mut shape_seen) = (0, 0, None);
        for ack in pending {
            match ack.await {
                Ok(_) => ok += 1,
                Err(e) => {
                    refused += 1;
                    shape_seen.get_or_insert_with(|| shape(&e));
                }
            }
        }
        fact(
            "200 pipelined records each expecting the last fence (per-subject expectation on another subject)",
            format!(
                "{ok} acked, {refused} refused; first refusal: {}",
                shape_seen.unwrap_or_default()
            ),
        );
    }

    // Dedup: a retry with the same Nats-Msg-Id, with and without the expectation.
    create(&js, r3("dedup")).await?;
    let original = publish(
        &js,
        "dedup.log".into(),
        PublishMessage::build()
            .payload("a".into())
            .message_id("id-1"),
    )
    .await?;
    let retry = publish(
        &js,
        "dedup.log".into(),
        PublishMessage::build()
            .payload("a".into())
            .message_id("id-1"),
    )
    .await?;
    fact(
        "R3 dedup retry",
        format!(
            "original seq {}, retry seq {} duplicate {}",
            original.sequence, retry.sequence, retry.duplicate
        ),
    );
    let retry = publish(
        &js,
        "dedup.log".into(),
        PublishMessage::build()
            .payload("a".into())
            .message_id("id-1")
            .expected_last_sequence(0),
    )
    .await;
    fact(
        "R3 dedup retry carrying its stale expectation",
        match retry {
            Ok(ack) => format!("seq {} duplicate {}", ack.sequence, ack.duplicate),
            Err(e) => shape(&e),
        },
    );
    {
        let single = NatsCluster::start(NatsOptions::single())?;
        let js1 = context(
            connect(&single.client_urls()).await?,
            Duration::from_secs(2),
        );
        let mut config = r3("dedup1");
        config.num_replicas = 1;
        create(&js1, config).await?;
        let first = publish(
            &js1,
            "dedup1.log".into(),
            PublishMessage::build()
                .payload("a".into())
                .message_id("id-1")
                .expected_last_sequence(0),
        )
        .await?;
        let retry = publish(
            &js1,
            "dedup1.log".into(),
            PublishMessage::build()
                .payload("a".into())
                .message_id("id-1")
                .expected_last_sequence(0),
        )
        .await;
        fact(
            "R1 (single server) dedup retry carrying its stale expectation",
            match retry {
                Ok(ack) => format!(
                    "first seq {}, retry seq {} duplicate {}",
                    first.sequence, ack.sequence, ack.duplicate
                ),
                Err(e) => shape(&e),
            },
        );
    }

    // Error shapes: no stream, no quorum.
    let none = publish(
        &js,
        "nostream.here".into(),
        PublishMessage::build().payload("a".into()),
    )
    .await;
    fact(
        "publish to a subject without a stream",
        match none {
            Ok(_) => "accepted?".into(),
            Err(e) => shape(&e),
        },
    );
    let mut quorum = js.get_stream("pipe").await?;
    let leader = quorum
        .info()
        .await?
        .cluster
        .clone()
        .and_then(|c| c.leader)
        .ok_or("no leader")?;
    let leader = cluster.index_of(&leader).ok_or("unknown leader")?;
    let follower = (leader + 1) % 3;
    let survivor = (leader + 2) % 3;
    let js_short = context(
        connect(&[cluster.client_url(survivor)]).await?,
        Duration::from_millis(500),
    );
    cluster.pause(leader)?;
    cluster.pause(follower)?;
    let started = Instant::now();
    let lost = publish(
        &js_short,
        "pipe.log".into(),
        PublishMessage::build().payload("a".into()),
    )
    .await;
    let waited = started.elapsed();
    cluster.resume(leader)?;
    cluster.resume(follower)?;
    fact(
        "publish without a quorum (two of three servers SIGSTOPped)",
        format!(
            "{} after {waited:?}",
            match lost {
                Ok(_) => "accepted?".into(),
                Err(e) => shape(&e),
            }
        ),
    );
    cluster.wait_ready(Duration::from_secs(30))?;

    // Nats-Expected-Last-Msg-Id mismatch on an R3 stream.
    create(&js, r3("msgid")).await?;
    publish(
        &js,
        "msgid.log".into(),
        PublishMessage::build().payload("a".into()).message_id("a"),
    )
    .await?;
    let refused = publish(
        &js,
        "msgid.log".into(),
        PublishMessage::build()
            .payload("b".into())
            .expected_last_message_id("zzz"),
    )
    .await;
    let started = Instant::now();
    let after = publish(
        &js,
        "msgid.log".into(),
        PublishMessage::build().payload("c".into()),
    )
    .await;
    fact(
        "R3 Nats-Expected-Last-Msg-Id mismatch",
        format!(
            "{}; the next plain publish: {} after {:?}",
            match refused {
                Ok(ack) => format!("accepted at {}", ack.sequence),
                Err(e) => shape(&e),
            },
            match after {
                Ok(ack) => format!("ok at {}", ack.sequence),
                Err(e) => shape(&e),
            },
            started.elapsed()
        ),
    );
    // That stream stays broken (healthz fails on every server) until deleted.
    let deleted = js.delete_stream("msgid").await;
    fact(
        "deleting the broken stream",
        format!(
            "{:?}",
            deleted.map(|d| d.success).map_err(|e| e.to_string())
        ),
    );

    cluster.wait_ready(Duration::from_secs(30))?;
    Ok(())
}

async fn latency(cluster: &NatsCluster, mode: &str, args: &JetStreamArgs) -> Result<(), BoxError> {
    let js = context(
        connect(&cluster.client_urls()).await?,
        Duration::from_secs(5),
    );
    let name = "lat";
    create(&js, r3(name)).await?;
    let fence = publish(
        &js,
        format!("{name}.fence"),
        PublishMessage::build()
            .payload("f".into())
            .expected_last_sequence(0),
    )
    .await?
    .sequence;
    let data = format!("{name}.log");
    let mut seq = fence;
    let mut latencies = Latencies::new();
    let started = Instant::now();
    for _ in 0..args.sync_publishes {
        seq += 1;
        let t = Instant::now();
        publish(&js, data.clone(), record(name, seq, None)).await?;
        latencies.record(t.elapsed());
    }
    let elapsed = started.elapsed().as_secs_f64();
    Record::from_quantiles(
        "jetstream",
        format!("sync publish R3 {mode}"),
        latencies.len() as f64 / elapsed,
        Quantiles::of(&latencies),
    )
    .param("sync_interval", mode)
    .param("bytes", PAYLOAD)
    .emit();

    // Pipelined: `window` publishes in flight, acks awaited in order.
    let mut in_flight = std::collections::VecDeque::new();
    let mut latencies = Latencies::new();
    let started = Instant::now();
    for _ in 0..args.pipelined {
        seq += 1;
        let t = Instant::now();
        in_flight.push_back((
            t,
            js.send_publish(data.clone(), record(name, seq, None))
                .await?,
        ));
        if in_flight.len() >= args.window {
            let (t, ack) = in_flight.pop_front().ok_or("empty")?;
            ack.await?;
            latencies.record(t.elapsed());
        }
    }
    for (t, ack) in in_flight {
        ack.await?;
        latencies.record(t.elapsed());
    }
    let elapsed = started.elapsed().as_secs_f64();
    Record::from_quantiles(
        "jetstream",
        format!("pipelined R3 {mode}"),
        f64::from(args.pipelined) / elapsed,
        Quantiles::of(&latencies),
    )
    .param("sync_interval", mode)
    .param("window", args.window)
    .param("bytes", PAYLOAD)
    .emit();
    Ok(())
}

/// SIGKILLs the stream leader `kills` times while a client (connected to
/// that very server first) publishes synchronously; the gap is from the
/// kill to the first acknowledged publish after it.
async fn failover(cluster: &mut NatsCluster, mode: &str, kills: usize) -> Result<(), BoxError> {
    let name = "fo";
    let admin = context(
        connect(&cluster.client_urls()).await?,
        Duration::from_secs(5),
    );
    create(&admin, r3(name)).await?;
    let mut gaps = Latencies::new();
    let mut all_reconnected = true;
    for kill in 0..kills {
        let leader_name = stream_leader(&admin, name).await?;
        let leader = cluster.index_of(&leader_name).ok_or("unknown leader")?;
        let mut urls = vec![cluster.client_url(leader)];
        urls.extend(
            (0..3)
                .filter(|&i| i != leader)
                .map(|i| cluster.client_url(i)),
        );
        // The client's first server is the leader: it must move.
        let client = async_nats::ConnectOptions::new()
            .retain_servers_order()
            .connect(
                urls.iter()
                    .map(|u| u.parse::<async_nats::ServerAddr>())
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .await?;
        let js = context(client.clone(), Duration::from_millis(250));
        let (acked, mut acks) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        // Sends the start time of each acknowledged publish: a publish
        // started before the kill that is acked just after it does not count.
        let publisher = tokio::spawn(async move {
            loop {
                let started = Instant::now();
                let message = PublishMessage::build().payload(Bytes::from_static(b"x"));
                match publish(&js, format!("{name}.log"), message).await {
                    Ok(_) => {
                        if acked.send(started).is_err() {
                            return;
                        }
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let killed_at = Instant::now();
        cluster.kill(leader)?;
        let first_after = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(started) = acks.recv().await {
                if started > killed_at {
                    return Some(Instant::now());
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        drop(acks);
        publisher.abort();
        match first_after {
            Some(t) => {
                let gap = t - killed_at;
                gaps.record(gap);
                println!(
                    "# kill {kill}: leader {leader_name} SIGKILLed; first ack after {gap:?}; client now {:?}",
                    client.connection_state()
                );
            }
            None => {
                all_reconnected = false;
                println!("# kill {kill}: no ack within 30 s after the kill");
            }
        }
        cluster.restart(leader)?;
    }
    Record::from_quantiles(
        "jetstream",
        format!("failover gap {mode}"),
        0.0,
        Quantiles::of(&gaps),
    )
    .param("sync_interval", mode)
    .param("kills", kills)
    .field("max_ms", gaps.quantile_ms(1.0))
    .emit();
    fact(
        &format!("failover ({mode})"),
        format!(
            "{} of {kills} kills recovered; median gap {:.0} ms, max {:.0} ms; a client whose first server was the killed leader reconnected by itself: {all_reconnected}",
            gaps.len(),
            gaps.quantile_ms(0.5),
            gaps.quantile_ms(1.0)
        ),
    );
    Ok(())
}

/// The stream's leader, waiting up to 30 s for one to be elected.
async fn stream_leader(js: &Context, name: &str) -> Result<String, BoxError> {
    let started = Instant::now();
    loop {
        let leader = match js.get_stream(name).await {
            Ok(mut stream) => stream
                .info()
                .await
                .ok()
                .and_then(|i| i.cluster.clone())
                .and_then(|c| c.leader),
            Err(_) => None,
        };
        match leader {
            Some(leader) => return Ok(leader),
            None if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            None => return Err(format!("stream {name} has no leader after 30 s").into()),
        }
    }
}

async fn kv_and_objects(cluster: &NatsCluster) -> Result<(), BoxError> {
    let js = context(
        connect(&cluster.client_urls()).await?,
        Duration::from_secs(5),
    );
    let bucket = js
        .create_key_value(kv::Config {
            bucket: "leases".into(),
            num_replicas: 3,
            history: 1,
            ..Default::default()
        })
        .await?;
    let rev1 = bucket.create("g0007", "node-a".into()).await?;
    let again = bucket.create("g0007", "node-b".into()).await;
    let rev2 = bucket.update("g0007", "node-a".into(), rev1).await?;
    let stale = bucket.update("g0007", "node-b".into(), rev1).await;
    fact(
        "R3 KV create/update with expected revision",
        format!(
            "create rev {rev1}; second create: {:?}; update at rev {rev1} -> {rev2}; stale update at rev {rev1}: {:?}",
            again.map_err(|e| format!("{:?} / {e}", e.kind())),
            stale.map_err(|e| format!("{:?} / {e}", e.kind()))
        ),
    );

    let ttl_bucket = js
        .create_key_value(kv::Config {
            bucket: "leases_ttl".into(),
            num_replicas: 3,
            limit_markers: Some(Duration::from_secs(1)),
            ..Default::default()
        })
        .await?;
    ttl_bucket
        .create_with_ttl("g0007", "node-a".into(), Duration::from_secs(1))
        .await?;
    let created = Instant::now();
    let mut expired_after = None;
    while created.elapsed() < Duration::from_secs(10) {
        if ttl_bucket.get("g0007").await?.is_none() {
            expired_after = Some(created.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recreate = ttl_bucket
        .create_with_ttl("g0007", "node-b".into(), Duration::from_secs(1))
        .await;
    fact(
        "R3 KV per-key TTL 1 s (limit_markers)",
        format!(
            "key gone after {expired_after:?}; create by another node afterwards: {:?}",
            recreate.map_err(|e| e.to_string())
        ),
    );

    let mut watch = bucket.watch("g0007").await?;
    let mut seen = Latencies::new();
    let mut revision = rev2;
    for _ in 0..500 {
        let t = Instant::now();
        revision = bucket.update("g0007", "node-a".into(), revision).await?;
        loop {
            let entry = watch.next().await.ok_or("watch ended")??;
            if entry.revision == revision {
                break;
            }
        }
        seen.record(t.elapsed());
    }
    Record::from_quantiles(
        "jetstream",
        "KV CAS update -> watcher sees it",
        0.0,
        Quantiles::of(&seen),
    )
    .emit();

    let objects = js
        .create_object_store(object_store::Config {
            bucket: "snapshots".into(),
            num_replicas: 3,
            ..Default::default()
        })
        .await?;
    let snapshot: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let t = Instant::now();
    objects
        .put("g0007-lsn-123", &mut snapshot.as_slice())
        .await?;
    let put = t.elapsed();
    let t = Instant::now();
    let mut object = objects.get("g0007-lsn-123").await?;
    let mut back = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut object, &mut back).await?;
    let get = t.elapsed();
    fact(
        "R3 object store, 8 MiB",
        format!("put {put:?}, get {get:?}, identical: {}", back == snapshot),
    );
    Ok(())
}

async fn reading(cluster: &NatsCluster, messages: u64) -> Result<(), BoxError> {
    let js = context(
        connect(&cluster.client_urls()).await?,
        Duration::from_secs(5),
    );
    create(
        &js,
        stream::Config {
            allow_direct: true,
            ..r3("read")
        },
    )
    .await?;
    let mut acks = std::collections::VecDeque::new();
    for _ in 0..messages {
        acks.push_back(
            js.publish("read.log", Bytes::from(vec![b'r'; PAYLOAD]))
                .await?,
        );
        if acks.len() > 512 {
            acks.pop_front().ok_or("empty")?.await?;
        }
    }
    for ack in acks {
        ack.await?;
    }
    let stream = js.get_stream("read").await?;
    for from in [1, messages / 2] {
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: from,
                },
                ..Default::default()
            })
            .await?;
        let mut delivered = consumer.messages().await?;
        let t = Instant::now();
        let want = messages - from + 1;
        let mut got = 0;
        while got < want {
            delivered.next().await.ok_or("reader ended")??;
            got += 1;
        }
        let per_s = got as f64 / t.elapsed().as_secs_f64();
        Record::from_quantiles(
            "jetstream",
            format!("ordered read from {from}"),
            per_s,
            Quantiles::of(&Latencies::new()),
        )
        .param("messages", got)
        .emit();
    }
    let mut latencies = Latencies::new();
    for seq in (1..=messages).step_by((messages / 2000).max(1) as usize) {
        let t = Instant::now();
        stream.direct_get(seq).await?;
        latencies.record(t.elapsed());
    }
    Record::from_quantiles(
        "jetstream",
        "direct get, one at a time",
        0.0,
        Quantiles::of(&latencies),
    )
    .emit();

    let cut = messages / 2 + 1;
    stream.purge().sequence(cut).await?;
    let mut stream = js.get_stream("read").await?;
    let state = stream.info().await?.state.clone();
    fact(
        "purge below a sequence",
        format!(
            "purge(seq {cut}) of {messages}: first_sequence {}, messages {}, last_sequence {}",
            state.first_sequence, state.messages, state.last_sequence
        ),
    );
    Ok(())
}
