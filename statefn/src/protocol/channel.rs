//! Channels: messages between functions travel on the channel of their
//! (source shard, destination shard) pair, FIFO.
//!
//! The sender numbers each message on its channel ([`Seq`] 1, 2, 3...) in
//! the commit that sends it. The receiver keeps a watermark per source, the
//! highest sequence it has applied, in its own commits, and applies only the
//! next one: at or below the watermark is a duplicate (dropped, and acked
//! with the watermark so that a re-sent outbox is pruned), beyond the next
//! is a gap (an earlier message has not arrived yet: it was lost with a
//! failed batch, or a recovery re-sends it behind newer ones). A gap heals
//! itself: the receiver asks the sender to re-send what it holds for it
//! from the first missing sequence
//! ([`Mail::Resend`](super::envelope::Mail::Resend)), at most once per
//! [`RESEND_REQUEST_INTERVAL`] per channel. So a watermark per source is all
//! the dedup state a receiver needs.

use std::{collections::BTreeMap, time::Duration};

use super::ids::{Seq, ShardId};

/// A receiver asks a sender to re-send at most this often per channel.
pub(crate) const RESEND_REQUEST_INTERVAL: Duration = Duration::from_millis(100);

/// What a receiver does with a message from a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// The next on its channel: apply it (the watermark has moved to it).
    Next,
    /// At or below the watermark: applied before, drop it.
    Duplicate { watermark: Seq },
    /// Beyond the next: wait for the re-send of what is missing.
    Gap { watermark: Seq },
}

/// One shard's ends of its channels: the next sequence to each destination
/// and the watermark of each source.
#[derive(Debug, Default)]
pub(crate) struct Channels {
    /// The last sequence sent to each destination.
    sent: BTreeMap<ShardId, Seq>,
    /// The last sequence applied from each source.
    watermarks: BTreeMap<ShardId, Seq>,
    /// When each source was last asked to re-send (ms, the runtime's clock).
    resend_asked: BTreeMap<ShardId, u64>,
}

impl Channels {
    /// Channels restored from a checkpoint's metadata.
    pub(crate) fn restored(sent: Vec<(ShardId, Seq)>, watermarks: Vec<(ShardId, Seq)>) -> Self {
        Channels {
            sent: sent.into_iter().collect(),
            watermarks: watermarks.into_iter().collect(),
            resend_asked: BTreeMap::new(),
        }
    }

    /// A gap on the channel from `source` at `now_ms`: whether to ask it to
    /// re-send (not if it was asked less than [`RESEND_REQUEST_INTERVAL`]
    /// ago: one re-send brings everything it holds).
    pub(crate) fn ask_resend(&mut self, source: ShardId, now_ms: u64) -> bool {
        let interval = u64::try_from(RESEND_REQUEST_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        let recently = self
            .resend_asked
            .get(&source)
            .is_some_and(|&asked| (asked..asked.saturating_add(interval)).contains(&now_ms));
        if !recently {
            self.resend_asked.insert(source, now_ms);
        }
        !recently
    }

    /// The highest sequence applied from `source`.
    pub(crate) fn watermark(&self, source: ShardId) -> Seq {
        self.watermarks.get(&source).copied().unwrap_or_default()
    }

    /// Numbers the next message to `dest`.
    pub(crate) fn sequence(&mut self, dest: ShardId) -> Seq {
        let seq = self.sent.entry(dest).or_default();
        *seq = seq.next();
        *seq
    }

    /// Decides about message `seq` from `source`; [`Admit::Next`] moves the
    /// watermark to it.
    pub(crate) fn admit(&mut self, source: ShardId, seq: Seq) -> Admit {
        let watermark = self.watermarks.get(&source).copied().unwrap_or_default();
        if seq <= watermark {
            return Admit::Duplicate { watermark };
        }
        if seq > watermark.next() {
            return Admit::Gap { watermark };
        }
        self.watermarks.insert(source, seq);
        Admit::Next
    }

    /// Replay: message `seq` from `source` was applied.
    pub(crate) fn replay_applied(&mut self, source: ShardId, seq: Seq) {
        let watermark = self.watermarks.entry(source).or_default();
        *watermark = (*watermark).max(seq);
    }

    /// Replay: message `seq` to `dest` was sent.
    pub(crate) fn replay_sent(&mut self, dest: ShardId, seq: Seq) {
        let sent = self.sent.entry(dest).or_default();
        *sent = (*sent).max(seq);
    }

    /// The last sequence sent to each destination, for a checkpoint.
    pub(crate) fn sent(&self) -> Vec<(ShardId, Seq)> {
        self.sent.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// The watermark of each source, for a checkpoint.
    pub(crate) fn watermarks(&self) -> Vec<(ShardId, Seq)> {
        self.watermarks.iter().map(|(k, v)| (*k, *v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receiver_applies_each_sequence_once_and_in_order() {
        let mut channels = Channels::default();
        let from = ShardId(2);
        assert_eq!(channels.admit(from, Seq(1)), Admit::Next);
        assert_eq!(
            channels.admit(from, Seq(1)),
            Admit::Duplicate { watermark: Seq(1) }
        );
        assert_eq!(
            channels.admit(from, Seq(3)),
            Admit::Gap { watermark: Seq(1) }
        );
        assert_eq!(channels.admit(from, Seq(2)), Admit::Next);
        assert_eq!(channels.admit(from, Seq(3)), Admit::Next);
        // Another source has its own watermark.
        assert_eq!(channels.admit(ShardId(0), Seq(1)), Admit::Next);
        assert_eq!(
            channels.watermarks(),
            vec![(ShardId(0), Seq(1)), (from, Seq(3))]
        );
    }

    #[test]
    fn senders_number_each_channel_from_one() {
        let mut channels = Channels::default();
        assert_eq!(channels.sequence(ShardId(1)), Seq(1));
        assert_eq!(channels.sequence(ShardId(1)), Seq(2));
        assert_eq!(channels.sequence(ShardId(3)), Seq(1));
        channels.replay_sent(ShardId(3), Seq(7));
        assert_eq!(channels.sequence(ShardId(3)), Seq(8));
    }
}
