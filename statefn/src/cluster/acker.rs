//! The ack pipeline of one JetStream log: confirms published records in
//! order, re-publishes after a lost ack, and turns a wrong-last-sequence into
//! a fence.
//!
//! The writer publishes each flush's records at once (pipelined: record `n`
//! carries `Nats-Msg-Id: epoch:n` and `Nats-Expected-Last-Sequence: n-1`;
//! see [`Publisher::message`]) and hands their ack futures here. One task per log awaits them in order, so a
//! flush resolves only after every earlier one.
//!
//! When an ack is not a clear yes (lost, timed out, no leader, or a wrong
//! last sequence) the task asks the stream what is at the record's position,
//! once every earlier record is confirmed:
//! - our record (its `Nats-Msg-Id`): it landed, the ack was lost;
//! - another record: somebody else appended (a newer writer's fence), so
//!   this writer is fenced;
//! - nothing: it did not land; every unconfirmed record is published again,
//!   in order, at the same positions.
//!
//! Reading back instead of trusting dedup matters: a single nats-server 2.14
//! checks `Nats-Expected-Last-Sequence` *before* `Nats-Msg-Id` (an R3 stream
//! checks the id first; measured, see docs/cluster-engine.md), so a retry of
//! a record that did land may answer "wrong last sequence", not "duplicate".
//! The msg id still tells our record from another writer's.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::{
    self,
    context::{PublishAckFuture, PublishErrorKind},
    message::PublishMessage,
    stream::{LastRawMessageErrorKind, Stream},
};
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use super::log_api::{Epoch, LogError, LogGroupId, Lsn};

/// A failure that poisoned the log; every later flush reports it.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    Fenced(String),
    Unavailable(String),
    Corrupt(String),
}

/// State shared by the writer, the ack task and the pending flushes.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) group: LogGroupId,
    pub(crate) epoch: Epoch,
    pub(crate) durable: AtomicU64,
    pub(crate) failure: Mutex<Option<Failure>>,
}

impl Shared {
    pub(crate) fn error(&self, failure: &Failure) -> LogError {
        match failure {
            Failure::Fenced(detail) => LogError::Fenced {
                group: self.group,
                epoch: self.epoch,
                detail: detail.clone(),
            },
            Failure::Unavailable(detail) => LogError::Unavailable {
                detail: detail.clone(),
                source: None,
            },
            Failure::Corrupt(detail) => LogError::Corrupt {
                detail: detail.clone(),
            },
        }
    }

    /// The error for a call made after the log failed: a fenced writer
    /// hears that it was fenced; otherwise the log is poisoned.
    pub(crate) fn check(&self) -> Result<(), LogError> {
        match &*self.failure.lock() {
            None => Ok(()),
            Some(f @ Failure::Fenced(_)) => Err(self.error(f)),
            Some(_) => Err(LogError::Poisoned),
        }
    }
}

/// One published record awaiting its ack.
#[derive(Debug)]
pub(crate) struct Published {
    pub(crate) lsn: Lsn,
    pub(crate) payload: Bytes,
    /// `None` when the publish itself failed: treated like a lost ack.
    pub(crate) ack: Option<PublishAckFuture>,
}

/// What the writer sends: a flush's records, then whom to tell.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) records: Vec<Published>,
    pub(crate) done: oneshot::Sender<Result<Lsn, LogError>>,
}

enum Item {
    Record(Published),
    Done(oneshot::Sender<Result<Lsn, LogError>>),
}

/// Everything the ack task needs to re-publish.
#[derive(Debug, Clone)]
pub(crate) struct Publisher {
    pub(crate) js: jetstream::Context,
    pub(crate) stream: Stream,
    pub(crate) subject: String,
    pub(crate) epoch: Epoch,
}

/// The epoch in a data record's `Nats-Msg-Id` (`epoch:lsn`), if it is one.
pub(crate) fn record_epoch(message_id: &str) -> Option<u64> {
    let (epoch, lsn) = message_id.split_once(':')?;
    lsn.parse::<u64>().ok()?;
    epoch.parse().ok()
}

