//! Log groups on NATS JetStream: one replicated stream per log group.
//!
//! (Over 500 lines: the backend's open/fence protocol and the writer it
//! returns are one protocol and are reviewed together; the ack pipeline and
//! the replay live in `acker` and `replay`.)
//!
//! - **Positions are stream sequences.** A record's [`Lsn`] is the sequence
//!   the stream gives it; fence records take positions too, so LSNs are
//!   monotonic but not dense across writers.
//! - **One writer, enforced by the stream.** [`JetStreamBackend::open`] reads
//!   the stream's last sequence and appends a fence record (epoch, writer)
//!   with `Nats-Expected-Last-Sequence` set to it. Every record expects the
//!   last sequence to be its predecessor's, so an older writer's next record
//!   is refused ("wrong last sequence") and its flush fails with
//!   [`LogError::Fenced`]. A pipelining writer may still have later records
//!   in flight that happen to expect the position the stream has reached;
//!   those land but are never confirmed to their writer and are skipped by
//!   every reader: **a data record counts only if its epoch (in its
//!   `Nats-Msg-Id`, `epoch:lsn`) is the epoch of the last fence before
//!   it.** Standbys that follow the stream must apply the same rule.
//! - **A failed writer's unconfirmed records are cut.**
//!   [`LogBackend::reopen_after_failure`] writes the failed writer's last
//!   confirmed position into its fence (`cut`): the data records between it
//!   and that fence were never confirmed to their callers, who were told
//!   they were not committed, so no reader counts them (the stream may hold
//!   them: a lost ack, a retry that landed).
//!   Epochs must grow: an open at an epoch not above the last fence's fails
//!   with `Fenced`.
//! - **Pipelined appends.** A flush publishes its records at once, record `n`
//!   expecting `n-1`; the acks are awaited in order by one task per log
//!   (see `acker`), so several flushes can be in flight. A lost ack is
//!   resolved by reading the record's position back, and unconfirmed
//!   records are published again at the same positions, for up to
//!   [`JetStreamOptions::retry_for`] (a leader election).
//! - Data records go to `statefn.<cluster>.log.gNNNN`, fences to
//!   `statefn.<cluster>.fence.gNNNN`, both in stream `statefn-<cluster>-gNNNN`,
//!   so the last fence is one "last message for subject" away and truncation
//!   purges data only.
//!
//! # Threads
//! The log traits are synchronous (the runtime's syncer is a plain thread).
//! Every call here blocks on the tokio runtime given to the backend, so it
//! **must not be called on a tokio worker thread** (tokio panics if it is):
//! call it from a plain thread or inside `spawn_blocking`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_nats::{
    ServerAddr,
    jetstream::{
        self,
        context::{CreateStreamErrorKind, GetStreamErrorKind, PublishErrorKind},
        stream::{
            Config, DiscardPolicy, LastRawMessageErrorKind, RetentionPolicy, StorageType, Stream,
        },
    },
};
use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::{runtime::Handle, sync::mpsc};

use super::{
    acker::{self, Batch, Published, Publisher, Shared},
    log_api::{
        CommitLog, Epoch, FlushWait, LogBackend, LogError, LogGroupId, LogStats, Lsn, OpenedLog,
        PendingFlush,
    },
    replay::Replay,
};

/// Bytes the headers of a data record take at most (msg id + expectation),
/// kept free below the server's `max_payload`.
const HEADER_ALLOWANCE: usize = 256;

/// How a [`JetStreamBackend`] names, replicates and waits.
#[derive(Debug, Clone)]
pub struct JetStreamOptions {
    /// Names this statefn cluster's streams and subjects (`[A-Za-z0-9_-]+`).
    pub cluster: String,
    /// This node's id, recorded in the fences it appends.
    pub writer: String,
    /// Stream replicas (R3 survives one NATS server loss).
    pub replicas: usize,
    /// How long one request or publish ack may take before it counts as lost.
    pub ack_timeout: Duration,
    /// How long a flush keeps re-publishing unconfirmed records (leader
    /// elections take seconds) before it fails with `Unavailable`.
    pub retry_for: Duration,
    /// Whether [`truncate_before`](CommitLog::truncate_before) purges the
    /// stream (default true). Cluster mode turns it off: a node taking a
    /// group over replays from its own checkpoint, which may be older than
    /// the owner's, until snapshots let streams be trimmed.
    pub truncate: bool,
}

