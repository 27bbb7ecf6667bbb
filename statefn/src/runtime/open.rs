//! Opening a runtime: open the data directory and the state store, recover
//! every log group (checkpoint, then log replay), settle the stored messages
//! this build cannot read as they are (`commit/stored_messages.rs`: the
//! format-1 upgrade, dead letters for timers that no longer decode), hand
//! the recovered egress
//! records to the appender, then build the services and resume the shards
//! (each re-sends its outbox and re-arms its timers).

use std::sync::{
    Arc, Weak,
    atomic::{AtomicBool, AtomicU64, AtomicUsize},
};

use parking_lot::Mutex;
use statefn_store::{DataDir, LogBackend, StateStore, WalBackend};
use tokio::sync::Notify;

use super::{
    Runtime, RuntimeInner,
    builder::{Plan, StorageChoice},
    lifecycle::{Owner, Threads},
};
use crate::{
    Error,
    clock::Clock,
    commit::{
        Commit, CommitConfig, CommitHost, CommitObserver, CommitServices, OpenedGroup,
        recovery::Storage, stored_messages,
    },
    egress::{Egress, appender::Appender},
    error::StorageError,
    protocol::{
        acks::AckMatrix,
        envelope::Mail,
        ids::{Epoch, ShardId, TimerSlot},
        record::{Emitted, Sent},
    },
    scheduler::{Scheduler, Worker, WorkerSlot},
    service::{self, Service},
    shard::{Shard, ShardCore},
    timers::{TimerArm, TimerService, Timers},
};

/// Storage opened and recovered, before any service starts.
pub(super) struct Opened {
    commit: Option<Commit>,
    groups: Vec<OpenedGroup>,
    shards: Vec<Shard>,
    /// Per recovered shard: what it resumes with.
    recovered: Vec<Recovered>,
    egress: Egress,
}

/// A recovered shard's unacknowledged outbox, timers and egress records not
/// yet appended.
struct Recovered {
    shard: ShardId,
    outbox: Vec<Sent>,
    timers: Vec<TimerArm>,
    egress: Vec<Emitted>,
}

impl Recovered {
    fn of(core: &ShardCore) -> Self {
        Recovered {
            shard: core.id,
            outbox: core.outbox.entries().cloned().collect(),
            timers: core.timer_arms(),
            egress: core.emitted.pending().cloned().collect(),
        }
    }
}

/// Who runs the services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drive {
    /// A thread each.
    Threads,
    /// Nobody: the test kit steps them.
    #[cfg(feature = "testing")]
    Manual,
}

