//! Dates as the university contract (docs/university.md) reads them, parsed by hand: no chrono
//! parser and nothing of the library's `aggregates::dates`, so a bug there is caught rather than
//! copied.
//!
//! The contract's dates are ISO 8601 in its extended form:
//!
//! - a calendar date `YYYY-MM-DD` (year 0000-9999, month 01-12, day within its month, leap years by
//!   the Gregorian rule);
//! - a date-time `YYYY-MM-DDTHH:MM`, then optionally `:SS` (00-60: 60 is a leap second) and a
//!   fraction `.` and one or more digits, then optionally `Z` or an offset `±HH:MM` / `±HHMM`
//!   (hours 00-23, minutes 00-59; `-00:00` is UTC). Without an offset it is UTC. Hours are 00-23
//!   (no `24:00`), minutes 00-59, every field has all its digits, and `T` and `Z` are upper case.
//!
//! A date-time stands for its UTC day: the day count since 1970-01-01 (Howard Hinnant's
//! `days_from_civil` / `civil_from_days`), moved by the local minute of the day less the offset.
//! Seconds never move the day: an offset is whole minutes, and a leap second belongs to its minute.

use chrono::NaiveDate;

const MINUTES_PER_DAY: i64 = 24 * 60;

/// A calendar date in ISO 8601's extended form, `YYYY-MM-DD` exactly.
pub fn calendar_date(text: &str) -> Option<NaiveDate> {
    let mut cursor = Cursor::new(text);
    let date = cursor.date()?;
    cursor.at_end().then(|| to_naive(days_from_civil(date)))
}

/// An ISO 8601 date or date-time's UTC day; a date-time without an offset is UTC.
pub fn utc_day(text: &str) -> Option<NaiveDate> {
    let mut cursor = Cursor::new(text);
    let date = cursor.date()?;
    if cursor.at_end() {
        return Some(to_naive(days_from_civil(date)));
    }
    let local_minute = cursor.time()?;
    let offset = cursor.offset()?;
    if !cursor.at_end() {
        return None;
    }
    let utc_minute = local_minute - offset;
    Some(to_naive(days_from_civil(date) + utc_minute.div_euclid(MINUTES_PER_DAY)))
}

/// A checked calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: i64,
    day: i64,
}

/// Reads a text's bytes from the left; never slices the text, so a multi-byte character is only
/// a byte that is not the one expected.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor { bytes: text.as_bytes(), at: 0 }
    }

    fn at_end(&self) -> bool {
        self.at == self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Takes `byte` if it is next.
    fn take(&mut self, byte: u8) -> bool {
        let next = self.peek() == Some(byte);
        if next {
            self.at += 1;
        }
        next
    }

    /// Exactly `count` ASCII digits, as a number.
    fn number(&mut self, count: usize) -> Option<i64> {
        let mut value = 0;
        for _ in 0..count {
            let byte = self.peek()?;
            if !byte.is_ascii_digit() {
                return None;
            }
            value = value * 10 + i64::from(byte - b'0');
            self.at += 1;
        }
        Some(value)
    }

    /// `count` digits whose value is at most `max`.
    fn field(&mut self, count: usize, max: i64) -> Option<i64> {
        self.number(count).filter(|value| *value <= max)
    }

    /// `YYYY-MM-DD`, a day that exists.
    fn date(&mut self) -> Option<Civil> {
        let year = self.number(4)?;
        if !self.take(b'-') {
            return None;
        }
        let month = self.field(2, 12).filter(|month| *month >= 1)?;
        if !self.take(b'-') {
            return None;
        }
        let day = self.field(2, days_in_month(year, month)).filter(|day| *day >= 1)?;
        Some(Civil { year, month, day })
    }

    /// `THH:MM`, then optionally `:SS` and a fraction; returns the minute of the day.
    fn time(&mut self) -> Option<i64> {
        if !self.take(b'T') {
            return None;
        }
        let hour = self.field(2, 23)?;
        if !self.take(b':') {
            return None;
        }
        let minute = self.field(2, 59)?;
        if self.take(b':') {
            self.field(2, 60)?;
            if self.take(b'.') {
                let start = self.at;
                while self.peek().is_some_and(|byte| byte.is_ascii_digit()) {
                    self.at += 1;
                }
                if self.at == start {
                    return None;
                }
            }
        }
        Some(hour * 60 + minute)
    }

    /// Nothing, `Z`, `±HH:MM` or `±HHMM`: the offset east of UTC in minutes.
    fn offset(&mut self) -> Option<i64> {
        let sign = match self.peek() {
            None => return Some(0),
            Some(b'Z') => {
                self.at += 1;
                return Some(0);
            }
            Some(b'+') => 1,
            Some(b'-') => -1,
            Some(_) => return None,
        };
        self.at += 1;
        let hours = self.field(2, 23)?;
        self.take(b':');
        let minutes = self.field(2, 59)?;
        Some(sign * (hours * 60 + minutes))
    }
}

