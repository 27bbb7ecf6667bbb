//! Egress logs: records that functions emit (`ctx.emit("orders", &record)`)
//! as part of their commit, for consumers outside to read by offset.
//!
//! A record is in the invocation's log record, so it is durable with the
//! invocation. Once that commit is durable, the appender gives it the next
//! offset of its log and stores it. Shards keep emitted records they have
//! not seen appended in their checkpoints, and re-submit them after a
//! restart; the appender drops what it already has (by shard and sequence),
//! so each record appears once, under a stable id (`s{shard}-{seq}`) that
//! downstream systems can use as an idempotency key.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use statefn_store::{EgressTables, ShardId};
use tokio::sync::Notify;

use crate::{
    Error,
    clock::Clock,
    record::{decode, encode},
};

/// The longest egress log name, in bytes.
pub const MAX_EGRESS_NAME: usize = 128;

/// A record a shard emitted, numbered in the shard's own sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Emitted {
    pub(crate) shard: u16,
    pub(crate) seq: u64,
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
    /// [`Error::Decode`] if it is not a `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_value(self.record.clone()).map_err(|e| Error::Decode {
            function: "(egress)".into(),
            what: format!("egress record {}", self.id),
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

/// Where appended records go: fjall, or memory.
#[derive(Debug)]
enum Sink {
    Memory(Mutex<HashMap<String, BTreeMap<u64, EgressRecord>>>),
    /// Taken at shutdown so that fjall closes.
    Store(Mutex<Option<EgressTables>>),
}

