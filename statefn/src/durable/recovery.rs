//! Recovery of one log group: its shards' checkpoints, then the log replayed
//! from the oldest checkpoint position. Other groups keep serving.

use statefn_store::{CommitLog, Epoch, LogBackend, LogGroupId, Lsn, ShardId, StateStore};

use crate::{
    Error,
    record::{DeadLetterEntry, Emitted, Sent, ShardRecord, TimerEntry, decode},
    shard::{CoreConfig, Persisted, ShardCore, ShardMeta},
};

/// What recovering a group needs.
#[derive(Debug)]
pub(crate) struct GroupSource<'a> {
    pub(crate) store: &'a StateStore,
    pub(crate) logs: &'a dyn LogBackend,
    pub(crate) group: LogGroupId,
    pub(crate) core: &'a CoreConfig,
    /// Now, for replayed entries that compare times.
    pub(crate) now_ms: u64,
}

/// A recovered log group: its reopened log and its shards' cores.
pub(crate) type RecoveredGroup = (Box<dyn CommitLog>, Vec<ShardCore>);

/// Rebuilds the cores of `shards` (one log group) and reopens its log.
pub(crate) fn recover_group(
    source: &GroupSource<'_>,
    shards: &[u16],
    epoch: u64,
) -> Result<RecoveredGroup, Error> {
    let started = std::time::Instant::now();
    let mut cores = shards
        .iter()
        .map(|&shard| load_checkpoint(source, shard, epoch))
        .collect::<Result<Vec<_>, _>>()?;
    let from = cores.iter().map(|c| c.checkpoint.lsn).min().unwrap_or(0) + 1;
    let group = source.group;
    let opened = source
        .logs
        .open(group, Epoch(epoch), Lsn(from))
        .map_err(|e| Error::Storage(format!("opening the log of shards {shards:?}: {e}")))?;
    let now_ms = source.now_ms;
    let mut replayed = 0usize;
    for record in opened.records {
        let record = record
            .map_err(|e| Error::Storage(format!("reading the log of shards {shards:?}: {e}")))?;
        let lsn = record.lsn;
        replayed += 1;
        let decoded: ShardRecord = decode(
            &record.payload,
            &format!("log record {lsn} of log group {group}"),
        )?;
        match cores.iter_mut().find(|c| c.id == decoded.shard) {
            Some(core) if lsn.0 > core.checkpoint.lsn => core.replay(decoded.entry, now_ms),
            Some(_) => {}
            None => {
                return Err(Error::Storage(format!(
                    "log record {lsn} of log group {group} belongs to shard {}, which is not in \
                     this log group; the data directory's layout changed",
                    decoded.shard
                )));
            }
        }
    }
    metrics::histogram!(crate::metrics::RECOVERY_DURATION).record(started.elapsed().as_secs_f64());
    tracing::info!(
        ?shards,
        replayed,
        from,
        elapsed_ms = started.elapsed().as_millis(),
        "log group recovered"
    );
    Ok((opened.log, cores))
}

fn load_checkpoint(source: &GroupSource<'_>, shard: u16, epoch: u64) -> Result<ShardCore, Error> {
    let tables = source.store.shard(ShardId(shard));
    let storage = |e: statefn_store::StoreError| {
        Error::Storage(format!("reading the checkpoint of shard {shard}: {e}"))
    };
    let meta: ShardMeta = match tables.meta().map_err(storage)? {
        Some(bytes) => decode(&bytes, &format!("the checkpoint of shard {shard}"))?,
        None => ShardMeta::default(),
    };
    // Each table's entries of this shard, decoded.
    fn all<T: serde::de::DeserializeOwned>(
        rows: Result<Vec<Vec<u8>>, statefn_store::StoreError>,
        shard: u16,
        what: &str,
    ) -> Result<Vec<T>, Error> {
        rows.map_err(|e| Error::Storage(format!("reading the checkpoint of shard {shard}: {e}")))?
            .iter()
            .map(|v| decode::<T>(v, what))
            .collect()
    }
    let timers: Vec<TimerEntry> = all(tables.timers(), shard, "a timer")?;
    let outbox: Vec<Sent> = all(tables.outbox(), shard, "an outbox entry")?;
    let egress: Vec<Emitted> = all(tables.pending_egress(), shard, "a pending egress record")?;
    let dead_letters: Vec<DeadLetterEntry> = all(tables.dead_letters(), shard, "a dead letter")?;
    let persisted = Persisted { tables };
    Ok(
        ShardCore::new(shard, epoch, source.core.clone(), Some(persisted)).restored(
            meta,
            timers,
            outbox,
            egress,
            dead_letters,
        ),
    )
}
