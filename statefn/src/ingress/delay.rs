//! `?delay=` values: an integer and a unit, `500ms`, `5s`, `2m`, `1h`.

use std::time::Duration;

/// The longest delay accepted: a timer further out is more likely a unit
/// mistake than an intent.
const MAX_DELAY: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// Parses a delay such as `500ms`, `5s`, `2m` or `1h`; the error says what is
/// accepted.
pub(super) fn parse_delay(text: &str) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "invalid delay {text:?}: write an integer and a unit, ms, s, m or h \
             (`500ms`, `5s`, `2m`, `1h`), at most 366 days"
        )
    };
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(invalid()),
    };
    let delay = number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(invalid)?;
    if delay > MAX_DELAY {
        return Err(invalid());
    }
    Ok(delay)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::parse_delay;

    #[test]
    fn units_are_parsed() {
        assert_eq!(parse_delay("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_delay("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_delay("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_delay("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_delay("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_delays_are_refused() {
        for bad in [
            "",
            "5",
            "s",
            "5 s",
            "-5s",
            "5sec",
            "1.5s",
            "5S",
            "99999999999999999999h",
            "9000h",
        ] {
            let err = parse_delay(bad).expect_err(bad);
            assert!(err.contains("ms, s, m or h"), "{err}");
        }
    }
}
