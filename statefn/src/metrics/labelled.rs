//! Metrics recorded on hot paths (every call, batch or request) through
//! labelled keys built once and kept, not once per record: building and
//! hashing a labelled key cost ~1,000-1,500 instructions, up to 11% of an
//! in-memory call (issue 14). The handles the global recorder gives for
//! them are kept too ([`Kept`]); any other recorder in effect is asked on
//! every record, and a recorder installed later (as the ingress does) sees
//! the next ones.

use std::time::Instant;

#[cfg(feature = "http")]
use metrics::Counter;
use metrics::{Gauge, Histogram};

use super::{CALL_DURATION, FUNCTION_MAIL_BYTES, Kept, MAILBOX_DEPTH};
#[cfg(feature = "http")]
use super::{HTTP_REQUEST_DURATION, HTTP_REQUESTS};

/// Records one call's latency (a reply came), labelled by the registered
/// names of its function type and handler.
///
/// The labelled key is built once per thread and label pair, not per call:
/// building and hashing it cost ~1,000 instructions, 11% of an in-memory
/// call (issue 14); the global recorder's histogram is kept with it
/// ([`Kept`]: a recorder installed later, as the ingress does, sees the
/// next calls).
pub(crate) fn record_call(function: &'static str, handler: &'static str, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    CALL_KEYS.with_borrow_mut(|keys| {
        keys.entry(static_names(function, handler))
            .or_insert_with(|| {
                Kept::new(metrics::Key::from_parts(
                    CALL_DURATION,
                    vec![
                        metrics::Label::from_static_parts("function", function),
                        metrics::Label::from_static_parts("handler", handler),
                    ],
                ))
            })
            .record(|histogram| histogram.record(seconds));
    });
}

/// A shard's gauges, set after every batch: their labelled keys are built
/// once per shard, not per batch (building two keys with a `shard` label
/// was ~1.5% of an in-memory call's CPU at 64 callers, issue 14). As with
/// [`record_call`], the global recorder's handles are kept.
#[derive(Debug)]
pub(crate) struct ShardGauges {
    /// The mailbox depth and function-mail bytes: one worker sets them at a
    /// time (the one running the shard's batch), so the lock is uncontended.
    gauges: parking_lot::Mutex<(Kept<Gauge>, Kept<Gauge>)>,
}

impl ShardGauges {
    pub(crate) fn new(shard: &str) -> Self {
        let key = |name: &'static str| {
            Kept::new(metrics::Key::from_parts(
                name,
                vec![metrics::Label::new("shard", shard.to_owned())],
            ))
        };
        ShardGauges {
            gauges: parking_lot::Mutex::new((key(MAILBOX_DEPTH), key(FUNCTION_MAIL_BYTES))),
        }
    }

    /// Its mailbox's depth and the bytes of the messages from functions in it.
    pub(crate) fn set(&self, depth: usize, function_bytes: u64) {
        let (depth_gauge, bytes_gauge) = &mut *self.gauges.lock();
        depth_gauge.record(|gauge| gauge.set(depth as f64));
        bytes_gauge.record(|gauge| gauge.set(function_bytes as f64));
    }
}

/// Counts one HTTP request and records its duration, labelled by its
/// route pattern (and the count by its status too). The keys are built once
/// per thread, route and status (building them cost ~2 allocations and
/// ~1,500 instructions a request, issue 14), with the global recorder's
/// handles, as in [`record_call`].
#[cfg(feature = "http")]
pub(crate) fn record_http_request(route: &str, status: u16, seconds: f64) {
    HTTP_KEYS.with_borrow_mut(|keys| {
        let by_route = keys.entry(status).or_default();
        if !by_route.contains_key(route) {
            let label = |name: &'static str, value: String| metrics::Label::new(name, value);
            let count = metrics::Key::from_parts(
                HTTP_REQUESTS,
                vec![
                    label("route", route.to_owned()),
                    label("status", status.to_string()),
                ],
            );
            let duration = metrics::Key::from_parts(
                HTTP_REQUEST_DURATION,
                vec![label("route", route.to_owned())],
            );
            by_route.insert(route.to_owned(), (Kept::new(count), Kept::new(duration)));
        }
        if let Some((count, duration)) = by_route.get_mut(route) {
            count.record(|counter| counter.increment(1));
            duration.record(|histogram| histogram.record(seconds));
        }
    });
}

/// [`record_http_request`]'s keys (request count, duration), by status and
/// route pattern.
#[cfg(feature = "http")]
type HttpKeys = foldhash::HashMap<u16, foldhash::HashMap<String, (Kept<Counter>, Kept<Histogram>)>>;

