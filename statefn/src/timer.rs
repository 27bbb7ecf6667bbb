//! Arms shard timers: one tokio task keeps a heap of due times and tells the
//! owning shard when one is due. The timer's message itself lives in the
//! shard (and, in durable mode, in its log), so a lost wake-up is re-armed on
//! recovery and the message is sent once.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::sync::mpsc;

/// A timer to arm: (due unix millis, shard, timer id).
pub(crate) type Arm = (u64, u16, u64);

/// Sends timers to the timer task.
#[derive(Debug, Clone)]
pub(crate) struct TimerService {
    tx: mpsc::UnboundedSender<Arm>,
}

impl TimerService {
    /// Starts the timer task on the current tokio runtime; `fire` is called
    /// with (shard, timer id) when a timer is due.
    pub(crate) fn start(
        fire: impl Fn(u16, u64) + Send + 'static,
    ) -> (TimerService, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(rx, fire));
        (TimerService { tx }, task)
    }

    pub(crate) fn arm(&self, timer: Arm) {
        // Fails only after shutdown, when timers are no longer served.
        let _ = self.tx.send(timer);
    }
}

async fn run(mut rx: mpsc::UnboundedReceiver<Arm>, fire: impl Fn(u16, u64)) {
    let mut heap: BinaryHeap<Reverse<Arm>> = BinaryHeap::new();
    loop {
        let now = now_millis();
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

pub(crate) fn now_millis() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}