/// A runtime's background services, not yet running.
pub(crate) struct Background {
    pub(crate) syncers: Vec<Box<dyn Service>>,
    pub(crate) checkpointer: Option<Box<dyn Service>>,
    pub(crate) appender: Option<Box<dyn Service>>,
    pub(crate) timers: Box<dyn Service>,
    /// One per worker thread; with [`Drive::Manual`], one for the test kit.
    pub(crate) workers: Vec<WorkerSlot>,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background")
            .field("syncers", &self.syncers.len())
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl Background {
    /// Starts a thread per service.
    pub(super) fn spawn(self, inner: &Arc<RuntimeInner>) -> Result<(), Error> {
        let spawn = |service: Box<dyn Service>| {
            let name = service.name();
            service::spawn(service).map_err(|e| Error::Thread {
                what: format!("cannot start thread {name}"),
                source: Some(Arc::new(e)),
            })
        };
        let mut threads = Threads::default();
        for service in self.syncers {
            threads.syncers.push(spawn(service)?);
        }
        threads
            .checkpointer
            .extend(self.checkpointer.map(spawn).transpose()?);
        threads
            .appender
            .extend(self.appender.map(spawn).transpose()?);
        threads.timers.push(spawn(self.timers)?);
        for worker in Worker::all(&inner.scheduler, self.workers, inner) {
            threads.workers.push(spawn(Box::new(worker))?);
        }
        *inner.threads.lock() = threads;
        Ok(())
    }
}

/// Opens the storage the plan chose and recovers it (blocking on disk).
pub(super) fn open_storage(plan: &Plan, clock: &Clock) -> Result<Opened, Error> {
    let StorageChoice::Disk { path, mode } = &plan.storage else {
        return Ok(Opened {
            commit: None,
            groups: Vec::new(),
            shards: (0..plan.shards)
                .map(|id| {
                    Shard::new(ShardCore::new(
                        ShardId(id),
                        Epoch(0),
                        plan.core.clone(),
                        None,
                    ))
                })
                .collect(),
            recovered: Vec::new(),
            egress: Egress::in_memory(plan.shards, plan.egress_retention, clock.clone()),
        });
    };
    let data_dir = DataDir::open_with_log_groups(path, plan.shards, plan.log_groups)
        .map_err(StorageError::from)?;
    let store = StateStore::open(&data_dir.state_dir())
        .map_err(StorageError::store("opening the state store"))?;
    let logs: Arc<dyn LogBackend> = Arc::new(WalBackend::new(
        Arc::clone(&plan.file_system),
        &data_dir.wal_root(),
        plan.wal_options,
    ));
    // Cluster mode: each log group's log is a JetStream stream.
    #[cfg(feature = "cluster")]
    let logs: Arc<dyn LogBackend> = match &plan.cluster {
        Some(node) => Arc::new(node.log_backend()),
        None => logs,
    };
    let storage = Arc::new(Storage::new(
        data_dir,
        store,
        logs,
        plan.core.clone(),
        clock.clone(),
        plan.store_faults.clone(),
    ));
    let commit = Commit::new(
        Arc::clone(&storage),
        CommitConfig {
            mode: *mode,
            checkpoint_log_bytes: plan.checkpoint_log_bytes,
            checkpoint_interval: plan.core.checkpoint_interval,
            queue_bytes: plan.commit_queue_bytes,
            #[cfg(feature = "cluster")]
            read_barrier: plan.cluster.is_some(),
        },
    );
    // Cluster mode: no group is served until this node acquires it.
    #[cfg(feature = "cluster")]
    if let Some(node) = &plan.cluster {
        let shards = (0..plan.shards)
            .map(|id| {
                let core = ShardCore::new(ShardId(id), Epoch(0), plan.core.clone(), None);
                let shard = Shard::new(core);
                shard.set_status(crate::shard::Status::Remote);
                shard
            })
            .collect();
        return Ok(Opened {
            commit: Some(commit),
            groups: Vec::new(),
            shards,
            recovered: Vec::new(),
            egress: node.egress(plan.shards, plan.egress_retention, clock.clone()),
        });
    }
    let mut recovered = (0..plan.log_groups)
        .map(|group| storage.recover(statefn_store::LogGroupId(group), Epoch(1), None, None))
        .collect::<Result<Vec<_>, _>>()?;
    // Before anything serves: the stored messages must mean to this build
    // what they meant when stored (and a format-1 directory is upgraded).
    stored_messages::settle(&storage, &plan.registry, &mut recovered)?;
    let mut cores: Vec<ShardCore> = Vec::new();
    let mut groups = Vec::new();
    for (group, recovered) in (0..plan.log_groups)
        .map(statefn_store::LogGroupId)
        .zip(recovered)
    {
        let (opened, recovered_cores) = recovered.into_opened(group);
        groups.push(opened);
        cores.extend(recovered_cores);
    }
    let egress = Egress::open(
        storage.store()?.egress(),
        plan.shards,
        plan.egress_retention,
        clock.clone(),
        plan.store_faults.clone(),
    )?;
    cores.sort_by_key(|c| c.id);
    let recovered = cores.iter().map(Recovered::of).collect();
    Ok(Opened {
        commit: Some(commit),
        groups,
        shards: cores.into_iter().map(Shard::new).collect(),
        recovered,
        egress,
    })
}

/// Opens a runtime driven by the test kit: no threads; `clock` is its time,
/// `observer` sees every committed record.
#[cfg(feature = "testing")]
pub(crate) fn open_manual(
    plan: Plan,
    clock: &Clock,
    observer: CommitObserver,
) -> Result<(Runtime, Background), Error> {
    let opened = open_storage(&plan, clock)?;
    assemble(plan, opened, clock.clone(), Drive::Manual, Some(observer))
}

/// Builds the runtime around opened storage (on `clock`, which it was
/// opened with) and its services, and resumes the recovered shards.
pub(super) fn assemble(
    plan: Plan,
    opened: Opened,
    clock: Clock,
    drive: Drive,
    observer: Option<CommitObserver>,
) -> Result<(Runtime, Background), Error> {
    let Opened {
        commit,
        groups,
        shards,
        recovered,
        egress,
    } = opened;
    let workers = match drive {
        Drive::Threads => plan.workers,
        #[cfg(feature = "testing")]
        Drive::Manual => 1,
    };
    let (scheduler, slots) = Scheduler::new(workers);
    let inner = Arc::new(RuntimeInner {
        registry: plan.registry,
        resources: plan.resources,
        shards,
        scheduler: Arc::new(scheduler),
        timers: Arc::new(Timers::default()),
        in_flight: AtomicUsize::new(0),
        idle: Notify::new(),
        closing: AtomicBool::new(false),
        stopped: AtomicBool::new(false),
        threads: Mutex::new(Threads::default()),
        acks: AckMatrix::new(plan.shards),
        recoveries: AtomicU64::new(0),
        mailbox_capacity: plan.mailbox_capacity,
        function_mail_bytes: commit.is_some().then_some(plan.function_mail_bytes),
        egress_queue_bytes: plan.egress_queue_bytes,
        shutdown_timeout: plan.shutdown_timeout,
        commit,
        egress: Arc::new(egress),
        clock: clock.clone(),
        invocation_waiters: Arc::default(),
        manual: drive != Drive::Threads,
        #[cfg(feature = "cluster")]
        cluster: std::sync::OnceLock::new(),
        #[cfg(test)]
        lose_messages: std::sync::atomic::AtomicUsize::new(0),
        #[cfg(test)]
        status_queries: std::sync::atomic::AtomicUsize::new(0),
    });
    let weak: Weak<RuntimeInner> = Arc::downgrade(&inner);
    let timers = TimerService::new(Arc::clone(&inner.timers), clock.clone(), move |t| {
        if let Some(inner) = weak.upgrade() {
            let timer = TimerSlot {
                due_ms: t.due_ms,
                id: t.timer,
            };
            inner.enqueue(t.shard, Mail::TimerDue { timer });
        }
    });
    let host: Arc<dyn CommitHost> = Arc::clone(&inner) as Arc<dyn CommitHost>;
    let commit = match &inner.commit {
        Some(commit) => commit.services(&host, groups, &clock, observer.as_ref()),
        None => CommitServices {
            syncers: Vec::new(),
            checkpointer: None,
        },
    };
    let background = Background {
        syncers: commit.syncers,
        checkpointer: commit.checkpointer,
        appender: Appender::new(&inner.egress).map(|a| Box::new(a) as Box<dyn Service>),
        timers: Box::new(timers),
        workers: slots,
    };
    // Every recovered egress record goes to the appender before any shard
    // runs: the appender drops a shard's records at or below the highest
    // sequence it has seen from it, so none may overtake them.
    let mut resume = Vec::with_capacity(recovered.len());
    for r in recovered {
        inner.egress.submit(r.egress);
        resume.push((r.shard, r.outbox, r.timers));
    }
    for (shard, outbox, timers) in resume {
        inner.after_recovery(shard, outbox, timers, false);
    }
    let runtime = Runtime {
        owner: Arc::new(Owner { inner }),
    };
    Ok((runtime, background))
}
