//! A runtime's life: the work in flight that shutdown waits for, stopping
//! the services, and joining their threads in dependency order.

use std::{
    sync::{Arc, atomic::Ordering},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::RuntimeInner;
use crate::shard::ShardCore;

/// How long each kind of thread (workers, syncers, checkpointer, egress
/// appender, timers) is given to stop once told, past the shutdown
/// deadline: one second for all five.
pub(super) const STOP_GRACE: Duration = Duration::from_millis(200);

/// Stops the threads when the last `Runtime` clone (or `Handle`) is dropped
/// without `shutdown`. (The services' threads hold the core too, so its own
/// drop would never come.)
#[derive(Debug)]
pub(super) struct Owner {
    pub(super) inner: Arc<RuntimeInner>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.inner.stop();
    }
}

/// The services' threads, by kind.
#[derive(Debug, Default)]
pub(super) struct Threads {
    pub(super) workers: Vec<JoinHandle<()>>,
    pub(super) syncers: Vec<JoinHandle<()>>,
    pub(super) checkpointer: Vec<JoinHandle<()>>,
    pub(super) appender: Vec<JoinHandle<()>>,
    pub(super) timers: Vec<JoinHandle<()>>,
    /// Cluster mode: the syncers of the log groups served here, started
    /// and stopped as groups are acquired and given up.
    #[cfg(feature = "cluster")]
    pub(super) groups: std::collections::BTreeMap<crate::protocol::ids::LogGroupId, JoinHandle<()>>,
}

/// Joins `handles`, waiting for none past `deadline`: a thread still
/// running then is left to finish on its own, and named in `unfinished`.
fn join(handles: Vec<JoinHandle<()>>, deadline: Option<Instant>, unfinished: &mut Vec<String>) {
    // Threads that are not stuck stop within moments of being told, even
    // when the work in flight (or a stuck thread before them) used up the
    // deadline.
    let deadline = deadline.map(|d| d.max(Instant::now() + STOP_GRACE));
    for handle in handles {
        if let Some(deadline) = deadline {
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if !handle.is_finished() {
                unfinished.push(format!(
                    "thread {} did not stop",
                    handle.thread().name().unwrap_or("unnamed")
                ));
                continue;
            }
        }
        if handle.join().is_err() {
            unfinished.push("a runtime thread ended with a panic".to_owned());
        }
    }
}

impl RuntimeInner {
    /// `count` mails are done (committed and released, or refused).
    pub(super) fn finished(&self, count: usize) {
        if count > 0 && self.in_flight.fetch_sub(count, Ordering::SeqCst) == count {
            self.idle.notify_waiters();
        }
    }

    /// Mail queued or being processed now.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The first step of a shutdown: calls are refused from now on, a log
    /// group that cannot recover gives up, egress long-polls return.
    pub(super) fn begin_closing(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.egress.close_readers();
    }

    /// Resolves when no mail is queued or being processed.
    pub(super) async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            // The timeout guards against a missed notification only.
            let _ = tokio::time::timeout(Duration::from_millis(10), idle).await;
        }
    }

    /// Refuses new calls from now on (the first step of a clean shutdown).
    #[cfg(feature = "testing")]
    pub(crate) fn refuse_new_calls(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    /// Stops as a crash would (the test kit). Queued mail, uncommitted
    /// batches, unwritten checkpoints and unappended egress records are
    /// dropped; what was committed stays on disk.
    #[cfg(feature = "testing")]
    pub(crate) fn crash(&self) {
        self.closing.store(true, Ordering::SeqCst);
        for shard in &self.shards {
            shard.clear_mailbox();
        }
        self.stop_and_join(None);
    }

    /// Tells every service to stop, without waiting (idempotent).
    pub(super) fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.closing.store(true, Ordering::SeqCst);
        // First, so that no log group is acquired while the rest stops.
        #[cfg(feature = "cluster")]
        if let Some(cluster) = self.cluster.get() {
            cluster.stop();
        }
        self.scheduler.stop();
        self.timers.stop();
        if let Some(commit) = &self.commit {
            commit.stop_syncers();
            commit.stop_checkpointer();
        }
        self.egress.stop();
    }

    /// Stops the services, waits for their threads (none past `deadline`),
    /// and releases the data directory. Returns what did not finish.
    pub(crate) fn stop_and_join(&self, deadline: Option<Instant>) -> Vec<String> {
        let mut unfinished = Vec::new();
        // Before anything else stops: no log group may be acquired or given
        // up while the threads are joined.
        #[cfg(feature = "cluster")]
        if let Some(cluster) = self.cluster.get() {
            cluster.stop_and_wait();
        }
        let threads = std::mem::take(&mut *self.threads.lock());
        // In dependency order: workers feed the syncers, which feed the
        // checkpointer and the egress appender.
        self.scheduler.stop();
        join(threads.workers, deadline, &mut unfinished);
        if let Some(commit) = &self.commit {
            commit.stop_syncers();
            join(threads.syncers, deadline, &mut unfinished);
            #[cfg(feature = "cluster")]
            join(
                threads.groups.into_values().collect(),
                deadline,
                &mut unfinished,
            );
            commit.stop_checkpointer();
            join(threads.checkpointer, deadline, &mut unfinished);
        }
        self.egress.stop();
        join(threads.appender, deadline, &mut unfinished);
        self.egress.close();
        self.timers.stop();
        join(threads.timers, deadline, &mut unfinished);
        self.stop();
        // The syncers and the appender used the node's NATS runtime.
        #[cfg(feature = "cluster")]
        if let Some(cluster) = self.cluster.get() {
            cluster.close();
        }
        if let Some(commit) = &self.commit {
            // Shard cores hold store handles: replace them so fjall closes.
            // (A core still locked at the deadline is a handler that never
            // returned; its thread keeps its handles.)
            let wait = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            for shard in &self.shards {
                match shard.core.try_lock_for(wait) {
                    Some(mut core) => {
                        let config = commit.storage.core_config().clone();
                        *core = ShardCore::new(shard.id, core.epoch, config, None);
                    }
                    None => unfinished.push(format!("shard {} is still running a batch", shard.id)),
                }
            }
            commit.storage.close();
        }
        unfinished
    }
}
