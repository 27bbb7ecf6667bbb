//! What operators see and do: each shard's status, the dead letters (list,
//! replay, drop), the registered functions. The HTTP admin routes serve
//! these.

use tokio::sync::oneshot;

use crate::{
    Address, Error, Runtime,
    protocol::{
        envelope::Mail,
        ids::{DeadLetterSeq, ShardId},
    },
};

impl Runtime {
    /// Each shard's state, for operators (the admin surface serves it).
    ///
    /// # Examples
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use statefn::prelude::*;
    /// # #[stateful_function]
    /// # #[derive(Default, Serialize, Deserialize)]
    /// # pub struct Counter { n: u64 }
    /// # #[stateful_function]
    /// # impl Counter { #[handler] pub fn add(&mut self, by: u64) -> u64 { self.n += by; self.n } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), statefn::Error> {
    /// let runtime = Runtime::builder().in_memory().shards(4).register::<Counter>().open().await?;
    /// let status = runtime.shard_status();
    /// assert_eq!(status.len(), 4);
    /// assert!(status.iter().all(|s| s.serving && s.log_group.is_none()));
    /// # Ok(())
    /// # }
    /// ```
    pub fn shard_status(&self) -> Vec<ShardStatus> {
        let inner = self.inner();
        inner
            .shards
            .iter()
            .map(|shard| {
                let group = inner.commit.as_ref().map(|c| c.group_of(shard.id));
                let log = group.and_then(|g| inner.commit.as_ref().and_then(|c| c.group(g)));
                ShardStatus {
                    shard: shard.id.0,
                    serving: shard.is_serving(),
                    mailbox: shard.mailbox_len(),
                    checkpoint_lsn: shard.checkpoint_lsn().0,
                    checkpoint_failures: shard.checkpoint_failures(),
                    commit_queue_bytes: log.map_or(0, |l| l.queued_bytes()),
                    function_mail_bytes: shard.function_mail_bytes(),
                    egress_queue_bytes: inner.egress.queued_bytes(shard.id),
                    log_group: group.map(|g| g.0),
                    log_bytes: log.map_or(0, |l| l.log_bytes()),
                    log_segments: log.map_or(0, |l| l.log_pieces()),
                }
            })
            .collect()
    }

    /// The messages from functions that failed every attempt (see
    /// [`Builder::retry_policy`](crate::Builder::retry_policy)), oldest first per shard.
    ///
    /// A dead letter does not block its sender's later messages: they are
    /// applied, and a replayed dead letter arrives after them.
    ///
    /// # Durability
    ///
    /// Only durable dead letters are listed: one appears once the commit
    /// that made it is durable, and goes once its replay or drop is.
    pub async fn dead_letters(&self) -> Vec<DeadLetter> {
        let runtime = self.clone();
        tokio::task::spawn_blocking(move || runtime.dead_letters_now())
            .await
            .unwrap_or_default()
    }

    /// [`dead_letters`](Self::dead_letters) on the calling thread.
    pub(crate) fn dead_letters_now(&self) -> Vec<DeadLetter> {
        let inner = self.inner();
        let mut out = Vec::new();
        for shard in &inner.shards {
            let letters = shard.dead_letters();
            for letter in letters {
                let message = inner
                    .registry
                    .get(letter.target.type_name())
                    .and_then(|f| f.message_to_json(&letter.message))
                    .unwrap_or(serde_json::Value::Null);
                out.push(DeadLetter {
                    id: DeadLetterId {
                        shard: shard.id.0,
                        seq: letter.id.0,
                    },
                    target: letter.target,
                    message,
                    error: letter.error,
                    attempts: letter.attempts,
                    at_ms: letter.at_ms,
                });
            }
        }
        out
    }

    /// Delivers a dead letter again (a fresh set of attempts), durably
    /// removing it from the dead letters.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownDeadLetter`] if there is no such dead letter.
    pub async fn replay_dead_letter(&self, id: DeadLetterId) -> Result<(), Error> {
        self.resolve_dead_letter(id, true).await
    }

