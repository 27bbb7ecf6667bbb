//! Work that must not slow the serving threads down runs at a lower CPU
//! priority: a log group replaying its log after a failure, while the other
//! groups keep serving on the same cores.
//!
//! The replay runs on a thread of its own, niced by [`NICENESS`] (Linux; a
//! plain thread elsewhere), which the syncer joins: an unprivileged thread
//! can lower its priority but not raise it back, and the syncer must commit
//! at full priority once its group serves again. On a busy machine the
//! scheduler then gives the healthy groups' workers, syncers and callers
//! about ten times the replay's share of a core (CFS weights 1,024 against
//! 110); on an idle one the replay runs as fast as before.

use std::sync::Mutex;

/// How much lower than the calling thread: nice +10.
const NICENESS: i32 = 10;

/// Runs `work` on a thread named `name` at a lower CPU priority and returns
/// its result; a panic in `work` resumes on the calling thread (the syncer
/// catches it as a failed recovery). If no thread can be started, `work`
/// runs here at the caller's priority.
pub(super) fn run<T: Send>(name: String, work: impl FnOnce() -> T + Send) -> T {
    // Shared so that `work` is still here if the thread cannot start.
    let slot = Mutex::new(Some(work));
    let take = || {
        slot.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    };
    let ran = std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name(name)
            .spawn_scoped(scope, || {
                lower_this_thread();
                take().map(|work| work())
            });
        match spawned {
            Ok(thread) => Some(
                thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a low-priority thread; the work runs here");
                None
            }
        }
    });
    match ran.flatten() {
        Some(done) => done,
        // The thread never started, so `work` is still in the slot.
        None => match take() {
            Some(work) => work(),
            None => unreachable!("the work ran on the thread, which returned its result"),
        },
    }
}

/// Lowers the calling thread's priority by [`NICENESS`] (at most to 19).
#[cfg(target_os = "linux")]
fn lower_this_thread() {
    use rustix::{process, thread};
    let me = Some(thread::gettid());
    let lowered = process::getpriority_process(me)
        .and_then(|now| process::setpriority_process(me, (now + NICENESS).min(19)));
    if let Err(e) = lowered {
        tracing::debug!(error = %e, "cannot lower the thread's priority; it runs at its own");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_this_thread() {}

#[cfg(test)]
#[cfg(target_os = "linux")]
mod tests {
    use rustix::{process, thread};

    use super::*;

    fn my_priority() -> i32 {
        process::getpriority_process(Some(thread::gettid())).expect("reads its own priority")
    }

    #[test]
    fn work_runs_on_another_thread_at_a_lower_priority_and_the_caller_keeps_its_own() {
        let caller = my_priority();
        let (name, priority) = run("statefn-replay-test".into(), || {
            let me = std::thread::current();
            (me.name().map(str::to_owned), my_priority())
        });
        assert_eq!(name.as_deref(), Some("statefn-replay-test"));
        assert_eq!(priority, (caller + NICENESS).min(19), "caller at {caller}");
        assert_eq!(
            my_priority(),
            caller,
            "the caller's priority must not change"
        );
    }

    #[test]
    fn a_panic_in_the_work_reaches_the_caller() {
        let caught =
            std::panic::catch_unwind(|| run("statefn-replay-test".into(), || panic!("boom")));
        let panic = caught.expect_err("the panic resumes on the caller");
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"boom"));
    }
}
