//! A shard's mailbox: its queued mail, and the bytes of the messages from
//! functions among it, which are bounded in durable mode.
//!
//! Client calls are bounded by count (refused with `Overloaded`). Messages
//! from functions cannot be refused to their sender (it committed them long
//! ago), but in durable mode they need not be queued either: the sender keeps
//! each one in its outbox until the receiver acknowledges it, and re-sends
//! what it holds when asked ([`Mail::Resend`]). So past the bound a message
//! from a function is not queued; its source is remembered, every later
//! message from that source is refused too (the channel stays in order),
//! and once the mailbox has drained to half the bound the shard asks each
//! remembered source to re-send, from the first message it refused. Nothing
//! committed is lost; a slow receiver costs its senders' outboxes (durable,
//! in their checkpoints) rather than memory here.
//!
//! A sender asked this way re-sends one chunk of about half the bound (the
//! room the receiver had when it asked), then [`Mail::ResendMore`] if it
//! holds more: so a long overload re-sends each message about once, instead
//! of the whole backlog at every round (`shard/tests/resend.rs`).

use std::collections::{BTreeMap, VecDeque};

use crate::{
    Address,
    protocol::{
        envelope::{Envelope, Mail, Origin},
        ids::{Seq, ShardId},
    },
};

/// What a message from a function weighs against the bound: its bytes, its
/// address's, and the mail that carries it.
pub(crate) fn message_weight(message: &[u8], target: &Address) -> u64 {
    let bytes =
        message.len() + target.type_name().len() + target.id().len() + std::mem::size_of::<Mail>();
    u64::try_from(bytes).unwrap_or(u64::MAX)
}

/// A queued mail from a function: its source, sequence and weight.
fn function_mail(mail: &Mail) -> Option<(ShardId, Seq, u64)> {
    match mail {
        Mail::Invoke(Envelope {
            origin: Origin::Function { source, seq, .. },
            message,
            target,
            ..
        }) => Some((*source, *seq, message_weight(message, target))),
        _ => None,
    }
}

/// What a queued mail weighs against the bound (messages from functions
/// only), with its source.
pub(crate) fn function_weight(mail: &Mail) -> Option<(ShardId, u64)> {
    function_mail(mail).map(|(source, _, weight)| (source, weight))
}

/// Whether a mail was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admitted {
    Queued,
    /// Not queued: its sender re-sends it when asked.
    Refused,
    /// Not queued and not needed: a [`Mail::ResendMore`] from a source
    /// whose chunk was partly refused (the refusal asks again).
    Dropped,
}

/// The mail of one shard, with the bytes of its messages from functions.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    mail: VecDeque<Mail>,
    /// Bytes of the queued messages from functions.
    function_bytes: u64,
    /// Sources with a refused message since they were last asked to
    /// re-send, with the first sequence refused.
    refused: BTreeMap<ShardId, Seq>,
    /// The bound those refusals were made under.
    bound: u64,
    /// An empty queue with room, handed back by the worker after a batch
    /// ([`recycle`](Self::recycle)): taking a whole mailbox swaps queues
    /// instead of moving every mail into a new allocation (issue 14: that
    /// copy was 5% of an in-memory call's CPU at 64 callers).
    spare: VecDeque<Mail>,
}

impl Mailbox {
    pub(crate) fn len(&self) -> usize {
        self.mail.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.mail.is_empty()
    }

    /// Bytes of the queued messages from functions.
    pub(crate) fn function_bytes(&self) -> u64 {
        self.function_bytes
    }

    /// Queues `mail`; with a `bound` (durable mode), a message from a
    /// function that would take the queued ones past it is refused (see the
    /// module doc), unless nothing from functions is queued (so that one
    /// message larger than the bound still gets through).
    pub(crate) fn push(&mut self, mail: Mail, bound: Option<u64>) -> Admitted {
        if let (Some(bound), Some((source, seq, weight))) = (bound, function_mail(&mail)) {
            let over =
                self.function_bytes > 0 && self.function_bytes.saturating_add(weight) > bound;
            if over || self.refused.contains_key(&source) {
                let first = self.refused.entry(source).or_insert(seq);
                *first = (*first).min(seq);
                self.bound = bound;
                return Admitted::Refused;
            }
        }
        if let Mail::ResendMore { source, .. } = &mail
            && self.refused.contains_key(source)
        {
            return Admitted::Dropped;
        }
        self.push_back(mail);
        Admitted::Queued
    }

