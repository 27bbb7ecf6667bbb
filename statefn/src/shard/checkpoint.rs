//! A frozen checkpoint: what one shard writes into fjall, in the background,
//! while it keeps processing. No other shard takes part.

use statefn_store::{ShardBatch, ShardTables};

use super::{core::ShardMeta, tables::Frozen};
use crate::{
    Address, Error,
    record::{DeadLetterEntry, Emitted, Sent, StoredReply, TimerEntry, encode},
};

/// How many expired idempotency entries one checkpoint deletes at most: the
/// sweep is spread over checkpoints instead of blocking one.
const GC_BATCH: usize = 10_000;

#[derive(Debug)]
pub(crate) struct CheckpointJob {
    pub(crate) shard: u16,
    pub(crate) epoch: u64,
    /// Set by the log group once the batch that froze it is durable: the
    /// last LSN this checkpoint covers.
    pub(crate) lsn: u64,
    pub(crate) states: Frozen<Address, Option<Vec<u8>>>,
    pub(crate) idempotency: Frozen<(Address, String), StoredReply>,
    pub(crate) meta: ShardMeta,
    pub(crate) timers: Vec<TimerEntry>,
    pub(crate) timers_removed: Vec<u64>,
    pub(crate) outbox: Vec<Sent>,
    pub(crate) outbox_removed: Vec<(u16, u64)>,
    pub(crate) egress: Vec<Emitted>,
    pub(crate) egress_removed: Vec<u64>,
    pub(crate) dead_letters: Vec<DeadLetterEntry>,
    pub(crate) dead_letters_removed: Vec<u64>,
    pub(crate) idempotency_retention_ms: u64,
}

impl CheckpointJob {
    /// Writes the checkpoint atomically and durably, then sweeps expired
    /// idempotency entries.
    pub(crate) fn write(&self, tables: &ShardTables, now_ms: u64) -> Result<(), Error> {
        let mut batch = tables.batch();
        self.writes(&mut batch)?;
        batch
            .commit()
            .map_err(|e| Error::Storage(format!("checkpoint of shard {}: {e}", self.shard)))?;
        let cutoff = now_ms.saturating_sub(self.idempotency_retention_ms);
        tables
            .sweep_idempotency(cutoff, GC_BATCH)
            .map_err(|e| Error::Storage(format!("idempotency sweep: {e}")))?;
        Ok(())
    }

    fn writes(&self, batch: &mut ShardBatch) -> Result<(), Error> {
        for (address, state) in self.states.iter() {
            batch.put_state(address.type_name(), address.id(), state.clone());
        }
        for ((address, key), reply) in self.idempotency.iter() {
            batch.put_idempotency(
                address.type_name(),
                address.id(),
                key,
                reply.at_ms,
                encode(reply)?,
            );
        }
        for id in &self.timers_removed {
            batch.delete_timer(*id);
        }
        for timer in &self.timers {
            batch.put_timer(timer.id, encode(timer)?);
        }
        for (dest, seq) in &self.outbox_removed {
            batch.delete_outbox(statefn_store::ShardId(*dest), *seq);
        }
        for sent in &self.outbox {
            batch.put_outbox(statefn_store::ShardId(sent.dest), sent.seq, encode(sent)?);
        }
        for seq in &self.egress_removed {
            batch.delete_pending_egress(*seq);
        }
        for emitted in &self.egress {
            batch.put_pending_egress(emitted.seq, encode(emitted)?);
        }
        for id in &self.dead_letters_removed {
            batch.delete_dead_letter(*id);
        }
        for letter in &self.dead_letters {
            batch.put_dead_letter(letter.id, encode(letter)?);
        }
        let meta = ShardMeta {
            checkpoint_lsn: self.lsn,
            ..self.meta.clone()
        };
        batch.put_meta(encode(&meta)?);
        Ok(())
    }
}