impl JetStreamOptions {
    /// Defaults: 3 replicas, 5 s ack timeout, 20 s of retries.
    pub fn new(cluster: impl Into<String>, writer: impl Into<String>) -> Self {
        JetStreamOptions {
            cluster: cluster.into(),
            writer: writer.into(),
            replicas: 3,
            ack_timeout: Duration::from_secs(5),
            retry_for: Duration::from_secs(20),
            truncate: true,
        }
    }
}

/// Opens log groups' logs as JetStream streams; see the module docs.
///
/// ```no_run
/// use statefn::cluster::{Epoch, JetStreamBackend, JetStreamOptions, LogBackend, LogGroupId, Lsn};
///
/// let tokio = tokio::runtime::Runtime::new()?;
/// let backend = JetStreamBackend::connect(
///     "nats://127.0.0.1:4222,nats://127.0.0.1:4223",
///     JetStreamOptions::new("bank", "node-a"),
///     tokio.handle().clone(),
/// )?;
/// // From a plain thread, never a tokio worker:
/// let mut opened = backend.open(LogGroupId(7), Epoch(1), Lsn(0))?;
/// for record in opened.records { let _ = record?; }
/// let lsn = opened.log.append(b"hello")?;
/// // Durable (acknowledged by a quorum of the stream's replicas) once `wait` returns.
/// assert_eq!(opened.log.flush()?.wait()?, lsn);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct JetStreamBackend {
    js: jetstream::Context,
    client: async_nats::Client,
    options: JetStreamOptions,
    handle: Handle,
}

