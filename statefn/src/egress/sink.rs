//! Where the appender stores egress records durably: behind
//! [`EgressSink`], the local state store ([`StoreSink`]) or, in cluster
//! mode, one JetStream stream per egress log (`crate::cluster`).
//!
//! A sink numbers each log's records densely from offset 0 in the order it
//! is given them, and keeps each record's stable id (`s{shard}-{seq}`).

use std::{collections::HashMap, fmt};

use parking_lot::Mutex;
use statefn_store::EgressTables;

use super::{EgressRecord, Emitted, Stored, record_id};
use crate::{
    Error, StoreFaults,
    error::StorageError,
    protocol::{
        ids::{EgressSeq, ShardId},
        record::{decode, encode},
    },
};

/// Durable storage of egress logs.
pub(crate) trait EgressSink: Send + Sync + fmt::Debug {
    /// Stores `records` (none stored before; each shard's in its order),
    /// each at the next offset of its log.
    ///
    /// # Durability
    ///
    /// Durable when this returns `Ok`: the local store synced, or a quorum
    /// of the stream's replicas acknowledged.
    ///
    /// # Errors
    ///
    /// When they may not all be stored; the appender retries the same
    /// records, and the sink must store each once.
    fn append(&self, records: &[Emitted]) -> Result<(), Error>;

    /// Up to `limit` records of `log` from offset `from` (blocking).
    fn read(&self, log: &str, from: u64, limit: usize) -> Result<Vec<EgressRecord>, Error>;

    /// Deletes (a bounded number of) records committed before `cutoff_ms`.
    fn sweep(&self, cutoff_ms: u64) -> Result<(), Error>;

    /// The highest sequence of `shard` stored in any of `logs`, when the sink
    /// can say (cluster mode: another node may have stored records of a
    /// shard whose log group this node just took over).
    #[cfg(feature = "cluster")]
    fn stored_up_to(&self, _shard: ShardId, _logs: &[&str]) -> Result<Option<EgressSeq>, Error> {
        Ok(None)
    }

    /// How often a long-polling reader looks again: `None` when every
    /// append goes through this process (and wakes the readers).
    #[cfg(feature = "cluster")]
    fn poll_interval(&self) -> Option<std::time::Duration> {
        None
    }

    /// Lets go of the storage (at shutdown).
    fn close(&self);
}

/// The egress logs in the local state store (fjall).
#[derive(Debug)]
pub(crate) struct StoreSink {
    /// Taken at shutdown so that fjall closes.
    store: Mutex<Option<EgressTables>>,
    /// Next offset per log.
    next: Mutex<HashMap<String, u64>>,
    /// Injected write failures (tests).
    faults: StoreFaults,
}

impl StoreSink {
    /// Opens the egress tables and reads, per shard, the highest sequence
    /// stored (blocking).
    pub(crate) fn open(
        store: EgressTables,
        shards: u16,
        faults: StoreFaults,
    ) -> Result<(Self, Vec<EgressSeq>), Error> {
        let storage = || StorageError::store("opening the egress logs");
        let appended: Vec<EgressSeq> = (0..shards)
            .map(|s| {
                let bytes = store.appended(ShardId(s)).map_err(storage())?;
                bytes.map_or(Ok(EgressSeq(0)), |b| decode(&b, "an egress position"))
            })
            .collect::<Result<_, Error>>()?;
        let mut next = HashMap::new();
        for (log, value) in store.next_offsets().map_err(storage())? {
            next.insert(log, decode::<u64>(&value, "an egress offset")?);
        }
        let sink = StoreSink {
            store: Mutex::new(Some(store)),
            next: Mutex::new(next),
            faults,
        };
        Ok((sink, appended))
    }

    fn store(&self) -> Result<EgressTables, Error> {
        self.store
            .lock()
            .clone()
            .ok_or_else(|| StorageError::Closed.into())
    }
}

impl EgressSink for StoreSink {
    fn append(&self, records: &[Emitted]) -> Result<(), Error> {
        self.faults.check("appending egress records")?;
        let store = self.store()?;
        let mut next = self.next.lock().clone();
        let mut batch = store.batch();
        let mut last_seq: HashMap<ShardId, EgressSeq> = HashMap::new();
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
            batch.put_appended(*shard, encode(seq)?);
        }
        batch
            .commit()
            .map_err(StorageError::store("appending egress records"))?;
        *self.next.lock() = next;
        Ok(())
    }

    fn read(&self, log: &str, from: u64, limit: usize) -> Result<Vec<EgressRecord>, Error> {
        // At most `next - from` records are there. A caught-up reader (a
        // long-poll's usual state, woken by every append to any log) costs
        // no scan, and a scan stops at the end of this log instead of
        // copying rows of the logs after it.
        let next = self.next.lock().get(log).copied().unwrap_or(0);
        let there = usize::try_from(next.saturating_sub(from)).unwrap_or(usize::MAX);
        if there == 0 {
            return Ok(Vec::new());
        }
        let rows = self
            .store()?
            .records(log, from, limit.min(there))
            .map_err(StorageError::store(format!("reading egress log `{log}`")))?;
        rows.into_iter()
            .take_while(|(offset, _)| *offset < next)
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

    fn sweep(&self, cutoff_ms: u64) -> Result<(), Error> {
        let store = self.store()?;
        let logs: Vec<String> = self.next.lock().keys().cloned().collect();
        let storage = || StorageError::store("sweeping old egress records");
        for log in logs {
            let mut deletes = store.batch();
            for (offset, value) in store.records(&log, 0, 10_000).map_err(storage())? {
                let stored: Stored = decode(&value, "an egress record")?;
                if stored.at_ms >= cutoff_ms {
                    break;
                }
                deletes.delete_record(&log, offset);
            }
            if !deletes.is_empty() {
                deletes.commit_buffered().map_err(storage())?;
            }
        }
        Ok(())
    }

    fn close(&self) {
        self.store.lock().take();
    }
}
