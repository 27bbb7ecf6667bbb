//! Snapshots of log groups, and trimming the groups' streams below them.
//!
//! - **Upload** (the owner): every `snapshot_interval`, or once the
//!   group's stream grew by `snapshot_log_bytes`, the owner reads every
//!   stored row of the group's shards from its store (each shard at one
//!   consistent point: a checkpoint is all in or all out) and puts them in
//!   the object store `statefn-<c>-snapshots` as object `gNNNN`, its
//!   metadata naming the position the rows cover (the lowest of the shards'
//!   checkpoint positions). A snapshot never replaces one at a higher
//!   position.
//! - **Trim** (the owner, after an upload): the group's data records below
//!   the lowest of the stored snapshot's position and the checkpoint
//!   positions of the live standbys (their heartbeats) are purged. Fences
//!   are never purged: the reader rule needs the last fence before every
//!   record left, and the fence subject is never trimmed.
//! - **Load** (any node about to build the group from its store: a standby
//!   starting, a takeover without a standby): when the stored snapshot's
//!   position is above this node's checkpoints of the group, its rows
//!   replace the group's rows here, and only the stream's tail after it is
//!   read. A reader that finds records missing below what it needs (a trim
//!   raced it) fails and starts again, loading the snapshot.
//!
//! # Format (version 1; docs/formats.md)
//!
//! ```text
//! "SFSN" | version u8 = 1 | group u16 | position u64 | shards u16
//! per shard: shard u16 | rows u32 | per row: table u8 | key len u32 | key | value len u32 | value
//! crc32c u32 of everything before
//! ```
//! Integers are big-endian; a row's table codes and the value bytes are the
//! store's (see `statefn_store::ShardTables::rows`).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use async_nats::jetstream::object_store::{self, ObjectMetadata, ObjectStore};
use tokio::io::AsyncReadExt;

use super::{ClusterError, JetStreamBackend, names::Names, node::ClusterNode};
use crate::{
    Error,
    commit::{recovery::Storage, standby::GroupRows},
    error::StorageError,
    protocol::ids::{LogGroupId, Lsn, ShardId},
};

/// The first bytes of a snapshot.
const MAGIC: &[u8; 4] = b"SFSN";
/// The snapshot format this build writes and reads.
pub(crate) const SNAPSHOT_VERSION: u8 = 1;
/// How often the owner looks whether a snapshot is due.
const TICK: Duration = Duration::from_millis(200);

/// A group's rows and the position they cover.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) group: LogGroupId,
    pub(crate) position: Lsn,
    pub(crate) shards: GroupRows,
}

fn corrupt(reason: impl Into<String>) -> Error {
    StorageError::Corrupt {
        what: "a log group's snapshot".into(),
        reason: reason.into(),
    }
    .into()
}

