//! Reading a log group's records back from its stream, streamed.
//!
//! An ordered consumer (ephemeral, R1, flow-controlled; it recreates itself
//! on a gap) filtered on the data subject delivers the records from `from`
//! in order. The reader stops at the last data record before the writer's
//! own fence, looked up once at the start: the per-message "pending" count
//! is not a reliable end marker (it said 0 after 19 of 621 records once,
//! after a leader change).
//!
//! It skips *stale* records: a record counts only if its epoch (from its
//! `Nats-Msg-Id`, `epoch:lsn`) is the epoch of the last fence before it. A
//! fenced writer's pipelined record can land after the fence when it happens
//! to expect the position the stream has reached (see `acker`); its writer
//! never confirmed it, and its predecessor is missing, so it must not count.
//!
//! And a writer's records count only while its chain after its fence is
//! unbroken: once a stale record stands in a fence's section, the section's
//! writer's later records do not count either. The stale record took the
//! position one of the writer's records expected, so that record was
//! refused and the writer's log failed; a later pipelined record of its own
//! may still have landed (it expected the stale record's position), but the
//! writer never confirmed it (acks are confirmed in order).
//!
//! Nor does a record a later fence cuts (after the fence's `cut`, before
//! the fence): its writer failed before confirming it.
//!
//! A stream trimmed below what the reader asked for (its node's checkpoint
//! is older than the group's snapshot) is refused, not read with a hole:
//! positions are dense, so every position the reader does not get must be
//! a fence. The node then loads the snapshot and reads again.

use std::time::Duration;

use async_nats::jetstream::{
    consumer::{DeliverPolicy, pull::Ordered, pull::OrderedConfig},
    stream::{LastRawMessageErrorKind, Stream},
};
use futures::StreamExt;
use tokio::runtime::Handle;

use super::{
    acker::record_epoch,
    jetstream_log::Fence,
    log_api::{LogError, LogRecord, Lsn},
};

/// How long the reader waits for the next record before it gives up.
const NEXT_TIMEOUT: Duration = Duration::from_secs(30);

/// A blocking iterator over the data records from `from` up to `last`.
pub(crate) struct Replay {
    handle: Handle,
    messages: Option<Ordered>,
    /// The first sequence asked for.
    start: u64,
    /// The sequence of the last data record to replay.
    last: u64,
    /// The sequence of the last record delivered (`start - 1` at first).
    previous: u64,
    done: bool,
    /// `(sequence, epoch, cut)` of every fence, in stream order.
    fences: Vec<(u64, u64, Option<u64>)>,
    /// The sequence of the last fence whose section holds a stale record:
    /// its writer's records after that one do not count.
    broken: Option<u64>,
}

/// Reads every fence up to `until` (fences are few: one per open).
pub(super) async fn fences(
    stream: &Stream,
    subject: String,
    until: u64,
) -> Result<Vec<(u64, u64, Option<u64>)>, Box<dyn std::error::Error + Send + Sync>> {
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subject,
            ..OrderedConfig::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut fences = Vec::new();
    loop {
        let message = tokio::time::timeout(NEXT_TIMEOUT, messages.next())
            .await?
            .ok_or("the fence reader ended")??;
        let sequence = message.info()?.stream_sequence;
        let fence: Fence = serde_json::from_slice(&message.payload)?;
        fences.push((sequence, fence.epoch, fence.cut));
        if sequence >= until {
            return Ok(fences);
        }
    }
}