/// The Gregorian rule: every fourth year, but not a century unless it divides by 400.
fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days in `month` (1-12) of `year`.
fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to `date`, proleptic Gregorian (Hinnant's `days_from_civil`).
fn days_from_civil(Civil { year, month, day }: Civil) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date `days` after 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> Civil {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    Civil { year, month, day }
}

/// The day `days` after 1970-01-01 as the callers' type. Every day this module computes (years
/// -1 to 10000) is one chrono can hold; chrono refusing it means the two calendars disagree.
fn to_naive(days: i64) -> NaiveDate {
    let Civil { year, month, day } = civil_from_days(days);
    let convert = |value: i64| u32::try_from(value).expect("a month or day is positive");
    i32::try_from(year)
        .ok()
        .and_then(|year| NaiveDate::from_ymd_opt(year, convert(month), convert(day)))
        .unwrap_or_else(|| panic!("{year:04}-{month:02}-{day:02} is a day chrono cannot hold"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(year: i32, month: u32, day: u32) -> Option<NaiveDate> {
        Some(NaiveDate::from_ymd_opt(year, month, day).expect("a test's day exists"))
    }

    #[test]
    fn leap_days_by_the_gregorian_rule() {
        for (text, expected) in [
            ("2024-02-29", day(2024, 2, 29)),
            ("2000-02-29", day(2000, 2, 29)),
            ("0400-02-29", day(400, 2, 29)),
            ("0000-02-29", day(0, 2, 29)),
            ("2023-02-29", None),
            ("1900-02-29", None),
            ("2100-02-29", None),
            ("0100-02-29", None),
            ("2024-02-30", None),
        ] {
            assert_eq!(calendar_date(text), expected, "{text}");
            assert_eq!(utc_day(text), expected, "{text}");
            assert_eq!(utc_day(&format!("{text}T12:00:00Z")), expected, "{text}");
        }
    }

    #[test]
    fn months_and_days_within_range() {
        for (text, expected) in [
            ("2026-01-31", day(2026, 1, 31)),
            ("2026-04-30", day(2026, 4, 30)),
            ("2026-12-31", day(2026, 12, 31)),
            ("0000-01-01", day(0, 1, 1)),
            ("9999-12-31", day(9999, 12, 31)),
            ("2026-00-01", None),
            ("2026-13-01", None),
            ("2026-01-00", None),
            ("2026-01-32", None),
            ("2026-04-31", None),
            ("2026-06-31", None),
            ("2026-09-31", None),
            ("2026-11-31", None),
        ] {
            assert_eq!(calendar_date(text), expected, "{text}");
            assert_eq!(utc_day(text), expected, "{text}");
        }
    }

    #[test]
    fn offsets_move_the_day_across_midnight_both_ways() {
        for (text, expected) in [
            ("2026-03-01T23:30:00-01:00", day(2026, 3, 2)),
            ("2026-03-01T23:30:00-00:30", day(2026, 3, 2)),
            ("2026-03-01T23:29:59-00:30", day(2026, 3, 1)),
            ("2026-03-01T00:30:00+01:00", day(2026, 2, 28)),
            ("2026-03-01T00:30:00+0100", day(2026, 2, 28)),
            ("2026-03-01T00:30+00:30", day(2026, 3, 1)),
            ("2026-03-01T00:29+00:30", day(2026, 2, 28)),
            ("2024-03-01T00:30+0100", day(2024, 2, 29)),
            ("2024-02-28T23:00-01:00", day(2024, 2, 29)),
            ("2026-02-28T23:00-01:00", day(2026, 3, 1)),
            ("2026-12-31T23:30-00:45", day(2027, 1, 1)),
            ("2027-01-01T00:15+00:30", day(2026, 12, 31)),
            ("2026-03-01T23:30:00Z", day(2026, 3, 1)),
            ("2026-03-01T23:30:00+00:00", day(2026, 3, 1)),
            ("2026-03-01T23:30:00-00:00", day(2026, 3, 1)),
            ("2026-03-01T23:30:00-0000", day(2026, 3, 1)),
            ("2026-03-01T10:00:00+05:30", day(2026, 3, 1)),
            ("2026-03-01T04:59+05:30", day(2026, 2, 28)),
            // The widest offsets in use, and the widest the contract's form can write.
            ("2026-03-01T10:00+14:00", day(2026, 2, 28)),
            ("2026-03-01T13:59+14:00", day(2026, 2, 28)),
            ("2026-03-01T14:00+14:00", day(2026, 3, 1)),
            ("2026-03-01T11:59:59-12:00", day(2026, 3, 1)),
            ("2026-03-01T12:00-12:00", day(2026, 3, 2)),
            ("2026-03-01T10:00:00+23:59", day(2026, 2, 28)),
            ("2026-03-01T00:00:00-23:59", day(2026, 3, 1)),
            ("2026-03-01T00:01:00-23:59", day(2026, 3, 2)),
            ("0000-01-01T00:00:00+00:01", day(-1, 12, 31)),
            ("9999-12-31T23:59:59-23:59", day(10000, 1, 1)),
        ] {
            assert_eq!(utc_day(text), expected, "{text}");
        }
        for (local, offset) in [("23:00", "-01:00"), ("00:00", "+00:01")] {
            assert_eq!(calendar_date(&format!("2026-03-01T{local}{offset}")), None, "a calendar date has no time");
        }
    }

    #[test]
    fn offsets_within_range() {
        for offset in
            ["+24:00", "-24:00", "+2400", "+23:60", "+00:60", "+0060", "+99:00", "+01", "+1", "+01:0", "+1:00", "+01:000", "+01-00"]
        {
            for time in ["10:00", "10:00:00", "10:00:00.5"] {
                let text = format!("2026-03-01T{time}{offset}");
                assert_eq!(utc_day(&text), None, "{text}");
            }
        }
    }

    #[test]
    fn seconds_fractions_and_leap_seconds() {
        for (text, expected) in [
            ("2026-03-01T10:00", day(2026, 3, 1)),
            ("2026-03-01T10:00Z", day(2026, 3, 1)),
            ("2026-03-01T10:00+01:00", day(2026, 3, 1)),
            ("2026-03-01T10:00:05", day(2026, 3, 1)),
            ("2026-03-01T10:00:59Z", day(2026, 3, 1)),
            ("2026-03-01T23:30:00.5", day(2026, 3, 1)),
            ("2026-03-01T23:30:00.123456", day(2026, 3, 1)),
            ("2026-03-01T23:30:00.123456789Z", day(2026, 3, 1)),
            ("2026-03-01T23:59:59.999999999999999999999999999-00:01", day(2026, 3, 2)),
            ("2026-03-01T23:30:00.5+01:00", day(2026, 3, 1)),
            ("2026-03-01T00:30:00.000+0100", day(2026, 2, 28)),
            // A leap second is the 61st second of its minute, on that minute's day.
            ("2026-12-31T23:59:60Z", day(2026, 12, 31)),
            ("2026-12-31T23:59:60.5Z", day(2026, 12, 31)),
            ("2026-12-31T23:59:60", day(2026, 12, 31)),
            ("2026-03-01T23:59:60-01:00", day(2026, 3, 2)),
            ("2026-03-01T23:59:60+0100", day(2026, 3, 1)),
        ] {
            assert_eq!(utc_day(text), expected, "{text}");
        }
        for text in [
            "2026-03-01T10:00:61Z",
            "2026-03-01T10:00:99",
            "2026-03-01T24:00:00Z",
            "2026-03-01T24:00",
            "2026-03-01T23:60",
            "2026-03-01T10:00:00.",
            "2026-03-01T10:00:00.Z",
            "2026-03-01T10:00:00,5Z",
            "2026-03-01T10:00.5",
            "2026-03-01T10:00:00.5.5",
            "2026-03-01T10:00:00.-5",
        ] {
            assert_eq!(utc_day(text), None, "{text}");
        }
    }

    #[test]
    fn every_field_has_all_its_digits() {
        for text in [
            "2026-3-01",
            "2026-03-1",
            "2026-3-1",
            "26-03-01",
            "202-03-01",
            "20260-03-01",
            "+2026-03-01",
            "2026-03-01T1:00:00Z",
            "2026-03-01T10:0:00Z",
            "2026-03-01T10:00:0Z",
            "2026-03-01T10:00:0",
            "2026-03-1T10:00",
            "2026-03-01T10",
            "2026-03-01T10:",
            "2026-03-01T",
        ] {
            assert_eq!(calendar_date(text), None, "{text}");
            assert_eq!(utc_day(text), None, "{text}");
        }
    }

    #[test]
    fn only_the_extended_form() {
        for text in [
            "",
            "yesterday",
            "03/01/2026",
            "20260301",
            "20260301T100000Z",
            "2026-03-01 10:00:00Z",
            "2026-03-01t10:00:00Z",
            "2026-03-01T10:00:00z",
            "2026-03-01T10:00:00Z ",
            " 2026-03-01",
            "2026-03-01 ",
            "2026-03-01Z",
            "2026-03-01T10:00:00ZZ",
            "2026-03-01T10:00:00Z+01:00",
            "2026-03-01T10:00:00+01:00Z",
            "2026-03-01T10:00:00 +01:00",
            "2026-03-01T10:00:00\n",
            "2026/03/01",
            "2026-W09-7",
            "2026-060",
        ] {
            assert_eq!(calendar_date(text), None, "{text:?}");
            assert_eq!(utc_day(text), None, "{text:?}");
        }
        assert_eq!(calendar_date("2026-03-01T10:00:00Z"), None);
    }

    #[test]
    fn multi_byte_characters_are_refused_not_a_panic() {
        for text in [
            "é",
            "2026-03-0é10:00:00Z",
            "2026-03-é1",
            "2026-0é-01",
            "2026-03-01é",
            "2026-03-01Té0:00",
            "2026-03-01T10:00:00é",
            "2026-03-01T10:00:00.5é",
            "2026-03-01T10:00:00+01:0é",
            "2026-03-01T10:00:00+é",
            "２０２６-03-01",
            "2026‐03‐01",
            "2026-03-01T10：00",
            "2026-03-01T10:00:00\u{2212}01:00",
            "٢٠٢٦-03-01",
        ] {
            assert_eq!(calendar_date(text), None, "{text}");
            assert_eq!(utc_day(text), None, "{text}");
        }
    }

    #[test]
    fn the_day_count_is_hinnants() {
        let civil = |year, month, day| Civil { year, month, day };
        for (date, days) in [
            (civil(1970, 1, 1), 0),
            (civil(1969, 12, 31), -1),
            (civil(2000, 3, 1), 11_017),
            (civil(2026, 3, 1), 20_513),
            (civil(0, 1, 1), -719_528),
            (civil(-1, 12, 31), -719_529),
            (civil(10000, 1, 1), 2_932_897),
        ] {
            assert_eq!(days_from_civil(date), days, "{date:?}");
            assert_eq!(civil_from_days(days), date, "{days}");
        }
    }

    /// Every day from year -1 to 10000 round-trips, one after another, and is the day chrono
    /// counts: the arithmetic is checked against an independent calendar, not trusted.
    #[test]
    fn every_day_round_trips_and_agrees_with_chrono() {
        let first = days_from_civil(Civil { year: -1, month: 1, day: 1 });
        let last = days_from_civil(Civil { year: 10000, month: 12, day: 31 });
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let mut previous = civil_from_days(first - 1);
        for days in first..=last {
            let date = civil_from_days(days);
            assert_eq!(days_from_civil(date), days, "{date:?}");
            let Civil { year, month, day } = previous;
            let expected = match (day == days_in_month(year, month), month == 12) {
                (false, _) => Civil { year, month, day: day + 1 },
                (true, false) => Civil { year, month: month + 1, day: 1 },
                (true, true) => Civil { year: year + 1, month: 1, day: 1 },
            };
            assert_eq!(date, expected, "the day after {previous:?}");
            assert_eq!(Some(to_naive(days)), epoch.checked_add_signed(chrono::Duration::days(days)), "{days}");
            previous = date;
        }
    }

    /// Which `YYYY-MM-DD` exist, for every year the contract's form can write, as chrono says.
    #[test]
    fn calendar_dates_agree_with_chrono() {
        for year in 0..=9999 {
            for month in 1..=12 {
                for day in 1..=31 {
                    let text = format!("{year:04}-{month:02}-{day:02}");
                    assert_eq!(calendar_date(&text), NaiveDate::from_ymd_opt(year, month, day), "{text}");
                }
            }
        }
    }
}
