//! A runtime's life: the work in flight that shutdown waits for, stopping
//! the services, and joining their threads in dependency order.

use std::{
    sync::{Arc, atomic::Ordering},
    thread::JoinHandle,
    time::Duration,
};

use super::RuntimeInner;
use crate::shard::ShardCore;

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

fn join(handles: Vec<JoinHandle<()>>) {
    for handle in handles {
        let _ = handle.join();
    }
}

impl RuntimeInner {
    /// `count` mails are done (committed and released, or refused).
    pub(super) fn finished(&self, count: usize) {
        if count > 0 && self.in_flight.fetch_sub(count, Ordering::SeqCst) == count {
            self.idle.notify_waiters();
        }
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
        self.stop_and_join();
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

    /// Stops the services, waits for their threads, and releases the data
    /// directory.
    pub(crate) fn stop_and_join(&self) {
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
        join(threads.workers);
        if let Some(commit) = &self.commit {
            commit.stop_syncers();
            join(threads.syncers);
            #[cfg(feature = "cluster")]
            join(threads.groups.into_values().collect());
            commit.stop_checkpointer();
            join(threads.checkpointer);
        }
        self.egress.stop();
        join(threads.appender);
        self.egress.close();
        self.timers.stop();
        join(threads.timers);
        self.stop();
        // The syncers and the appender used the node's NATS runtime.
        #[cfg(feature = "cluster")]
        if let Some(cluster) = self.cluster.get() {
            cluster.close();
        }
        if let Some(commit) = &self.commit {
            // Shard cores hold store handles: replace them so fjall closes.
            for shard in &self.shards {
                let mut core = shard.core.lock();
                let config = commit.storage.core_config().clone();
                *core = ShardCore::new(shard.id, core.epoch, config, None);
            }
            commit.storage.close();
        }
    }
}
