//! Work-stealing scheduler: worker threads run shards that have mail.
//!
//! A shard with mail is pushed (once: its `scheduled` flag guards it) to the
//! global injector or a worker's local deque; idle workers steal. Handlers run
//! here, never on tokio's threads: tokio drives I/O and the async client API.
//!
//! Each worker is a [`Service`]. The test kit runs none: it holds one
//! [`WorkerSlot`], takes every runnable shard with [`Scheduler::find`] and
//! runs the one its seed picks.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering, fence},
    },
    time::Duration,
};

use crossbeam_deque::{Injector, Steal, Stealer, Worker as Deque};
use crossbeam_utils::sync::{Parker, Unparker};
use parking_lot::Mutex;

use crate::{
    protocol::ids::ShardId,
    service::{Service, Step},
};

/// Runs a shard: implemented by the runtime.
pub(crate) trait RunShard: Send + Sync + 'static {
    /// Processes one batch of the shard's mail. Returns whether the shard
    /// still has mail (and was marked scheduled again by this call).
    fn run_shard(&self, shard: ShardId) -> bool;
}

#[derive(Debug)]
pub(crate) struct Scheduler {
    injector: Injector<ShardId>,
    stealers: Vec<Stealer<ShardId>>,
    unparkers: Vec<Unparker>,
    idle: Mutex<Vec<usize>>,
    idle_count: AtomicUsize,
    stopping: AtomicBool,
}

/// What one worker owns.
pub(crate) struct WorkerSlot {
    index: usize,
    local: Deque<ShardId>,
    parker: Parker,
}

impl Scheduler {
    pub(crate) fn new(workers: usize) -> (Scheduler, Vec<WorkerSlot>) {
        let slots: Vec<WorkerSlot> = (0..workers)
            .map(|index| WorkerSlot {
                index,
                local: Deque::new_fifo(),
                parker: Parker::new(),
            })
            .collect();
        let scheduler = Scheduler {
            injector: Injector::new(),
            stealers: slots.iter().map(|s| s.local.stealer()).collect(),
            unparkers: slots.iter().map(|s| s.parker.unparker().clone()).collect(),
            idle: Mutex::new(Vec::with_capacity(workers)),
            idle_count: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
        };
        (scheduler, slots)
    }

    /// Makes a shard runnable (the caller has set its `scheduled` flag).
    pub(crate) fn push(&self, shard: ShardId) {
        self.injector.push(shard);
        self.wake_one();
    }

    fn wake_one(&self) {
        // Pairs with the fence in `park`: either we see the idle worker, or it
        // sees our push.
        fence(Ordering::SeqCst);
        if self.idle_count.load(Ordering::SeqCst) == 0 {
            return;
        }
        let woken = {
            let mut idle = self.idle.lock();
            let woken = idle.pop();
            if woken.is_some() {
                self.idle_count.fetch_sub(1, Ordering::SeqCst);
            }
            woken
        };
        if let Some(unparker) = woken.and_then(|index| self.unparkers.get(index)) {
            unparker.unpark();
        }
    }

