//! The front door of a [`Server`](super::Server): serves the call route,
//! `POST /v1/{type}/{id}/{handler}`, itself, and hands every other request
//! to the router.
//!
//! Why: the call route is what the ingress is for, and through axum's router
//! a call paid for machinery it does not use (issue 14, measured with
//! `benches/http_callgrind.sh`): the route table's parameters copied into
//! the request's extensions, `Path` reading them into owned strings, the
//! middleware layer's boxed service clones and boxed futures. Here the three
//! segments are borrowed from the request's URI (percent-decoded only when
//! they hold a `%`) and the call runs under the same observation
//! ([`observed`]) as the router's requests: the same span, host and origin
//! checks, metrics and route label.
//!
//! What the router would do with these requests is kept: a path matches when
//! it is `/v1/` followed by exactly three segments, the last one not empty
//! (as axum's route table matches them; the three-segment paths under `/v1/`
//! are all calls, since no other route has three segments there); a segment that
//! is not UTF-8 once decoded is the same 400 `invalid_path`. Other methods
//! and paths go to the router (405, 404, `/send`...). The router alone
//! ([`router`](super::router), for your own server) serves calls as before;
//! `examples/tests/http_front.rs` checks that both answer alike.

use std::{borrow::Cow, convert::Infallible, future::Future, pin::Pin, sync::Arc};

use axum::{
    Router,
    extract::Request,
    http::Method,
    response::{IntoResponse, Response},
};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use tower_service::Service as _;

use super::{AppState, error::ApiError, invoke, observe::observed};

/// The call route's pattern: its `route` label and span field.
const CALL_ROUTE: &str = "/v1/{type}/{id}/{handler}";

/// The names of the call route's parameters, in order (for the message of
/// a segment that is not UTF-8, as axum words it).
const CALL_PARAMS: [&str; 3] = ["type", "id", "handler"];

/// The service a [`Server`](super::Server) gives hyper for every connection.
#[derive(Debug, Clone)]
pub(super) struct Front {
    state: Arc<AppState>,
    router: Router,
}

impl Front {
    /// `router` must be the one [`router`](super::router) built over `state`.
    pub(super) fn new(state: Arc<AppState>, router: Router) -> Front {
        Front { state, router }
    }
}

impl hyper::service::Service<Request<Incoming>> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        if request.method() == Method::POST && call_segments(request.uri().path()).is_some() {
            let state = Arc::clone(&self.state);
            return Box::pin(serve_call(state, request));
        }
        Box::pin(self.router.clone().call(request))
    }
}

/// A call, observed as the router's requests are.
/// hyper's body is read as it is, not boxed into axum's `Body`.
async fn serve_call(
    state: Arc<AppState>,
    request: Request<Incoming>,
) -> Result<Response, Infallible> {
    Ok(observed(&state, CALL_ROUTE, request, |request| async {
        let (parts, body) = request.into_parts();
        let answer = match call_target(parts.uri.path()) {
            Ok([type_name, id, handler]) => {
                invoke::call_target(&state, &type_name, &id, &handler, &parts.headers, body).await
            }
            Err(refused) => Err(refused),
        };
        answer.into_response()
    })
    .await)
}

/// The three segments of a call's path (`/v1/{type}/{id}/{handler}`), still
/// percent-encoded; `None` for any other path. As in axum's route table,
/// the type and id may be empty, the handler may not (`/v1/a/b/` is no
/// route: 404).
fn call_segments(path: &str) -> Option<[&str; 3]> {
    let mut segments = path.strip_prefix("/v1/")?.split('/');
    let three = [segments.next()?, segments.next()?, segments.next()?];
    (!three[2].is_empty() && segments.next().is_none()).then_some(three)
}

/// The call's type, id and handler, percent-decoded; the 400 `invalid_path`
/// that axum's `Path` would give for one that is not UTF-8.
fn call_target(path: &str) -> Result<[Cow<'_, str>; 3], ApiError> {
    let segments = call_segments(path)
        .ok_or_else(|| invoke::invalid_path("Invalid URL: not a call's path"))?;
    let mut decoded = segments.map(|s| Ok(Cow::Borrowed(s)));
    for ((slot, segment), name) in decoded.iter_mut().zip(segments).zip(CALL_PARAMS) {
        *slot = percent_decode_str(segment)
            .decode_utf8()
            .map_err(|_| invoke::invalid_path(&format!("Invalid URL: Invalid UTF-8 in `{name}`")));
    }
    let [type_name, id, handler] = decoded;
    Ok([type_name?, id?, handler?])
}

#[cfg(test)]
mod tests {
    use super::{call_segments, call_target};

    #[test]
    fn only_three_segments_under_v1_are_a_call() {
        assert_eq!(
            call_segments("/v1/Account/alice/deposit"),
            Some(["Account", "alice", "deposit"])
        );
        assert_eq!(
            call_segments("/v1/Account//deposit"),
            Some(["Account", "", "deposit"])
        );
        assert_eq!(call_segments("/v1//b/c"), Some(["", "b", "c"]));
        for other in [
            "/v1/a/b/",
            "/v1/Account/alice/deposit/send",
            "/v1/Account/alice/deposit/",
            "/v1/invocations/x",
            "/v1/openapi.json",
            "/v2/Account/alice/deposit",
            "/v1",
            "/",
            "/admin/state/Account/alice",
        ] {
            assert_eq!(call_segments(other), None, "{other}");
        }
    }

    #[test]
    fn segments_are_percent_decoded_and_must_be_utf8() {
        let [t, id, h] = call_target("/v1/Acc%6Funt/a%2Fb%20c/deposit").unwrap();
        assert_eq!((&*t, &*id, &*h), ("Account", "a/b c", "deposit"));
        assert!(matches!(id, std::borrow::Cow::Owned(_)));
        assert!(matches!(h, std::borrow::Cow::Borrowed(_)));
        for (path, name) in [
            ("/v1/%FF/a/deposit", "type"),
            ("/v1/Account/%FF/deposit", "id"),
            ("/v1/Account/a/%C3", "handler"),
        ] {
            let refused = format!("{:?}", call_target(path).unwrap_err());
            let message =
                format!("\"the path cannot be read: Invalid URL: Invalid UTF-8 in `{name}`\"");
            assert!(refused.contains(&message), "{path}: {refused}");
            assert!(refused.contains("\"invalid_path\""), "{path}: {refused}");
        }
    }
}