    /// Removes a dead letter durably without delivering it.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownDeadLetter`] if there is no such dead letter.
    pub async fn drop_dead_letter(&self, id: DeadLetterId) -> Result<(), Error> {
        self.resolve_dead_letter(id, false).await
    }

    async fn resolve_dead_letter(&self, id: DeadLetterId, replay: bool) -> Result<(), Error> {
        let inner = self.inner();
        if id.shard >= inner.shard_count() {
            return Err(Error::UnknownDeadLetter { id: id.to_string() });
        }
        let (reply, rx) = oneshot::channel();
        inner.enqueue(
            ShardId(id.shard),
            Mail::DeadLetter {
                id: DeadLetterSeq(id.seq),
                replay,
                reply,
            },
        );
        rx.await.map_err(|_| Error::ShuttingDown)?.map(|_| ())
    }

    /// The registered function types and their handlers, sorted by name.
    pub fn functions(&self) -> Vec<(String, &'static [crate::HandlerInfo])> {
        self.inner().registry.describe()
    }
}

/// Identifies a dead letter: its shard and its number there (`"3-17"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeadLetterId {
    /// The shard that holds it (the target instance's shard).
    pub shard: u16,
    /// Its number in that shard.
    pub seq: u64,
}

impl std::fmt::Display for DeadLetterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.shard, self.seq)
    }
}

impl std::str::FromStr for DeadLetterId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let unknown = || Error::UnknownDeadLetter { id: s.to_owned() };
        let (shard, seq) = s.split_once('-').ok_or_else(unknown)?;
        Ok(DeadLetterId {
            shard: shard.parse().map_err(|_| unknown())?,
            seq: seq.parse().map_err(|_| unknown())?,
        })
    }
}

impl serde::Serialize for DeadLetterId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A message from a function that failed every attempt, from
/// [`Runtime::dead_letters`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Its id, for [`Runtime::replay_dead_letter`] / [`Runtime::drop_dead_letter`].
    pub id: DeadLetterId,
    /// The instance it was for.
    pub target: Address,
    /// The message as JSON (`{"handler": {"arg": value}}`), or null if it
    /// cannot be decoded.
    pub message: serde_json::Value,
    /// The last attempt's error.
    pub error: String,
    /// How many deliveries were tried.
    pub attempts: u32,
    /// When it became a dead letter (unix milliseconds).
    pub at_ms: u64,
}

/// One shard's state, from [`Runtime::shard_status`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ShardStatus {
    /// The shard.
    pub shard: u16,
    /// Serving, or recovering after a failure (its mail waits).
    pub serving: bool,
    /// Mail waiting in its mailbox.
    pub mailbox: usize,
    /// Its records up to this log position are in its last checkpoint.
    pub checkpoint_lsn: u64,
    /// Checkpoints that failed in a row (0 when the last one succeeded):
    /// above 0 the state store cannot write, the shard retries with
    /// backoff, and its log group's log is not truncated meanwhile (watch
    /// `log_bytes`; the error log says why).
    pub checkpoint_failures: u64,
    /// Bytes of log records its log group's disk has not taken yet (0 in
    /// memory): bounded by
    /// [`Builder::commit_queue_bytes`](crate::Builder::commit_queue_bytes)
    /// (plus a batch per worker).
    pub commit_queue_bytes: u64,
    /// Bytes of messages from functions waiting in its mailbox: bounded in
    /// durable mode by
    /// [`Builder::function_mail_bytes`](crate::Builder::function_mail_bytes)
    /// (past it they wait in their senders' outboxes).
    pub function_mail_bytes: u64,
    /// Bytes of its committed egress records waiting for the egress
    /// appender (0 in memory); all shards' together are bounded by
    /// [`Builder::egress_queue_bytes`](crate::Builder::egress_queue_bytes)
    /// (with the records of batches being committed, plus one batch per
    /// worker).
    pub egress_queue_bytes: u64,
    /// The log group it writes to (`None` in memory).
    pub log_group: Option<u16>,
    /// Bytes in its log group's live log segments.
    pub log_bytes: u64,
    /// Live segments of its log group's log.
    pub log_segments: u64,
}
