//! Opening a data directory, after every log group recovered and before any
//! shard serves: the messages stored in it must mean to this build what
//! they meant when they were stored.
//!
//! 1. **Format 1 → 2, once.** A directory of format 1 stores messages that
//!    name their handler by position. Every one of them is converted to a
//!    named message by its position in this build's declaration order (the
//!    documented rule: upgrade statefn without reordering handlers in the
//!    same deploy), every shard is checkpointed, and only then is format 2
//!    recorded: a crash in between converts again (what is named stays).
//!    A message that cannot be converted refuses the open and changes
//!    nothing: after the upgrade a positional message is never read again,
//!    so this is the last moment it can be understood.
//! 2. **At every open**, a timer whose message no longer decodes (handler
//!    removed, arguments changed, function not registered) becomes a dead
//!    letter with the reason, durably (a checkpoint of its shard), so the
//!    operator learns of it at the deploy, not when it is due, and can fix
//!    the build and replay it. Refusing to open instead would take every
//!    other function down for one stale timer. Outbox entries that no
//!    longer decode are reported here and become dead letters at their
//!    receivers, which alone may consume their sequence numbers.
//!
//! The checkpoints are written here, synchronously, at the end of each log
//! group's recovered log: the core reflects every record up to there.

use std::collections::HashMap;

use statefn_store::DATA_DIR_FORMAT_VERSION;

use super::{
    checkpointer,
    recovery::{RecoveredGroup, Storage},
};
use crate::{
    Error,
    error::StorageError,
    protocol::ids::{EgressSeq, Lsn, Seq, ShardId},
    registry::Registry,
    shard::ShardCore,
};

/// Brings the recovered groups' stored messages in line with this build
/// (see the module docs) and makes that durable before anything serves.
///
/// # Errors
///
/// [`StorageError::Upgrade`] for a format-1 message that cannot be
/// converted (nothing is written then); a failed checkpoint or format file
/// write (the next open does it all again).
pub(crate) fn settle(
    storage: &Storage,
    registry: &Registry,
    groups: &mut [RecoveredGroup],
) -> Result<(), Error> {
    let format = storage.data_format();
    let upgrading = format < DATA_DIR_FORMAT_VERSION;
    let now_ms = storage.clock().now_ms();
    // What each receiver applied from each sender: outbox entries at or
    // below it are only waiting for their ack.
    let applied: HashMap<(ShardId, ShardId), Seq> = groups
        .iter()
        .flat_map(|g| &g.cores)
        .flat_map(|c| {
            let dest = c.id;
            c.applied()
                .into_iter()
                .map(move |(source, seq)| ((dest, source), seq))
        })
        .collect();
    let mut to_checkpoint = Vec::new();
    for (g, group) in groups.iter_mut().enumerate() {
        for (c, core) in group.cores.iter_mut().enumerate() {
            let mut changed = upgrading;
            if upgrading {
                let converted = core.upgrade_positional_messages(registry).map_err(|u| {
                    StorageError::Upgrade {
                        from: format,
                        what: u.what,
                        source: u.error,
                    }
                })?;
                tracing::info!(shard = %core.id, converted, "positional messages converted to named ones");
            }
            changed |= !core
                .set_aside_undecodable_timers(registry, now_ms)
                .is_empty();
            let source = core.id;
            let applied = |dest| applied.get(&(dest, source)).copied().unwrap_or_default();
            for (target, error) in core.undecodable_outbox(registry, applied) {
                tracing::warn!(shard = %source, %target, %error, "a message in flight no longer decodes; it becomes a dead letter at its receiver");
            }
            if changed {
                to_checkpoint.push((g, c));
            }
        }
    }
    for (g, c) in to_checkpoint {
        let Some(group) = groups.get_mut(g) else {
            continue;
        };
        let end = group.log.durable_lsn();
        if let Some(core) = group.cores.get_mut(c) {
            checkpoint_now(storage, core, end)?;
        }
    }
    if upgrading {
        storage.finish_upgrade()?;
        tracing::info!(
            from = format,
            to = DATA_DIR_FORMAT_VERSION,
            "data directory upgraded"
        );
    }
    Ok(())
}

/// Writes `core`'s checkpoint now, covering the log up to `end` (or its
/// last checkpoint, if that is further).
fn checkpoint_now(storage: &Storage, core: &mut ShardCore, end: Lsn) -> Result<(), Error> {
    let lsn = end.max(core.checkpoint.lsn);
    let now_ms = storage.clock().now_ms();
    // Nothing is acknowledged or appended yet: the outbox and the pending
    // egress records are kept whole.
    let mut job = core.freeze(&|_| Seq(0), EgressSeq(0), now_ms);
    job.lsn = lsn;
    let written = storage
        .store()
        .and_then(|store| checkpointer::write(&job, &store.shard(job.shard), now_ms));
    let epoch = job.epoch;
    drop(job);
    core.checkpoint_finished(epoch, written.is_ok().then_some(lsn));
    written
}
