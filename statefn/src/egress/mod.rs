//! Egress logs: records that functions emit (`ctx.emit("orders", &record)`)
//! as part of their commit, for consumers outside to read by offset.
//!
//! A record is in the invocation's log record, so it is durable with the
//! invocation. Once that commit is durable, the [appender](appender) gives
//! it the next offset of its log and stores it. Shards keep emitted records
//! they have not seen appended in their checkpoints, and submit them again
//! after a restart; the appender drops what it already has (by shard and
//! sequence), so each record appears once, under a stable id
//! (`s{shard}-{seq}`) that downstream systems can use as an idempotency key.
//! Consumers read through the [reader](reader).

pub(crate) mod appender;
mod committing;
mod reader;
pub(crate) mod sink;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, HashMap},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::Duration,
};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use statefn_store::EgressTables;
use tokio::sync::Notify;

pub(crate) use self::committing::Reservation;
use self::{
    committing::Committing,
    sink::{EgressSink, StoreSink},
};
use crate::{
    Error,
    clock::Clock,
    protocol::ids::{EgressSeq, ShardId},
};

/// The longest egress log name, in bytes.
pub const MAX_EGRESS_NAME: usize = 128;

/// A record a shard emitted, numbered in the shard's own sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Emitted {
    pub(crate) shard: ShardId,
    pub(crate) seq: EgressSeq,
    pub(crate) log: String,
    /// The record as JSON.
    pub(crate) record: Vec<u8>,
    pub(crate) at_ms: u64,
}

/// One record of an egress log, as consumers read it.
///
/// # Examples
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use statefn::prelude::*;
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// pub struct Shipped { order: u32 }
///
/// #[stateful_function]
/// #[derive(Default, Serialize, Deserialize)]
/// pub struct Order { shipped: bool }
///
/// #[stateful_function]
/// impl Order {
///     #[handler]
///     pub fn ship(&mut self, ctx: &mut Context, order: u32) {
///         self.shipped = true;
///         ctx.emit("shipments", &Shipped { order });
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), statefn::Error> {
/// let runtime = Runtime::builder().in_memory().register::<Order>().open().await?;
/// runtime.handle::<Order>("o-1").ship(1).await?;
/// let records = runtime.read_egress("shipments", 0, 10, std::time::Duration::ZERO).await?;
/// assert_eq!(records[0].offset, 0);
/// assert_eq!(records[0].decode::<Shipped>()?, Shipped { order: 1 });
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct EgressRecord {
    /// Its position in the log: 0, 1, 2, ... in commit order.
    pub offset: u64,
    /// A stable id: the same across restarts and re-reads; use it as an
    /// idempotency key downstream.
    pub id: String,
    /// When it was committed (unix milliseconds).
    pub at_ms: u64,
    /// The record as emitted.
    pub record: serde_json::Value,
}

impl EgressRecord {
    /// Decodes the record as `T`.
    ///
    /// # Errors
    ///
    /// [`Error::EgressRecord`] if it is not a `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_value(self.record.clone()).map_err(|e| Error::EgressRecord {
            id: self.id.clone(),
            reason: e.to_string(),
        })
    }
}

/// What the store keeps per record.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    id: String,
    at_ms: u64,
    record: Vec<u8>,
}

impl crate::protocol::record::Stored for Stored {}

/// Where appended records go: memory, or a durable [`EgressSink`].
#[derive(Debug)]
enum Sink {
    Memory(Mutex<HashMap<String, BTreeMap<u64, EgressRecord>>>),
    Durable(Box<dyn EgressSink>),
}

/// The egress logs of a runtime.
#[derive(Debug)]
pub(crate) struct Egress {
    sink: Sink,
    /// Per shard, the highest sequence appended (shards prune with it).
    appended: Vec<AtomicU64>,
    /// Per shard, bytes of records submitted and not yet appended (durable
    /// mode), and all shards' together.
    queued: Vec<AtomicU64>,
    queued_total: AtomicU64,
    /// Bytes of records in batches being committed (durable mode).
    committing: Committing,
    /// Next offset per log (in memory).
    next: Mutex<HashMap<String, u64>>,
    retention_ms: u64,
    /// Woken on every append, for long-polling readers.
    pub(crate) appended_notify: Notify,
    /// Set when the runtime starts shutting down: long-polls return at once.
    readers_closed: AtomicBool,
    /// Set when the appender is told to stop: it gives up retrying a store
    /// that fails (the records stay with their shards).
    stopping: AtomicBool,
    /// To the appender (durable mode).
    tx: Mutex<Option<Sender<Vec<Emitted>>>>,
    /// Until the appender is made.
    rx: Mutex<Option<Receiver<Vec<Emitted>>>>,
    clock: Clock,
}

