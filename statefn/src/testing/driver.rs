//! Driving the runtime from the test's thread: the runnable shard the seed
//! picks runs one batch, or the services (syncers, checkpointer, appender)
//! take one step each, or the timers due by the virtual clock fire.

use std::{sync::Arc, time::Duration};

use rand::Rng;

use super::TestRuntime;
use crate::{
    Error,
    commit::CommitObserver,
    runtime::open::open_manual,
    scheduler::RunShard,
    service::{Service, Step},
};

impl TestRuntime {
    /// Takes every runnable shard from the scheduler into `ready`.
    pub(super) fn take_runnable(&mut self) {
        let (Some(runtime), Some(background)) = (&self.runtime, &self.background) else {
            return;
        };
        let scheduler = &runtime.inner().scheduler;
        if let Some(slot) = background.workers.first() {
            while let Some(shard) = scheduler.find(slot) {
                self.ready.push(shard);
            }
        }
    }

    pub(super) fn has_ready(&mut self) -> bool {
        self.take_runnable();
        !self.ready.is_empty()
    }

    /// Runs one batch of the runnable shard the seed picks; returns `false`
    /// if none is runnable.
    pub(super) fn run_one(&mut self) -> bool {
        self.take_runnable();
        if self.ready.is_empty() {
            return false;
        }
        let pick = self.rng.random_range(0..self.ready.len());
        // `remove`, not `swap_remove`: the order of the rest stays a function
        // of the seed and the history only.
        let shard = self.ready.remove(pick);
        if let Some(runtime) = &self.runtime {
            let inner = runtime.inner();
            if inner.run_shard(shard) {
                inner.scheduler.push(shard);
            }
        }
        true
    }

    /// Steps the syncers, the checkpointer and the egress appender once
    /// each, without waiting; returns whether any had something to do.
    pub(super) fn pump(&mut self) -> bool {
        let Some(background) = &mut self.background else {
            return false;
        };
        let mut any = false;
        let mut step = |service: &mut Box<dyn Service>| {
            let step = service.step(Duration::ZERO);
            any |= step == Step::Worked;
            step != Step::Done
        };
        background.syncers.retain_mut(&mut step);
        if let Some(checkpointer) = &mut background.checkpointer
            && !step(checkpointer)
        {
            background.checkpointer = None;
        }
        if let Some(appender) = &mut background.appender
            && !step(appender)
        {
            background.appender = None;
        }
        any
    }

    /// Queues the timers due by the virtual clock; returns whether there
    /// were any.
    pub(super) fn fire_due_timers(&mut self) -> bool {
        self.background
            .as_mut()
            .is_some_and(|b| b.timers.step(Duration::ZERO) == Step::Worked)
    }

    pub(super) fn shutdown_in_place(&mut self) {
        if let Some(runtime) = &self.runtime {
            runtime.inner().refuse_new_calls();
        }
        self.checkpoint();
        if let Some(runtime) = self.runtime.take() {
            runtime.inner().stop_and_join(None);
        }
        self.background = None;
        self.ready.clear();
    }

    pub(super) fn reopen(&mut self) -> Result<(), Error> {
        let committed = Arc::clone(&self.committed);
        let observer: CommitObserver = Arc::new(move |records: &[Vec<u8>]| {
            committed.lock().extend(records.iter().cloned());
        });
        let (runtime, background) = open_manual(self.plan.clone(), &self.clock, observer)?;
        self.runtime = Some(runtime);
        self.background = Some(background);
        Ok(())
    }
}
