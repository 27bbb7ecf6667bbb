//! Arms shard timers: one tokio task keeps a heap of due times and tells the
//! owning shard when one is due. The timer's message itself lives in the
//! shard (and, in durable mode, in its log), so a lost wake-up is re-armed on
//! recovery and the message is sent once.
//!
//! Under a virtual clock (`statefn::testing`) there is no task: the heap is
//! kept here and the test driver takes the due timers when it moves the clock.

use std::{cmp::Reverse, collections::BinaryHeap, time::Duration};

use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::clock::system_now_ms;

/// A timer to arm: (due unix millis, shard, timer id).
pub(crate) type Arm = (u64, u16, u64);

/// Where armed timers go.
#[derive(Debug)]
pub(crate) enum TimerService {
    /// To the tokio timer task.
    Task(mpsc::UnboundedSender<Arm>),
    /// Into a heap the test driver drains as its virtual clock moves.
    Manual(Mutex<BinaryHeap<Reverse<Arm>>>),
}

impl TimerService {
    /// Starts the timer task on the current tokio runtime; `fire` is called
    /// with (shard, timer id) when a timer is due.
    pub(crate) fn start(
        fire: impl Fn(u16, u64) + Send + 'static,
    ) -> (TimerService, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(rx, fire));
        (TimerService::Task(tx), task)
    }

    /// A timer heap without a task, for a virtual clock.
    pub(crate) fn manual() -> TimerService {
        TimerService::Manual(Mutex::new(BinaryHeap::new()))
    }

    pub(crate) fn arm(&self, timer: Arm) {
        match self {
            // Fails only after shutdown, when timers are no longer served.
            TimerService::Task(tx) => {
                let _ = tx.send(timer);
            }
            TimerService::Manual(heap) => heap.lock().push(Reverse(timer)),
        }
    }

    /// Manual mode: the earliest armed due time.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn next_due(&self) -> Option<u64> {
        match self {
            TimerService::Task(_) => None,
            TimerService::Manual(heap) => heap.lock().peek().map(|Reverse((due, _, _))| *due),
        }
    }

    /// Manual mode: removes and returns the timers due at `now_ms`, earliest
    /// first, as (shard, timer id).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn take_due(&self, now_ms: u64) -> Vec<(u16, u64)> {
        let TimerService::Manual(heap) = self else {
            return Vec::new();
        };
        let mut heap = heap.lock();
        let mut due = Vec::new();
        while let Some(Reverse((at, shard, id))) = heap.peek().copied() {
            if at > now_ms {
                break;
            }
            heap.pop();
            due.push((shard, id));
        }
        due
    }
}

async fn run(mut rx: mpsc::UnboundedReceiver<Arm>, fire: impl Fn(u16, u64)) {
    let mut heap: BinaryHeap<Reverse<Arm>> = BinaryHeap::new();
    loop {
        let now = system_now_ms();
        while let Some(Reverse((due, shard, id))) = heap.peek().copied() {
            if due > now {
                break;
            }
            heap.pop();
            fire(shard, id);
        }
        let sleep = heap
            .peek()
            .map(|Reverse((due, _, _))| Duration::from_millis(due.saturating_sub(now)));
        tokio::select! {
            armed = rx.recv() => match armed {
                Some(arm) => heap.push(Reverse(arm)),
                None => return,
            },
            () = sleep_or_forever(sleep) => {}
        }
    }
}

async fn sleep_or_forever(duration: Option<Duration>) {
    match duration {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_heap_gives_due_timers_in_order_and_keeps_the_rest() {
        let timers = TimerService::manual();
        for arm in [(30, 1, 3), (10, 0, 1), (20, 2, 2), (40, 0, 4)] {
            timers.arm(arm);
        }
        assert_eq!(timers.next_due(), Some(10));
        assert_eq!(timers.take_due(30), vec![(0, 1), (2, 2), (1, 3)]);
        assert_eq!(timers.next_due(), Some(40));
        assert!(timers.take_due(39).is_empty());
    }
}
