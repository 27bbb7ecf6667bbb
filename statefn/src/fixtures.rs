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
        record::{DeadLetterEntry, Entry, Input, Sent, ShardRecord, TimerEntry, TimerKey, decode},
    },
    shard::freeze::ShardMeta,
};

/// Counts what the directory at `path` holds: the checkpoint rows of every
/// shard (`table.timers`, `table.timers.expiry`, `table.outbox`,
/// `table.pending_egress`, `table.dead_letters`, `table.meta`; of record
/// version 2: `table.timers.named`, `.invocation`, `.reply`, `.periodic`,
/// `table.outbox.reply_route`, `table.dead_letters.invocation`) and the log
/// records recovery would replay (`log.Invocation`, with `.function`,
/// `.state`, `.sent`, `.timers`, `.reply`, `.egress`, `.dead_letter` for the
/// records holding each, and of record version 2 `.timer` (a keyed timer
/// ran), `.cancelled`, `.outcome`, `.sent.reply_route`, `.sent.guard`,
/// `.sent.caller`, `.timers.keyed`; `log.TimerFired`,
/// `log.DeadLetterResolved.resent`, `log.DeadLetterResolved.dropped`,
/// `log.Expired.rearmed`, `log.Expired.removed`, `log.Deleted`). A key
/// counted 0 is left out. Opens the directory like a runtime (it must not
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
        let kind = |key: fn(&TimerKey) -> bool| {
            timers
                .iter()
                .filter(|t| t.key.as_ref().is_some_and(key))
                .count()
        };
        count(
            "table.timers.named",
            kind(|k| matches!(k, TimerKey::Named(_))),
        );
        count(
            "table.timers.invocation",
            kind(|k| matches!(k, TimerKey::Invocation(_))),
        );
        count(
            "table.timers.reply",
            kind(|k| matches!(k, TimerKey::Reply(_))),
        );
        count(
            "table.timers.periodic",
            timers.iter().filter(|t| t.every_ms.is_some()).count(),
        );
        let outbox = rows::<Sent>(&tables, ShardTables::outbox)?;
        count("table.outbox", outbox.len());
        count(
            "table.outbox.reply_route",
            outbox.iter().filter(|s| has_v2_route(s)).count(),
        );
        count(
            "table.pending_egress",
            rows::<crate::egress::Emitted>(&tables, ShardTables::pending_egress)?.len(),
        );
        let letters = rows::<DeadLetterEntry>(&tables, ShardTables::dead_letters)?;
        count("table.dead_letters", letters.len());
        count(
            "table.dead_letters.invocation",
            letters
                .iter()
                .filter(|l| l.provenance.invocation.is_some())
                .count(),
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
                    // What record version 2 added.
                    count(
                        "log.Invocation.timer",
                        usize::from(matches!(r.input, Input::Timer { .. })),
                    );
                    count(
                        "log.Invocation.cancelled",
                        usize::from(!r.cancelled.is_empty()),
                    );
                    count(
                        "log.Invocation.outcome",
                        usize::from(r.reply.as_ref().is_some_and(|s| s.outcome.is_some())),
                    );
                    count(
                        "log.Invocation.sent.reply_route",
                        usize::from(r.sent.iter().any(has_v2_route)),
                    );
                    count(
                        "log.Invocation.sent.guard",
                        usize::from(r.sent.iter().any(|s| s.guard.is_some())),
                    );
                    count(
                        "log.Invocation.sent.caller",
                        usize::from(r.sent.iter().any(|s| s.provenance.caller.is_some())),
                    );
                    count(
                        "log.Invocation.timers.keyed",
                        usize::from(r.timers.iter().any(|t| t.key.is_some())),
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

/// A reply route of record version 2: with the reply's message prefix and
/// the caller's timeout timer.
fn has_v2_route(sent: &Sent) -> bool {
    sent.reply_to
        .as_ref()
        .is_some_and(|r| r.prefix.is_some() && r.guard.is_some())
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
