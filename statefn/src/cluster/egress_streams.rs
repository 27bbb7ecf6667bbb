//! Egress logs in cluster mode: one JetStream stream per egress log, the
//! [`EgressSink`] the appender writes to.
//!
//! - A record of shard `s`, sequence `n` is published to
//!   `statefn.<c>.egress.<log>.<s>` with `Nats-Msg-Id: s<s>-<n>` (its stable
//!   id). The stream's duplicate window (10 minutes) drops a record published
//!   again: after an appender retry, or by a node that took the shard's log
//!   group over and resubmits the records it recovered.
//! - A record's offset is its stream sequence − 1: dense from 0, the same
//!   for every reader on every node.
//! - A node that takes a group over first asks each log the last record of
//!   each of the group's shards (`stored_up_to`): records up to it are not
//!   submitted again, so even records older than the duplicate window
//!   appear once. (Each shard's records reach a log in sequence order: the
//!   appender publishes them in order and republishes from the first
//!   unconfirmed one.)
//! - Reads go to the stream directly, from any node; a long-poll looks again
//!   every 100 ms, since appends on other nodes wake no one here.
//!
//! Retention: the stream's `max_age` (the runtime's egress retention).

use std::{collections::HashMap, time::Duration};

use async_nats::jetstream::{
    self,
    context::GetStreamErrorKind,
    stream::{Config, DirectGetErrorKind, DiscardPolicy, RetentionPolicy, StorageType, Stream},
};
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::runtime::Handle;

use super::{ClusterError, names::Names};
use crate::{
    Error,
    egress::{EgressRecord, Emitted, sink::EgressSink},
    protocol::ids::{EgressSeq, ShardId},
};

/// When the record was committed (unix ms), as a header.
const AT_HEADER: &str = "Statefn-At-Ms";

/// How long the streams drop a record published again.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

/// The egress logs of a cluster, as JetStream streams.
#[derive(Debug)]
pub(crate) struct EgressStreams {
    js: jetstream::Context,
    handle: Handle,
    names: Names,
    replicas: usize,
    retention: Duration,
    /// Streams looked up or created, by log.
    streams: Mutex<HashMap<String, Stream>>,
}

fn nats_error(doing: String) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> Error {
    move |e| Error::Cluster(ClusterError::nats(doing)(e))
}

impl EgressStreams {
    pub(crate) fn new(
        js: jetstream::Context,
        handle: Handle,
        names: Names,
        replicas: usize,
        retention: Duration,
    ) -> Self {
        EgressStreams {
            js,
            handle,
            names,
            replicas,
            retention,
            streams: Mutex::new(HashMap::new()),
        }
    }