impl Publisher {
    /// The message for the record at `lsn`: its id (`epoch:lsn`) and the
    /// expected last sequence `lsn - 1`, nothing else, so records pipeline.
    ///
    /// This does not stop every record of a fenced, pipelining writer: one
    /// that expects the position the fence (or the new writer) has just
    /// reached lands after the fence. Such a *stale* record is harmless: its
    /// writer never confirms it (an earlier record of its own was refused
    /// first, and confirmations are in order), and readers skip it (a record
    /// counts only if its epoch is that of the last fence before it; see
    /// `replay`). Expectations that would refuse it on the server are not
    /// usable on 2.14.6 (docs/cluster-engine.md): a mismatched
    /// `Nats-Expected-Last-Msg-Id` stalls an R3 stream, and a per-subject
    /// expectation allows one message in flight.
    pub(crate) fn message(&self, lsn: Lsn, payload: Bytes) -> PublishMessage {
        PublishMessage::build()
            .payload(payload)
            .expected_last_sequence(lsn.0 - 1)
            .message_id(self.message_id(lsn))
    }

    /// `epoch:lsn`: unique per stream, and tells this writer's records from others'.
    pub(crate) fn message_id(&self, lsn: Lsn) -> String {
        format!("{}:{}", self.epoch.0, lsn.0)
    }

    pub(crate) async fn publish(&self, lsn: Lsn, payload: Bytes) -> Option<PublishAckFuture> {
        match self
            .js
            .send_publish(self.subject.clone(), self.message(lsn, payload))
            .await
        {
            Ok(ack) => Some(ack),
            Err(error) => {
                tracing::debug!(%error, lsn = lsn.0, "publish not sent; will retry");
                None
            }
        }
    }
}

/// What an ack says about a record.
enum Verdict {
    Confirmed,
    /// Not a clear yes: look at the record's position.
    Ask(String),
    /// Cannot be fixed by retrying.
    Fail(Failure),
}

async fn judge(ack: Option<PublishAckFuture>, lsn: Lsn) -> Verdict {
    let Some(ack) = ack else {
        return Verdict::Ask("the publish was not sent".into());
    };
    match ack.await {
        Ok(ack) if ack.sequence == lsn.0 => Verdict::Confirmed,
        Ok(ack) => Verdict::Fail(Failure::Corrupt(format!(
            "record {lsn} was stored at sequence {} (duplicate: {})",
            ack.sequence, ack.duplicate
        ))),
        Err(error) => match error.kind() {
            PublishErrorKind::MaxPayloadExceeded => {
                Verdict::Fail(Failure::Unavailable(error.to_string()))
            }
            _ => Verdict::Ask(error.to_string()),
        },
    }
}

/// What the stream holds at a position.
enum AtPosition {
    Ours,
    /// A newer writer's fence or record.
    Foreign(String),
    /// A record of an older, fenced writer, in flight when this one fenced.
    Stale(String),
    Nothing,
    /// The stream could not be asked (no leader, timeout).
    Unknown(String),
}

async fn look(publisher: &Publisher, lsn: Lsn) -> AtPosition {
    match publisher.stream.get_raw_message(lsn.0).await {
        Ok(message) => {
            let id = message
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str().to_owned());
            if id.as_deref() == Some(publisher.message_id(lsn).as_str()) {
                return AtPosition::Ours;
            }
            let what = format!(
                "position {lsn} holds a record on {} with id {id:?}",
                message.subject
            );
            match id.as_deref().and_then(record_epoch) {
                // A stale record of a writer this one fenced: no newer
                // writer exists, but this writer's chain is broken.
                Some(epoch) if epoch < publisher.epoch.0 => AtPosition::Stale(what),
                _ => AtPosition::Foreign(what),
            }
        }
        Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => {
            AtPosition::Nothing
        }
        Err(error) => AtPosition::Unknown(error.to_string()),
    }
}

