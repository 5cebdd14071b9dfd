//! Stream sequence numbers, ordered as the integers they are.

use std::cmp::Ordering;
use std::fmt;

/// A DynamoDB Streams sequence number: 21 to 40 decimal digits on the service, so a `u128`
/// (39 digits) cannot hold every one. Ordered by value: leading zeros stripped, shorter first,
/// then lexically.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SequenceNumber(String);

impl SequenceNumber {
    /// Accepts a non-empty string of ASCII digits; returns `None` otherwise.
    pub fn parse(text: &str) -> Option<SequenceNumber> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let significant = text.trim_start_matches('0');
        Some(SequenceNumber(if significant.is_empty() { "0".to_owned() } else { significant.to_owned() }))
    }

    /// Before every record: the position of a ledger that has applied none.
    pub fn zero() -> SequenceNumber {
        SequenceNumber("0".to_owned())
    }

    /// Its digits, leading zeros stripped (`0` for zero).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.len().cmp(&other.0.len()).then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn forty_digit_numbers_compare_by_value() {
        let small = SequenceNumber::parse("900000000000000000001").unwrap();
        let large = SequenceNumber::parse("1000000000000000000000000000000000000000").unwrap();
        assert!(small < large);
        assert_eq!(SequenceNumber::parse("000123"), SequenceNumber::parse("123"));
        assert_eq!(SequenceNumber::parse("000").unwrap().as_str(), "0");
    }

    #[test]
    fn rejects_non_digits() {
        assert_eq!(SequenceNumber::parse(""), None);
        assert_eq!(SequenceNumber::parse("12a"), None);
        assert_eq!(SequenceNumber::parse("-1"), None);
        assert_eq!(SequenceNumber::parse(" 1"), None);
    }

    proptest! {
        #[test]
        fn order_matches_u128(a in any::<u128>(), b in any::<u128>(), pad_a in 0usize..3, pad_b in 0usize..3) {
            let sa = SequenceNumber::parse(&format!("{}{a}", "0".repeat(pad_a))).unwrap();
            let sb = SequenceNumber::parse(&format!("{}{b}", "0".repeat(pad_b))).unwrap();
            prop_assert_eq!(sa.cmp(&sb), a.cmp(&b));
        }
    }
}
