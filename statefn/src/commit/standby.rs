//! A standby's half of the commit path (cluster mode): the shards of a log
//! group served by another node, rebuilt here from this node's checkpoint
//! and kept current by applying the group's committed records as they
//! arrive (no handler runs: [`ShardCore::replay`]), checkpointed into this
//! node's store like an owner's. Taking the group over then replays only
//! the records after [`applied`](StandbyGroup::applied)
//! ([`Storage::recover`] takes the cores as they are).
//!
//! The same module reads and replaces a group's stored rows as a whole:
//! what a snapshot holds (`cluster/snapshot.rs` moves it between nodes).

use std::time::Duration;

use statefn_store::ShardRow;

use super::{checkpointer, recovery::Storage};
use crate::{
    Error,
    error::StorageError,
    protocol::{
        ids::{EgressSeq, Epoch, LogGroupId, Lsn, Seq, ShardId},
        record::{ShardRecord, decode},
    },
    shard::{ShardCore, freeze::ShardMeta},
};

/// Every stored row of some shards, by shard.
pub(crate) type GroupRows = Vec<(ShardId, Vec<ShardRow>)>;

/// A log group followed here: its shards' cores and how far they are.
#[derive(Debug)]
pub(crate) struct StandbyGroup {
    group: LogGroupId,
    cores: Vec<ShardCore>,
    /// The last stream position applied (or passed over).
    applied: Lsn,
    /// The position the last checkpoint of every shard covers at least.
    checkpointed: Lsn,
    /// Bytes of records applied since the last checkpoint.
    unchecked_bytes: u64,
}

impl Storage {
    /// The shards of `group` as of this node's checkpoints, ready to follow
    /// the group's log from [`StandbyGroup::applied`] on.
    pub(crate) fn standby(&self, group: LogGroupId) -> Result<StandbyGroup, Error> {
        let store = self.store()?;
        let cores = self
            .group_shards(group)
            .into_iter()
            .map(|shard| self.load_checkpoint(store.shard(shard), Epoch(0)))
            .collect::<Result<Vec<_>, _>>()?;
        let position = cores
            .iter()
            .map(|c| c.checkpoint.lsn)
            .min()
            .unwrap_or_default();
        Ok(StandbyGroup {
            group,
            cores,
            applied: position,
            checkpointed: position,
            unchecked_bytes: 0,
        })
    }

    /// Every stored row of `group`'s shards, each shard read at one
    /// consistent point, and the position they cover: the lowest of the
    /// shards' checkpoint positions.
    pub(crate) fn group_rows(&self, group: LogGroupId) -> Result<(Lsn, GroupRows), Error> {
        let store = self.store()?;
        let mut position: Option<Lsn> = None;
        let mut shards = Vec::new();
        for shard in self.group_shards(group) {
            let rows = store
                .shard(shard)
                .rows()
                .map_err(StorageError::store(format!(
                    "reading the rows of shard {shard}"
                )))?;
            let lsn = checkpoint_of(&rows)?;
            position = Some(position.map_or(lsn, |p| p.min(lsn)));
            shards.push((shard, rows));
        }
        Ok((position.unwrap_or_default(), shards))
    }

    /// The position this node's checkpoints of `group` cover (the lowest of
    /// its shards'; 0 when one never checkpointed).
    pub(crate) fn group_position(&self, group: LogGroupId) -> Result<Lsn, Error> {
        let store = self.store()?;
        let mut position: Option<Lsn> = None;
        for shard in self.group_shards(group) {
            let doing = || format!("reading the checkpoint of shard {shard}");
            let lsn = match store
                .shard(shard)
                .meta()
                .map_err(StorageError::store(doing()))?
            {
                Some(bytes) => {
                    decode::<ShardMeta>(&bytes, &format!("the checkpoint of shard {shard}"))?
                        .checkpoint_lsn
                }
                None => Lsn(0),
            };
            position = Some(position.map_or(lsn, |p| p.min(lsn)));
        }
        Ok(position.unwrap_or_default())
    }

    /// Replaces the stored rows of `group`'s shards by `shards` (a
    /// snapshot's), each shard atomically and durably. Nothing of the group
    /// may be loaded in memory meanwhile.
    pub(crate) fn replace_group_rows(
        &self,
        group: LogGroupId,
        shards: GroupRows,
    ) -> Result<(), Error> {
        let store = self.store()?;
        let ours = self.group_shards(group);
        if shards.len() != ours.len() || shards.iter().any(|(s, _)| !ours.contains(s)) {
            return Err(StorageError::Corrupt {
                what: format!("a snapshot of log group {group}"),
                reason: format!(
                    "it holds shards {:?}, the group has {ours:?}: another cluster layout",
                    shards.iter().map(|(s, _)| *s).collect::<Vec<_>>()
                ),
            }
            .into());
        }
        for (shard, rows) in shards {
            store
                .shard(shard)
                .replace_rows(rows)
                .map_err(StorageError::store(format!(
                    "restoring shard {shard} from a snapshot"
                )))?;
        }
        Ok(())
    }
}

