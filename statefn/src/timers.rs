//! The timer service: wakes shards when their timers are due.
//!
//! A timer's message lives in its shard (and, in durable mode, in the log),
//! not here: this only holds (due time, shard, timer id), ordered by due
//! time, and queues
//! [`Mail::TimerDue`](crate::protocol::envelope::Mail::TimerDue) to the
//! shard when the runtime's clock reaches it. A wake-up lost in a crash is
//! armed again by recovery, and the message is sent once.
//!
//! It holds each timer once: arming one twice keeps one entry, a cancelled
//! timer is dropped, and a recovered shard's entries are replaced by what
//! its rebuilt core holds. Shards arm only their window of timers due next
//! ([`timer_table`](crate::shard::timer_table)), so this stays small however
//! many timers are stored.
//!
//! Under a virtual clock (`statefn::testing`) no thread runs it: the test
//! kit steps it when it moves the clock, and reads
//! [`next_due`](Timers::next_due) to know where to move it.

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use parking_lot::{Condvar, Mutex};

use crate::{
    clock::Clock,
    protocol::ids::{ShardId, TimerId},
    service::{Service, Step},
};

/// A timer to arm: when, and whose. Ordered by due time first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerArm {
    /// Unix milliseconds on the runtime's clock.
    pub(crate) due_ms: u64,
    pub(crate) shard: ShardId,
    pub(crate) timer: TimerId,
}

/// The armed timers, earliest first.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    armed: Mutex<BTreeSet<TimerArm>>,
    /// Signalled when a timer is armed or the service stops.
    changed: Condvar,
    stopped: AtomicBool,
}

impl Timers {
    pub(crate) fn arm(&self, timer: TimerArm) {
        self.armed.lock().insert(timer);
        self.changed.notify_one();
    }

    /// Drops a timer that was cancelled or replaced (its shard would only
    /// find it gone).
    pub(crate) fn cancel(&self, timer: TimerArm) {
        self.armed.lock().remove(&timer);
    }

    /// After `shard` was rebuilt: what it armed before is replaced by
    /// `timers`, what its rebuilt core holds.
    pub(crate) fn replace_shard(&self, shard: ShardId, timers: Vec<TimerArm>) {
        let mut armed = self.armed.lock();
        armed.retain(|t| t.shard != shard);
        armed.extend(timers);
        self.changed.notify_one();
    }

    /// How many timers are armed.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.armed.lock().len()
    }

    /// The earliest armed due time (the test kit moves its clock there).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn next_due(&self) -> Option<u64> {
        earliest(&self.armed.lock())
    }

    /// Removes and returns the timers due at `now_ms`, earliest first.
    pub(crate) fn take_due(&self, now_ms: u64) -> Vec<TimerArm> {
        let mut armed = self.armed.lock();
        let mut due = Vec::new();
        while let Some(timer) = armed.first().copied() {
            if timer.due_ms > now_ms {
                break;
            }
            armed.pop_first();
            due.push(timer);
        }
        due
    }

    /// Stops the service (pending timers stay stored with their shards).
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let _heap = self.armed.lock();
        self.changed.notify_all();
    }
}

/// The earliest due time in `armed`.
fn earliest(armed: &BTreeSet<TimerArm>) -> Option<u64> {
    armed.first().map(|t| t.due_ms)
}

/// Fires due timers: a [`Service`].
pub(crate) struct TimerService {
    timers: Arc<Timers>,
    clock: Clock,
    fire: Box<dyn Fn(TimerArm) + Send>,
}

impl std::fmt::Debug for TimerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerService")
            .field("timers", &self.timers)
            .finish_non_exhaustive()
    }
}

impl TimerService {
    /// Fires the timers of `timers` as `clock` reaches them, through `fire`.
    pub(crate) fn new(
        timers: Arc<Timers>,
        clock: Clock,
        fire: impl Fn(TimerArm) + Send + 'static,
    ) -> Self {
        TimerService {
            timers,
            clock,
            fire: Box::new(fire),
        }
    }
}

impl Service for TimerService {
    fn name(&self) -> String {
        "statefn-timers".into()
    }

    fn step(&mut self, wait: Duration) -> Step {
        let due = self.timers.take_due(self.clock.now_ms());
        if !due.is_empty() {
            for timer in due {
                (self.fire)(timer);
            }
            return Step::Worked;
        }
        if self.timers.stopped.load(Ordering::SeqCst) {
            return Step::Done;
        }
        if !wait.is_zero() {
            let mut armed = self.timers.armed.lock();
            let now = self.clock.now_ms();
            let until_due =
                earliest(&armed).map(|due| Duration::from_millis(due.saturating_sub(now)));
            let wait = until_due.map_or(wait, |d| d.min(wait));
            if !wait.is_zero() && !self.timers.stopped.load(Ordering::SeqCst) {
                self.timers.changed.wait_for(&mut armed, wait);
            }
        }
        Step::Idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(due_ms: u64, shard: u16, timer: u64) -> TimerArm {
        TimerArm {
            due_ms,
            shard: ShardId(shard),
            timer: TimerId(timer),
        }
    }

    #[test]
    fn due_timers_come_in_order_and_the_rest_stay() {
        let timers = Timers::default();
        for t in [arm(30, 1, 3), arm(10, 0, 1), arm(20, 2, 2), arm(40, 0, 4)] {
            timers.arm(t);
        }
        assert_eq!(timers.next_due(), Some(10));
        assert_eq!(
            timers.take_due(30),
            vec![arm(10, 0, 1), arm(20, 2, 2), arm(30, 1, 3)]
        );
        assert_eq!(timers.next_due(), Some(40));
        assert!(timers.take_due(39).is_empty());
    }

    #[test]
    fn each_timer_is_held_once_and_cancelled_or_replaced_ones_go() {
        let timers = Timers::default();
        timers.arm(arm(10, 0, 1));
        timers.arm(arm(10, 0, 1));
        timers.arm(arm(20, 0, 2));
        timers.arm(arm(30, 1, 3));
        assert_eq!(timers.len(), 3);
        timers.cancel(arm(20, 0, 2));
        assert_eq!(timers.len(), 2);
        // A recovered shard 0 holds timer 1 and a new one: no duplicate.
        timers.replace_shard(ShardId(0), vec![arm(10, 0, 1), arm(50, 0, 4)]);
        assert_eq!(
            timers.take_due(100),
            vec![arm(10, 0, 1), arm(30, 1, 3), arm(50, 0, 4)]
        );
    }

    #[test]
    fn the_service_fires_what_its_clock_reached_and_stops() {
        let timers = Arc::new(Timers::default());
        let clock = Clock::virtual_at(100);
        let fired = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&fired);
        let mut service = TimerService::new(Arc::clone(&timers), clock.clone(), move |t| {
            seen.lock().push(t.timer);
        });
        timers.arm(arm(150, 0, 1));
        assert_eq!(service.step(Duration::ZERO), Step::Idle);
        clock.advance_to(150);
        assert_eq!(service.step(Duration::ZERO), Step::Worked);
        assert_eq!(*fired.lock(), vec![TimerId(1)]);
        timers.stop();
        assert_eq!(service.step(Duration::from_secs(60)), Step::Done);
    }
}