impl Replay {
    /// Replays `subject`'s records from `from` to the last one before `fence`
    /// (this writer's), skipping stale ones (see the module docs).
    pub(crate) async fn start(
        stream: &Stream,
        subject: String,
        fence_subject: String,
        from: Lsn,
        fence: u64,
        handle: Handle,
    ) -> Result<Replay, LogError> {
        let start_sequence = from.0.max(1);
        let empty = Replay {
            handle: handle.clone(),
            messages: None,
            start: start_sequence,
            last: 0,
            previous: 0,
            done: true,
            fences: Vec::new(),
            broken: None,
        };
        let name = stream.cached_info().config.name.clone();
        let unavailable =
            |detail: &str, e: Box<dyn std::error::Error + Send + Sync>| LogError::Unavailable {
                detail: format!("{detail} of {name}: {e}"),
                source: Some(e),
            };
        let last = match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => message.sequence,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(empty),
            Err(e) => return Err(unavailable("finding the last record", Box::new(e))),
        };
        if last >= fence {
            return Err(LogError::Corrupt {
                detail: format!("{name} has a data record at {last}, after the fence at {fence}"),
            });
        }
        if start_sequence > last {
            return Ok(empty);
        }
        let fences = fences(stream, fence_subject, fence)
            .await
            .map_err(|e| unavailable("reading the fences", e))?;
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: subject,
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence },
                ..OrderedConfig::default()
            })
            .await
            .map_err(|e| unavailable("creating a reader", Box::new(e)))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| unavailable("reading", Box::new(e)))?;
        Ok(Replay {
            handle,
            messages: Some(messages),
            start: start_sequence,
            last,
            previous: start_sequence - 1,
            done: false,
            fences,
            broken: None,
        })
    }

    /// `(sequence, epoch)` of the last fence before `sequence`.
    fn fence_before(&self, sequence: u64) -> Option<(u64, u64)> {
        let after = self.fences.partition_point(|&(seq, _, _)| seq < sequence);
        after
            .checked_sub(1)
            .and_then(|i| self.fences.get(i))
            .map(|&(seq, epoch, _)| (seq, epoch))
    }

    /// Whether a later fence cuts the record at `sequence`.
    fn cut(&self, sequence: u64) -> bool {
        let after = self.fences.partition_point(|&(seq, _, _)| seq < sequence);
        self.fences
            .get(after..)
            .into_iter()
            .flatten()
            .any(|&(_, _, cut)| cut.is_some_and(|cut| cut < sequence))
    }

    /// Whether every position strictly between `after` and `before` is a
    /// fence (no data record was trimmed there).
    fn only_fences_between(&self, after: u64, before: u64) -> bool {
        let from = self.fences.partition_point(|&(seq, _, _)| seq <= after);
        let to = self.fences.partition_point(|&(seq, _, _)| seq < before);
        let fences = u64::try_from(to.saturating_sub(from)).unwrap_or(u64::MAX);
        fences == before.saturating_sub(after).saturating_sub(1)
    }

    fn fail(&mut self, error: LogError) -> Option<Result<LogRecord, LogError>> {
        self.done = true;
        self.messages = None;
        Some(Err(error))
    }
}

impl Iterator for Replay {
    type Item = Result<LogRecord, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                self.messages = None;
                return None;
            }
            let messages = self.messages.as_mut()?;
            let next = self
                .handle
                .block_on(async { tokio::time::timeout(NEXT_TIMEOUT, messages.next()).await });
            let message = match next {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(e))) => {
                    return self.fail(LogError::Unavailable {
                        detail: format!("reading the log: {e}"),
                        source: Some(Box::new(e)),
                    });
                }
                Ok(None) | Err(_) => {
                    return self.fail(LogError::Unavailable {
                        detail: format!(
                            "the log ended or stalled before record {} (waited {NEXT_TIMEOUT:?})",
                            self.last
                        ),
                        source: None,
                    });
                }
            };
            let sequence = match message.info() {
                Ok(info) => info.stream_sequence,
                Err(e) => {
                    return self.fail(LogError::Corrupt {
                        detail: format!("a delivered record without metadata: {e}"),
                    });
                }
            };
            // An ordered consumer that recreates itself before it delivered
            // anything may start again from the stream's beginning: records
            // below the asked position are not this replay's.
            if sequence < self.start {
                continue;
            }
            if sequence > self.last {
                return self.fail(LogError::Corrupt {
                    detail: format!("record {} not delivered (got {sequence})", self.last),
                });
            }
            if !self.only_fences_between(self.previous, sequence) {
                return self.fail(LogError::Unavailable {
                    detail: format!(
                        "records {} to {} of the log were trimmed (below the group's snapshot); \
                         the node loads the snapshot and reads the log again",
                        self.previous + 1,
                        sequence - 1
                    ),
                    source: None,
                });
            }
            self.previous = sequence;
            self.done = sequence == self.last;
            let epoch = message
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .and_then(|id| record_epoch(id.as_str()));
            let Some(epoch) = epoch else {
                return self.fail(LogError::Corrupt {
                    detail: format!("record {sequence} has no epoch:lsn message id"),
                });
            };
            let fence = self.fence_before(sequence);
            if fence.map(|(_, e)| e) != Some(epoch) {
                tracing::debug!(
                    sequence,
                    epoch,
                    "skipping a stale record of a fenced writer"
                );
                self.broken = fence.map(|(at, _)| at);
                continue;
            }
            if fence.is_some_and(|(at, _)| self.broken == Some(at)) {
                tracing::debug!(
                    sequence,
                    epoch,
                    "skipping a record its writer never confirmed (after a stale one)"
                );
                continue;
            }
            if self.cut(sequence) {
                tracing::debug!(
                    sequence,
                    epoch,
                    "skipping a record its failed writer never confirmed"
                );
                continue;
            }
            return Some(Ok(LogRecord {
                lsn: Lsn(sequence),
                payload: message.payload.to_vec(),
            }));
        }
    }
}
