//! Recovery of one log group: its shards' checkpoints, then the log replayed
//! from the oldest checkpoint position. Other groups keep serving.

use std::{path::Path, sync::Arc};

use statefn_store::{
    StateStore, Table,
    io::FileSystem,
    wal::{Lsn, Wal, WalOptions},
};

use crate::{
    Error,
    record::{DeadLetterEntry, Emitted, Sent, ShardRecord, TimerEntry, decode},
    shard::{CoreConfig, META_KEY, Persisted, ShardCore, ShardMeta},
};

/// What recovering a group needs.
#[derive(Debug)]
pub(crate) struct GroupSource<'a> {
    pub(crate) store: &'a StateStore,
    pub(crate) fs: &'a Arc<dyn FileSystem>,
    pub(crate) dir: &'a Path,
    pub(crate) wal_options: WalOptions,
    pub(crate) core: &'a CoreConfig,
    /// Now, for replayed entries that compare times.
    pub(crate) now_ms: u64,
}

/// A recovered log group: its reopened log and its shards' cores.
pub(crate) type RecoveredGroup = (Wal, Vec<ShardCore>);

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
    let (wal, records) = Wal::open(
        Arc::clone(source.fs),
        source.dir,
        source.wal_options,
        Lsn(from),
    )
    .map_err(|e| Error::Storage(format!("opening the log of shards {shards:?}: {e}")))?;
    let now_ms = source.now_ms;
    let replayed = records.len();
    for (lsn, bytes) in records {
        let record: ShardRecord = decode(
            &bytes,
            &format!("log record {lsn} in {}", source.dir.display()),
        )?;
        match cores.iter_mut().find(|c| c.id == record.shard) {
            Some(core) if lsn.0 > core.checkpoint.lsn => core.replay(record.entry, now_ms),
            Some(_) => {}
            None => {
                return Err(Error::Storage(format!(
                    "log record {lsn} in {} belongs to shard {}, which is not in this log group; \
                     the data directory's layout changed",
                    source.dir.display(),
                    record.shard
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
    Ok((wal, cores))
}

fn load_checkpoint(source: &GroupSource<'_>, shard: u16, epoch: u64) -> Result<ShardCore, Error> {
    let storage = |e: statefn_store::StoreError| {
        Error::Storage(format!("reading the checkpoint of shard {shard}: {e}"))
    };
    let meta: ShardMeta = match source
        .store
        .get(shard, Table::Meta, META_KEY)
        .map_err(storage)?
    {
        Some(bytes) => decode(&bytes, &format!("the checkpoint of shard {shard}"))?,
        None => ShardMeta::default(),
    };
    // Each table's entries of this shard, decoded.
    fn all<T: serde::de::DeserializeOwned>(
        source: &GroupSource<'_>,
        shard: u16,
        table: Table,
        what: &str,
    ) -> Result<Vec<T>, Error> {
        source
            .store
            .scan(shard, table)
            .map_err(|e| Error::Storage(format!("reading the checkpoint of shard {shard}: {e}")))?
            .into_iter()
            .map(|(_, v)| decode::<T>(&v, what))
            .collect()
    }
    let timers: Vec<TimerEntry> = all(source, shard, Table::Timer, "a timer")?;
    let outbox: Vec<Sent> = all(source, shard, Table::Outbox, "an outbox entry")?;
    let egress: Vec<Emitted> = all(source, shard, Table::Egress, "a pending egress record")?;
    let dead_letters: Vec<DeadLetterEntry> =
        all(source, shard, Table::DeadLetter, "a dead letter")?;
    let persisted = Persisted {
        store: source.store.clone(),
        shard,
    };
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
