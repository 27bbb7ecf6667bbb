//! [`ShardCore`]: a shard's state machine. It owns the shard's tables and
//! turns each mail into log records and effects; [`handle`](ShardCore::handle)
//! only dispatches, the steps live in the sibling modules:
//!
//! | mail | module |
//! | --- | --- |
//! | an invocation (client call, message from a function) | [`invocation`](super::invocation) |
//! | a timer due | [`timer_ops`](super::timer_ops), [`timer_table`](super::timer_table), [`expiry`](super::expiry) |
//! | a delayed invocation cancelled | [`timer_ops`](super::timer_ops) |
//! | a re-send request | [`outgoing`](super::outgoing) |
//! | a dead letter replayed or dropped | [`dead_letters`](super::dead_letters) |
//! | a checkpoint request | [`freeze`](super::freeze) |
//!
//! Recovery feeds committed records to [`replay`](super::replay), which must
//! leave the core as the invocations that wrote them did.

use std::time::Duration;

use statefn_store::ShardTables;

use super::{
    dead_letters::{DeadLetterTable, RetryPolicy},
    effects::{Batch, RunEnv},
    emitted::EmittedTable,
    freeze::{CheckpointState, ShardMeta},
    state_table::StateTable,
    timer_table::TimerTable,
};
use crate::{
    Error,
    protocol::{
        channel::Channels,
        envelope::Mail,
        idempotency::IdempotencyTable,
        ids::{Epoch, ShardId},
        outbox::Outbox,
        record::{DeadLetterEntry, Emitted, Entry, Sent, ShardRecord, encode},
    },
};

/// Test hook: the log records of instances of this type fail to encode.
#[cfg(test)]
pub(crate) const UNENCODABLE_TYPE: &str = "test.UnencodableRecord";

/// How a shard core is configured.
#[derive(Debug, Clone)]
pub(crate) struct CoreConfig {
    pub(crate) shards: u16,
    pub(crate) cache_bytes: usize,
    pub(crate) idempotency_retention: Duration,
    /// Freeze a checkpoint once this many state bytes changed.
    pub(crate) checkpoint_dirty_bytes: usize,
    pub(crate) checkpoint_interval: Duration,
    pub(crate) retry: RetryPolicy,
    /// The most timers a shard reads into memory at once (the ones due
    /// next); the rest wait in the store.
    pub(crate) timers_in_memory: usize,
    /// The most bytes (as a mailbox weighs them) of one re-send chunk:
    /// half a receiver's bound on queued messages from functions.
    pub(crate) resend_chunk_bytes: u64,
}

/// A shard's state machine. The worker running the shard holds its lock;
/// so do its recovery and the test kit.
#[derive(Debug)]
pub(crate) struct ShardCore {
    pub(crate) id: ShardId,
    /// The epoch of the log writer this core was built under: batches of an
    /// older core are refused.
    pub(crate) epoch: Epoch,
    pub(super) config: CoreConfig,
    /// Whether records are built (durable mode).
    pub(super) durable: bool,
    pub(crate) states: StateTable,
    pub(super) idempotency: IdempotencyTable,
    pub(crate) timers: TimerTable,
    pub(super) channels: Channels,
    pub(crate) outbox: Outbox,
    pub(crate) emitted: EmittedTable,
    pub(crate) dead_letters: DeadLetterTable,
    pub(crate) checkpoint: CheckpointState,
    /// Client calls without a key invoked since this core was made: part
    /// of their generated invocation ids.
    pub(super) calls: u64,
}

