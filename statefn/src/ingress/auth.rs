//! Bearer tokens (admin routes, egress reads) and allowed browser origins:
//! who may use a route, checked before it does anything.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use subtle::ConstantTimeEq;

use super::{AppState, error::ApiError};

/// Accepts the request only with `Authorization: Bearer <expected>`; else 401
/// with `refusal` as the message. The comparison takes the same time wherever
/// the first wrong byte is, so response times do not reveal the token byte
/// by byte (only its length).
pub(super) fn bearer(expected: &str, headers: &HeaderMap, refusal: &str) -> Result<(), ApiError> {
    let refused = || {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", refusal)
            .with_header(header::WWW_AUTHENTICATE, "Bearer")
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .ok_or_else(refused)?;
    if bool::from(given.ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(refused())
    }
}

/// The allowed browser origins, normalized for comparison: lower case,
/// without a trailing `/`.
pub(super) fn normalize_origins(origins: &[String]) -> Vec<String> {
    origins
        .iter()
        .map(|origin| {
            let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
            if !origin.contains("://") && origin != "null" {
                tracing::warn!(
                    %origin,
                    "an allowed origin without a scheme never matches: write it as `https://host[:port]`"
                );
            }
            origin
        })
        .collect()
}

/// Middleware: refuses with 403 any request carrying an `Origin` header that
/// is not an allowed origin. Browsers send `Origin` on cross-site requests
/// (and on same-site POSTs); curl and other servers do not, and pass.
pub(super) async fn allowed_origin(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let mut origins = request.headers().get_all(header::ORIGIN).iter();
    let refused = origins.any(|origin| {
        let origin = origin.to_str().unwrap_or("").trim_end_matches('/');
        !state
            .allowed_origins
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(origin))
    });
    if refused {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "requests from web pages of this origin are refused; the server's \
             operator can allow an origin (IngressConfig::allowed_origins)",
        )
        .into_response();
    }
    next.run(request).await
}