    /// Tells every worker to exit once it runs out of work.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for unparker in &self.unparkers {
            unparker.unpark();
        }
    }

    /// Whether the workers were told to exit.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Parks the worker of `slot` until work arrives, or `timeout` (a
    /// safety net only: wake-ups come from `wake_one`).
    fn park(&self, slot: &WorkerSlot, timeout: Duration) {
        {
            let mut idle = self.idle.lock();
            idle.push(slot.index);
            self.idle_count.fetch_add(1, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
        let work_arrived = !self.injector.is_empty()
            || self.stealers.iter().any(|s| !s.is_empty())
            || self.stopping.load(Ordering::SeqCst);
        if !work_arrived {
            slot.parker.park_timeout(timeout);
        }
        let mut idle = self.idle.lock();
        if let Some(pos) = idle.iter().position(|&i| i == slot.index) {
            idle.swap_remove(pos);
            self.idle_count.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Takes a runnable shard: from the slot's own deque, the injector, or
    /// another worker's deque.
    pub(crate) fn find(&self, slot: &WorkerSlot) -> Option<ShardId> {
        if let Some(shard) = slot.local.pop() {
            return Some(shard);
        }
        loop {
            let mut retry = false;
            match self.injector.steal_batch_and_pop(&slot.local) {
                Steal::Success(shard) => return Some(shard),
                Steal::Retry => retry = true,
                Steal::Empty => {}
            }
            for (i, stealer) in self.stealers.iter().enumerate() {
                if i == slot.index {
                    continue;
                }
                match stealer.steal() {
                    Steal::Success(shard) => return Some(shard),
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
            }
            if !retry {
                return None;
            }
        }
    }
}

/// A worker: runs one batch of a runnable shard per step.
pub(crate) struct Worker<R> {
    scheduler: Arc<Scheduler>,
    slot: WorkerSlot,
    runner: Arc<R>,
}

impl<R: RunShard> Worker<R> {
    /// The workers of `slots`, running shards through `runner`.
    pub(crate) fn all(
        scheduler: &Arc<Scheduler>,
        slots: Vec<WorkerSlot>,
        runner: &Arc<R>,
    ) -> Vec<Worker<R>> {
        slots
            .into_iter()
            .map(|slot| Worker {
                scheduler: Arc::clone(scheduler),
                slot,
                runner: Arc::clone(runner),
            })
            .collect()
    }
}

impl<R: RunShard> Service for Worker<R> {
    fn name(&self) -> String {
        format!("statefn-worker-{}", self.slot.index)
    }

    fn step(&mut self, wait: Duration) -> Step {
        if let Some(shard) = self.scheduler.find(&self.slot) {
            if self.runner.run_shard(shard) {
                // Still has mail: keep it close, but let an idle worker steal it.
                self.slot.local.push(shard);
                self.scheduler.wake_one();
            }
            return Step::Worked;
        }
        if self.scheduler.stopping.load(Ordering::SeqCst) {
            return Step::Done;
        }
        if !wait.is_zero() {
            self.scheduler.park(&self.slot, wait);
        }
        Step::Idle
    }
}

impl std::fmt::Debug for WorkerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WorkerSlot({})", self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    /// Each shard is "run" `rounds` times; concurrent runs of one shard would
    /// be a scheduling bug, counted in `overlaps` (an assert here would only
    /// kill a worker thread, and the test would wait for ever).
    struct Counting {
        runs: Vec<AtomicU64>,
        running: Vec<AtomicBool>,
        overlaps: AtomicU64,
        rounds: u64,
        scheduled: Vec<AtomicBool>,
    }

    impl RunShard for Counting {
        fn run_shard(&self, shard: ShardId) -> bool {
            let i = shard.index();
            if self.running[i].swap(true, Ordering::SeqCst) {
                self.overlaps.fetch_add(1, Ordering::SeqCst);
            }
            // A run takes a moment, so that a second worker running the
            // same shard would find it running.
            for _ in 0..50 {
                std::hint::spin_loop();
            }
            std::thread::yield_now();
            let n = self.runs[i].fetch_add(1, Ordering::SeqCst) + 1;
            self.running[i].store(false, Ordering::SeqCst);
            let again = n < self.rounds;
            self.scheduled[i].store(again, Ordering::SeqCst);
            again
        }
    }

    #[test]
    fn every_shard_runs_to_completion_without_overlap() {
        let shards = 64;
        let (scheduler, slots) = Scheduler::new(4);
        let scheduler = Arc::new(scheduler);
        let runner = Arc::new(Counting {
            runs: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            running: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            overlaps: AtomicU64::new(0),
            scheduled: (0..shards).map(|_| AtomicBool::new(true)).collect(),
            rounds: 200,
        });
        let threads: Vec<_> = Worker::all(&scheduler, slots, &runner)
            .into_iter()
            .map(|w| crate::service::spawn(Box::new(w)).expect("spawn"))
            .collect();
        for shard in 0..shards {
            scheduler.push(ShardId(u16::try_from(shard).expect("fits")));
        }
        // A liveness bound, not a timing one: a lost shard never finishes.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while runner.runs.iter().any(|r| r.load(Ordering::SeqCst) < 200)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        scheduler.stop();
        for t in threads {
            t.join().expect("worker exits cleanly");
        }
        let short: Vec<(usize, u64)> = runner
            .runs
            .iter()
            .map(|r| r.load(Ordering::SeqCst))
            .enumerate()
            .filter(|&(_, n)| n != 200)
            .collect();
        assert!(
            short.is_empty(),
            "shards (index, runs) not run 200 times: {short:?}"
        );
        assert_eq!(
            runner.overlaps.load(Ordering::SeqCst),
            0,
            "a shard ran twice at once"
        );
    }
}
