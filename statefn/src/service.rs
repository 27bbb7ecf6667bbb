//! [`Service`]: one abstraction for the runtime's background work.
//!
//! The log groups' syncers, the checkpointer, the egress appender, the timer
//! service and the workers each do their work in steps. In a running
//! runtime a thread loops over [`step`](Service::step), waiting for work
//! between steps; the test kit (`statefn::testing`) calls the same `step`
//! on its own thread without waiting, in an order drawn from its seed. So
//! tests run the production code, and there is one way to start, drive and
//! stop each component.

use std::{thread::JoinHandle, time::Duration};

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing was ready.
    Idle,
    /// It did some work; more may be ready.
    Worked,
    /// It has stopped for good: its thread may exit.
    Done,
}

/// Background work done in steps.
pub(crate) trait Service: Send + 'static {
    /// The name of its thread (`statefn-log-3`).
    fn name(&self) -> String;

    /// The longest its thread waits in one step: how often it looks at the
    /// clock when nothing arrives.
    fn tick(&self) -> Duration {
        Duration::from_millis(100)
    }

    /// Does the work that is ready; if there is none, waits up to `wait` for
    /// some (the test kit passes zero: a step never blocks it).
    fn step(&mut self, wait: Duration) -> Step;
}

/// Runs `service` on a thread of its own until it is done.
///
/// # Errors
///
/// When the thread cannot be started.
pub(crate) fn spawn(mut service: Box<dyn Service>) -> std::io::Result<JoinHandle<()>> {
    let tick = service.tick();
    std::thread::Builder::new()
        .name(service.name())
        .spawn(move || while service.step(tick) != Step::Done {})
}