/// The egress logs of a runtime.
#[derive(Debug)]
pub(crate) struct Egress {
    sink: Sink,
    /// Per shard, the highest sequence appended (shards prune with it).
    appended: Vec<AtomicU64>,
    /// Next offset per log.
    next: Mutex<HashMap<String, u64>>,
    retention_ms: u64,
    /// Woken on every append, for long-polling readers.
    pub(crate) appended_notify: Notify,
    tx: Mutex<Option<Sender<Vec<Emitted>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Manual mode: appends wait here until the test driver pumps them.
    manual: Mutex<Option<Receiver<Vec<Emitted>>>>,
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
    ) -> Result<Self, Error> {
        let storage = |e: statefn_store::StoreError| Error::Storage(format!("egress: {e}"));
        let appended: Vec<u64> = (0..shards)
            .map(|s| {
                let bytes = store.appended(ShardId(s)).map_err(storage)?;
                bytes.map_or(Ok(0), |b| decode::<u64>(&b, "an egress position"))
            })
            .collect::<Result<_, _>>()?;
        let mut next = HashMap::new();
        for (log, value) in store.next_offsets().map_err(storage)? {
            next.insert(log, decode::<u64>(&value, "an egress offset")?);
        }
        let egress = Self::new(
            Sink::Store(Mutex::new(Some(store))),
            shards,
            retention,
            next,
            clock,
        );
        for (shard, seq) in appended.into_iter().enumerate() {
            egress.appended[shard].store(seq, Ordering::Release);
        }
        Ok(egress)
    }

    fn new(
        sink: Sink,
        shards: u16,
        retention: Duration,
        next: HashMap<String, u64>,
        clock: Clock,
    ) -> Self {
        Egress {
            clock,
            sink,
            appended: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            next: Mutex::new(next),
            retention_ms: u64::try_from(retention.as_millis()).unwrap_or(u64::MAX),
            appended_notify: Notify::new(),
            tx: Mutex::new(None),
            thread: Mutex::new(None),
            manual: Mutex::new(None),
        }
    }

    /// Starts the appender thread (durable mode only).
    pub(crate) fn start(self: &Arc<Self>) -> std::io::Result<()> {
        if matches!(self.sink, Sink::Memory(_)) {
            return Ok(());
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let egress = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name("statefn-egress".into())
            .spawn(move || egress.run(&rx))?;
        *self.tx.lock() = Some(tx);
        *self.thread.lock() = Some(thread);
        Ok(())
    }

    /// Stops the appender after it has appended what it was given.
    pub(crate) fn stop(&self) -> Option<JoinHandle<()>> {
        self.tx.lock().take();
        // Manual mode: what was not pumped stays with the shards, which
        // submit it again after the next open.
        self.manual.lock().take();
        self.thread.lock().take()
    }

    /// Drops the store handle (after `stop` has joined the appender).
    pub(crate) fn close(&self) {
        if let Sink::Store(store) = &self.sink {
            store.lock().take();
        }
    }

    fn store(&self) -> Result<EgressTables, Error> {
        match &self.sink {
            Sink::Store(store) => store
                .lock()
                .clone()
                .ok_or_else(|| Error::Storage("the runtime has shut down".into())),
            Sink::Memory(_) => Err(Error::Storage("egress logs are in memory".into())),
        }
    }

    /// The highest sequence of `shard` appended so far.
    pub(crate) fn appended(&self, shard: u16) -> u64 {
        self.appended[usize::from(shard)].load(Ordering::Acquire)
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
                    self.appended[usize::from(emitted.shard)]
                        .fetch_max(emitted.seq, Ordering::AcqRel);
                }
                self.appended_notify.notify_waiters();
            }
            Sink::Store(_) => {
                if let Some(tx) = &*self.tx.lock() {
                    let _ = tx.send(records);
                }
            }
        }
    }

    /// Drops records already appended (re-submitted after a recovery).
    fn fresh(&self, records: Vec<Emitted>) -> Vec<Emitted> {
        let mut seen: HashMap<u16, u64> = HashMap::new();
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

    fn run(&self, rx: &Receiver<Vec<Emitted>>) {
        let Ok(store) = self.store() else { return };
        let mut appends_since_sweep = 0usize;
        while let Ok(first) = rx.recv() {
            let records = std::iter::once(first).chain(rx.try_iter()).flatten();
            self.append(&store, records.collect(), &mut appends_since_sweep);
        }
    }

    /// Appends one lot of records (dropping those already appended), retrying
    /// until the store takes them, and sweeps old ones now and then.
    fn append(&self, store: &EgressTables, records: Vec<Emitted>, since_sweep: &mut usize) {
        let records = self.fresh(records);
        if records.is_empty() {
            return;
        }
        let mut retry = Duration::from_millis(10);
        while let Err(e) = self.append_to_store(store, &records) {
            // The records are safe in the shards' logs and checkpoints;
            // keep trying rather than lose the order.
            tracing::error!(error = %e, ?retry, "cannot append egress records; retrying");
            std::thread::sleep(retry);
            retry = (retry * 2).min(Duration::from_secs(5));
        }
        for r in &records {
            self.appended[usize::from(r.shard)].fetch_max(r.seq, Ordering::AcqRel);
        }
        self.appended_notify.notify_waiters();
        *since_sweep += records.len();
        if *since_sweep >= 10_000 {
            *since_sweep = 0;
            if let Err(e) = self.sweep(store) {
                tracing::warn!(error = %e, "egress retention sweep failed");
            }
        }
    }

    /// Manual mode (durable): appends are queued for [`pump`](Self::pump)
    /// instead of an appender thread.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn start_manual(&self) {
        if matches!(self.sink, Sink::Memory(_)) {
            return;
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        *self.tx.lock() = Some(tx);
        *self.manual.lock() = Some(rx);
    }

    /// Manual mode: appends what is queued, on the calling thread. Returns
    /// whether there was anything.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn pump(&self) -> bool {
        let records: Vec<Emitted> = match &*self.manual.lock() {
            Some(rx) => rx.try_iter().flatten().collect(),
            None => return false,
        };
        if records.is_empty() {
            return false;
        }
        if let Ok(store) = self.store() {
            self.append(&store, records, &mut 0);
        }
        true
    }

    fn append_to_store(&self, store: &EgressTables, records: &[Emitted]) -> Result<(), Error> {
        let mut next = self.next.lock().clone();
        let mut batch = store.batch();
        let mut last_seq: HashMap<u16, u64> = HashMap::new();
        for r in records {
            let offset = next.entry(r.log.clone()).or_insert(0);
            let stored = Stored {
                id: record_id(r),
                at_ms: r.at_ms,
                record: r.record.clone(),
            };
            batch.put_record(&r.log, *offset, encode(&stored)?);
            *offset += 1;
            last_seq.insert(r.shard, r.seq);
        }
        for log in records.iter().map(|r| &r.log) {
            let offset = next.get(log).copied().unwrap_or(0);
            batch.put_next_offset(log, encode(&offset)?);
        }
        for (shard, seq) in &last_seq {
            batch.put_appended(ShardId(*shard), encode(seq)?);
        }
        batch
            .commit()
            .map_err(|e| Error::Storage(format!("appending egress records: {e}")))?;
        *self.next.lock() = next;
        Ok(())
    }

    /// Deletes records older than the retention (a bounded amount per call).
    fn sweep(&self, store: &EgressTables) -> Result<(), Error> {
        let cutoff = self.clock.now_ms().saturating_sub(self.retention_ms);
        let logs: Vec<String> = self.next.lock().keys().cloned().collect();
        let storage = |e: statefn_store::StoreError| Error::Storage(format!("egress sweep: {e}"));
        for log in logs {
            let mut deletes = store.batch();
            for (offset, value) in store.records(&log, 0, 10_000).map_err(storage)? {
                let stored: Stored = decode(&value, "an egress record")?;
                if stored.at_ms >= cutoff {
                    break;
                }
                deletes.delete_record(&log, offset);
            }
            if !deletes.is_empty() {
                deletes.commit_buffered().map_err(storage)?;
            }
        }
        Ok(())
    }

    /// Up to `limit` records of `log` from offset `from` (blocking in durable mode).
    pub(crate) fn read(
        &self,
        log: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<EgressRecord>, Error> {
        match &self.sink {
            Sink::Memory(logs) => {
                let cutoff = self.clock.now_ms().saturating_sub(self.retention_ms);
                Ok(logs
                    .lock()
                    .get(log)
                    .map(|l| {
                        l.range(from..)
                            .map(|(_, r)| r)
                            .filter(|r| r.at_ms >= cutoff)
                            .take(limit)
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default())
            }
            Sink::Store(_) => {
                let rows = self
                    .store()?
                    .records(log, from, limit)
                    .map_err(|e| Error::Storage(format!("reading egress log `{log}`: {e}")))?;
                rows.into_iter()
                    .map(|(offset, value)| {
                        let stored: Stored = decode(&value, "an egress record")?;
                        Ok(EgressRecord {
                            offset,
                            id: stored.id,
                            at_ms: stored.at_ms,
                            record: serde_json::from_slice(&stored.record)
                                .unwrap_or(serde_json::Value::Null),
                        })
                    })
                    .collect()
            }
        }
    }
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
