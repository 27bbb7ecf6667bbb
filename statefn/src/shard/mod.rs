//! A shard: a single-writer state machine over the instances of its key
//! groups.
//!
//! [`Shard`] is what any thread sees: the mailbox, the scheduling flag and
//! whether it serves. A worker that owns it runs a batch of its mail against
//! its [`ShardCore`] (the state machine, [`state_machine`] and the modules it
//! names) and hands the batch (log records and effects) to the commit path
//! while it still owns the shard, so batches of one shard commit in order.

pub(crate) mod dead_letters;
mod deletion;
pub(crate) mod effects;
pub(crate) mod emitted;
mod expiry;
pub(crate) mod freeze;
mod invocation;
mod invocation_status;
mod mailbox;
mod outgoing;
#[cfg(test)]
pub(crate) mod panic_tests;
mod replay;
pub(crate) mod state_machine;
pub(crate) mod state_table;
pub(crate) mod stored_messages;
#[cfg(test)]
mod tests;
mod timer_ops;
pub(crate) mod timer_table;
pub(crate) mod tracked;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

use self::dead_letters::DeadLetterChange;
pub use self::dead_letters::RetryPolicy;
use self::effects::{Batch, RunEnv};
use self::mailbox::{Admitted, Mailbox};
pub(crate) use self::state_machine::{CoreConfig, ShardCore};
use crate::{
    Error,
    protocol::{
        envelope::{Envelope, Mail, Origin, ReplySender},
        ids::{DeadLetterSeq, Epoch, Lsn, ShardId},
        record::DeadLetterEntry,
    },
};

/// The most mail one batch takes: bounds the latency a batch adds to the
/// mail behind it.
pub(crate) const MAX_BATCH: usize = 256;

/// Whether a shard is serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Status {
    Serving = 0,
    /// Rebuilding its state from checkpoint and log; its mail waits.
    Recovering = 1,
    /// Its log group gave up recovering because the runtime shuts down: it
    /// stays down until the next open, and mail for it is dropped (it is
    /// committed by its senders, who deliver it again after that open).
    Abandoned = 2,
    /// Its log group is served by another node (cluster mode): calls and
    /// mail for it go there, nothing queues here.
    #[cfg(feature = "cluster")]
    Remote = 3,
}

/// What [`Shard::enqueue`] did with the mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queued {
    /// Queued; the caller must schedule the shard.
    Schedule,
    /// Queued; the shard is scheduled already, or not serving.
    Waiting,
    /// Dropped: the shard is abandoned.
    Dropped,
    /// Not queued: a message from a function past the mailbox's bound; its
    /// sender re-sends it when the shard asks (see [`mailbox`]).
    Refused,
}

/// One shard: its mailbox (any thread) and its core (the running worker only).
///
/// The fields every call touches from the callers' threads (the mailbox, the
/// scheduling flag, the status) each have a cache line of their own, away
/// from what the worker writes per batch (the core's lock): a line the
/// worker writes is a cache miss for the next caller that reads it (issue 14:
/// the mailbox lock's line was the top cost of a call's submission).
#[derive(Debug)]
pub(crate) struct Shard {
    pub(crate) id: ShardId,
    mailbox: CachePadded<Mutex<Mailbox>>,
    /// Set while the shard sits in a run queue or runs: guards against
    /// scheduling it twice.
    scheduled: CachePadded<AtomicBool>,
    /// Read by every call, written only when the shard goes down or up.
    status: CachePadded<AtomicU8>,
    pub(crate) core: CachePadded<Mutex<ShardCore>>,
    /// A finished checkpoint, for the core to take at its next batch.
    checkpoint_done: Mutex<Option<(Epoch, Option<Lsn>)>>,
    /// The last checkpoint's position, for status reports.
    checkpoint_lsn: AtomicU64,
    /// Checkpoints that failed in a row (0 once one succeeds), for status
    /// reports.
    checkpoint_failures: AtomicU64,
    /// The dead letters whose records are durable, for the listing (the
    /// core's table also holds letters of batches not yet committed).
    durable_dead_letters: Mutex<BTreeMap<DeadLetterSeq, DeadLetterEntry>>,
    /// Its gauges, labelled with the shard id.
    gauges: crate::metrics::ShardGauges,
}

