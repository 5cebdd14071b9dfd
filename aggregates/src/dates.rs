//! Dates as source items write them: a calendar date, or an ISO 8601 date-time's UTC day.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// A calendar date in ISO 8601's extended form, `YYYY-MM-DD` exactly: chrono alone also takes
/// `2026-3-1`.
pub fn calendar_date(text: &str) -> Option<NaiveDate> {
    date_shape(text.as_bytes()).then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()).flatten()
}

/// `DDDD-DD-DD`, on bytes: the shape alone, before any parsing.
fn date_shape(bytes: &[u8]) -> bool {
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(index, byte)| if index == 4 || index == 7 { *byte == b'-' } else { byte.is_ascii_digit() })
}

/// Whether a date-time has ISO 8601's extended shape: `YYYY-MM-DDTHH:MM`, then optionally `:SS`
/// and a fraction, then optionally `Z` or an offset `±HH:MM` / `±HHMM`. chrono's formats alone
/// accept one-digit fields.
fn iso_date_time_shape(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| bytes.get(range).is_some_and(|part| part.iter().all(u8::is_ascii_digit));
    if bytes.len() < 16 || !date_shape(&bytes[..10]) || bytes[10] != b'T' || !digits(11..13) || bytes[13] != b':' || !digits(14..16) {
        return false;
    }
    let mut rest = &bytes[16..];
    if let [b':', a, b, tail @ ..] = rest {
        if !(a.is_ascii_digit() && b.is_ascii_digit()) {
            return false;
        }
        rest = tail;
        if let [b'.', tail @ ..] = rest {
            let fraction = tail.iter().take_while(|byte| byte.is_ascii_digit()).count();
            if fraction == 0 {
                return false;
            }
            rest = &tail[fraction..];
        }
    }
    match rest {
        [] | [b'Z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] | [b'+' | b'-', h1, h2, m1, m2] => [h1, h2, m1, m2].iter().all(|byte| byte.is_ascii_digit()),
        _ => false,
    }
}

/// Parses an ISO 8601 date or date-time and returns its UTC day; a date-time without an offset is UTC.
pub fn utc_day(text: &str) -> Option<NaiveDate> {
    if text.len() == 10 {
        return calendar_date(text);
    }
    if !iso_date_time_shape(text) {
        return None;
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc).date_naive());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z"] {
        if let Ok(at) = DateTime::parse_from_str(text, format) {
            return Some(at.with_timezone(&Utc).date_naive());
        }
    }
    // Without an offset, or with `Z` after the minutes (which RFC 3339 parsing refuses without
    // seconds, and `%z` does not take): the time is UTC's.
    let utc = text.strip_suffix('Z').unwrap_or(text);
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(at) = NaiveDateTime::parse_from_str(utc, format) {
            return Some(at.date());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> Option<String> {
        utc_day(text).map(|day| day.to_string())
    }

    #[test]
    fn every_extended_form_gives_its_utc_day() {
        for (text, expected) in [
            ("2026-03-01", "2026-03-01"),
            ("2026-03-01T10:00", "2026-03-01"),
            ("2026-03-01T10:00Z", "2026-03-01"),
            ("2026-03-01T23:30-01:00", "2026-03-02"),
            ("2026-03-01T00:30+0100", "2026-02-28"),
            ("2026-03-01T10:00:05Z", "2026-03-01"),
            ("2026-03-01T10:00:05.250", "2026-03-01"),
            ("2026-03-01T00:10:00.5+01:00", "2026-02-28"),
        ] {
            assert_eq!(day(text).as_deref(), Some(expected), "{text}");
        }
    }

    #[test]
    fn other_shapes_are_not_dates() {
        for text in ["2026-3-01", "2026-03-01T1:00Z", "2026-03-01T10:00z", "2026-03-01T10Z", "2026-03-01T10:00:5Z", "2026-02-30", ""] {
            assert_eq!(day(text), None, "{text}");
        }
    }
}