/// Runs until the writer is dropped.
pub(crate) async fn run(
    mut batches: mpsc::UnboundedReceiver<Batch>,
    publisher: Publisher,
    shared: Arc<Shared>,
    retry_for: Duration,
) {
    let mut queue: VecDeque<Item> = VecDeque::new();
    let mut retrying_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(10);
    loop {
        if queue.is_empty() {
            match batches.recv().await {
                Some(batch) => push(&mut queue, batch),
                None => return,
            }
        }
        while let Ok(batch) = batches.try_recv() {
            push(&mut queue, batch);
        }
        if let Some(failure) = shared.failure.lock().clone() {
            fail_all(&mut queue, &shared, &failure);
            continue;
        }
        let Some(item) = queue.pop_front() else {
            continue;
        };
        let Item::Record(Published { lsn, payload, ack }) = item else {
            if let Item::Done(done) = item {
                let _ = done.send(Ok(Lsn(shared.durable.load(Ordering::Acquire))));
            }
            continue;
        };
        let detail = match judge(ack, lsn).await {
            Verdict::Confirmed => None,
            Verdict::Fail(failure) => {
                poison(&shared, failure);
                continue;
            }
            // Every earlier record is confirmed: the stream knows the truth.
            Verdict::Ask(detail) => match look(&publisher, lsn).await {
                AtPosition::Ours => None,
                AtPosition::Foreign(what) => {
                    poison(
                        &shared,
                        Failure::Fenced(format!("append of {lsn} refused ({detail}): {what}")),
                    );
                    continue;
                }
                AtPosition::Stale(what) => {
                    poison(
                        &shared,
                        Failure::Unavailable(format!(
                            "append of {lsn} refused ({detail}): {what}; reopen at a higher epoch"
                        )),
                    );
                    continue;
                }
                AtPosition::Nothing => Some(detail),
                AtPosition::Unknown(why) => {
                    Some(format!("{detail}; then looking at the stream: {why}"))
                }
            },
        };
        let Some(detail) = detail else {
            shared.durable.store(lsn.0, Ordering::Release);
            retrying_since = None;
            backoff = Duration::from_millis(10);
            continue;
        };
        let since = *retrying_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= retry_for {
            poison(
                &shared,
                Failure::Unavailable(format!(
                    "record {lsn} unconfirmed after {retry_for:?} of retries: {detail}"
                )),
            );
            continue;
        }
        tracing::debug!(lsn = lsn.0, %detail, "record unconfirmed; publishing the unconfirmed records again");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(250));
        queue.push_front(Item::Record(Published {
            lsn,
            payload,
            ack: None,
        }));
        while let Ok(batch) = batches.try_recv() {
            push(&mut queue, batch);
        }
        republish(&mut queue, &publisher).await;
    }
}

fn push(queue: &mut VecDeque<Item>, batch: Batch) {
    queue.extend(batch.records.into_iter().map(Item::Record));
    queue.push_back(Item::Done(batch.done));
}

/// Publishes every queued record again, in order.
async fn republish(queue: &mut VecDeque<Item>, publisher: &Publisher) {
    for item in queue.iter_mut() {
        if let Item::Record(record) = item {
            record.ack = publisher.publish(record.lsn, record.payload.clone()).await;
        }
    }
}

fn poison(shared: &Shared, failure: Failure) {
    tracing::warn!(
        group = shared.group.0,
        epoch = shared.epoch.0,
        ?failure,
        "JetStream log poisoned"
    );
    shared.failure.lock().get_or_insert(failure);
}

fn fail_all(queue: &mut VecDeque<Item>, shared: &Shared, failure: &Failure) {
    for item in queue.drain(..) {
        if let Item::Done(done) = item {
            let _ = done.send(Err(shared.error(failure)));
        }
    }
}