impl ShardCore {
    /// An empty core (in memory mode, or a new data directory): `persisted`
    /// is where its tables are stored (durable mode).
    pub(crate) fn new(
        id: ShardId,
        epoch: Epoch,
        config: CoreConfig,
        persisted: Option<ShardTables>,
    ) -> Self {
        let retention = u64::try_from(config.idempotency_retention.as_millis()).unwrap_or(u64::MAX);
        let durable = persisted.is_some();
        ShardCore {
            id,
            epoch,
            durable,
            states: StateTable::new(persisted.clone(), config.cache_bytes),
            idempotency: IdempotencyTable::new(persisted.clone(), retention),
            timers: TimerTable::new(persisted, config.timers_in_memory),
            config,
            channels: Channels::default(),
            outbox: Outbox::new(durable),
            emitted: EmittedTable::new(durable),
            dead_letters: DeadLetterTable::new(durable),
            checkpoint: CheckpointState::default(),
            calls: 0,
        }
    }

    /// A core restored from a checkpoint (replay of the log follows, then
    /// [`open_timers`](Self::open_timers)). Timers stay in the store.
    pub(crate) fn restored(
        mut self,
        meta: ShardMeta,
        outbox: Vec<Sent>,
        egress: Vec<Emitted>,
        dead_letters: Vec<DeadLetterEntry>,
    ) -> Result<Self, Error> {
        self.checkpoint.lsn = meta.checkpoint_lsn;
        self.dead_letters
            .restore(meta.next_dead_letter, dead_letters);
        self.emitted.restore(meta.next_egress, egress);
        self.channels = Channels::restored(meta.next_seq, meta.watermarks);
        self.timers.restore(meta.next_timer)?;
        self.outbox.restore(outbox);
        Ok(self)
    }

    /// After replay: reads the timers due next into memory (see
    /// [`timer_arms`](Self::timer_arms) for what to arm).
    pub(crate) fn open_timers(&mut self) -> Result<(), Error> {
        self.timers.refill().map(drop)
    }

    /// Applies one mail to the core, adding its records and effects to
    /// `batch`.
    pub(crate) fn handle(&mut self, env: &RunEnv<'_>, mail: Mail, batch: &mut Batch) {
        batch.effects.finished += 1;
        match mail {
            Mail::Invoke(envelope) => self.invoke(env, envelope, batch),
            Mail::TimerDue { timer } => self.timer_due(env, timer, batch),
            Mail::CancelInvocation { target, key, reply } => {
                self.cancel_invocation(env, target, key, reply, batch);
            }
            Mail::InvocationStatus { target, key, reply } => {
                self.invocation_status(env, target, key, reply, batch);
            }
            Mail::Resend { dest, from } => self.resend(env, dest, from, batch),
            Mail::ResendMore { source, next } => self.ask_for_more(source, next, batch),
            Mail::Checkpoint => self.checkpoint.asked(),
            Mail::Wake => {}
            Mail::DeadLetter { id, replay, reply } => {
                self.resolve_dead_letter(id, replay, reply, batch);
            }
            Mail::Delete { target, reply } => self.delete_instance(target, reply, batch),
        }
        self.refill_if_low(env.now_ms, &mut batch.effects);
    }

    /// Adds `entry` to the batch as this shard's log record (durable mode);
    /// if it cannot be encoded, marks the batch broken.
    pub(super) fn push_record(&self, batch: &mut Batch, entry: Entry) {
        if !self.durable {
            return;
        }
        #[cfg(test)]
        let unencodable =
            matches!(&entry, Entry::Invocation(r) if r.target.type_name() == UNENCODABLE_TYPE);
        let encoded = encode(&ShardRecord {
            shard: self.id,
            entry,
        });
        #[cfg(test)]
        let encoded = encoded.and_then(|bytes| {
            if unencodable {
                Err(crate::Error::Encode {
                    what: "a log record".into(),
                    reason: "a test hook refused it".into(),
                })
            } else {
                Ok(bytes)
            }
        });
        match encoded {
            Ok(bytes) => batch.records.push(bytes),
            // The core already holds what the record would have made
            // durable: the batch must not commit, and the shard is rebuilt
            // from the log (the commit path refuses the batch and recovers
            // its log group), so nothing of it stays.
            Err(e) => {
                tracing::error!(shard = %self.id, error = %e, "cannot encode a log record; its batch fails");
                batch.broken.get_or_insert(e);
            }
        }
    }
}
