//! A shard: a single-writer state machine over the instances of its key groups.
//!
//! A worker takes a batch of mail, runs each invocation against the shard's
//! state, and hands the batch's effects (replies, outgoing messages, timers)
//! to the journal, which releases them once the batch is committed.

use std::{
    collections::{HashMap, VecDeque},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use parking_lot::Mutex;

use crate::{
    Address, Context, Error,
    envelope::{Envelope, Mail, Origin, Outgoing, ReplySender},
    journal::Journal,
    registry::{Outcome, Registry},
};

/// The most mail one batch takes: bounds the latency a batch adds to the
/// mail behind it.
pub(crate) const MAX_BATCH: usize = 256;

/// One shard: its mailbox (any thread) and its core (the running worker only).
#[derive(Debug)]
pub(crate) struct Shard {
    mailbox: Mutex<VecDeque<Mail>>,
    /// Set while the shard sits in a run queue or runs: guards against
    /// scheduling it twice.
    scheduled: AtomicBool,
    core: Mutex<ShardCore>,
}

impl Shard {
    pub(crate) fn new(id: u16, shards: u16, journal: Box<dyn Journal>) -> Self {
        Shard {
            mailbox: Mutex::new(VecDeque::new()),
            scheduled: AtomicBool::new(false),
            core: Mutex::new(ShardCore::new(id, shards, journal)),
        }
    }

    /// Queues mail; returns whether the caller must schedule the shard.
    pub(crate) fn enqueue(&self, mail: Mail) -> bool {
        self.mailbox.lock().push_back(mail);
        !self.scheduled.swap(true, Ordering::AcqRel)
    }

    /// Runs one batch. Returns whether mail remains (the shard then stays
    /// marked scheduled and the caller re-queues it).
    pub(crate) fn run(&self, registry: &Registry, effects: &mut Effects) -> bool {
        let batch: Vec<Mail> = {
            let mut mailbox = self.mailbox.lock();
            let n = mailbox.len().min(MAX_BATCH);
            mailbox.drain(..n).collect()
        };
        let mut core = self.core.lock();
        for mail in batch {
            core.handle(registry, mail, effects);
        }
        core.commit(effects);
        drop(core);
        self.scheduled.store(false, Ordering::SeqCst);
        let more = !self.mailbox.lock().is_empty();
        more && !self.scheduled.swap(true, Ordering::AcqRel)
    }
}

/// What a batch releases once committed.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub(crate) replies: Vec<(ReplySender, Result<Vec<u8>, Error>)>,
    /// Envelopes for other instances (possibly on this shard).
    pub(crate) deliveries: Vec<Envelope>,
    /// Timers to arm: (due, unix millis; shard; timer id).
    pub(crate) timers: Vec<(u64, u16, u64)>,
    /// How many mails this batch finished (for shutdown's in-flight count).
    pub(crate) finished: usize,
}

impl Effects {
    pub(crate) fn is_empty(&self) -> bool {
        self.replies.is_empty()
            && self.deliveries.is_empty()
            && self.timers.is_empty()
            && self.finished == 0
    }
}

/// A stored reply to an idempotent client call.
#[derive(Debug, Clone)]
struct StoredReply {
    handler: &'static str,
    reply: Vec<u8>,
}

/// A delayed message waiting for its due time.
#[derive(Debug)]
struct Timer {
    outgoing: Outgoing,
}

/// The shard's state: only the worker running the shard touches it.
#[derive(Debug)]
struct ShardCore {
    id: u16,
    /// How many shards the runtime has (to find a destination's shard).
    shards: u16,
    states: HashMap<Address, Vec<u8>>,
    idempotency: HashMap<(Address, String), StoredReply>,
    timers: HashMap<u64, Timer>,
    next_timer: u64,
    /// Next sequence number per destination shard (the channel's FIFO order).
    next_seq: HashMap<u16, u64>,
    /// Per source shard, the highest sequence applied from it: anything at or
    /// below is a duplicate.
    watermarks: HashMap<u16, u64>,
    journal: Box<dyn Journal>,
}

impl ShardCore {
    fn new(id: u16, shards: u16, journal: Box<dyn Journal>) -> Self {
        ShardCore {
            id,
            shards,
            states: HashMap::new(),
            idempotency: HashMap::new(),
            timers: HashMap::new(),
            next_timer: 1,
            next_seq: HashMap::new(),
            watermarks: HashMap::new(),
            journal,
        }
    }

    fn handle(&mut self, registry: &Registry, mail: Mail, effects: &mut Effects) {
        effects.finished += 1;
        match mail {
            Mail::Invoke(envelope) => self.invoke(registry, envelope, effects),
            Mail::TimerDue { timer } => {
                // A timer fires once: it is removed in the same commit that
                // sends its message.
                if let Some(timer) = self.timers.remove(&timer) {
                    self.deliver(timer.outgoing, effects);
                }
            }
        }
    }

