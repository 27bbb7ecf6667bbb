//! [`Service`]: one abstraction for the runtime's background work.
//!
//! The log groups' syncers, the checkpointer, the egress appender, the timer
//! service and the workers each do their work in steps. In a running
//! runtime a thread loops over [`step`](Service::step), waiting for work
//! between steps; the test kit (`statefn::testing`) calls the same `step`
//! on its own thread without waiting, in an order drawn from its seed. So
//! tests run the production code, and there is one way to start, drive and
//! stop each component.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    thread::JoinHandle,
    time::Duration,
};

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

    /// A step panicked (a bug in statefn: the runtime survives it): put
    /// the service back in a state it can go on from. The default goes on
    /// as it is.
    fn after_panic(&mut self) -> Step {
        Step::Idle
    }
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
        .spawn(move || supervise(service.as_mut(), tick))
}

/// The first pause after a panicking step; it doubles up to
/// [`MAX_PANIC_PAUSE`] while steps keep panicking, so that a service that
/// panics at every step logs loudly but does not spin.
const FIRST_PANIC_PAUSE: Duration = Duration::from_millis(10);
const MAX_PANIC_PAUSE: Duration = Duration::from_secs(5);

/// Steps `service` until it is done. A panicking step is a bug in statefn;
/// the thread survives it: the panic is logged and counted, the service
/// puts itself back together ([`Service::after_panic`]) and goes on, so a
/// bug never strands the work that waits for this thread (or shutdown).
fn supervise(service: &mut dyn Service, tick: Duration) {
    let mut pause = FIRST_PANIC_PAUSE;
    loop {
        let step = catch_unwind(AssertUnwindSafe(|| service.step(tick))).unwrap_or_else(|panic| {
            let name = service.name();
            tracing::error!(
                service = %name,
                panic = %crate::registry::panic_message(&*panic),
                "statefn bug: a background thread panicked; it recovers and goes on"
            );
            metrics::counter!(crate::metrics::PANICS, "where" => name).increment(1);
            std::thread::sleep(pause);
            pause = (pause * 2).min(MAX_PANIC_PAUSE);
            catch_unwind(AssertUnwindSafe(|| service.after_panic())).unwrap_or(Step::Idle)
        });
        match step {
            Step::Done => return,
            Step::Worked => pause = FIRST_PANIC_PAUSE,
            Step::Idle => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    /// Panics in its first step, then finishes.
    struct Flaky {
        steps: usize,
        recovered: Arc<AtomicUsize>,
    }

    impl Service for Flaky {
        fn name(&self) -> String {
            "statefn-flaky".into()
        }

        fn step(&mut self, _wait: Duration) -> Step {
            self.steps += 1;
            assert!(self.steps > 1, "a bug in a background service");
            Step::Done
        }

        fn after_panic(&mut self) -> Step {
            self.recovered.fetch_add(1, Ordering::SeqCst);
            Step::Idle
        }
    }

    #[test]
    fn a_panicking_step_is_survived_and_the_service_recovers() {
        let recovered = Arc::new(AtomicUsize::new(0));
        let thread = spawn(Box::new(Flaky {
            steps: 0,
            recovered: Arc::clone(&recovered),
        }))
        .expect("spawns");
        thread
            .join()
            .expect("the thread ends normally, not by the panic");
        assert_eq!(recovered.load(Ordering::SeqCst), 1);
    }
}
