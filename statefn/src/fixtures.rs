//! What a data directory holds, by kind, for the tests of checked-in
//! fixtures (`tests/fixtures/`): a fixture is only worth keeping if it still
//! holds every kind of log record and table row it claims to. Not a public
//! API.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use statefn_store::{DataDir, LogBackend, ShardTables, StateStore, StdFs, WalBackend, WalOptions};

use crate::{
    Error,
    error::StorageError,
    protocol::{
        ids::{Epoch, LogGroupId, Lsn, ShardId},
        record::{DeadLetterEntry, Entry, Input, Sent, ShardRecord, TimerEntry, decode},
    },
    shard::freeze::ShardMeta,
};

/// Counts what the directory at `path` holds: the checkpoint rows of every
/// shard (`table.timers`, `table.timers.expiry`, `table.outbox`,
/// `table.pending_egress`, `table.dead_letters`, `table.meta`) and the log
/// records recovery would replay (`log.Invocation`, with `.function`,
/// `.state`, `.sent`, `.timers`, `.reply`, `.egress`, `.dead_letter` for the
/// records holding each; `log.TimerFired`, `log.DeadLetterResolved.resent`,
/// `log.DeadLetterResolved.dropped`, `log.Expired.rearmed`,
/// `log.Expired.removed`). Opens the directory like a runtime (it must not
/// be in use) and decodes every value, so a value that no longer decodes is
/// an error.
///
/// # Errors
///
/// The directory cannot be opened or read, or a value does not decode.
pub fn inventory(
    path: &Path,
    shards: u16,
    log_groups: u16,
) -> Result<BTreeMap<String, usize>, Error> {
    let dir =
        DataDir::open_with_log_groups(path, shards, log_groups).map_err(StorageError::from)?;
    let store = StateStore::open(&dir.state_dir()).map_err(StorageError::store("opening"))?;
    let mut counts = BTreeMap::new();
    let mut count = |key: &str, n: usize| {
        if n > 0 {
            *counts.entry(key.to_owned()).or_insert(0) += n;
        }
    };
    let mut checkpointed: BTreeMap<ShardId, Lsn> = BTreeMap::new();
    for shard in (0..shards).map(ShardId) {
        let tables = store.shard(shard);
        let meta: Option<ShardMeta> = read(&tables, ShardTables::meta)?
            .map(|bytes| decode(&bytes, "a meta row"))
            .transpose()?;
        count("table.meta", usize::from(meta.is_some()));
        checkpointed.insert(shard, meta.map(|m| m.checkpoint_lsn).unwrap_or_default());
        let mut timers: Vec<TimerEntry> =
            read(&tables, |t| t.timers_due((0, 0), u64::MAX, usize::MAX))?
                .iter()
                .map(|(_, bytes)| decode(bytes, "a timer row"))
                .collect::<Result<_, _>>()?;
        for (_, bytes) in read(&tables, ShardTables::legacy_timers)? {
            timers.push(decode(&bytes, "a timer row")?);
        }
        let expiry = timers.iter().filter(|t| t.is_expiry()).count();
        count("table.timers", timers.len() - expiry);
        count("table.timers.expiry", expiry);
        count(
            "table.outbox",
            rows::<Sent>(&tables, ShardTables::outbox)?.len(),
        );
        count(
            "table.pending_egress",
            rows::<crate::egress::Emitted>(&tables, ShardTables::pending_egress)?.len(),
        );
        count(
            "table.dead_letters",
            rows::<DeadLetterEntry>(&tables, ShardTables::dead_letters)?.len(),
        );
    }
    let logs = WalBackend::new(Arc::new(StdFs), &dir.wal_root(), WalOptions::default());
    for group in (0..log_groups).map(LogGroupId) {
        let from = checkpointed
            .iter()
            .filter(|(shard, _)| LogGroupId::of(**shard, log_groups) == group)
            .map(|(_, lsn)| *lsn)
            .min()
            .unwrap_or_default()
            .next();
        let opened = logs
            .open(group, Epoch(1), from)
            .map_err(StorageError::log(group.0))?;
        for record in opened.records {
            let record = record.map_err(StorageError::log(group.0))?;
            let decoded: ShardRecord = decode(&record.payload, "a log record")?;
            if checkpointed
                .get(&decoded.shard)
                .copied()
                .unwrap_or_default()
                >= record.lsn
            {
                continue;
            }
            match decoded.entry {
                Entry::Invocation(r) => {
                    count("log.Invocation", 1);
                    count(
                        "log.Invocation.function",
                        usize::from(matches!(r.input, Input::Function { .. })),
                    );
                    count("log.Invocation.state", usize::from(r.state.is_some()));
                    count("log.Invocation.sent", usize::from(!r.sent.is_empty()));
                    count("log.Invocation.timers", usize::from(!r.timers.is_empty()));
                    count("log.Invocation.reply", usize::from(r.reply.is_some()));
                    count("log.Invocation.egress", usize::from(!r.egress.is_empty()));
                    count(
                        "log.Invocation.dead_letter",
                        usize::from(r.dead_letter.is_some()),
                    );
                }
                Entry::TimerFired { .. } | Entry::TimerFiredV1 { .. } => {
                    count("log.TimerFired", 1);
                }
                Entry::DeadLetterResolved { resent, .. } => count(
                    if resent.is_some() {
                        "log.DeadLetterResolved.resent"
                    } else {
                        "log.DeadLetterResolved.dropped"
                    },
                    1,
                ),
                Entry::Expired { rearm, .. } | Entry::ExpiredV1 { rearm, .. } => count(
                    if rearm.is_some() {
                        "log.Expired.rearmed"
                    } else {
                        "log.Expired.removed"
                    },
                    1,
                ),
                Entry::Deleted { .. } => count("log.Deleted", 1),
            }
        }
    }
    Ok(counts)
}

/// The version in the header of the state the checkpoint holds for
/// `type_name`/`id` (`None`: no state is checkpointed for it).
///
/// # Errors
///
/// The directory cannot be opened or read, or the header does not decode.
pub fn checkpointed_state_version(
    path: &Path,
    shards: u16,
    log_groups: u16,
    type_name: &str,
    id: &str,
) -> Result<Option<u32>, Error> {
    let dir =
        DataDir::open_with_log_groups(path, shards, log_groups).map_err(StorageError::from)?;
    let store = StateStore::open(&dir.state_dir()).map_err(StorageError::store("opening"))?;
    let shard = crate::Address::new(type_name, id)?.shard_id(shards);
    let Some(bytes) = store
        .shard(shard)
        .state(type_name, id)
        .map_err(StorageError::store("reading a state"))?
    else {
        return Ok(None);
    };
    let ((version, _written), _) =
        postcard::take_from_bytes::<(u32, u64)>(&bytes).map_err(|e| StorageError::Corrupt {
            what: format!("the state header of {type_name}/{id}"),
            reason: e.to_string(),
        })?;
    Ok(Some(version))
}

type Read<T> = fn(&ShardTables) -> Result<T, statefn_store::StoreError>;

fn read<T>(tables: &ShardTables, get: Read<T>) -> Result<T, Error> {
    get(tables).map_err(|e| StorageError::store("reading a table")(e).into())
}

fn rows<T: crate::protocol::record::Stored>(
    tables: &ShardTables,
    get: Read<Vec<Vec<u8>>>,
) -> Result<Vec<T>, Error> {
    read(tables, get)?
        .iter()
        .map(|bytes| decode(bytes, "a table row"))
        .collect()
}