impl Shard {
    pub(crate) fn new(core: ShardCore) -> Self {
        Shard {
            id: core.id,
            mailbox: CachePadded::new(Mutex::new(Mailbox::default())),
            scheduled: CachePadded::new(AtomicBool::new(false)),
            status: CachePadded::new(AtomicU8::new(Status::Serving as u8)),
            checkpoint_lsn: AtomicU64::new(core.checkpoint.lsn.0),
            checkpoint_failures: AtomicU64::new(0),
            durable_dead_letters: Mutex::new(durable_letters(&core)),
            gauges: crate::metrics::ShardGauges::new(&core.id.to_string()),
            core: CachePadded::new(Mutex::new(core)),
            checkpoint_done: Mutex::new(None),
        }
    }

    /// The dead letters whose records are durable, oldest first.
    pub(crate) fn dead_letters(&self) -> Vec<DeadLetterEntry> {
        self.durable_dead_letters.lock().values().cloned().collect()
    }

    /// A committed batch kept or resolved a dead letter.
    pub(crate) fn dead_letter_committed(&self, change: DeadLetterChange) {
        let mut letters = self.durable_dead_letters.lock();
        match change {
            DeadLetterChange::Kept(letter) => {
                letters.insert(letter.id, letter);
            }
            DeadLetterChange::Resolved(id) => {
                letters.remove(&id);
            }
        }
    }

    /// Installs a core rebuilt from checkpoint and log (all of it durable).
    pub(crate) fn install(&self, core: ShardCore) {
        *self.durable_dead_letters.lock() = durable_letters(&core);
        *self.core.lock() = core;
    }

    /// Queues mail that is committed already: dropped for an abandoned
    /// shard; with `function_bound` (durable mode), a message from a
    /// function is refused past that many queued bytes of them (its sender
    /// re-sends it, see [`mailbox`]).
    pub(crate) fn enqueue(&self, mail: Mail, function_bound: Option<u64>) -> Queued {
        {
            let mut mailbox = self.mailbox.lock();
            if self.status() == Status::Abandoned {
                return Queued::Dropped;
            }
            match mailbox.push(mail, function_bound) {
                Admitted::Queued => {}
                Admitted::Refused => return Queued::Refused,
                Admitted::Dropped => return Queued::Dropped,
            }
        }
        if self.is_serving() && self.mark_scheduled() {
            Queued::Schedule
        } else {
            Queued::Waiting
        }
    }

    /// Gives the shard up until the next open (its log group cannot recover
    /// and the runtime shuts down): empties its mailbox and returns how many
    /// mails it held and the client calls among them (to be refused). Mail
    /// from functions and timers is committed elsewhere and comes back
    /// after the next open.
    pub(crate) fn abandon(&self) -> (usize, Vec<ReplySender>) {
        let mut mailbox = self.mailbox.lock();
        self.set_status(Status::Abandoned);
        let count = mailbox.len();
        mailbox.forget_refused();
        let replies = mailbox
            .take_all()
            .into_iter()
            .filter_map(|mail| match mail {
                Mail::Invoke(Envelope {
                    origin: Origin::Client { reply, .. },
                    ..
                }) => reply,
                _ => None,
            })
            .collect();
        (count, replies)
    }

