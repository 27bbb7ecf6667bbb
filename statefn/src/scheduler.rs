//! Work-stealing scheduler: worker threads run shards that have mail.
//!
//! A shard with mail is pushed (once: its `scheduled` flag guards it) to the
//! global injector or a worker's local deque; idle workers steal. Handlers run
//! here, never on tokio's threads: tokio drives I/O and the async client API.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering, fence},
    },
    thread::JoinHandle,
    time::Duration,
};

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::sync::{Parker, Unparker};
use parking_lot::Mutex;

/// Runs a shard: implemented by the runtime.
pub(crate) trait RunShard: Send + Sync + 'static {
    /// Processes one batch of the shard's mail. Returns whether the shard
    /// still has mail (and was marked scheduled again by this call).
    fn run_shard(&self, shard: u16) -> bool;
}

#[derive(Debug)]
pub(crate) struct Scheduler {
    injector: Injector<u16>,
    stealers: Vec<Stealer<u16>>,
    unparkers: Vec<Unparker>,
    idle: Mutex<Vec<usize>>,
    idle_count: AtomicUsize,
    stopping: AtomicBool,
    /// Manual mode (no workers): the runnable shards, for the test driver.
    ready: Option<Mutex<Vec<u16>>>,
}

/// What one worker thread owns.
pub(crate) struct WorkerSlot {
    index: usize,
    local: Worker<u16>,
    parker: Parker,
}

impl Scheduler {
    pub(crate) fn new(workers: usize) -> (Scheduler, Vec<WorkerSlot>) {
        let slots: Vec<WorkerSlot> = (0..workers)
            .map(|index| WorkerSlot {
                index,
                local: Worker::new_fifo(),
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
            ready: None,
        };
        (scheduler, slots)
    }

    /// A scheduler without workers: runnable shards wait for
    /// [`take_ready`](Self::take_ready) (the deterministic test driver).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn manual() -> Scheduler {
        let (mut scheduler, _) = Scheduler::new(0);
        scheduler.ready = Some(Mutex::new(Vec::new()));
        scheduler
    }

    /// Manual mode: whether a shard is runnable.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn has_ready(&self) -> bool {
        self.ready.as_ref().is_some_and(|r| !r.lock().is_empty())
    }

    /// Manual mode: removes one runnable shard, the one at the index `pick`
    /// chooses among `n` (`pick(n) < n`).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn take_ready(&self, pick: impl FnOnce(usize) -> usize) -> Option<u16> {
        let mut ready = self.ready.as_ref()?.lock();
        if ready.is_empty() {
            return None;
        }
        let index = pick(ready.len()).min(ready.len() - 1);
        // `remove`, not `swap_remove`: the order of the rest stays a function
        // of the seed and the history only.
        Some(ready.remove(index))
    }

    /// Makes a shard runnable (the caller has set its `scheduled` flag).
    pub(crate) fn push(&self, shard: u16) {
        if let Some(ready) = &self.ready {
            ready.lock().push(shard);
            return;
        }
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
        if let Some(index) = woken {
            self.unparkers[index].unpark();
        }
    }

    /// Starts `workers` threads running shards through `runner`.
    pub(crate) fn start<R: RunShard>(
        self: &Arc<Self>,
        slots: Vec<WorkerSlot>,
        runner: Arc<R>,
    ) -> std::io::Result<Vec<JoinHandle<()>>> {
        slots
            .into_iter()
            .map(|slot| {
                let scheduler = Arc::clone(self);
                let runner = Arc::clone(&runner);
                std::thread::Builder::new()
                    .name(format!("statefn-worker-{}", slot.index))
                    .spawn(move || scheduler.work(&slot, &*runner))
            })
            .collect()
    }

    /// Tells every worker to exit once it runs out of work.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for unparker in &self.unparkers {
            unparker.unpark();
        }
    }

    fn work<R: RunShard>(&self, slot: &WorkerSlot, runner: &R) {
        loop {
            if let Some(shard) = self.find(slot) {
                if runner.run_shard(shard) {
                    // Still has mail: keep it close, but let an idle worker steal it.
                    slot.local.push(shard);
                    self.wake_one();
                }
                continue;
            }
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            self.park(slot);
        }
    }

    fn park(&self, slot: &WorkerSlot) {
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
            // The timeout is a safety net only; wake-ups come from `wake_one`.
            slot.parker.park_timeout(Duration::from_millis(100));
        }
        let mut idle = self.idle.lock();
        if let Some(pos) = idle.iter().position(|&i| i == slot.index) {
            idle.swap_remove(pos);
            self.idle_count.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn find(&self, slot: &WorkerSlot) -> Option<u16> {
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
    /// be a scheduling bug.
    struct Counting {
        runs: Vec<AtomicU64>,
        running: Vec<AtomicBool>,
        rounds: u64,
        scheduled: Vec<AtomicBool>,
    }

    impl RunShard for Counting {
        fn run_shard(&self, shard: u16) -> bool {
            let i = usize::from(shard);
            assert!(
                !self.running[i].swap(true, Ordering::SeqCst),
                "shard ran twice at once"
            );
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
            scheduled: (0..shards).map(|_| AtomicBool::new(true)).collect(),
            rounds: 200,
        });
        let threads = scheduler.start(slots, Arc::clone(&runner)).expect("spawn");
        for shard in 0..shards {
            scheduler.push(u16::try_from(shard).expect("fits"));
        }
        while runner.runs.iter().any(|r| r.load(Ordering::SeqCst) < 200) {
            std::thread::sleep(Duration::from_millis(5));
        }
        scheduler.stop();
        for t in threads {
            t.join().expect("worker exits cleanly");
        }
        assert!(runner.runs.iter().all(|r| r.load(Ordering::SeqCst) == 200));
    }
}
