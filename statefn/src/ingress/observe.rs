//! Observability of the ingress: a tracing span and two metrics per request,
//! and `GET /metrics`.

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;

use super::{AppState, ServeError, auth, error::ApiError};

/// Latency buckets in seconds: from a cached read (~100 µs) to a slow disk.
const SECONDS_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Invocations per group commit.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

/// The handle of the recorder this module installed, if any.
static INSTALLED: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Installs a Prometheus recorder as the process's `metrics` recorder, once,
/// and returns its handle; later calls return the same handle. Histograms
/// whose names end in `_seconds` get latency buckets, the commit batch size
/// gets size buckets, and every statefn metric gets its help text
/// ([`metrics::describe`](crate::metrics::describe)).
///
/// [`serve`](super::serve) calls this when the config has no handle. Call it
/// yourself to give [`router`](super::router) a `/metrics`.
///
/// # Errors
///
/// [`ServeError::Metrics`] if another `metrics` recorder was installed first
/// (then render that one yourself, or pass its Prometheus handle in
/// [`IngressConfig::prometheus`](super::IngressConfig::prometheus)).
///
/// # Examples
///
/// ```
/// use statefn::ingress::{IngressConfig, install_prometheus_recorder};
///
/// let handle = install_prometheus_recorder()?;
/// metrics::counter!("demo_total").increment(1);
/// assert!(handle.render().contains("demo_total 1"));
/// let config = IngressConfig { prometheus: Some(handle), ..IngressConfig::default() };
/// # Ok::<(), statefn::ingress::ServeError>(())
/// ```
pub fn install_prometheus_recorder() -> Result<PrometheusHandle, ServeError> {
    let mut installed = INSTALLED
        .lock()
        .map_err(|_| ServeError::Metrics("a thread panicked while installing it".into()))?;
    if let Some(handle) = &*installed {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(crate::metrics::COMMIT_BATCH.into()),
                BATCH_BUCKETS,
            )
        })
        .map_err(|e| ServeError::Metrics(e.to_string()))?
        .install_recorder()
        .map_err(|e| ServeError::Metrics(e.to_string()))?;
    crate::metrics::describe();
    // Hot paths may keep its handles from now on.
    crate::metrics::learn_global_recorder();
    *installed = Some(handle.clone());
    Ok(handle)
}

/// `GET /metrics`.
pub(super) async fn render_metrics(State(state): State<Arc<AppState>>) -> Response {
    match &state.prometheus {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "metrics are off: give the ingress a Prometheus handle (IngressConfig::prometheus)",
        )
        .into_response(),
    }
}

/// The ingress's one middleware: wraps every request in a span, refuses
/// the hosts and browser origins not allowed ([`auth::refusal`]), and
/// records every request's count and duration, refused ones included.
/// One layer rather than one per concern: each `from_fn` layer boxed and
/// cloned services and futures on every request (~3,000 instructions a
/// request for two layers, issue 14).
pub(super) async fn observe(
    State(state): State<Arc<AppState>>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    // The route pattern, not the path: ids must not become label values.
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    observed(&state, route, request, |request| next.run(request)).await
}

/// What [`observe`] does around `next`, for a request of `route` (a route
/// pattern): also run by the [`Front`](super::front::Front) for the calls it
/// serves without the router, so that they are traced, checked and counted
/// exactly as the router's requests are.
pub(super) async fn observed<B, F, Fut>(
    state: &AppState,
    route: &str,
    request: Request<B>,
    next: F,
) -> Response
where
    F: FnOnce(Request<B>) -> Fut,
    Fut: Future<Output = Response>,
{
    let span = tracing::info_span!(
        "http",
        method = %request.method(),
        route = %route,
        status = tracing::field::Empty,
    );
    let started = Instant::now();
    let refused = span.in_scope(|| auth::refusal(state, request.headers()));
    let response = match refused {
        Some(refused) => refused,
        None => next(request).instrument(span.clone()).await,
    };
    let elapsed = started.elapsed();
    let status = response.status();
    span.record("status", status.as_u16());
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!(?elapsed, "request failed");
        } else {
            tracing::debug!(?elapsed, "request answered");
        }
    });
    crate::metrics::record_http_request(route, status.as_u16(), elapsed.as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use crate::metrics::{METRICS, MetricKind};

    /// Every metric in the exposition has a `# HELP` line: promtool's first
    /// complaint, checked here without promtool.
    #[test]
    fn every_metric_rendered_has_help_text() {
        let handle = super::install_prometheus_recorder().expect("the recorder");
        for metric in METRICS {
            match metric.kind {
                MetricKind::Counter => metrics::counter!(metric.name).increment(1),
                MetricKind::Gauge => metrics::gauge!(metric.name).set(1.0),
                MetricKind::Histogram => metrics::histogram!(metric.name).record(0.5),
            }
        }
        let text = handle.render();
        let typed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
            .collect();
        for metric in METRICS {
            assert!(
                typed.contains(&metric.name),
                "{} not rendered: {text}",
                metric.name
            );
        }
        for name in typed {
            let help = format!("# HELP {name} ");
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&help) && l.len() > help.len()),
                "{name} has no help text: {text}"
            );
        }
    }
}