/// The checkpoint position a shard's rows hold (0: never checkpointed).
fn checkpoint_of(rows: &[ShardRow]) -> Result<Lsn, Error> {
    /// The meta table's code and key (`statefn_store`'s layout).
    const META: (u8, &[u8]) = (4, b"shard");
    match rows.iter().find(|(t, k, _)| (*t, k.as_slice()) == META) {
        Some((_, _, value)) => {
            Ok(decode::<ShardMeta>(value, "a shard's checkpoint")?.checkpoint_lsn)
        }
        None => Ok(Lsn(0)),
    }
}

impl StandbyGroup {
    pub(crate) fn group(&self) -> LogGroupId {
        self.group
    }

    /// The last position applied: the group's log is followed from the
    /// next one.
    pub(crate) fn applied(&self) -> Lsn {
        self.applied
    }

    /// The position every shard's last checkpoint here covers: the log
    /// must keep what follows for this node.
    pub(crate) fn checkpointed(&self) -> Lsn {
        self.checkpointed
    }

    /// Applies the committed record at `lsn` (no handler runs). An empty
    /// record is a barrier: it only moves the position.
    pub(crate) fn apply(&mut self, lsn: Lsn, payload: &[u8], now_ms: u64) -> Result<(), Error> {
        let group = self.group;
        if !payload.is_empty() {
            self.unchecked_bytes += payload.len() as u64;
            let decoded: ShardRecord =
                decode(payload, &format!("log record {lsn} of log group {group}"))?;
            match self.cores.iter_mut().find(|c| c.id == decoded.shard) {
                Some(core) if lsn > core.checkpoint.lsn => core.replay(decoded.entry, now_ms),
                Some(_) => {}
                None => {
                    return Err(StorageError::Corrupt {
                        what: format!("log record {lsn} of log group {group}"),
                        reason: format!(
                            "it belongs to shard {}, which is not in this log group",
                            decoded.shard
                        ),
                    }
                    .into());
                }
            }
        }
        self.passed(lsn);
        Ok(())
    }

    /// A position that holds nothing to apply (a fence, a record that does
    /// not count) was read.
    pub(crate) fn passed(&mut self, lsn: Lsn) {
        self.applied = self.applied.max(lsn);
    }

    /// Whether to checkpoint now (when anything was applied since the last
    /// one): `interval` since the last one, `log_bytes` of records applied
    /// since, or a core whose dirty states reached its bound (an owner's
    /// triggers).
    pub(crate) fn wants_checkpoint(
        &self,
        since_last: Duration,
        interval: Duration,
        log_bytes: u64,
    ) -> bool {
        self.checkpointed < self.applied
            && (since_last >= interval
                || self.unchecked_bytes >= log_bytes
                || self.cores.iter().any(ShardCore::dirty_over_bound))
    }

    /// Writes every shard's checkpoint as of [`applied`](Self::applied)
    /// into this node's store. `acked` and `egress_appended` prune what
    /// the owner has delivered (outbox, pending egress), as an owner's
    /// checkpoint does.
    pub(crate) fn checkpoint(
        &mut self,
        storage: &Storage,
        acked: &dyn Fn(ShardId, ShardId) -> Seq,
        egress_appended: &dyn Fn(ShardId) -> EgressSeq,
        now_ms: u64,
    ) -> Result<(), Error> {
        if self.checkpointed >= self.applied {
            return Ok(());
        }
        let store = storage.store()?;
        for core in &mut self.cores {
            let shard = core.id;
            let mut job = core.freeze(&|dest| acked(shard, dest), egress_appended(shard), now_ms);
            job.lsn = self.applied.max(core.checkpoint.lsn);
            let written = checkpointer::write(&job, &store.shard(shard), now_ms);
            let (epoch, lsn) = (job.epoch, job.lsn);
            drop(job);
            core.checkpoint_finished(epoch, written.is_ok().then_some(lsn));
            written?;
        }
        self.checkpointed = self.applied;
        self.unchecked_bytes = 0;
        Ok(())
    }

    /// The cores and the position they are at, for a takeover.
    pub(crate) fn into_parts(self) -> (Vec<ShardCore>, Lsn) {
        (self.cores, self.applied)
    }
}