impl Snapshot {
    /// The snapshot's bytes (format version 1, see the module docs).
    pub(crate) fn encode(&self) -> Result<Vec<u8>, Error> {
        let too_many = |what: &str| corrupt(format!("too many {what} for the format"));
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.push(SNAPSHOT_VERSION);
        out.extend_from_slice(&self.group.0.to_be_bytes());
        out.extend_from_slice(&self.position.0.to_be_bytes());
        let shards = u16::try_from(self.shards.len()).map_err(|_| too_many("shards"))?;
        out.extend_from_slice(&shards.to_be_bytes());
        for (shard, rows) in &self.shards {
            out.extend_from_slice(&shard.0.to_be_bytes());
            let count = u32::try_from(rows.len()).map_err(|_| too_many("rows"))?;
            out.extend_from_slice(&count.to_be_bytes());
            for (table, key, value) in rows {
                out.push(*table);
                for bytes in [key, value] {
                    let len = u32::try_from(bytes.len()).map_err(|_| too_many("bytes"))?;
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(bytes);
                }
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        Ok(out)
    }

    /// Reads a snapshot's bytes, checking magic, version and checksum.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Snapshot, Error> {
        let (body, crc) = bytes
            .split_last_chunk::<4>()
            .ok_or_else(|| corrupt("shorter than its checksum"))?;
        if crc32c::crc32c(body) != u32::from_be_bytes(*crc) {
            return Err(corrupt("its checksum does not match"));
        }
        let mut reader = Reader(body);
        if reader.take(4)? != MAGIC {
            return Err(corrupt("it does not start with SFSN"));
        }
        let version = reader.u8()?;
        if version != SNAPSHOT_VERSION {
            return Err(corrupt(format!(
                "format version {version}; this build reads version {SNAPSHOT_VERSION}: upgrade this node"
            )));
        }
        let group = LogGroupId(reader.u16()?);
        let position = Lsn(reader.u64()?);
        let count = reader.u16()?;
        let mut shards = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let shard = ShardId(reader.u16()?);
            let rows = reader.u32()?;
            let mut out = Vec::new();
            for _ in 0..rows {
                let table = reader.u8()?;
                let key = reader.bytes()?;
                let value = reader.bytes()?;
                out.push((table, key, value));
            }
            shards.push((shard, out));
        }
        if !reader.0.is_empty() {
            return Err(corrupt("bytes after its last row"));
        }
        Ok(Snapshot {
            group,
            position,
            shards,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.0.len() < n {
            return Err(corrupt("it ends early"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        self.take(N)?
            .try_into()
            .map_err(|_| corrupt("it ends early"))
    }

    fn u8(&mut self) -> Result<u8, Error> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, Error> {
        let len = usize::try_from(self.u32()?).map_err(|_| corrupt("a length too large"))?;
        Ok(self.take(len)?.to_vec())
    }
}

/// The object metadata key holding a snapshot's position.
const POSITION: &str = "position";

fn unavailable(doing: &str) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> Error {
    let nats = ClusterError::nats(doing);
    move |e| Error::Cluster(nats(e))
}

/// The object store holding the snapshots.
pub(crate) struct SnapshotBucket(pub(super) ObjectStore);

impl std::fmt::Debug for SnapshotBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotBucket")
    }
}

/// The owner's bookkeeping per group served here.
#[derive(Debug, Default)]
pub(super) struct Uploads {
    groups: BTreeMap<u16, Uploaded>,
}

#[derive(Debug, Clone, Copy)]
struct Uploaded {
    at: Instant,
    /// The stream's bytes then.
    bytes: u64,
    /// Data records below this were purged.
    trimmed: Lsn,
}

impl ClusterNode {
    /// The snapshots bucket.
    pub(super) fn snapshots(&self) -> &ObjectStore {
        &self.snapshots.0
    }

    /// The position of `group`'s stored snapshot (`None`: none yet).
    pub(super) async fn snapshot_position(&self, group: LogGroupId) -> Result<Option<Lsn>, Error> {
        match self.snapshots().info(Names::owner_key(group)).await {
            Ok(info) if !info.deleted => Ok(info
                .metadata
                .get(POSITION)
                .and_then(|p| p.parse().ok())
                .map(Lsn)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable("reading a snapshot's position")(Box::new(e))),
        }
    }

    /// Uploads a snapshot of `group` from this node's store, unless the
    /// stored one is as recent; returns the stored snapshot's position.
    pub(super) async fn upload_snapshot(
        self: &Arc<Self>,
        group: LogGroupId,
        storage: Arc<Storage>,
    ) -> Result<Option<Lsn>, Error> {
        let stored = self.snapshot_position(group).await?;
        let built = tokio::task::spawn_blocking(move || {
            let (position, shards) = storage.group_rows(group)?;
            let snapshot = Snapshot {
                group,
                position,
                shards,
            };
            Ok::<_, Error>((position, snapshot.encode()?))
        })
        .await
        .map_err(|e| unavailable("building a snapshot")(Box::new(e)))??;
        let (position, bytes) = built;
        if position == Lsn(0) || stored.is_some_and(|s| s >= position) {
            return Ok(stored);
        }
        let meta = ObjectMetadata {
            name: Names::owner_key(group),
            description: Some(format!(
                "statefn: log group {group} as of stream position {position} (snapshot format {SNAPSHOT_VERSION})"
            )),
            metadata: HashMap::from([(POSITION.to_owned(), position.0.to_string())]),
            ..ObjectMetadata::default()
        };
        let started = Instant::now();
        self.snapshots()
            .put(meta, &mut bytes.as_slice())
            .await
            .map_err(|e| unavailable("uploading a snapshot")(Box::new(e)))?;
        metrics::counter!(crate::metrics::CLUSTER_SNAPSHOTS).increment(1);
        tracing::debug!(%group, %position, bytes = bytes.len(), elapsed_ms = started.elapsed().as_millis(), "snapshot uploaded");
        Ok(Some(position))
    }

    /// Loads `group`'s stored snapshot into this node's store if it is
    /// ahead of this node's checkpoints of the group (blocking; nothing of
    /// the group may be loaded in memory). Returns whether it did.
    pub(super) fn restore_if_behind(
        &self,
        group: LogGroupId,
        storage: &Storage,
    ) -> Result<bool, Error> {
        let local = storage.group_position(group)?;
        let Some(stored) = self.handle.block_on(self.snapshot_position(group))? else {
            return Ok(false);
        };
        if stored <= local {
            return Ok(false);
        }
        let bytes = self.handle.block_on(async {
            let mut object = self
                .snapshots()
                .get(Names::owner_key(group))
                .await
                .map_err(|e| unavailable("downloading a snapshot")(Box::new(e)))?;
            let mut bytes = Vec::new();
            object
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| unavailable("downloading a snapshot")(Box::new(e)))?;
            Ok::<_, Error>(bytes)
        })?;
        let snapshot = Snapshot::decode(&bytes)?;
        if snapshot.group != group {
            return Err(corrupt(format!(
                "object {} holds log group {}",
                Names::owner_key(group),
                snapshot.group
            )));
        }
        let position = snapshot.position;
        storage.replace_group_rows(group, snapshot.shards)?;
        metrics::counter!(crate::metrics::CLUSTER_SNAPSHOT_LOADS).increment(1);
        tracing::info!(%group, %position, %local, "loaded the log group's snapshot");
        Ok(true)
    }

    /// The owner's loop: uploads due snapshots of the groups served here,
    /// then trims their streams (see the module docs).
    pub(super) async fn snapshot_and_trim(self: Arc<Self>) {
        let mut uploads = Uploads::default();
        loop {
            tokio::time::sleep(TICK).await;
            let Some(runtime) = self.runtime() else {
                continue;
            };
            let Some(commit) = runtime.commit.as_ref() else {
                continue;
            };
            let served: Vec<u16> = self
                .slots
                .lock()
                .iter()
                .enumerate()
                .filter(|(_, s)| s.serving().is_some())
                .filter_map(|(g, _)| u16::try_from(g).ok())
                .collect();
            uploads.groups.retain(|g, _| served.contains(g));
            for g in served {
                let group = LogGroupId(g);
                let bytes = commit.group(group).map_or(0, |h| h.log_bytes());
                let last = uploads.groups.get(&g).copied();
                let due = last.is_none_or(|u| {
                    u.at.elapsed() >= self.config.snapshot_interval
                        || bytes.saturating_sub(u.bytes) >= self.config.snapshot_log_bytes
                });
                if !due {
                    continue;
                }
                let position = match self.upload_snapshot(group, commit.storage.clone()).await {
                    Ok(position) => position,
                    Err(error) => {
                        tracing::warn!(%group, %error, "snapshot not uploaded; trying again later");
                        None
                    }
                };
                let trimmed = last.map_or(Lsn(0), |u| u.trimmed);
                let trimmed = match position {
                    Some(position) => self.trim(group, position, trimmed).await,
                    None => trimmed,
                };
                uploads.groups.insert(
                    g,
                    Uploaded {
                        at: Instant::now(),
                        bytes,
                        trimmed,
                    },
                );
            }
        }
    }

    /// Purges `group`'s data records below the lowest of `snapshot` and the
    /// live standbys' checkpoints, if that is above `trimmed`; returns
    /// where the stream now starts.
    async fn trim(&self, group: LogGroupId, snapshot: Lsn, trimmed: Lsn) -> Lsn {
        let standbys = self.membership.following(group.0);
        let floor = trim_floor(snapshot, standbys.iter().map(|(_, f)| Lsn(f.checkpointed)));
        if floor <= trimmed {
            return trimmed;
        }
        let name = JetStreamBackend::stream_name(self.names.cluster(), group);
        let data = JetStreamBackend::data_subject(self.names.cluster(), group);
        let purged = async {
            let stream = self.js.get_stream(&name).await?;
            // "Up to but not including": the record at `floor` stays.
            stream.purge().filter(data).sequence(floor.0).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }
        .await;
        match purged {
            Ok(()) => {
                metrics::counter!(crate::metrics::CLUSTER_TRIMS).increment(1);
                tracing::debug!(%group, %floor, %snapshot, standbys = standbys.len(), "stream trimmed");
                floor
            }
            Err(error) => {
                tracing::warn!(%group, %error, "cannot trim the stream; trying again later");
                trimmed
            }
        }
    }
}

/// Where a group's stream may start: the records below both the stored
/// snapshot's position and every live standby's checkpoint are needed by
/// nobody (a node behind the snapshot loads it first). The record at the
/// floor itself stays.
fn trim_floor(snapshot: Lsn, standbys: impl IntoIterator<Item = Lsn>) -> Lsn {
    standbys.into_iter().fold(snapshot, Lsn::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_trimmed_below_the_snapshot_and_every_live_standby() {
        assert_eq!(trim_floor(Lsn(100), []), Lsn(100));
        assert_eq!(trim_floor(Lsn(100), [Lsn(250)]), Lsn(100));
        assert_eq!(
            trim_floor(Lsn(100), [Lsn(250), Lsn(40)]),
            Lsn(40),
            "a lagging standby holds it back"
        );
        assert_eq!(trim_floor(Lsn(0), [Lsn(40)]), Lsn(0));
    }

    fn sample() -> Snapshot {
        Snapshot {
            group: LogGroupId(3),
            position: Lsn(4242),
            shards: vec![
                (
                    ShardId(3),
                    vec![
                        (0, b"Account\0a".to_vec(), b"state".to_vec()),
                        (4, b"shard".to_vec(), vec![1, 2, 3]),
                    ],
                ),
                (ShardId(7), Vec::new()),
            ],
        }
    }

    #[test]
    fn a_snapshot_reads_back_as_written() {
        let bytes = sample().encode().expect("encodes");
        assert_eq!(&bytes[..5], b"SFSN\x01");
        assert_eq!(Snapshot::decode(&bytes).expect("decodes"), sample());
    }

    #[test]
    fn the_golden_bytes_of_format_1_stay_readable() {
        let small = Snapshot {
            group: LogGroupId(1),
            position: Lsn(2),
            shards: vec![(ShardId(1), vec![(4, b"k".to_vec(), b"v".to_vec())])],
        };
        let bytes = small.encode().expect("encodes");
        let body: &[u8] = &[
            b'S', b'F', b'S', b'N', 1, // magic, version
            0, 1, // group
            0, 0, 0, 0, 0, 0, 0, 2, // position
            0, 1, // shards
            0, 1, 0, 0, 0, 1, // shard 1, one row
            4, 0, 0, 0, 1, b'k', 0, 0, 0, 1, b'v', // meta row
        ];
        assert_eq!(&bytes[..body.len()], body);
        assert_eq!(bytes.len(), body.len() + 4, "a crc32c trailer");
        assert_eq!(Snapshot::decode(&bytes).expect("decodes"), small);
    }

    #[test]
    fn damaged_or_newer_snapshots_are_refused() {
        let bytes = sample().encode().expect("encodes");
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        assert!(Snapshot::decode(&flipped).is_err(), "checksum");
        assert!(Snapshot::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut newer = sample().encode().expect("encodes");
        newer[4] = 2;
        let len = newer.len();
        let crc = crc32c::crc32c(&newer[..len - 4]);
        newer[len - 4..].copy_from_slice(&crc.to_be_bytes());
        let error = Snapshot::decode(&newer).expect_err("version 2");
        assert!(error.to_string().contains("version 2"), "{error}");
    }
}