fn unavailable(
    detail: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> LogError {
    LogError::Unavailable {
        detail: detail.into(),
        source: Some(Box::new(source)),
    }
}

impl JetStreamBackend {
    /// Connects to the NATS servers in `urls` (comma-separated); blocks.
    ///
    /// # Errors
    /// [`LogError::Unavailable`] when no server answers; a bad URL or cluster
    /// name is reported the same way, with the reason.
    pub fn connect(
        urls: &str,
        options: JetStreamOptions,
        handle: Handle,
    ) -> Result<Self, LogError> {
        let addrs = urls
            .split(',')
            .map(|u| {
                u.trim()
                    .parse::<ServerAddr>()
                    .map_err(|e| unavailable(format!("bad NATS URL {u:?}"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let client = handle
            .block_on(
                async_nats::ConnectOptions::new()
                    .name(format!("statefn-{}", options.writer))
                    .connect(addrs),
            )
            .map_err(|e| unavailable(format!("connecting to NATS at {urls}"), e))?;
        Self::with_client(client, options, handle)
    }

    /// Uses an existing client.
    ///
    /// # Errors
    /// [`LogError::Unavailable`] when `options.cluster` is not a valid name part.
    pub fn with_client(
        client: async_nats::Client,
        options: JetStreamOptions,
        handle: Handle,
    ) -> Result<Self, LogError> {
        let valid = !options.cluster.is_empty()
            && options
                .cluster
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(LogError::Unavailable {
                detail: format!("cluster name {:?} must be [A-Za-z0-9_-]+", options.cluster),
                source: None,
            });
        }
        // The context spawns its ack handler: it needs the runtime entered.
        let js = {
            let _runtime = handle.enter();
            jetstream::context::ContextBuilder::new()
                .timeout(options.ack_timeout)
                .build(client.clone())
        };
        Ok(JetStreamBackend {
            js,
            client,
            options,
            handle,
        })
    }

    /// The stream holding `group`'s log.
    ///
    /// ```
    /// # use statefn::cluster::{JetStreamBackend, LogGroupId};
    /// assert_eq!(JetStreamBackend::stream_name("bank", LogGroupId(7)), "statefn-bank-g0007");
    /// ```
    pub fn stream_name(cluster: &str, group: LogGroupId) -> String {
        format!("statefn-{cluster}-g{:04}", group.0)
    }

    /// The subject of `group`'s data records.
    ///
    /// ```
    /// # use statefn::cluster::{JetStreamBackend, LogGroupId};
    /// assert_eq!(JetStreamBackend::data_subject("bank", LogGroupId(7)), "statefn.bank.log.g0007");
    /// ```
    pub fn data_subject(cluster: &str, group: LogGroupId) -> String {
        format!("statefn.{cluster}.log.g{:04}", group.0)
    }

    /// The subject of `group`'s fence records.
    ///
    /// ```
    /// # use statefn::cluster::{JetStreamBackend, LogGroupId};
    /// assert_eq!(JetStreamBackend::fence_subject("bank", LogGroupId(7)), "statefn.bank.fence.g0007");
    /// ```
    pub fn fence_subject(cluster: &str, group: LogGroupId) -> String {
        format!("statefn.{cluster}.fence.g{:04}", group.0)
    }

    /// The JetStream context, for tools and tests that inspect the streams.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    async fn ensure_stream(&self, group: LogGroupId) -> Result<Stream, LogError> {
        let name = Self::stream_name(&self.options.cluster, group);
        match self.js.get_stream(&name).await {
            Ok(stream) => {
                let have = stream.cached_info().config.num_replicas;
                if have != self.options.replicas {
                    tracing::warn!(stream = %name, have, want = self.options.replicas, "stream has another replica count; using it as it is");
                }
                return Ok(stream);
            }
            Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(ref j) if j.code() == 404) =>
                {}
            Err(e) => return Err(unavailable(format!("looking up stream {name}"), e)),
        }
        let config = Config {
            name: name.clone(),
            subjects: vec![
                Self::data_subject(&self.options.cluster, group),
                Self::fence_subject(&self.options.cluster, group),
            ],
            num_replicas: self.options.replicas,
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            deny_delete: true,
            allow_direct: true,
            ..Config::default()
        };
        // A replicated stream's creation can time out while JetStream elects
        // its leaders (a cluster just started or recovering); creating it
        // again with the same configuration is idempotent.
        let mut timeouts = 0;
        loop {
            match self.js.get_or_create_stream(config.clone()).await {
                Ok(stream) => return Ok(stream),
                Err(e) if matches!(e.kind(), CreateStreamErrorKind::TimedOut) && timeouts < 3 => {
                    timeouts += 1;
                    tracing::warn!(stream = %name, timeouts, "creating the stream timed out; trying again");
                }
                Err(e) => {
                    let hint = match e.kind() {
                        CreateStreamErrorKind::JetStream(_) => format!(
                            "; a stream with {} replicas needs a NATS cluster of at least {} JetStream servers (see --replicas)",
                            self.options.replicas, self.options.replicas
                        ),
                        _ => String::new(),
                    };
                    return Err(unavailable(format!("creating stream {name}{hint}"), e));
                }
            }
        }
    }

    /// The last fence in the stream, if any.
    async fn last_fence(
        &self,
        stream: &Stream,
        group: LogGroupId,
    ) -> Result<Option<(Fence, u64)>, LogError> {
        let subject = Self::fence_subject(&self.options.cluster, group);
        match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => {
                let fence: Fence =
                    serde_json::from_slice(&message.payload).map_err(|e| LogError::Corrupt {
                        detail: format!(
                            "fence record at {} of {}: {e}",
                            message.sequence,
                            stream.cached_info().config.name
                        ),
                    })?;
                Ok(Some((fence, message.sequence)))
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(unavailable(
                format!("reading the last fence of {subject}"),
                e,
            )),
        }
    }

    /// Appends this writer's fence; returns its sequence.
    async fn fence(
        &self,
        stream: &mut Stream,
        group: LogGroupId,
        epoch: Epoch,
        cut: Option<Lsn>,
    ) -> Result<u64, LogError> {
        let fenced = |detail: String| LogError::Fenced {
            group,
            epoch,
            detail,
        };
        let nonce: u64 = rand_nonce();
        let mine = Fence {
            epoch: epoch.0,
            writer: self.options.writer.clone(),
            nonce,
            cut: cut.map(|lsn| lsn.0),
        };
        let payload = Bytes::from(serde_json::to_vec(&mine).map_err(|e| LogError::Corrupt {
            detail: format!("cannot encode a fence record: {e}"),
        })?);
        let subject = Self::fence_subject(&self.options.cluster, group);
        let id = format!("fence:{nonce}");
        let deadline = tokio::time::Instant::now() + self.options.retry_for;
        // Retries whatever is not a verdict (no leader yet right after the
        // stream was created, an election, a lost ack) until the deadline.
        let retry = |error: LogError| -> Result<(), LogError> {
            if tokio::time::Instant::now() < deadline {
                tracing::debug!(%error, "fence not confirmed; retrying");
                Ok(())
            } else {
                Err(error)
            }
        };
        loop {
            // The last sequence first, then the last fence: if the fence
            // publish (expecting that sequence) lands, no fence came between.
            let last = match stream.info().await {
                Ok(info) => info.state.last_sequence,
                Err(e) => {
                    retry(unavailable("reading the stream's last sequence", e))?;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let last_fence = match self.last_fence(stream, group).await {
                Ok(last_fence) => last_fence,
                Err(error @ LogError::Unavailable { .. }) => {
                    retry(error)?;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(error) => return Err(error),
            };
            match last_fence {
                // Our own fence landed but its ack was lost.
                Some((fence, seq)) if fence == mine => return Ok(seq),
                Some((fence, seq)) if fence.epoch >= epoch.0 => {
                    return Err(fenced(format!(
                        "the stream's last fence (sequence {seq}) is epoch {} of writer {:?}; an open needs a higher epoch",
                        fence.epoch, fence.writer
                    )));
                }
                _ => {}
            }
            let message = jetstream::message::PublishMessage::build()
                .payload(payload.clone())
                .expected_last_sequence(last)
                .message_id(&id);
            let result = match self.js.send_publish(subject.clone(), message).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match result {
                Ok(ack) => return Ok(ack.sequence),
                // Somebody appended meanwhile: look again.
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {}
                Err(e) => {
                    retry(unavailable(
                        format!("appending the fence of epoch {epoch}"),
                        e,
                    ))?;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn open_async(
        &self,
        group: LogGroupId,
        epoch: Epoch,
        from: Lsn,
        cut: Option<Lsn>,
    ) -> Result<OpenedLog, LogError> {
        let mut stream = self.ensure_stream(group).await?;
        let fence_seq = self.fence(&mut stream, group, epoch, cut).await?;
        let state = stream
            .info()
            .await
            .map_err(|e| unavailable("reading stream info", e))?
            .state
            .clone();
        let data_subject = Self::data_subject(&self.options.cluster, group);
        let fence_subject = Self::fence_subject(&self.options.cluster, group);
        let records = Replay::start(
            &stream,
            data_subject.clone(),
            fence_subject,
            from,
            fence_seq,
            self.handle.clone(),
        )
        .await?;
        let shared = Arc::new(Shared {
            group,
            epoch,
            durable: AtomicU64::new(fence_seq),
            failure: Mutex::new(None),
        });
        let publisher = Publisher {
            js: self.js.clone(),
            stream: stream.clone(),
            subject: data_subject,
            epoch,
        };
        let (batches, receiver) = mpsc::unbounded_channel();
        self.handle.spawn(acker::run(
            receiver,
            publisher.clone(),
            shared.clone(),
            self.options.retry_for,
        ));
        let max_record = (self.client.server_info().max_payload).saturating_sub(HEADER_ALLOWANCE);
        let log = JetStreamLog {
            stream,
            publisher,
            handle: self.handle.clone(),
            shared,
            batches,
            last: Lsn(fence_seq),
            buffer: Vec::new(),
            max_record,
            stats: LogStats::new(state.bytes, state.messages),
            truncate: self.options.truncate,
        };
        Ok(OpenedLog {
            log: Box::new(log),
            records: Box::new(records),
        })
    }
}

impl LogBackend for JetStreamBackend {
    /// Creates the stream if needed (with `replicas`), fences it at `epoch`
    /// and returns the writer with the data records `>= from` before the fence.
    ///
    /// # Errors
    /// [`LogError::Fenced`] if the stream already holds a fence at `epoch` or
    /// higher; [`LogError::Unavailable`] if NATS cannot be reached, has no
    /// quorum, or has fewer JetStream servers than `replicas`.
    fn open(&self, group: LogGroupId, epoch: Epoch, from: Lsn) -> Result<OpenedLog, LogError> {
        self.handle
            .block_on(self.open_async(group, epoch, from, None))
    }

    /// As [`open`](Self::open), with the fence cutting the data records
    /// after `durable` that come before it (see the module docs).
    fn reopen_after_failure(
        &self,
        group: LogGroupId,
        epoch: Epoch,
        from: Lsn,
        durable: Lsn,
    ) -> Result<OpenedLog, LogError> {
        self.handle
            .block_on(self.open_async(group, epoch, from, Some(durable)))
    }
}

fn rand_nonce() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// The payload of a fence record (JSON, for operators reading the stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Fence {
    pub(crate) epoch: u64,
    pub(crate) writer: String,
    pub(crate) nonce: u64,
    /// The data records after this position and before this fence do not
    /// count: a failed writer never confirmed them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cut: Option<u64>,
}

/// A log group's stream as its single writer sees it.
struct JetStreamLog {
    stream: Stream,
    publisher: Publisher,
    handle: Handle,
    shared: Arc<Shared>,
    batches: mpsc::UnboundedSender<Batch>,
    /// The position of the last appended record (or of the fence).
    last: Lsn,
    buffer: Vec<(Lsn, Bytes)>,
    max_record: usize,
    stats: LogStats,
    truncate: bool,
}

impl std::fmt::Debug for JetStreamLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamLog")
            .field("stream", &self.stream.cached_info().config.name)
            .field("epoch", &self.shared.epoch)
            .field("last", &self.last)
            .field("durable", &self.durable_lsn())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct AckWait {
    handle: Handle,
    done: tokio::sync::oneshot::Receiver<Result<Lsn, LogError>>,
}

impl FlushWait for AckWait {
    fn wait(self: Box<Self>) -> Result<Lsn, LogError> {
        self.handle
            .block_on(self.done)
            .unwrap_or(Err(LogError::Poisoned))
    }
}

impl CommitLog for JetStreamLog {
    /// # Durability
    /// None until a flush covering the record has resolved.
    fn append(&mut self, record: &[u8]) -> Result<Lsn, LogError> {
        self.shared.check()?;
        if record.len() > self.max_record {
            return Err(LogError::Unavailable {
                detail: format!(
                    "a record of {} bytes exceeds the NATS server's max_payload ({} bytes with headers); \
                     raise max_payload in the server configuration",
                    record.len(),
                    self.max_record + HEADER_ALLOWANCE
                ),
                source: None,
            });
        }
        self.last = Lsn(self.last.0 + 1);
        self.buffer
            .push((self.last, Bytes::copy_from_slice(record)));
        self.stats.bytes += record.len() as u64;
        self.stats.pieces += 1;
        Ok(self.last)
    }

    /// Publishes the buffered records (pipelined, without waiting).
    ///
    /// # Durability
    /// The returned flush resolves once the stream acknowledged every record,
    /// that is once a quorum of its replicas stored them (fsynced only if the
    /// servers run with `sync_interval: always`).
    fn flush(&mut self) -> Result<PendingFlush, LogError> {
        self.shared.check()?;
        let records = std::mem::take(&mut self.buffer);
        let publisher = &self.publisher;
        let published = self.handle.block_on(async {
            let mut published = Vec::with_capacity(records.len());
            for (lsn, payload) in records {
                let ack = publisher.publish(lsn, payload.clone()).await;
                published.push(Published { lsn, payload, ack });
            }
            published
        });
        let (done, receiver) = tokio::sync::oneshot::channel();
        if self
            .batches
            .send(Batch {
                records: published,
                done,
            })
            .is_err()
        {
            return Err(LogError::Poisoned);
        }
        Ok(PendingFlush::new(
            self.last,
            Box::new(AckWait {
                handle: self.handle.clone(),
                done: receiver,
            }),
        ))
    }

    fn durable_lsn(&self) -> Lsn {
        Lsn(self.shared.durable.load(Ordering::Acquire))
    }

    /// Purges the data records below `lsn`. Fences stay (one per open): a
    /// reader needs the fence before each record to tell stale ones.
    fn truncate_before(&mut self, lsn: Lsn) -> Result<(), LogError> {
        if !self.truncate {
            return Ok(());
        }
        let data = self.publisher.subject.clone();
        self.handle.block_on(async {
            self.stream
                .purge()
                .filter(data)
                .sequence(lsn.0)
                .await
                .map_err(|e| unavailable(format!("purging below {lsn}"), e))?;
            let state = self
                .stream
                .info()
                .await
                .map_err(|e| unavailable("reading stream info", e))?
                .state
                .clone();
            self.stats = LogStats::new(state.bytes, state.messages);
            Ok(())
        })
    }

    fn epoch(&self) -> Epoch {
        self.shared.epoch
    }

    /// From the stream's info at open and after each truncation, plus what
    /// was appended since (no request per call).
    fn stats(&self) -> LogStats {
        self.stats
    }
}
