//! [`SentMessage`]: what the test kit shows of the messages handlers sent,
//! read from the committed log records.

use std::time::Duration;

use super::TestRuntime;
use crate::{
    Address,
    protocol::record::{Entry, ShardRecord, decode},
};

/// A message a handler sent, from [`TestRuntime::sent`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SentMessage {
    /// The instance whose handler sent it.
    pub from: Address,
    /// The instance it is for.
    pub to: Address,
    /// The message as JSON: `{"handler": {"arg": value}}` (a handler without
    /// arguments: `{"handler": {}}`, or `"handler"`).
    pub message: serde_json::Value,
    /// Its delay (`ctx.send_after`); zero for `ctx.send`.
    pub delay: Duration,
    /// When it was committed, on the virtual clock (unix milliseconds).
    pub at_ms: u64,
}

impl SentMessage {
    /// The name of the handler it calls.
    pub fn handler(&self) -> &str {
        match &self.message {
            serde_json::Value::Object(map) => map.keys().next().map_or("", String::as_str),
            serde_json::Value::String(name) => name,
            _ => "",
        }
    }

    /// The handler's arguments as JSON (`null` if it takes none).
    pub fn args(&self) -> &serde_json::Value {
        match &self.message {
            serde_json::Value::Object(map) => {
                map.values().next().unwrap_or(&serde_json::Value::Null)
            }
            _ => &serde_json::Value::Null,
        }
    }
}

impl TestRuntime {
    /// Moves newly committed records' sent messages into `sent`.
    pub(super) fn collect_sent(&mut self) {
        let Some(runtime) = &self.runtime else { return };
        let inner = runtime.inner();
        let records = std::mem::take(&mut *self.committed.lock());
        let now = self.clock.now_ms();
        let json = |to: &Address, message: &[u8]| {
            inner
                .registry
                .get(to.type_name())
                .and_then(|f| f.message_to_json(message))
                .unwrap_or(serde_json::Value::Null)
        };
        for bytes in records {
            let Ok(ShardRecord {
                entry: Entry::Invocation(record),
                ..
            }) = decode::<ShardRecord>(&bytes, "a committed record")
            else {
                continue;
            };
            for sent in record.sent.iter().filter(|s| s.attempt == 0) {
                self.sent.push(SentMessage {
                    from: record.target.clone(),
                    to: sent.target.clone(),
                    message: json(&sent.target, &sent.message),
                    delay: Duration::ZERO,
                    at_ms: now,
                });
            }
            for timer in record
                .timers
                .iter()
                .filter(|t| !t.is_expiry() && t.outgoing.attempt == 0)
            {
                self.sent.push(SentMessage {
                    from: record.target.clone(),
                    to: timer.outgoing.target.clone(),
                    message: json(&timer.outgoing.target, &timer.outgoing.message),
                    delay: Duration::from_millis(timer.due_ms.saturating_sub(now)),
                    at_ms: now,
                });
            }
        }
    }
}