/// The label strings of a call's key, by address and length (static
/// strings: their addresses name them).
pub(super) type CallNames = ((usize, usize), (usize, usize));

/// `function` and `handler` as a [`CallNames`]: a cached key's identity.
pub(super) fn static_names(function: &'static str, handler: &'static str) -> CallNames {
    (
        (function.as_ptr().addr(), function.len()),
        (handler.as_ptr().addr(), handler.len()),
    )
}

/// What `metrics::counter!`, `gauge!` and `histogram!` would give a call
/// site here: the metadata every cached key is registered with.
pub(super) static METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

thread_local! {
    /// [`record_call`]'s keys: one per registered handler, on each thread
    /// that awaits calls.
    static CALL_KEYS: std::cell::RefCell<foldhash::HashMap<CallNames, Kept<Histogram>>> =
        std::cell::RefCell::new(foldhash::HashMap::default());
    /// [`record_http_request`]'s keys (request count, duration) by status
    /// and route pattern, on each thread that serves requests.
    #[cfg(feature = "http")]
    static HTTP_KEYS: std::cell::RefCell<HttpKeys> =
        std::cell::RefCell::new(foldhash::HashMap::default());
}

#[cfg(test)]
mod tests {
    /// The call-duration keys are built once per thread: the series must
    /// still carry the labels, and a recorder that comes after the first
    /// calls (or a second one) must still see every call.
    #[cfg(feature = "http")]
    #[test]
    fn call_durations_keep_their_labels_and_reach_every_recorder_in_effect() {
        use metrics_exporter_prometheus::PrometheusBuilder;
        let started = std::time::Instant::now();
        // No recorder yet: recorded nowhere, but the key is cached now.
        super::record_call("test.Fn", "go", started);
        let series = r#"statefn_call_duration_seconds_count{function="test.Fn",handler="go"}"#;
        for calls in [1, 2] {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::with_local_recorder(&recorder, || {
                for _ in 0..calls {
                    super::record_call("test.Fn", "go", started);
                }
                super::record_call("test.Fn", "stop", started);
            });
            let text = handle.render();
            assert!(text.contains(&format!("{series} {calls}")), "{text}");
            assert!(text.contains(r#"handler="stop"} 1"#), "{text}");
        }
    }

    /// The invocation counts, HTTP request metrics and shard gauges reuse
    /// keys built once: the series must still carry every label, and each
    /// recorder in effect must see every count.
    #[cfg(feature = "http")]
    #[test]
    fn cached_keys_keep_their_labels_and_reach_every_recorder_in_effect() {
        use metrics_exporter_prometheus::PrometheusBuilder;
        let batch = |applied: u64| {
            let mut stats = crate::metrics::BatchStats::default();
            for _ in 0..applied {
                stats.count("test.Fn", "go", crate::metrics::Counted::Applied);
            }
            stats.count("test.Fn", "go", crate::metrics::Counted::Rejected);
            stats
        };
        let gauges = super::ShardGauges::new("7");
        // No recorder yet: recorded nowhere, but the keys are cached now.
        batch(1).record();
        super::record_http_request("/v1/{type}/{id}/{handler}", 200, 0.001);
        gauges.set(3, 4);
        for n in [1_u64, 2] {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::with_local_recorder(&recorder, || {
                batch(n).record();
                for _ in 0..n {
                    super::record_http_request("/v1/{type}/{id}/{handler}", 200, 0.001);
                }
                super::record_http_request("/v1/{type}/{id}/{handler}", 503, 0.001);
                gauges.set(usize::try_from(n).expect("small"), n * 10);
            });
            let text = handle.render();
            for series in [
                format!(
                    r#"statefn_invocations_total{{function="test.Fn",handler="go",outcome="applied"}} {n}"#
                ),
                r#"statefn_invocations_total{function="test.Fn",handler="go",outcome="rejected"} 1"#
                    .to_owned(),
                format!(
                    r#"statefn_http_requests_total{{route="/v1/{{type}}/{{id}}/{{handler}}",status="200"}} {n}"#
                ),
                r#"statefn_http_requests_total{route="/v1/{type}/{id}/{handler}",status="503"} 1"#
                    .to_owned(),
                format!(
                    r#"statefn_http_request_duration_seconds_count{{route="/v1/{{type}}/{{id}}/{{handler}}"}} {}"#,
                    n + 1
                ),
                format!(r#"statefn_mailbox_depth{{shard="7"}} {n}"#),
                format!(r#"statefn_function_mail_bytes{{shard="7"}} {}"#, n * 10),
            ] {
                assert!(text.contains(&series), "{series} missing from:\n{text}");
            }
        }
    }
}
