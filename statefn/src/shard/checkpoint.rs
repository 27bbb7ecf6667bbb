//! A frozen checkpoint: what one shard writes into fjall, in the background,
//! while it keeps processing. No other shard takes part.

use statefn_store::{StateStore, Table, TableWrite};

use super::{
    core::ShardMeta,
    tables::{Frozen, idempotency_index_key, idempotency_key, state_key},
};
use crate::{
    Address, Error,
    record::{DeadLetterEntry, Emitted, Sent, StoredReply, TimerEntry, encode},
};

/// The key of a shard's metadata in [`Table::Meta`].
pub(crate) const META_KEY: &[u8] = b"shard";

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
    pub(crate) fn write(&self, store: &StateStore, now_ms: u64) -> Result<(), Error> {
        let writes = self.writes()?;
        store
            .apply(self.shard, writes, true)
            .map_err(|e| Error::Storage(format!("checkpoint of shard {}: {e}", self.shard)))?;
        self.sweep_idempotency(store, now_ms)
    }

    fn writes(&self) -> Result<Vec<TableWrite>, Error> {
        let mut writes: Vec<TableWrite> = Vec::with_capacity(
            self.states.len()
                + 2 * self.idempotency.len()
                + self.timers.len()
                + self.outbox.len()
                + 1,
        );
        for (address, state) in self.states.iter() {
            writes.push((Table::State, state_key(address), state.clone()));
        }
        for ((address, key), reply) in self.idempotency.iter() {
            let primary = idempotency_key(address, key);
            writes.push((
                Table::Idempotency,
                idempotency_index_key(reply.at_ms, &primary),
                Some(Vec::new()),
            ));
            writes.push((Table::Idempotency, primary, Some(encode(reply)?)));
        }
        for id in &self.timers_removed {
            writes.push((Table::Timer, id.to_be_bytes().to_vec(), None));
        }
        for timer in &self.timers {
            writes.push((
                Table::Timer,
                timer.id.to_be_bytes().to_vec(),
                Some(encode(timer)?),
            ));
        }
        for (dest, seq) in &self.outbox_removed {
            writes.push((Table::Outbox, outbox_key(*dest, *seq), None));
        }
        for sent in &self.outbox {
            writes.push((
                Table::Outbox,
                outbox_key(sent.dest, sent.seq),
                Some(encode(sent)?),
            ));
        }
        for seq in &self.egress_removed {
            writes.push((Table::Egress, seq.to_be_bytes().to_vec(), None));
        }
        for emitted in &self.egress {
            writes.push((
                Table::Egress,
                emitted.seq.to_be_bytes().to_vec(),
                Some(encode(emitted)?),
            ));
        }
        for id in &self.dead_letters_removed {
            writes.push((Table::DeadLetter, id.to_be_bytes().to_vec(), None));
        }
        for letter in &self.dead_letters {
            writes.push((
                Table::DeadLetter,
                letter.id.to_be_bytes().to_vec(),
                Some(encode(letter)?),
            ));
        }
        let meta = ShardMeta {
            checkpoint_lsn: self.lsn,
            ..self.meta.clone()
        };
        writes.push((Table::Meta, META_KEY.to_vec(), Some(encode(&meta)?)));
        Ok(writes)
    }

    fn sweep_idempotency(&self, store: &StateStore, now_ms: u64) -> Result<(), Error> {
        let cutoff = now_ms.saturating_sub(self.idempotency_retention_ms);
        let storage =
            |e: statefn_store::StoreError| Error::Storage(format!("idempotency sweep: {e}"));
        let index = store
            .scan_from(self.shard, Table::Idempotency, &[1], GC_BATCH)
            .map_err(storage)?;
        let mut deletes: Vec<TableWrite> = Vec::new();
        for (key, _) in index {
            let Some(at) = key.get(1..9).and_then(|b| <[u8; 8]>::try_from(b).ok()) else {
                continue;
            };
            if u64::from_be_bytes(at) >= cutoff {
                break;
            }
            let primary = key.get(9..).map(<[u8]>::to_vec).unwrap_or_default();
            deletes.push((Table::Idempotency, primary, None));
            deletes.push((Table::Idempotency, key, None));
        }
        if deletes.is_empty() {
            return Ok(());
        }
        store.apply(self.shard, deletes, false).map_err(storage)
    }
}

pub(crate) fn outbox_key(dest: u16, seq: u64) -> Vec<u8> {
    let mut key = dest.to_be_bytes().to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}