impl Egress {
    pub(crate) fn in_memory(shards: u16, retention: Duration, clock: Clock) -> Self {
        Self::new(
            Sink::Memory(Mutex::new(HashMap::new())),
            shards,
            retention,
            HashMap::new(),
            clock,
        )
    }

    /// Opens the durable egress logs (blocking: reads the store).
    pub(crate) fn open(
        store: EgressTables,
        shards: u16,
        retention: Duration,
        clock: Clock,
        faults: crate::StoreFaults,
    ) -> Result<Self, Error> {
        let (sink, appended) = StoreSink::open(store, shards, faults)?;
        Ok(Self::durable(Box::new(sink), &appended, retention, clock))
    }

    /// Egress logs kept by `sink`; `appended` is, per shard, the highest
    /// sequence it holds.
    pub(crate) fn durable(
        sink: Box<dyn EgressSink>,
        appended: &[EgressSeq],
        retention: Duration,
        clock: Clock,
    ) -> Self {
        let shards = u16::try_from(appended.len()).unwrap_or(u16::MAX);
        let egress = Self::new(
            Sink::Durable(sink),
            shards,
            retention,
            HashMap::new(),
            clock,
        );
        for (cell, seq) in egress.appended.iter().zip(appended) {
            cell.store(seq.0, Ordering::Release);
        }
        egress
    }

    fn new(
        sink: Sink,
        shards: u16,
        retention: Duration,
        next: HashMap<String, u64>,
        clock: Clock,
    ) -> Self {
        let (tx, rx) = match sink {
            Sink::Durable(_) => {
                let (tx, rx) = crossbeam_channel::unbounded();
                (Some(tx), Some(rx))
            }
            Sink::Memory(_) => (None, None),
        };
        Egress {
            clock,
            sink,
            appended: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            queued: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            queued_total: AtomicU64::new(0),
            committing: Committing::default(),
            next: Mutex::new(next),
            retention_ms: u64::try_from(retention.as_millis()).unwrap_or(u64::MAX),
            appended_notify: Notify::new(),
            readers_closed: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            tx: Mutex::new(tx),
            rx: Mutex::new(rx),
        }
    }

