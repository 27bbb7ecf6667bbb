//! The runtime's notion of "now": the system clock, or a virtual clock that
//! only moves when a test says so (`statefn::testing`).
//!
//! Everything that stamps or compares wall-clock times (timer due times,
//! idempotency and egress retention, state expiry, dead-letter times, the
//! checkpoint interval) reads it through here, so a virtual clock makes all
//! of them deterministic. Pure I/O pacing (periodic fsync, spacing out
//! checkpoints of a large log) stays on real time.

#[cfg(any(test, feature = "testing"))]
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of unix-millisecond times.
#[derive(Debug, Clone, Default)]
pub(crate) enum Clock {
    /// The system clock.
    #[default]
    System,
    /// A clock that moves only when told to.
    #[cfg(any(test, feature = "testing"))]
    Virtual(Arc<AtomicU64>),
}

impl Clock {
    /// A virtual clock starting at `start_ms`.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn virtual_at(start_ms: u64) -> Self {
        Clock::Virtual(Arc::new(AtomicU64::new(start_ms)))
    }

    /// Now, in unix milliseconds.
    pub(crate) fn now_ms(&self) -> u64 {
        match self {
            Clock::System => system_now_ms(),
            #[cfg(any(test, feature = "testing"))]
            Clock::Virtual(now) => now.load(Ordering::Acquire),
        }
    }

    /// Moves a virtual clock forward to `to_ms` (never back); does nothing to
    /// the system clock.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn advance_to(&self, to_ms: u64) {
        if let Clock::Virtual(now) = self {
            now.fetch_max(to_ms, Ordering::AcqRel);
        }
    }
}

/// The system clock in unix milliseconds.
pub(crate) fn system_now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_virtual_clock_moves_only_forward_and_only_when_told() {
        let clock = Clock::virtual_at(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance_to(5_000);
        clock.advance_to(2_000);
        assert_eq!(clock.now_ms(), 5_000);
        let system = Clock::System.now_ms();
        assert!(system > 1_700_000_000_000, "{system}");
    }
}