    /// Queues a client call unless the shard is recovering or its mailbox
    /// holds `capacity` mails. Returns whether the caller must schedule it.
    ///
    /// Only client calls are refused: messages from functions and timers are
    /// already committed by their senders and always queue.
    #[inline]
    pub(crate) fn try_enqueue_call(&self, mail: Mail, capacity: usize) -> Result<bool, Error> {
        if !self.is_serving() {
            return Err(Error::Unavailable {
                shard: self.id.0,
                reason: "its shard is recovering (after a storage failure, a failure of the \
                         shard, or while its log group changes node); the call was not accepted: \
                         retry it"
                    .into(),
                retry_after: std::time::Duration::from_millis(200),
            });
        }
        {
            let mut mailbox = self.mailbox.lock();
            if mailbox.len() >= capacity {
                return Err(Error::Overloaded {
                    shard: self.id.0,
                    queued: mailbox.len(),
                    retry_after: std::time::Duration::from_millis(50),
                });
            }
            mailbox.push_back(mail);
        }
        Ok(self.mark_scheduled())
    }

    /// Marks the shard scheduled; returns whether it was not (the caller
    /// must then queue it). Under load it mostly is already: a plain load
    /// sees that without taking the flag's cache line from the worker (a
    /// swap would). A stale `true` is impossible here: the worker clears the
    /// flag before it looks at the mailbox under its lock, and callers push
    /// under that lock before they look at the flag.
    fn mark_scheduled(&self) -> bool {
        !self.scheduled.load(Ordering::Acquire) && !self.scheduled.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn is_serving(&self) -> bool {
        self.status() == Status::Serving
    }

    fn status(&self) -> Status {
        match self.status.load(Ordering::Acquire) {
            0 => Status::Serving,
            1 => Status::Recovering,
            #[cfg(feature = "cluster")]
            3 => Status::Remote,
            _ => Status::Abandoned,
        }
    }

    /// Whether another node serves it (cluster mode).
    #[cfg(feature = "cluster")]
    pub(crate) fn is_remote(&self) -> bool {
        self.status.load(Ordering::Acquire) == Status::Remote as u8
    }

    pub(crate) fn set_status(&self, status: Status) {
        self.status.store(status as u8, Ordering::Release);
    }

    /// Takes the shard down for recovery and removes the client calls waiting
    /// in its mailbox (their callers are told to retry); other mail stays.
    pub(crate) fn take_down(&self) -> Vec<ReplySender> {
        self.set_status(Status::Recovering);
        let mut mailbox = self.mailbox.lock();
        let mut refused = Vec::new();
        mailbox.retain_mut(|mail| match mail {
            Mail::Invoke(Envelope {
                origin: Origin::Client { reply, .. },
                ..
            }) => {
                refused.extend(reply.take());
                false
            }
            _ => true,
        });
        refused
    }

    /// Takes every queued mail (cluster mode: the shard's log group moved to
    /// another node, which gets the client calls).
    #[cfg(feature = "cluster")]
    pub(crate) fn evict(&self) -> Vec<Mail> {
        let mut mailbox = self.mailbox.lock();
        mailbox.forget_refused();
        mailbox.take_all()
    }

    /// After recovery: returns whether the caller must schedule the shard.
    /// (An abandoned shard that recovers after all serves again.)
    pub(crate) fn resume(&self) -> bool {
        self.set_status(Status::Serving);
        !self.mailbox.lock().is_empty() && !self.scheduled.swap(true, Ordering::AcqRel)
    }

    /// Called by the checkpointer: `lsn` is `None` if the checkpoint failed.
    pub(crate) fn checkpoint_finished(&self, epoch: Epoch, lsn: Option<Lsn>) {
        match lsn {
            Some(lsn) => {
                self.checkpoint_lsn.fetch_max(lsn.0, Ordering::AcqRel);
                self.checkpoint_failures.store(0, Ordering::Release);
            }
            None => {
                self.checkpoint_failures.fetch_add(1, Ordering::AcqRel);
            }
        }
        *self.checkpoint_done.lock() = Some((epoch, lsn));
    }

    /// Checkpoints that failed in a row.
    pub(crate) fn checkpoint_failures(&self) -> u64 {
        self.checkpoint_failures.load(Ordering::Acquire)
    }

    pub(crate) fn checkpoint_lsn(&self) -> Lsn {
        Lsn(self.checkpoint_lsn.load(Ordering::Acquire))
    }

    /// Drops every queued mail (a simulated crash): waiting callers see the
    /// runtime go away.
    #[cfg(feature = "testing")]
    pub(crate) fn clear_mailbox(&self) {
        let mut mailbox = self.mailbox.lock();
        mailbox.forget_refused();
        mailbox.take_all();
    }

    pub(crate) fn mailbox_len(&self) -> usize {
        self.mailbox.lock().len()
    }

    /// Bytes of the messages from functions in its mailbox.
    pub(crate) fn function_mail_bytes(&self) -> u64 {
        self.mailbox.lock().function_bytes()
    }

    /// Runs one batch and hands it to `commit` while still owning the shard.
    /// Returns whether mail remains (the shard then stays marked scheduled
    /// and the caller re-queues it).
    ///
    /// A panic in the runtime's own code while the batch runs (a bug: user
    /// code is guarded where it runs, in the registry) does not unwind
    /// through the worker: the mail not yet handled goes back to the front
    /// of the mailbox, the panicking mail's partial effects are dropped, and
    /// `broken` gets the rest of the batch to refuse or release.
    pub(crate) fn run(
        &self,
        env: &RunEnv<'_>,
        commit: impl FnOnce(Batch),
        broken: impl FnOnce(Batch, String),
    ) -> bool {
        if self.is_serving() {
            let mut mails = { self.mailbox.lock().take(MAX_BATCH) };
            let mut core = self.core.lock();
            let mut batch = Batch::new(self.id, core.epoch);
            // Set while a mail is being handled.
            let mut handling = None;
            let ran = catch_unwind(AssertUnwindSafe(|| {
                if let Some((epoch, lsn)) = self.checkpoint_done.lock().take() {
                    core.checkpoint_finished(epoch, lsn);
                }
                core.outbox.prune(env.acked, false);
                while let Some(mail) = mails.pop_front() {
                    handling = Some(batch.mark());
                    core.handle(env, mail, &mut batch);
                    handling = None;
                }
                if core.wants_checkpoint(env.now_ms) {
                    batch.checkpoint =
                        Some(core.freeze(env.acked, env.egress_appended, env.now_ms));
                }
            }));
            match ran {
                Ok(()) => {
                    (batch.stats.cache_hits, batch.stats.cache_misses) =
                        core.states.take_cache_stats();
                    batch.stats.record();
                    let (depth, function_bytes) = {
                        let mut mailbox = self.mailbox.lock();
                        mailbox.recycle(mails);
                        // Refused senders re-send once this batch (and the
                        // acks of what it applied) is committed.
                        batch.effects.resend_requests.extend(
                            mailbox
                                .due_resends()
                                .into_iter()
                                .map(|(source, from)| (source, self.id, from)),
                        );
                        (mailbox.len(), mailbox.function_bytes())
                    };
                    self.gauges.set(depth, function_bytes);
                    commit(batch);
                }
                Err(panic) => {
                    drop(core);
                    {
                        let mut mailbox = self.mailbox.lock();
                        while let Some(mail) = mails.pop_back() {
                            mailbox.push_front(mail);
                        }
                    }
                    match handling {
                        Some(mark) => batch.rollback(mark),
                        None => batch.checkpoint = None,
                    }
                    broken(batch, crate::registry::panic_message(&*panic));
                }
            }
        }
        self.scheduled.store(false, Ordering::SeqCst);
        let more = self.is_serving() && !self.mailbox.lock().is_empty();
        more && !self.scheduled.swap(true, Ordering::AcqRel)
    }
}

/// A recovered core's dead letters: durable, they come from checkpoint and log.
fn durable_letters(core: &ShardCore) -> BTreeMap<DeadLetterSeq, DeadLetterEntry> {
    core.dead_letters
        .entries()
        .map(|l| (l.id, l.clone()))
        .collect()
}
