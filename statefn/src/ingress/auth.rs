//! Bearer tokens (admin routes, egress reads), allowed hosts and browser origins:
//! who may use a route, checked before it does anything.

use axum::{
    http::{HeaderMap, StatusCode, header},
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

/// The allowed hosts, normalized for comparison: lower case, without a
/// trailing `.`.
pub(super) fn normalize_hosts(hosts: &[String]) -> Vec<String> {
    hosts
        .iter()
        .map(|host| host.trim().trim_end_matches('.').to_ascii_lowercase())
        .collect()
}

/// The host name of a `Host` header, without its port, lower case.
fn host_name(value: &str) -> String {
    host_part(value).to_ascii_lowercase()
}

/// The host name of a `Host` header, without its port and trailing dots,
/// as written (compared ignoring case: no lower-case copy per request).
fn host_part(value: &str) -> &str {
    let value = value.trim();
    let name = if value.starts_with('[') {
        // `[::1]:8080`: the brackets belong to the name.
        value
            .find(']')
            .and_then(|end| value.get(..=end))
            .unwrap_or(value)
    } else {
        value.rsplit_once(':').map_or(value, |(name, _port)| name)
    };
    name.trim_end_matches('.')
}

/// Whether `host` (any case) is allowed: any host when the list (lower
/// case) is empty; else a name on it, or under one written with a leading
/// `.`.
fn host_allowed(allowed: &[String], host: &str) -> bool {
    let ends_with = |suffix: &str| {
        host.len()
            .checked_sub(suffix.len())
            .and_then(|start| host.as_bytes().get(start..))
            .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix.as_bytes()))
    };
    allowed.is_empty()
        || allowed.iter().any(|a| match a.strip_prefix('.') {
            Some(parent) => host.eq_ignore_ascii_case(parent) || ends_with(a),
            None => a.eq_ignore_ascii_case(host),
        })
}

/// The 403 for a request addressed to a host that is not allowed (DNS
/// rebinding), or carrying an `Origin` header that is not an allowed
/// origin; `None` for a request that passes. Browsers send `Origin` on
/// cross-site requests (and on same-site POSTs); curl and other servers do
/// not, and pass. Run on every request by the ingress's one middleware
/// ([`observe`](super::observe::observe)), inside its span.
pub(super) fn refusal(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    if let Some(value) = headers.get(header::HOST) {
        let value = super::header_text(value);
        if !host_allowed(&state.allowed_hosts, host_part(&value)) {
            let host = host_name(&value);
            return Some(
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "host_not_allowed",
                    format!(
                        "requests for host `{host}` are refused; the server's operator can allow \
                     it (IngressConfig::allowed_hosts, --allowed-host)"
                    ),
                )
                .into_response(),
            );
        }
    }
    let mut origins = headers.get_all(header::ORIGIN).iter();
    let refused = origins.any(|origin| {
        let origin = origin.to_str().unwrap_or("").trim_end_matches('/');
        !state
            .allowed_origins
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(origin))
    });
    refused.then(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "requests from web pages of this origin are refused; the server's \
             operator can allow an origin (IngressConfig::allowed_origins)",
        )
        .into_response()
    })
}

#[cfg(test)]
mod tests {
    use super::{host_allowed, host_name, normalize_hosts};

    #[test]
    fn header_text_is_borrowed_when_utf8_and_lossy_otherwise() {
        use axum::http::HeaderValue;
        use std::borrow::Cow;
        let ascii = HeaderValue::from_static("LocalHost:8080");
        assert!(matches!(
            super::super::header_text(&ascii),
            Cow::Borrowed("LocalHost:8080")
        ));
        let latin1 = HeaderValue::from_bytes(b"caf\xe9.example").unwrap();
        assert_eq!(super::super::header_text(&latin1), "caf\u{fffd}.example");
        let utf8 = HeaderValue::from_bytes("café.example".as_bytes()).unwrap();
        assert_eq!(super::super::header_text(&utf8), "café.example");
    }

    #[test]
    fn host_names_lose_their_port_and_case() {
        assert_eq!(host_name("LocalHost:8080"), "localhost");
        assert_eq!(host_name("[::1]:80"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
        assert_eq!(host_name("example.com."), "example.com");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn a_leading_dot_allows_the_names_under_it_and_nothing_else() {
        let allowed = normalize_hosts(&[".Example.com".into(), "api.test".into()]);
        for host in [
            "example.com",
            "a.example.com",
            "b.a.example.com",
            "api.test",
        ] {
            assert!(host_allowed(&allowed, host), "{host}");
        }
        // Host names are compared ignoring case.
        for host in ["Example.COM", "A.example.Com", "API.test"] {
            assert!(host_allowed(&allowed, host), "{host}");
        }
        for host in [
            "evilexample.com",
            "example.com.evil",
            "x.api.test",
            "test",
            "EvilExample.com",
            "X.API.TEST",
        ] {
            assert!(!host_allowed(&allowed, host), "{host}");
        }
        assert!(host_allowed(&[], "anything"));
    }
}
