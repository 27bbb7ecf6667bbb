//! Reading a log group's records back from its stream, streamed.
//!
//! An ordered consumer (ephemeral, R1, flow-controlled; it recreates itself
//! on a gap) filtered on the data subject delivers the records from `from`
//! in order. The reader stops at the last data record before the writer's
//! own fence, looked up once at the start: the per-message "pending" count
//! is not a reliable end marker (it said 0 after 19 of 621 records once,
//! after a leader change).

use std::time::Duration;

use async_nats::jetstream::{
    consumer::{DeliverPolicy, pull::Ordered, pull::OrderedConfig},
    stream::{LastRawMessageErrorKind, Stream},
};
use futures::StreamExt;
use tokio::runtime::Handle;

use super::log_api::{LogError, LogRecord, Lsn};

/// How long the reader waits for the next record before it gives up.
const NEXT_TIMEOUT: Duration = Duration::from_secs(30);

/// A blocking iterator over the data records from `from` up to `last`.
pub(crate) struct Replay {
    handle: Handle,
    messages: Option<Ordered>,
    /// The sequence of the last data record to replay.
    last: u64,
    done: bool,
}

impl Replay {
    /// Replays `subject`'s records from `from` to the last one before `fence`.
    pub(crate) async fn start(
        stream: &Stream,
        subject: String,
        from: Lsn,
        fence: u64,
        handle: Handle,
    ) -> Result<Replay, LogError> {
        let start_sequence = from.0.max(1);
        let empty = Replay {
            handle: handle.clone(),
            messages: None,
            last: 0,
            done: true,
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
            last,
            done: false,
        })
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
        if sequence > self.last {
            return self.fail(LogError::Corrupt {
                detail: format!("record {} not delivered (got {sequence})", self.last),
            });
        }
        self.done = sequence == self.last;
        Some(Ok(LogRecord {
            lsn: Lsn(sequence),
            payload: message.payload.to_vec(),
        }))
    }
}