    /// Stops the appender after it has appended what it was given (what it
    /// was not given stays with the shards, which submit it again after the
    /// next open).
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.tx.lock().take();
    }

    /// Whether the appender was told to stop.
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Makes long-polling readers return what they have at once, now and
    /// from now on (the runtime shuts down).
    pub(crate) fn close_readers(&self) {
        self.readers_closed.store(true, Ordering::SeqCst);
        self.appended_notify.notify_waiters();
    }

    /// Whether long-polls should return at once.
    pub(crate) fn readers_closed(&self) -> bool {
        self.readers_closed.load(Ordering::SeqCst)
    }

    /// Lets go of the durable storage (after the appender stopped).
    pub(crate) fn close(&self) {
        if let Sink::Durable(sink) = &self.sink {
            sink.close();
        }
    }

    /// The durable sink (`None` in memory).
    fn durable_sink(&self) -> Option<&dyn EgressSink> {
        match &self.sink {
            Sink::Durable(sink) => Some(sink.as_ref()),
            Sink::Memory(_) => None,
        }
    }

    /// Cluster mode: after this node took over `shard`'s log group, learns
    /// from the sink how far another node stored the shard's records in
    /// `logs`, so that recovered records it already has are not submitted
    /// (blocking).
    #[cfg(feature = "cluster")]
    pub(crate) fn learn_stored(&self, shard: ShardId, logs: &[&str]) -> Result<(), Error> {
        if let Some(sink) = self.durable_sink()
            && let Some(seq) = sink.stored_up_to(shard, logs)?
        {
            self.mark_appended(shard, seq);
        }
        Ok(())
    }

    /// How often a long-poll looks again (`None`: appends wake it).
    pub(crate) fn poll_interval(&self) -> Option<Duration> {
        #[cfg(feature = "cluster")]
        if let Some(sink) = self.durable_sink() {
            return sink.poll_interval();
        }
        None
    }

    /// The highest sequence of `shard` appended so far.
    pub(crate) fn appended(&self, shard: ShardId) -> EgressSeq {
        EgressSeq(
            self.appended
                .get(shard.index())
                .map_or(0, |a| a.load(Ordering::Acquire)),
        )
    }

    fn mark_appended(&self, shard: ShardId, seq: EgressSeq) {
        if let Some(cell) = self.appended.get(shard.index()) {
            cell.fetch_max(seq.0, Ordering::AcqRel);
        }
    }

    /// Appends durably committed records (in each shard's order).
    pub(crate) fn submit(&self, records: Vec<Emitted>) {
        if records.is_empty() {
            return;
        }
        match &self.sink {
            Sink::Memory(logs) => {
                let mut logs = logs.lock();
                let mut next = self.next.lock();
                for emitted in self.fresh(records) {
                    let offset = next.entry(emitted.log.clone()).or_insert(0);
                    let record =
                        serde_json::from_slice(&emitted.record).unwrap_or(serde_json::Value::Null);
                    logs.entry(emitted.log.clone()).or_default().insert(
                        *offset,
                        EgressRecord {
                            offset: *offset,
                            id: record_id(&emitted),
                            at_ms: emitted.at_ms,
                            record,
                        },
                    );
                    *offset += 1;
                    self.mark_appended(emitted.shard, emitted.seq);
                }
                self.appended_notify.notify_waiters();
            }
            Sink::Durable(_) => {
                if let Some(tx) = &*self.tx.lock() {
                    let weights: Vec<(ShardId, u64)> = records.iter().map(weight).collect();
                    self.count_queued(weights.iter().copied(), true);
                    if tx.send(records).is_err() {
                        self.count_queued(weights, false);
                    }
                }
            }
        }
    }

    /// Bytes of `shard`'s records waiting for the appender.
    pub(crate) fn queued_bytes(&self, shard: ShardId) -> u64 {
        self.queued
            .get(shard.index())
            .map_or(0, |q| q.load(Ordering::Acquire))
    }

    /// Bytes of all records waiting for the appender.
    pub(crate) fn queued_total(&self) -> u64 {
        self.queued_total.load(Ordering::Acquire)
    }

    /// Counts records, as (shard, [`weight`]), into (`added`) or out of the
    /// appender's queue.
    pub(crate) fn count_queued(
        &self,
        records: impl IntoIterator<Item = (ShardId, u64)>,
        added: bool,
    ) {
        let mut total = 0;
        for (shard, bytes) in records {
            total += bytes;
            if let Some(cell) = self.queued.get(shard.index()) {
                if added {
                    cell.fetch_add(bytes, Ordering::AcqRel);
                } else {
                    let _ = cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                        Some(q.saturating_sub(bytes))
                    });
                }
            }
        }
        let now = if added {
            self.queued_total.fetch_add(total, Ordering::AcqRel) + total
        } else {
            let before = self
                .queued_total
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                    Some(q.saturating_sub(total))
                })
                .unwrap_or(0);
            before.saturating_sub(total)
        };
        #[expect(clippy::cast_precision_loss, reason = "a gauge")]
        metrics::gauge!(crate::metrics::EGRESS_QUEUE_BYTES).set(now as f64);
    }

    /// Counts a batch's records against the bound while the batch is
    /// committed (durable mode; `None` in memory or without records): the
    /// batch keeps the reservation until its records are submitted here.
    pub(crate) fn reserve(&self, records: &[Emitted]) -> Option<Reservation> {
        match &self.sink {
            Sink::Durable(_) => self.committing.reserve(records),
            Sink::Memory(_) => None,
        }
    }

    /// Waits while more than `bound` bytes of records wait for the appender
    /// or are in batches being committed (a slow or failing state store),
    /// or until `give_up` says so: the worker then runs no more batches,
    /// the mailboxes fill, and new calls are refused with `Overloaded`
    /// instead of the queue growing in memory. A worker checks before it
    /// runs a batch, so each worker may take the total past `bound` by the
    /// records of one batch.
    pub(crate) fn wait_for_room(&self, bound: u64, give_up: impl Fn() -> bool) {
        while self.queued_total().saturating_add(self.committing.bytes()) > bound
            && !self.stopping()
            && !give_up()
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Drops records already appended (re-submitted after a recovery).
    fn fresh(&self, records: Vec<Emitted>) -> Vec<Emitted> {
        let mut seen: HashMap<ShardId, EgressSeq> = HashMap::new();
        records
            .into_iter()
            .filter(|r| {
                let last = seen
                    .entry(r.shard)
                    .or_insert_with(|| self.appended(r.shard));
                let fresh = r.seq > *last;
                if fresh {
                    *last = r.seq;
                }
                fresh
            })
            .collect()
    }
}

/// What a record weighs in the appender's queue, with its shard.
pub(crate) fn weight(r: &Emitted) -> (ShardId, u64) {
    let bytes = r.record.len() + r.log.len() + std::mem::size_of::<Emitted>();
    (r.shard, u64::try_from(bytes).unwrap_or(u64::MAX))
}

fn record_id(r: &Emitted) -> String {
    format!("s{}-{}", r.shard, r.seq)
}

/// Checks an egress log name: it appears in URLs and keys.
pub(crate) fn check_name(log: &str) -> Result<(), Error> {
    let valid = !log.is_empty()
        && log.len() <= MAX_EGRESS_NAME
        && log
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidAddress {
            reason: format!(
                "egress log name {log:?}: use 1 to {MAX_EGRESS_NAME} ASCII letters, digits, `.`, `_` or `-`"
            ),
        })
    }
}
