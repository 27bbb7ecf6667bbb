//! The egress appender (durable mode): stores committed egress records in
//! the egress logs, each at the next offset of its log, dropping records it
//! already has, and sweeps records past their retention now and then.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    sync::Arc,
    time::Duration,
};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::{Egress, Emitted, sink::EgressSink};
use crate::service::{Service, Step};

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
        // Counted out once stored (or given up at a stop): a store that
        // fails keeps them counted, and the workers wait.
        let taken: Vec<_> = records.iter().map(super::weight).collect();
        if let Some(sink) = self.egress.durable_sink() {
            self.egress.append(sink, records, &mut self.since_sweep);
        }
        self.egress.count_queued(taken, false);
        Step::Worked
    }
}

impl Egress {
    /// Appends one lot of records (dropping those already appended), retrying
    /// until the sink takes them, and sweeps old ones now and then.
    fn append(&self, sink: &dyn EgressSink, records: Vec<Emitted>, since_sweep: &mut usize) {
        let records = self.fresh(records);
        if records.is_empty() {
            return;
        }
        let mut retry = Duration::from_millis(10);
        while let Err(e) =
            catch_unwind(AssertUnwindSafe(|| sink.append(&records))).unwrap_or_else(|panic| {
                Err(crate::Error::Thread {
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
            let cutoff = self.clock.now_ms().saturating_sub(self.retention_ms);
            if let Err(e) = sink.sweep(cutoff) {
                tracing::warn!(error = %e, "egress retention sweep failed");
            }
        }
    }
}
