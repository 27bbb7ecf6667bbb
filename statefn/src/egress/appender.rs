//! The egress appender (durable mode): stores committed egress records in
//! the egress logs, each at the next offset of its log, dropping records it
//! already has, and sweeps records past their retention now and then.

use std::{
    collections::HashMap,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::Arc,
    time::Duration,
};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use statefn_store::EgressTables;

use super::{Egress, Emitted, Stored, record_id};
use crate::{
    Error,
    error::StorageError,
    protocol::{
        ids::{EgressSeq, ShardId},
        record::{decode, encode},
    },
    service::{Service, Step},
};

/// Sweep old records after this many appends.
const SWEEP_EVERY: usize = 10_000;

/// Appends committed egress records: a [`Service`].
#[derive(Debug)]
pub(crate) struct Appender {
    egress: Arc<Egress>,
    rx: Receiver<Vec<Emitted>>,
    since_sweep: usize,
}

impl Appender {
    /// The appender of `egress` (`None` in memory, or if made already).
    pub(crate) fn new(egress: &Arc<Egress>) -> Option<Self> {
        let rx = egress.rx.lock().take()?;
        Some(Appender {
            egress: Arc::clone(egress),
            rx,
            since_sweep: 0,
        })
    }
}

impl Service for Appender {
    fn name(&self) -> String {
        "statefn-egress".into()
    }

    fn step(&mut self, wait: Duration) -> Step {
        let first = if wait.is_zero() {
            None
        } else {
            match self.rx.recv_timeout(wait) {
                Ok(records) => Some(records),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return Step::Done,
            }
        };
        let records: Vec<Emitted> = first
            .into_iter()
            .chain(self.rx.try_iter())
            .flatten()
            .collect();
        if records.is_empty() {
            return Step::Idle;
        }
        if let Ok(store) = self.egress.store() {
            self.egress.append(&store, records, &mut self.since_sweep);
        }
        Step::Worked
    }
}

impl Egress {
    /// Appends one lot of records (dropping those already appended), retrying
    /// until the store takes them, and sweeps old ones now and then.
    fn append(&self, store: &EgressTables, records: Vec<Emitted>, since_sweep: &mut usize) {
        let records = self.fresh(records);
        if records.is_empty() {
            return;
        }
        let mut retry = Duration::from_millis(10);
        while let Err(e) = catch_unwind(AssertUnwindSafe(|| self.append_to_store(store, &records)))
            .unwrap_or_else(|panic| {
                Err(Error::Thread {
                    what: format!(
                        "appending egress records panicked: {}",
                        crate::registry::panic_message(&*panic)
                    ),
                    source: None,
                })
            })
        {
            metrics::counter!(crate::metrics::EGRESS_APPEND_FAILURES).increment(1);
            // The records are safe in the shards' logs and checkpoints;
            // keep trying rather than lose the order, until told to stop:
            // then they stay with their shards, which submit them again
            // after the next open.
            if self.stopping() {
                tracing::warn!(error = %e, records = records.len(), "stopping with egress records not appended; the next open appends them");
                return;
            }
            tracing::error!(error = %e, ?retry, "cannot append egress records; retrying");
            let until = std::time::Instant::now() + retry;
            while !self.stopping() && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20).min(retry));
            }
            retry = (retry * 2).min(Duration::from_secs(5));
        }
        for r in &records {
            self.mark_appended(r.shard, r.seq);
        }
        self.appended_notify.notify_waiters();
        *since_sweep += records.len();
        if *since_sweep >= SWEEP_EVERY {
            *since_sweep = 0;
            if let Err(e) = self.sweep(store) {
                tracing::warn!(error = %e, "egress retention sweep failed");
            }
        }
    }

    fn append_to_store(&self, store: &EgressTables, records: &[Emitted]) -> Result<(), Error> {
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

    /// Deletes records older than the retention (a bounded amount per call).
    fn sweep(&self, store: &EgressTables) -> Result<(), Error> {
        let cutoff = self.clock.now_ms().saturating_sub(self.retention_ms);
        let logs: Vec<String> = self.next.lock().keys().cloned().collect();
        let storage = || StorageError::store("sweeping old egress records");
        for log in logs {
            let mut deletes = store.batch();
            for (offset, value) in store.records(&log, 0, 10_000).map_err(storage())? {
                let stored: Stored = decode(&value, "an egress record")?;
                if stored.at_ms >= cutoff {
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
}
