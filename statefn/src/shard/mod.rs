//! A shard: a single-writer state machine over the instances of its key groups.
//!
//! A worker takes a batch of mail, runs each invocation against the shard's
//! core, and hands the batch (log records and effects) to the commit path
//! while it still owns the shard, so batches of one shard commit in order.

mod checkpoint;
mod core;
mod tables;

use std::{
    collections::VecDeque,
    sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering},
};

use parking_lot::Mutex;

pub(crate) use self::checkpoint::CheckpointJob;
pub use self::core::RetryPolicy;
pub(crate) use self::core::{CoreConfig, ShardCore, ShardMeta, envelope_of};
pub(crate) use self::tables::Persisted;
use crate::{
    Error,
    envelope::{Envelope, Mail, ReplySender},
    registry::Registry,
};

/// The most mail one batch takes: bounds the latency a batch adds to the
/// mail behind it.
pub(crate) const MAX_BATCH: usize = 256;

/// Whether a shard is serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Status {
    Serving = 0,
    /// Rebuilding its state from checkpoint and log; its mail waits.
    Recovering = 1,
}

/// What a worker needs to run a batch.
pub(crate) struct RunEnv<'a> {
    pub(crate) registry: &'a Registry,
    pub(crate) now_ms: u64,
    /// Highest sequence from this shard that `dest` has durably applied.
    pub(crate) acked: &'a (dyn Fn(u16) -> u64 + Sync),
    /// Highest egress sequence of this shard the appender has stored.
    pub(crate) egress_appended: u64,
}

impl std::fmt::Debug for RunEnv<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunEnv")
            .field("now_ms", &self.now_ms)
            .finish_non_exhaustive()
    }
}

/// One batch's output: its log records and the effects released when they
/// are durable.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) shard: u16,
    pub(crate) epoch: u64,
    pub(crate) records: Vec<Vec<u8>>,
    pub(crate) effects: Effects,
    pub(crate) checkpoint: Option<CheckpointJob>,
    pub(crate) stats: crate::metrics::BatchStats,
}

/// What a batch releases once committed.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub(crate) replies: Vec<(ReplySender, Result<Vec<u8>, Error>)>,
    /// Envelopes for other instances (possibly on this shard).
    pub(crate) deliveries: Vec<Envelope>,
    /// Timers to arm: (due unix millis, shard, timer id).
    pub(crate) timers: Vec<(u64, u16, u64)>,
    /// Function messages applied: (source shard, sequence).
    pub(crate) acks: Vec<(u16, u64)>,
    /// Records for egress logs, appended once durable.
    pub(crate) egress: Vec<crate::egress::Emitted>,
    /// How many mails this batch finished (for shutdown's in-flight count).
    pub(crate) finished: usize,
}

/// One shard: its mailbox (any thread) and its core (the running worker only).
#[derive(Debug)]
pub(crate) struct Shard {
    pub(crate) id: u16,
    mailbox: Mutex<VecDeque<Mail>>,
    /// Set while the shard sits in a run queue or runs: guards against
    /// scheduling it twice.
    scheduled: AtomicBool,
    status: AtomicU8,
    pub(crate) core: Mutex<ShardCore>,
    /// A finished checkpoint, for the core to take at its next batch.
    checkpoint_done: Mutex<Option<(u64, Option<u64>)>>,
    /// The last checkpoint's position, for status reports.
    checkpoint_lsn: AtomicU64,
    /// The shard id as a metric label.
    label: std::sync::Arc<str>,
}

impl Shard {
    pub(crate) fn new(core: ShardCore) -> Self {
        Shard {
            id: core.id,
            mailbox: Mutex::new(VecDeque::new()),
            scheduled: AtomicBool::new(false),
            status: AtomicU8::new(Status::Serving as u8),
            checkpoint_lsn: AtomicU64::new(core.checkpoint.lsn),
            label: core.id.to_string().into(),
            core: Mutex::new(core),
            checkpoint_done: Mutex::new(None),
        }
    }

    /// Queues mail; returns whether the caller must schedule the shard.
    pub(crate) fn enqueue(&self, mail: Mail) -> bool {
        self.mailbox.lock().push_back(mail);
        self.is_serving() && !self.scheduled.swap(true, Ordering::AcqRel)
    }