    /// Queues `mail` without a bound (client calls, bounded by count).
    /// Inlined: a mail is a few hundred bytes, moved once more per call
    /// level it passes by value.
    #[inline]
    pub(crate) fn push_back(&mut self, mail: Mail) {
        self.function_bytes += function_weight(&mail).map_or(0, |(_, w)| w);
        self.mail.push_back(mail);
    }

    /// Puts back mail taken by [`take`](Self::take) (it was not handled).
    pub(crate) fn push_front(&mut self, mail: Mail) {
        self.function_bytes += function_weight(&mail).map_or(0, |(_, w)| w);
        self.mail.push_front(mail);
    }

    /// Takes up to `n` mails from the front, in order.
    pub(crate) fn take(&mut self, n: usize) -> VecDeque<Mail> {
        if n >= self.mail.len() {
            // All of it: the queue itself, and the spare queues from now.
            self.function_bytes = 0;
            let spare = std::mem::take(&mut self.spare);
            return std::mem::replace(&mut self.mail, spare);
        }
        let taken: VecDeque<Mail> = self.mail.drain(..n).collect();
        let bytes: u64 = taken
            .iter()
            .filter_map(function_weight)
            .map(|(_, w)| w)
            .sum();
        self.function_bytes = self.function_bytes.saturating_sub(bytes);
        taken
    }

    /// Takes every mail.
    pub(crate) fn take_all(&mut self) -> Vec<Mail> {
        self.take(self.mail.len()).into()
    }

    /// Keeps an emptied queue from [`take`](Self::take) for the next one
    /// (not one grown by a flood: its memory goes back).
    pub(crate) fn recycle(&mut self, queue: VecDeque<Mail>) {
        /// Four batches' worth of mail.
        const MAX_SPARE: usize = 4 * super::MAX_BATCH;
        if queue.is_empty()
            && queue.capacity() > self.spare.capacity()
            && queue.capacity() <= MAX_SPARE
        {
            self.spare = queue;
        }
    }

    /// Keeps the mail `keep` says to keep.
    pub(crate) fn retain_mut(&mut self, keep: impl FnMut(&mut Mail) -> bool) {
        self.mail.retain_mut(keep);
        self.function_bytes = self
            .mail
            .iter()
            .filter_map(function_weight)
            .map(|(_, w)| w)
            .sum();
    }

    /// The sources to ask for a re-send now, with the first sequence each
    /// is to re-send: those with refused messages, once the queued messages
    /// from functions are down to half the bound.
    pub(crate) fn due_resends(&mut self) -> Vec<(ShardId, Seq)> {
        if self.refused.is_empty() || self.function_bytes > self.bound / 2 {
            return Vec::new();
        }
        std::mem::take(&mut self.refused).into_iter().collect()
    }

    /// Forgets the refused sources (the shard is given up or moved: its next
    /// owner asks every sender to re-send anyway).
    pub(crate) fn forget_refused(&mut self) {
        self.refused.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Address,
        protocol::{envelope::Provenance, ids::Seq},
    };

    fn message(source: u16, seq: u64, bytes: usize) -> Mail {
        Mail::Invoke(Envelope {
            target: Address::new("T", "x").expect("valid"),
            message: vec![0; bytes],
            origin: Origin::Function {
                source: ShardId(source),
                seq: Seq(seq),
                attempt: 0,
            },
            reply_to: None,
            guard: None,
            provenance: Provenance::default(),
        })
    }

    #[test]
    fn past_the_bound_a_source_is_refused_until_asked_to_resend() {
        let one = function_weight(&message(1, 1, 100)).expect("a message").1;
        let bound = Some(3 * one);
        let mut mailbox = Mailbox::default();
        for seq in 1..=3 {
            assert_eq!(mailbox.push(message(1, seq, 100), bound), Admitted::Queued);
        }
        assert_eq!(mailbox.function_bytes(), 3 * one);
        // Full: source 1's next is refused, and so is source 2's.
        assert_eq!(mailbox.push(message(1, 4, 100), bound), Admitted::Refused);
        assert_eq!(mailbox.push(message(2, 1, 100), bound), Admitted::Refused);
        // Other mail still queues, and weighs nothing.
        mailbox.push_back(Mail::Wake);
        assert_eq!(mailbox.function_bytes(), 3 * one);
        assert!(mailbox.due_resends().is_empty(), "still full");
        assert_eq!(mailbox.take(2).len(), 2);
        // Room again, but source 1 stays refused until it re-sends: its
        // seq 5 must not overtake the refused seq 4.
        assert_eq!(mailbox.push(message(1, 5, 100), bound), Admitted::Refused);
        // Each from the first it refused.
        assert_eq!(
            mailbox.due_resends(),
            vec![(ShardId(1), Seq(4)), (ShardId(2), Seq(1))]
        );
        assert!(mailbox.due_resends().is_empty(), "asked once");
        assert_eq!(mailbox.push(message(1, 4, 100), bound), Admitted::Queued);
        // Without a bound (memory mode) everything queues.
        let mut unbounded = Mailbox::default();
        for seq in 1..=100 {
            assert_eq!(unbounded.push(message(1, seq, 100), None), Admitted::Queued);
        }
        assert_eq!(unbounded.function_bytes(), 100 * one);
        assert_eq!(unbounded.take_all().len(), 100);
        assert_eq!(unbounded.function_bytes(), 0);
    }

