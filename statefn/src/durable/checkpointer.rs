//! The background checkpointer: writes frozen shard checkpoints into fjall
//! while the shards keep processing. One thread: fjall batches are written
//! one at a time anyway, and it never blocks a shard or a tokio thread.

use std::{sync::Arc, thread::JoinHandle};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use super::GroupCommand;
use crate::{envelope::Mail, runtime::RuntimeInner, shard::CheckpointJob};

#[derive(Debug)]
pub(crate) struct Checkpointer {
    tx: Mutex<Option<Sender<CheckpointJob>>>,
    rx: Mutex<Option<Receiver<CheckpointJob>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    pub(crate) fn new() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Checkpointer {
            tx: Mutex::new(Some(tx)),
            rx: Mutex::new(Some(rx)),
            thread: Mutex::new(None),
        }
    }

    pub(crate) fn submit(&self, job: CheckpointJob) {
        if let Some(tx) = &*self.tx.lock() {
            let _ = tx.send(job);
        }
    }

    pub(crate) fn start(&self, inner: &Arc<RuntimeInner>) -> std::io::Result<()> {
        let Some(rx) = self.rx.lock().take() else {
            return Ok(());
        };
        let inner = Arc::clone(inner);
        let thread = std::thread::Builder::new()
            .name("statefn-checkpointer".into())
            .spawn(move || run(&inner, &rx))?;
        *self.thread.lock() = Some(thread);
        Ok(())
    }

    /// Manual mode (no thread): writes the submitted checkpoints on the
    /// calling thread. Returns whether there were any.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn pump(&self, inner: &RuntimeInner) -> bool {
        let jobs: Vec<CheckpointJob> = match &*self.rx.lock() {
            Some(rx) => rx.try_iter().collect(),
            None => return false,
        };
        let any = !jobs.is_empty();
        for job in jobs {
            write(inner, job);
        }
        any
    }

    /// Stops after writing the jobs already submitted.
    pub(crate) fn stop(&self) -> Option<JoinHandle<()>> {
        self.tx.lock().take();
        self.thread.lock().take()
    }
}

fn run(inner: &RuntimeInner, rx: &Receiver<CheckpointJob>) {
    for job in rx {
        write(inner, job);
    }
}

/// Writes one checkpoint and tells its shard and log group.
fn write(inner: &RuntimeInner, job: CheckpointJob) {
    let Some(durable) = inner.durable.as_ref() else {
        return;
    };
    let started = std::time::Instant::now();
    let result = durable.store().and_then(|store| {
        job.write(
            &store.shard(statefn_store::ShardId(job.shard)),
            durable.clock.now_ms(),
        )
    });
    let shard = inner.shard(job.shard);
    match result {
        Ok(()) => {
            metrics::histogram!(crate::metrics::CHECKPOINT_DURATION)
                .record(started.elapsed().as_secs_f64());
            tracing::debug!(
                shard = job.shard,
                lsn = job.lsn,
                states = job.states.len(),
                elapsed_ms = started.elapsed().as_millis(),
                "checkpoint written"
            );
            shard.checkpoint_finished(job.epoch, Some(job.lsn));
            durable.groups[usize::from(durable.group_of(job.shard))].send(
                GroupCommand::Checkpointed {
                    shard: job.shard,
                    lsn: job.lsn,
                },
            );
        }
        Err(e) => {
            tracing::error!(shard = job.shard, error = %e, "checkpoint failed; will retry");
            shard.checkpoint_finished(job.epoch, None);
        }
    }
    drop(job);
    inner.enqueue(shard.id, Mail::Wake);
}