    /// Queues a client call unless the shard is recovering or its mailbox
    /// holds `capacity` mails. Returns whether the caller must schedule it.
    ///
    /// Only client calls are refused: messages from functions and timers are
    /// already committed by their senders and always queue.
    pub(crate) fn try_enqueue_call(&self, mail: Mail, capacity: usize) -> Result<bool, Error> {
        if !self.is_serving() {
            return Err(Error::Unavailable {
                shard: self.id,
                reason: "it is recovering from a storage failure".into(),
                retry_after: std::time::Duration::from_millis(200),
            });
        }
        {
            let mut mailbox = self.mailbox.lock();
            if mailbox.len() >= capacity {
                return Err(Error::Overloaded {
                    shard: self.id,
                    queued: mailbox.len(),
                    retry_after: std::time::Duration::from_millis(50),
                });
            }
            mailbox.push_back(mail);
        }
        Ok(!self.scheduled.swap(true, Ordering::AcqRel))
    }

    pub(crate) fn is_serving(&self) -> bool {
        self.status.load(Ordering::Acquire) == Status::Serving as u8
    }

    pub(crate) fn set_status(&self, status: Status) {
        self.status.store(status as u8, Ordering::Release);
    }

    /// Takes the shard down for recovery and removes the client calls waiting
    /// in its mailbox (their callers are told to retry); other mail stays.
    pub(crate) fn take_down(&self) -> Vec<ReplySender> {
        self.set_status(Status::Recovering);
        let mut mailbox = self.mailbox.lock();
        let mut refused = Vec::new();
        mailbox.retain_mut(|mail| match mail {
            Mail::Invoke(Envelope {
                origin: crate::envelope::Origin::Client { reply, .. },
                ..
            }) => {
                refused.extend(reply.take());
                false
            }
            _ => true,
        });
        refused
    }

    /// After recovery: returns whether the caller must schedule the shard.
    pub(crate) fn resume(&self) -> bool {
        self.set_status(Status::Serving);
        !self.mailbox.lock().is_empty() && !self.scheduled.swap(true, Ordering::AcqRel)
    }

    /// Called by the checkpointer: `lsn` is `None` if the checkpoint failed.
    pub(crate) fn checkpoint_finished(&self, epoch: u64, lsn: Option<u64>) {
        if let Some(lsn) = lsn {
            self.checkpoint_lsn.fetch_max(lsn, Ordering::AcqRel);
        }
        *self.checkpoint_done.lock() = Some((epoch, lsn));
    }

    pub(crate) fn checkpoint_lsn(&self) -> u64 {
        self.checkpoint_lsn.load(Ordering::Acquire)
    }

    /// Drops every queued mail (a simulated crash): waiting callers see the
    /// runtime go away.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn clear_mailbox(&self) {
        self.mailbox.lock().clear();
    }

    pub(crate) fn mailbox_len(&self) -> usize {
        self.mailbox.lock().len()
    }

    /// Runs one batch and hands it to `commit` while still owning the shard.
    /// Returns whether mail remains (the shard then stays marked scheduled
    /// and the caller re-queues it).
    pub(crate) fn run(&self, env: &RunEnv<'_>, commit: impl FnOnce(Batch)) -> bool {
        if self.is_serving() {
            let mails: Vec<Mail> = {
                let mut mailbox = self.mailbox.lock();
                let n = mailbox.len().min(MAX_BATCH);
                mailbox.drain(..n).collect()
            };
            let mut core = self.core.lock();
            if let Some((epoch, lsn)) = self.checkpoint_done.lock().take() {
                core.checkpoint_finished(epoch, lsn);
            }
            core.prune_outbox(env.acked, false);
            let mut batch = Batch {
                shard: self.id,
                epoch: core.epoch,
                records: Vec::new(),
                effects: Effects::default(),
                checkpoint: None,
                stats: crate::metrics::BatchStats::default(),
            };
            for mail in mails {
                core.handle(env, mail, &mut batch);
            }
            if core.wants_checkpoint(env.now_ms) {
                batch.checkpoint = Some(core.freeze(env.acked, env.egress_appended, env.now_ms));
            }
            (batch.stats.cache_hits, batch.stats.cache_misses) = core.states.take_cache_stats();
            batch.stats.record();
            metrics::gauge!(crate::metrics::MAILBOX_DEPTH, "shard" => self.label.clone())
                .set(self.mailbox.lock().len() as f64);
            commit(batch);
        }
        self.scheduled.store(false, Ordering::SeqCst);
        let more = self.is_serving() && !self.mailbox.lock().is_empty();
        more && !self.scheduled.swap(true, Ordering::AcqRel)
    }
}
