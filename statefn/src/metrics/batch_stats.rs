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
    /// The counts of the batch's first handler, inline: most batches run
    /// one handler, and a `Vec` was an allocation per batch, so per call
    /// at one caller (issue 14).
    first_handler: Option<HandlerCounts>,
    /// The counts of its other handlers.
    other_handlers: Vec<HandlerCounts>,
}

/// A handler's (function, handler) names and its counts by [`Counted`].
type HandlerCounts = (&'static str, &'static str, [u64; 4]);

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
            .first_handler
            .iter_mut()
            .chain(self.other_handlers.iter_mut())
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
                let counted = (function, handler, counts);
                match &self.first_handler {
                    None => self.first_handler = Some(counted),
                    Some(_) => self.other_handlers.push(counted),
                }
            }
        }
    }

    /// Adds the batch's counts to the recorder in effect. The labelled
    /// keys are built once per thread, as in [`record_call`] (building one
    /// per batch and handler was ~1,500 instructions, issue 14).
    pub(crate) fn record(&self) {
        if self.first_handler.is_some() {
            INVOCATION_KEYS.with_borrow_mut(|keys| {
                let handlers = self.first_handler.iter().chain(&self.other_handlers);
                for (function, handler, counts) in handlers {
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

#[cfg(all(test, feature = "http"))]
mod tests {
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::{BatchStats, Counted};

    /// The first handler's counts are kept inline, the others in a list:
    /// each handler of a batch still gets its own counts, by outcome.
    #[test]
    fn every_handler_of_a_batch_is_counted_under_its_own_labels() {
        let mut stats = BatchStats::default();
        let calls = [
            ("test.A", "one", Counted::Applied),
            ("test.A", "two", Counted::Applied),
            ("test.A", "one", Counted::Applied),
            ("test.B", "one", Counted::Failed),
            ("test.A", "two", Counted::Duplicate),
            ("test.A", "one", Counted::Rejected),
        ];
        for (function, handler, outcome) in calls {
            stats.count(function, handler, outcome);
        }
        assert_eq!(
            (stats.applied, stats.rejected, stats.failed, stats.duplicate),
            (3, 1, 1, 1)
        );
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || stats.record());
        let text = handle.render();
        for series in [
            r#"{function="test.A",handler="one",outcome="applied"} 2"#,
            r#"{function="test.A",handler="one",outcome="rejected"} 1"#,
            r#"{function="test.A",handler="two",outcome="applied"} 1"#,
            r#"{function="test.A",handler="two",outcome="duplicate"} 1"#,
            r#"{function="test.B",handler="one",outcome="failed"} 1"#,
        ] {
            assert!(
                text.contains(&format!("statefn_invocations_total{series}")),
                "{series} missing from:\n{text}"
            );
        }
        assert_eq!(
            text.matches("statefn_invocations_total{").count(),
            5,
            "{text}"
        );
    }
}