    /// The stream of `log`, created if `create` (else `None` when missing).
    async fn stream(&self, log: &str, create: bool) -> Result<Option<Stream>, Error> {
        if let Some(stream) = self.streams.lock().get(log) {
            return Ok(Some(stream.clone()));
        }
        let name = self.names.egress_stream(log);
        let stream = match self.js.get_stream(&name).await {
            Ok(stream) => stream,
            Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(ref j) if j.code() == 404) =>
            {
                if !create {
                    return Ok(None);
                }
                let config = Config {
                    name: name.clone(),
                    description: Some(format!("statefn egress log `{log}`")),
                    subjects: vec![self.names.egress_subjects(log)],
                    num_replicas: self.replicas,
                    storage: StorageType::File,
                    retention: RetentionPolicy::Limits,
                    discard: DiscardPolicy::Old,
                    max_age: self.retention,
                    duplicate_window: DUPLICATE_WINDOW,
                    allow_direct: true,
                    deny_delete: true,
                    ..Config::default()
                };
                self.js.get_or_create_stream(config).await.map_err(|e| {
                    nats_error(format!("creating egress stream {name}"))(Box::new(e))
                })?
            }
            Err(e) => {
                return Err(nats_error(format!("looking up egress stream {name}"))(
                    Box::new(e),
                ));
            }
        };
        self.streams.lock().insert(log.to_owned(), stream.clone());
        Ok(Some(stream))
    }

    async fn append_async(&self, records: &[Emitted]) -> Result<(), Error> {
        let mut acks = Vec::with_capacity(records.len());
        for record in records {
            self.stream(&record.log, true).await?;
            let message = jetstream::message::PublishMessage::build()
                .payload(Bytes::copy_from_slice(&record.record))
                .message_id(record_id(record))
                .header(AT_HEADER, record.at_ms.to_string().as_str());
            let ack = self
                .js
                .send_publish(
                    self.names.egress_subject(&record.log, record.shard),
                    message,
                )
                .await
                .map_err(|e| nats_error("publishing egress records".into())(Box::new(e)))?;
            acks.push(ack);
        }
        // In order: each shard's records land in sequence order unless a
        // publish fails, and then the whole lot is published again (the
        // duplicate window drops what landed).
        for ack in acks {
            ack.await
                .map_err(|e| nats_error("storing egress records".into())(Box::new(e)))?;
        }
        Ok(())
    }

    async fn read_async(
        &self,
        log: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<EgressRecord>, Error> {
        let Some(stream) = self.stream(log, false).await? else {
            return Ok(Vec::new());
        };
        let filter = self.names.egress_subjects(log);
        let mut records = Vec::new();
        let mut sequence = from.saturating_add(1);
        while records.len() < limit {
            let message = match stream
                .direct_get_next_for_subject(filter.as_str(), Some(sequence))
                .await
            {
                Ok(message) => message,
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => break,
                Err(e) => {
                    return Err(nats_error(format!("reading egress log `{log}`"))(Box::new(
                        e,
                    )));
                }
            };
            let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
            records.push(EgressRecord {
                offset: message.sequence - 1,
                id: header("Nats-Msg-Id").unwrap_or_default(),
                at_ms: header(AT_HEADER).and_then(|v| v.parse().ok()).unwrap_or(0),
                record: serde_json::from_slice(&message.payload).unwrap_or(serde_json::Value::Null),
            });
            sequence = message.sequence + 1;
        }
        Ok(records)
    }

    async fn stored_up_to_async(
        &self,
        shard: ShardId,
        logs: &[&str],
    ) -> Result<Option<EgressSeq>, Error> {
        let mut highest = None;
        for log in logs {
            let Some(stream) = self.stream(log, false).await? else {
                continue;
            };
            let subject = self.names.egress_subject(log, shard);
            match stream.direct_get_last_for_subject(subject.as_str()).await {
                Ok(message) => {
                    let seq = message
                        .headers
                        .get(async_nats::header::NATS_MESSAGE_ID)
                        .and_then(|id| parse_record_id(id.as_str(), shard));
                    highest = highest.max(seq);
                }
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => {}
                Err(e) => {
                    return Err(nats_error(format!("reading egress log `{log}`"))(Box::new(
                        e,
                    )));
                }
            }
        }
        Ok(highest)
    }
}

/// `s<shard>-<seq>`, as the local egress logs name records.
fn record_id(record: &Emitted) -> String {
    format!("s{}-{}", record.shard, record.seq)
}

/// The sequence in a record id of `shard`.
fn parse_record_id(id: &str, shard: ShardId) -> Option<EgressSeq> {
    let (s, seq) = id.strip_prefix('s')?.split_once('-')?;
    (s.parse::<u16>().ok()? == shard.0)
        .then(|| seq.parse().ok().map(EgressSeq))
        .flatten()
}

impl EgressSink for EgressStreams {
    fn append(&self, records: &[Emitted]) -> Result<(), Error> {
        self.handle.block_on(self.append_async(records))
    }

    fn read(&self, log: &str, from: u64, limit: usize) -> Result<Vec<EgressRecord>, Error> {
        self.handle.block_on(self.read_async(log, from, limit))
    }

    /// Nothing to do: the streams drop records past `max_age` themselves.
    fn sweep(&self, _cutoff_ms: u64) -> Result<(), Error> {
        Ok(())
    }

    fn stored_up_to(&self, shard: ShardId, logs: &[&str]) -> Result<Option<EgressSeq>, Error> {
        self.handle.block_on(self.stored_up_to_async(shard, logs))
    }

    fn poll_interval(&self) -> Option<Duration> {
        Some(Duration::from_millis(100))
    }

    fn close(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_name_their_shard_and_sequence() {
        assert_eq!(parse_record_id("s3-17", ShardId(3)), Some(EgressSeq(17)));
        assert_eq!(parse_record_id("s3-17", ShardId(4)), None);
        assert_eq!(parse_record_id("x3-17", ShardId(3)), None);
    }
}