    fn invoke(&mut self, registry: &Registry, envelope: Envelope, effects: &mut Effects) {
        let Envelope {
            target,
            message,
            origin,
            reply_to,
        } = envelope;
        let (key, mut reply_sender) = match origin {
            Origin::Client { key, reply } => (key, reply),
            Origin::Function { source, seq } => {
                let watermark = self.watermarks.entry(source).or_insert(0);
                if seq <= *watermark {
                    tracing::debug!(%target, source, seq, "dropping a duplicate message");
                    return;
                }
                *watermark = seq;
                (None, None)
            }
        };
        let function = match registry.get(target.type_name()) {
            Ok(f) => f,
            Err(e) => return fail(effects, reply_sender, &target, e),
        };
        if let Some(key) = &key
            && let Some(stored) = self.idempotency.get(&(target.clone(), key.clone()))
        {
            let answer = match function.handler_of(&message) {
                Ok(info) if info.name == stored.handler => Ok(stored.reply.clone()),
                Ok(_) => Err(Error::IdempotencyKeyReused {
                    function: target.type_name().to_owned(),
                    id: target.id().to_owned(),
                    key: key.clone(),
                    previous_handler: stored.handler.to_owned(),
                }),
                Err(e) => Err(e),
            };
            if let Some(tx) = reply_sender.take() {
                effects.replies.push((tx, answer));
            }
            return;
        }
        let mut ctx = Context::new(target.clone());
        let state = self.states.get(&target).map(Vec::as_slice);
        let invocation = function.invoke(state, &message, &mut ctx);
        let reply = match invocation.outcome {
            Outcome::Applied { reply, new_state } => {
                if let Some(state) = new_state {
                    self.states.insert(target.clone(), state);
                }
                for outgoing in ctx.take_outgoing() {
                    self.send(outgoing, effects);
                }
                reply
            }
            Outcome::Rejected { reply, error } => {
                tracing::debug!(%target, handler = invocation.handler, %error, "handler returned Err");
                reply
            }
            Outcome::Failed(e) => return fail(effects, reply_sender, &target, e),
        };
        if let Some(route) = reply_to {
            match registry
                .get(route.to.type_name())
                .and_then(|f| f.reply_message(&route.handler, &reply))
            {
                Ok(message) => self.deliver(
                    Outgoing {
                        target: route.to,
                        message,
                        delay: None,
                        reply_to: None,
                    },
                    effects,
                ),
                Err(e) => tracing::error!(%target, error = %e, "cannot route a reply"),
            }
        }
        if let (Some(key), Some(handler)) = (key, invocation.handler) {
            self.idempotency.insert(
                (target, key),
                StoredReply {
                    handler,
                    reply: reply.clone(),
                },
            );
        }
        if let Some(tx) = reply_sender {
            effects.replies.push((tx, Ok(reply)));
        }
    }

    /// Queues a message sent by a handler: now, or as a durable timer.
    fn send(&mut self, outgoing: Outgoing, effects: &mut Effects) {
        match outgoing.delay {
            Some(delay) if !delay.is_zero() => {
                let id = self.next_timer;
                self.next_timer += 1;
                effects.timers.push((due_millis(delay), self.id, id));
                self.timers.insert(
                    id,
                    Timer {
                        outgoing: Outgoing {
                            delay: None,
                            ..outgoing
                        },
                    },
                );
            }
            _ => self.deliver(outgoing, effects),
        }
    }

    /// Sequences an envelope on its (this shard, destination shard) channel.
    fn deliver(&mut self, outgoing: Outgoing, effects: &mut Effects) {
        let destination = outgoing.target.shard(self.shards);
        let seq = self.next_seq.entry(destination).or_insert(0);
        *seq += 1;
        effects.deliveries.push(Envelope {
            target: outgoing.target,
            message: outgoing.message,
            origin: Origin::Function {
                source: self.id,
                seq: *seq,
            },
            reply_to: outgoing.reply_to,
        });
    }

    fn commit(&mut self, effects: &mut Effects) {
        self.journal.commit(effects);
    }
}

fn fail(effects: &mut Effects, reply: Option<ReplySender>, target: &Address, error: Error) {
    match reply {
        Some(tx) => effects.replies.push((tx, Err(error))),
        None => {
            tracing::error!(%target, %error, "a message from another function failed; it is dropped")
        }
    }
}

/// Unix milliseconds `delay` from now: timers are kept in wall-clock time so
/// that they survive restarts.
fn due_millis(delay: Duration) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from((now + delay).as_millis()).unwrap_or(u64::MAX)
}
