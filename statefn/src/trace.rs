//! [`TraceContext`]: the W3C Trace Context (`traceparent`) of an
//! invocation, so that its span continues the trace of the HTTP request
//! that started it and the spans of the messages it sends name it as their
//! parent. No OpenTelemetry dependency: the ids are recorded as fields of
//! the `invoke` span (`trace_id`, `span_id`, `parent_span_id`), which an
//! OpenTelemetry layer or a log search can join on.
//!
//! Trace context travels with messages in memory only: it is not part of
//! the log record format. A message re-sent from a recovered sender's
//! outbox, or fired from a timer restored from disk, starts without a
//! parent (its span has no `trace_id`).

use std::{fmt, num::NonZeroU64};

/// A W3C trace context: trace id, the parent span's id and the sampled flag.
///
/// # Examples
///
/// ```
/// use statefn::TraceContext;
///
/// let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let parent = TraceContext::parse(header).expect("valid");
/// assert_eq!(parent.trace_id(), 0x4bf92f3577b34da6a3ce929d0e0e4736);
/// assert_eq!(parent.span_id(), 0x00f067aa0ba902b7);
/// assert!(parent.sampled());
/// assert_eq!(parent.to_string(), header);
/// assert!(TraceContext::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The trace id's high and low halves: a `u128` is 16-byte aligned,
    /// which made every mail of a shard (it can carry a context) 16 bytes
    /// larger, and every call moves its mail several times (issue 14).
    trace_id: [u64; 2],
    /// Never zero (zero means "invalid" in W3C): so an
    /// `Option<TraceContext>` is no larger than a context.
    span_id: NonZeroU64,
    flags: u8,
}

/// Splits a trace id into its high and low halves.
fn halves(trace_id: u128) -> [u64; 2] {
    // Truncations on purpose: the halves of the 128 bits.
    #[expect(clippy::cast_possible_truncation, reason = "the two halves")]
    [(trace_id >> 64) as u64, trace_id as u64]
}

impl TraceContext {
    /// Parses a `traceparent` header value (version `00`, or a later
    /// version read as `00` as the specification asks). `None` if it is
    /// malformed or an id is all zeros: the invocation then starts without
    /// a trace.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let mut parts = header.split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        // Version 00 has exactly four parts; later versions may add more.
        if (version == "00" && parts.next().is_some()) || version == "ff" {
            return None;
        }
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !(hex(version, 2) && hex(trace, 32) && hex(span, 16) && hex(flags, 2)) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        let span_id = NonZeroU64::new(span_id)?;
        (trace_id != 0).then_some(TraceContext {
            trace_id: halves(trace_id),
            span_id,
            flags,
        })
    }

    /// A context of `trace_id` whose current span is `span_id`.
    ///
    /// # Panics
    ///
    /// Never; zero ids are replaced by 1 (zero means "invalid" in W3C).
    pub fn new(trace_id: u128, span_id: u64, sampled: bool) -> Self {
        TraceContext {
            trace_id: halves(trace_id.max(1)),
            span_id: NonZeroU64::new(span_id).unwrap_or(NonZeroU64::MIN),
            flags: u8::from(sampled),
        }
    }

    /// The trace id.
    pub fn trace_id(&self) -> u128 {
        let [high, low] = self.trace_id;
        (u128::from(high) << 64) | u128::from(low)
    }

    /// The id of the span this context names (the parent of the spans that
    /// continue it).
    pub fn span_id(&self) -> u64 {
        self.span_id.get()
    }

    /// Whether the trace is sampled (flag `01`).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The same trace, continued by a child span `span_id`.
    pub(crate) fn child(&self, span_id: u64) -> Self {
        TraceContext {
            span_id: NonZeroU64::new(span_id).unwrap_or(NonZeroU64::MIN),
            ..*self
        }
    }

    /// The trace id as 32 lowercase hex digits (as in `traceparent`).
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id())
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }
}

/// The `traceparent` header value.
impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id(),
            self.span_id,
            self.flags
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_headers_are_ignored() {
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_as_version_00() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-comes-next";
        let parsed = TraceContext::parse(later).expect("a later version parses");
        assert!(!parsed.sampled());
        assert_eq!(parsed.child(9).span_id(), 9);
        assert_eq!(parsed.child(9).trace_id(), parsed.trace_id());
    }

    /// The halves keep every id, and an absent context costs no space
    /// (every mail of a shard carries an `Option<TraceContext>`).
    #[test]
    fn ids_survive_their_halves_and_an_absent_context_is_free() {
        for trace_id in [
            1,
            u128::from(u64::MAX),
            1 << 64,
            u128::MAX,
            0x4bf9_u128 << 100 | 7,
        ] {
            let context = TraceContext::new(trace_id, 5, true);
            assert_eq!(context.trace_id(), trace_id);
            assert_eq!(TraceContext::parse(&context.to_string()), Some(context));
            assert_eq!(context.child(0).span_id(), 1, "zero is not a span id");
        }
        assert_eq!(TraceContext::new(0, 0, false).trace_id(), 1);
        assert_eq!(
            std::mem::size_of::<Option<TraceContext>>(),
            std::mem::size_of::<TraceContext>()
        );
        assert!(std::mem::size_of::<Option<TraceContext>>() <= 32);
    }
}