    fn seq_of(mail: &Mail) -> u64 {
        match mail {
            Mail::Invoke(Envelope {
                origin: Origin::Function { seq, .. },
                ..
            }) => seq.0,
            _ => 0,
        }
    }

    /// Taking a whole mailbox swaps queues: the mail comes out in order,
    /// the weights go with it, and the emptied queue handed back serves the
    /// next round without a new allocation (unless a flood grew it).
    #[test]
    fn taking_everything_swaps_queues_and_the_emptied_one_is_reused() {
        let one = function_weight(&message(1, 1, 10)).expect("a message").1;
        let mut mailbox = Mailbox::default();
        for seq in 1..=5 {
            mailbox.push_back(message(1, seq, 10));
        }
        // Part of it: the front, the rest stays in order with its weight.
        let front = mailbox.take(2);
        assert_eq!(front.iter().map(seq_of).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(mailbox.function_bytes(), 3 * one);
        let mut all = mailbox.take(super::super::MAX_BATCH);
        assert_eq!(all.iter().map(seq_of).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!((mailbox.len(), mailbox.function_bytes()), (0, 0));
        all.clear();
        let room = all.capacity();
        mailbox.recycle(all);
        mailbox.push_back(message(1, 6, 10));
        let next = mailbox.take(super::super::MAX_BATCH);
        assert_eq!(next.iter().map(seq_of).collect::<Vec<_>>(), [6]);
        mailbox.push_back(message(1, 7, 10));
        let after = mailbox.take(super::super::MAX_BATCH);
        assert_eq!(
            after.capacity(),
            room,
            "the recycled queue took the next mail"
        );
        // A queue a flood grew is not kept.
        let mut flooded = VecDeque::with_capacity(8 * super::super::MAX_BATCH);
        flooded.push_back(Mail::Wake);
        flooded.clear();
        mailbox.recycle(flooded);
        for _ in 0..2 {
            mailbox.push_back(Mail::Wake);
            let taken = mailbox.take(1);
            assert_eq!(taken.len(), 1);
            assert!(
                taken.capacity() < 8 * super::super::MAX_BATCH,
                "the flooded queue came back"
            );
        }
    }

    /// The marker behind a re-send chunk asks for the rest once the chunk
    /// is handled; if part of the chunk was refused, the refusal asks again
    /// (from the first refused), so the marker is not needed.
    #[test]
    fn a_resend_marker_is_dropped_while_its_source_is_refused() {
        let one = function_weight(&message(1, 1, 100)).expect("a message").1;
        let bound = Some(2 * one);
        let more = |source| Mail::ResendMore {
            source: ShardId(source),
            next: Seq(9),
        };
        let mut mailbox = Mailbox::default();
        assert_eq!(mailbox.push(message(1, 5, 100), bound), Admitted::Queued);
        assert_eq!(mailbox.push(more(1), bound), Admitted::Queued);
        assert_eq!(mailbox.push(message(1, 6, 100), bound), Admitted::Queued);
        assert_eq!(mailbox.push(message(1, 7, 100), bound), Admitted::Refused);
        assert_eq!(mailbox.push(more(1), bound), Admitted::Dropped);
        // Another source's marker still queues, and weighs nothing.
        assert_eq!(mailbox.push(more(2), bound), Admitted::Queued);
        assert_eq!(mailbox.function_bytes(), 2 * one);
        assert_eq!(mailbox.len(), 4);
        mailbox.take_all();
        assert_eq!(mailbox.due_resends(), vec![(ShardId(1), Seq(7))]);
    }

    #[test]
    fn a_message_larger_than_the_bound_gets_through_an_empty_mailbox() {
        let mut mailbox = Mailbox::default();
        assert_eq!(
            mailbox.push(message(1, 1, 4096), Some(10)),
            Admitted::Queued
        );
        assert_eq!(mailbox.push(message(1, 2, 1), Some(10)), Admitted::Refused);
    }
}
