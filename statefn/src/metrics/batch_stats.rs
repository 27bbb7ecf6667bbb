//! Invocation counts, summed per batch and recorded once per batch.

use metrics::Counter;

use super::{
    CACHE_HITS, CACHE_MISSES, INVOCATIONS, Kept,
    labelled::{CallNames, static_names},
};

/// An invocation's outcome, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counted {
    Applied,
    Rejected,
    Failed,
    Duplicate,
}

impl Counted {
    const ALL: [Counted; 4] = [
        Counted::Applied,
        Counted::Rejected,
        Counted::Failed,
        Counted::Duplicate,
    ];

    fn label(self) -> &'static str {
        match self {
            Counted::Applied => "applied",
            Counted::Rejected => "rejected",
            Counted::Failed => "failed",
            Counted::Duplicate => "duplicate",
        }
    }
}

/// Per-batch counts, recorded at the end of the batch.
#[derive(Debug, Default, Clone)]
pub(crate) struct BatchStats {
    pub(crate) applied: u64,
    pub(crate) rejected: u64,
    pub(crate) failed: u64,
    pub(crate) duplicate: u64,
    pub(crate) cache_hits: u64,
    pub(crate) cache_misses: u64,
    /// Counts by (function, handler), in order of first appearance: a
    /// batch touches few handlers, so a short list beats a map.
    by_handler: Vec<(&'static str, &'static str, [u64; 4])>,
}

impl BatchStats {
    /// Counts one invocation of `function`'s `handler`.
    pub(crate) fn count(
        &mut self,
        function: &'static str,
        handler: &'static str,
        outcome: Counted,
    ) {
        match outcome {
            Counted::Applied => self.applied += 1,
            Counted::Rejected => self.rejected += 1,
            Counted::Failed => self.failed += 1,
            Counted::Duplicate => self.duplicate += 1,
        }
        let slot = outcome as usize;
        // Names are static strings of the registry: compare pointers first.
        let same = |a: &'static str, b: &'static str| std::ptr::eq(a, b) || a == b;
        match self
            .by_handler
            .iter_mut()
            .find(|(f, h, _)| same(f, function) && same(h, handler))
        {
            Some((_, _, counts)) => {
                if let Some(n) = counts.get_mut(slot) {
                    *n += 1;
                }
            }
            None => {
                let mut counts = [0; 4];
                if let Some(n) = counts.get_mut(slot) {
                    *n = 1;
                }
                self.by_handler.push((function, handler, counts));
            }
        }
    }

    /// Adds the batch's counts to the recorder in effect. The labelled
    /// keys are built once per thread, as in [`record_call`] (building one
    /// per batch and handler was ~1,500 instructions, issue 14).
    pub(crate) fn record(&self) {
        if !self.by_handler.is_empty() {
            INVOCATION_KEYS.with_borrow_mut(|keys| {
                for (function, handler, counts) in &self.by_handler {
                    for (outcome, n) in Counted::ALL.iter().zip(counts) {
                        if *n == 0 {
                            continue;
                        }
                        let names = (static_names(function, handler), *outcome as usize);
                        let counter = keys.entry(names).or_insert_with(|| {
                            Kept::new(metrics::Key::from_parts(
                                INVOCATIONS,
                                vec![
                                    metrics::Label::from_static_parts("function", function),
                                    metrics::Label::from_static_parts("handler", handler),
                                    metrics::Label::from_static_parts("outcome", outcome.label()),
                                ],
                            ))
                        });
                        counter.record(|counter| counter.increment(*n));
                    }
                }
            });
        }
        if self.cache_hits > 0 || self.cache_misses > 0 {
            CACHE_COUNTERS.with_borrow_mut(|(hits, misses)| {
                if self.cache_hits > 0 {
                    hits.record(|counter| counter.increment(self.cache_hits));
                }
                if self.cache_misses > 0 {
                    misses.record(|counter| counter.increment(self.cache_misses));
                }
            });
        }
    }
}

thread_local! {
    /// [`BatchStats::record`]'s keys: one per registered handler and
    /// outcome, on each worker thread.
    static INVOCATION_KEYS: std::cell::RefCell<foldhash::HashMap<(CallNames, usize), Kept<Counter>>> =
        std::cell::RefCell::new(foldhash::HashMap::default());
    /// [`BatchStats::record`]'s state-cache hit and miss counters.
    static CACHE_COUNTERS: std::cell::RefCell<(Kept<Counter>, Kept<Counter>)> =
        std::cell::RefCell::new((
            Kept::new(metrics::Key::from_static_name(CACHE_HITS)),
            Kept::new(metrics::Key::from_static_name(CACHE_MISSES)),
        ));
}
