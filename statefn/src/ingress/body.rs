//! A request body as handler arguments: checked for type, size, encoding and
//! depth before it is parsed, so that every bad body gets its own clear error,
//! and read within a deadline, so that a client trickling it cannot hold the
//! connection.

use std::{task::Poll, time::Duration};

use axum::{
    body::{Bytes, HttpBody},
    http::{HeaderMap, StatusCode, header},
};
use http_body_util::BodyExt;
use serde_json::Value;

use super::{MAX_JSON_DEPTH, error::ApiError};

/// How much of an oversized body is still read (and thrown away) before the
/// 413 goes out. Closing a connection with unread data makes TCP reset it,
/// and a client still sending its body may then never see the 413; bodies
/// past this are refused without reading, reset or not.
const DRAIN_BUDGET: usize = 8 << 20;

/// Reads the arguments of a call: `Null` for no body (the runtime reads it
/// as no arguments), else the parsed JSON. The body must arrive within
/// `timeout` (else 408) and be declared JSON, even when empty (else 415).
///
/// Generic over the body, so that the [`Front`](super::front::Front) reads
/// hyper's own body without boxing it into axum's.
pub(super) async fn read_args<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
    timeout: Duration,
) -> Result<Value, ApiError>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let read = read_bounded(headers, body, limit);
    tokio::pin!(read);
    // A body that is already here (almost every one) is read without
    // arming the timer: creating it costs more than reading a small body.
    let bytes = match futures::poll!(read.as_mut()) {
        Poll::Ready(bytes) => Ok(bytes),
        Poll::Pending => tokio::time::timeout(timeout, read).await,
    };
    let Ok(bytes) = bytes else {
        return Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the body did not arrive within {} s; nothing was called",
                timeout.as_secs_f64()
            ),
        )
        .closing());
    };
    let bytes = bytes?;
    // Checked even without a body: a browser sends a JSON content type to
    // another site only after a CORS preflight that the ingress does not
    // grant, so this is what keeps web pages (forms, beacons, `no-cors`
    // fetches) from calling handlers.
    let content_type = headers.get(header::CONTENT_TYPE).map(super::header_text);
    if !content_type.as_deref().is_some_and(is_json) {
        let given = content_type.map_or_else(|| "none".to_owned(), |t| format!("{t:?}"));
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "calls need the header `Content-Type: application/json`, even with no body \
                 (given: {given})"
            ),
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        ApiError::bad_request(
            "invalid_utf8",
            format!(
                "the body is not valid UTF-8 (at byte {}); JSON must be UTF-8",
                e.valid_up_to()
            ),
        )
    })?;
    if nesting_exceeds(text.as_bytes(), MAX_JSON_DEPTH) {
        return Err(ApiError::bad_request(
            "json_too_deep",
            format!("the body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels"),
        ));
    }
    serde_json::from_str(text).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })
}

/// The whole body if it is at most `limit` bytes; else 413, after draining
/// the rest (up to [`DRAIN_BUDGET`]) so that the client reads the answer.
/// A body that arrives in one frame (any small one) is that frame's bytes,
/// not a copy.
async fn read_bounded<B>(headers: &HeaderMap, mut body: B, limit: usize) -> Result<Bytes, ApiError>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit.saturating_add(DRAIN_BUDGET)) {
        return Err(too_large(limit));
    }
    let mut first = Bytes::new();
    // Only when a second non-empty frame arrives.
    let mut joined: Option<Vec<u8>> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request("invalid_body", format!("the body could not be read: {e}"))
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let read = joined.as_ref().map_or(first.len(), Vec::len);
        if read + data.len() > limit {
            drain(body, DRAIN_BUDGET).await;
            return Err(too_large(limit));
        }
        match &mut joined {
            Some(bytes) => bytes.extend_from_slice(&data),
            None if first.is_empty() => first = data,
            None if data.is_empty() => {}
            None => {
                let mut bytes =
                    Vec::with_capacity(declared.unwrap_or(0).min(limit).max(read + data.len()));
                bytes.extend_from_slice(&first);
                bytes.extend_from_slice(&data);
                joined = Some(bytes);
            }
        }
    }
    Ok(joined.map_or(first, Bytes::from))
}

/// Reads and discards up to `budget` bytes of `body`.
async fn drain<B: HttpBody<Data = Bytes> + Unpin>(mut body: B, mut budget: usize) {
    while budget > 0 {
        match body.frame().await {
            Some(Ok(frame)) => {
                let len = frame.data_ref().map_or(0, |d| d.len());
                budget = budget.saturating_sub(len);
            }
            Some(Err(_)) | None => return,
        }
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the body is larger than the limit of {limit} bytes"),
    )
}

/// `application/json`, or any `application/*+json`, with any parameters,
/// in any case.
fn is_json(content_type: &str) -> bool {
    if content_type == "application/json" {
        return true; // what nearly every client sends
    }
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let starts_with = |prefix: &str| {
        essence
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    };
    let ends_with = |suffix: &str| {
        essence
            .len()
            .checked_sub(suffix.len())
            .and_then(|start| essence.get(start..))
            .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
    };
    essence.eq_ignore_ascii_case("application/json")
        || (starts_with("application/") && ends_with("+json"))
}

/// Whether `json` nests `[`/`{` deeper than `max`, looking past strings. Runs
/// before parsing so the parser never recurses that deep; a malformed body is
/// left for the parser to explain.
fn nesting_exceeds(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::{is_json, nesting_exceeds};

    #[test]
    fn json_content_types_are_recognized() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(is_json(" APPLICATION/Merge-Patch+JSON ;charset=utf-8"));
        assert!(is_json("application/+json"));
        assert!(!is_json("application+json"));
        assert!(!is_json("text/json"));
        assert!(!is_json("application/json5"));
        assert!(!is_json("applicatio\u{e9}/+json"));
        assert!(!is_json("\u{e9}pplication/json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
        assert!(!is_json(""));
    }

    #[test]
    fn nesting_is_counted_outside_strings_only() {
        assert!(!nesting_exceeds(br#"{"a": [1, {"b": 2}]}"#, 3));
        assert!(nesting_exceeds(br#"{"a": [1, {"b": []}]}"#, 3));
        let deep_in_string = format!(r#"{{"a": "{}\"{}"}}"#, "[".repeat(100), "{".repeat(100));
        assert!(!nesting_exceeds(deep_in_string.as_bytes(), 2));
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(nesting_exceeds(deep.as_bytes(), 64));
    }
}
