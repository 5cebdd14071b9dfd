//! Exact decimal numbers with DynamoDB's limits.
//!
//! DynamoDB numbers carry up to 38 significant digits and are exact; tally's sums must be too,
//! so every value is a [`BigDecimal`] kept normalized (no trailing zeros), which makes equality,
//! hashing and the printed form independent of how a number was written (`199.0000` == `199`).

use std::fmt;
use std::ops::{Add, AddAssign, Neg, Sub};
use std::str::FromStr;

use bigdecimal::num_bigint::{BigInt, Sign};
use bigdecimal::{BigDecimal, One, Signed, Zero};

/// Most significant digits a DynamoDB number may have.
pub const MAX_SIGNIFICANT_DIGITS: u64 = 38;

/// DynamoDB's range of decimal exponents (as in `1.5E+125`) for a non-zero number.
const EXPONENTS: std::ops::RangeInclusive<i64> = -130..=125;

/// Longest input an error message repeats: a hostile value can be megabytes long.
const SHOWN_CHARS: usize = 64;

/// `text` as an error message may repeat it: its first 64 characters, then `…` if it goes on.
pub fn excerpt(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Decimal places of `gradeAverage`.
pub const AVERAGE_SCALE: i64 = 4;

/// Most digits a summed value (`grade`, `amount`) may have before the decimal point, past which
/// the university contract (docs/university.md) rejects it as `out_of_range`: with at most
/// [`MAX_FRACTION_DIGITS`] after it, any sum of up to 10^10 such values, and its average to
/// [`AVERAGE_SCALE`] places, fits DynamoDB's 38 digits.
pub const MAX_INTEGER_DIGITS: u64 = 20;
/// Most digits a summed value may have after the decimal point, trailing zeros not counted
/// (see [`MAX_INTEGER_DIGITS`]).
pub const MAX_FRACTION_DIGITS: u64 = 8;

/// Why a string is not a DynamoDB number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// The text is not a decimal number (`12a`, `1,5`, an empty string). Holds an [`excerpt`] of
    /// it.
    #[error("`{0}` is not a number")]
    NotANumber(String),
    /// The number has more than [`MAX_SIGNIFICANT_DIGITS`] significant digits.
    #[error("`{value}` has {digits} significant digits, more than DynamoDB's 38")]
    TooPrecise {
        /// An [`excerpt`] of the number.
        value: String,
        /// Its significant digits, leading and trailing zeros not counted.
        digits: u64,
    },
    /// The number's magnitude is outside DynamoDB's range: below 1E-130, or 1E+126 and over.
    /// Holds an [`excerpt`] of it.
    #[error("`{0}` is outside DynamoDB's number range (1E-130 to 9.9999999999999999999999999999999999999E+125)")]
    OutOfRange(String),
}

/// An exact decimal, always normalized.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Number(BigDecimal);

impl Number {
    /// The number 0.
    pub fn zero() -> Self {
        Number(BigDecimal::zero())
    }

    /// The number 1: what a counter adds per item.
    pub fn one() -> Self {
        Number(BigDecimal::one())
    }

    /// Whether the value is 0 (however it was written: `0.00`, `-0`).
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    /// Whether the value is below 0.
    pub fn is_negative(&self) -> bool {
        self.0.is_negative()
    }

    /// Digits of the normalized mantissa; zero has none.
    pub fn significant_digits(&self) -> u64 {
        if self.0.is_zero() {
            0
        } else {
            self.0.digits()
        }
    }

    /// Digits before the decimal point; `0.5` has none.
    pub fn integer_digits(&self) -> u64 {
        let (_, scale) = self.0.as_bigint_and_exponent();
        (self.significant_digits() as i64 - scale).max(0) as u64
    }

    /// Digits after the decimal point, trailing zeros not counted (the value is normalized).
    pub fn fraction_digits(&self) -> u64 {
        let (_, scale) = self.0.as_bigint_and_exponent();
        if self.0.is_zero() {
            0
        } else {
            scale.max(0) as u64
        }
    }

    /// Whether the value is within [`MAX_INTEGER_DIGITS`] and [`MAX_FRACTION_DIGITS`].
    pub fn is_summable(&self) -> bool {
        self.integer_digits() <= MAX_INTEGER_DIGITS && self.fraction_digits() <= MAX_FRACTION_DIGITS
    }

    /// Checks the value still fits a DynamoDB number (a sum can outgrow its parts).
    pub fn check_fits(&self) -> Result<(), NumberError> {
        let digits = self.significant_digits();
        if digits > MAX_SIGNIFICANT_DIGITS {
            return Err(NumberError::TooPrecise { value: excerpt(&self.0.to_scientific_notation()), digits });
        }
        if !self.0.is_zero() {
            // value = mantissa × 10^-scale; its decimal exponent (as in 1.23E+x) is digits - 1 - scale.
            let (_, scale) = self.0.as_bigint_and_exponent();
            let exponent = i128::from(digits) - 1 - i128::from(scale);
            if !(i128::from(*EXPONENTS.start())..=i128::from(*EXPONENTS.end())).contains(&exponent) {
                return Err(NumberError::OutOfRange(excerpt(&self.0.to_scientific_notation())));
            }
        }
        Ok(())
    }

    /// `sum / count`, rounded half-even to [`AVERAGE_SCALE`] places; `None` unless `count > 0`.
    pub fn average(sum: &Number, count: &Number) -> Option<Number> {
        if !count.0.is_positive() {
            return None;
        }
        // Integer arithmetic keeps the rounding exact: a finite-precision division could land on
        // a false tie and round twice.
        let (sum_mantissa, sum_scale) = sum.0.as_bigint_and_exponent();
        let (count_mantissa, count_scale) = count.0.as_bigint_and_exponent();
        // sum/count × 10^4 = sum_m × 10^(4 - sum_scale + count_scale) / count_m
        let shift = AVERAGE_SCALE - sum_scale + count_scale;
        let (numerator, denominator) = if shift >= 0 {
            (sum_mantissa * pow10(shift as u32), count_mantissa)
        } else {
            (sum_mantissa, count_mantissa * pow10((-shift) as u32))
        };
        let negative = numerator.sign() == Sign::Minus;
        let numerator = numerator.abs();
        let quotient = &numerator / &denominator;
        let twice_remainder: BigInt = (&numerator % &denominator) * 2u8;
        let round_up = match twice_remainder.cmp(&denominator) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Equal => (&quotient % 2u8) == BigInt::one(),
            std::cmp::Ordering::Less => false,
        };
        let quotient = if round_up { quotient + 1u8 } else { quotient };
        let quotient = if negative { -quotient } else { quotient };
        Some(Number(BigDecimal::new(quotient, AVERAGE_SCALE).normalized()))
    }
}

fn pow10(exp: u32) -> BigInt {
    BigInt::from(10u8).pow(exp)
}

impl FromStr for Number {
    type Err = NumberError;

    /// Parses a DynamoDB number string (`-12.50`, `1E+3`) and enforces DynamoDB's limits.
    ///
    /// The shape, the digit count and the exponent are checked on the text itself, in one pass,
    /// before any arithmetic: the text may come from a hostile file, and `1E+100000000000` or a
    /// megabyte of digits must be refused in bounded time and memory.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let not_a_number = || NumberError::NotANumber(excerpt(text));
        let trimmed = text.trim();
        let (negative, unsigned) = match trimmed.as_bytes().first() {
            Some(b'-') => (true, &trimmed[1..]),
            Some(b'+') => (false, &trimmed[1..]),
            _ => (false, trimmed),
        };
        let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
            Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
            None => (unsigned, None),
        };
        let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
        if integer.len() + fraction.len() == 0 || !all_digits(integer) || !all_digits(fraction) {
            return Err(not_a_number());
        }
        let exponent: i128 = match exponent {
            None => 0,
            Some(exponent) => {
                let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
                if digits.is_empty() || !all_digits(digits) {
                    return Err(not_a_number());
                }
                let digits = digits.trim_start_matches('0');
                // Past 30 digits, any exponent is far outside DynamoDB's range (or, for zero, moot).
                let magnitude: i128 = match digits.len() {
                    0 => 0,
                    1..=30 => digits.parse().map_err(|_| not_a_number())?,
                    _ => i128::MAX / 4,
                };
                if exponent.starts_with('-') {
                    -magnitude
                } else {
                    magnitude
                }
            }
        };
        // The significant digits: leading and trailing zeros (of integer and fraction together) dropped.
        let leading = integer.bytes().chain(fraction.bytes()).take_while(|byte| *byte == b'0').count();
        let total = integer.len() + fraction.len();
        let trailing = fraction.bytes().rev().chain(integer.bytes().rev()).take_while(|byte| *byte == b'0').count();
        if leading == total {
            return Ok(Number::zero());
        }
        let significant = (total - leading - trailing) as u64;
        if significant > MAX_SIGNIFICANT_DIGITS {
            return Err(NumberError::TooPrecise { value: excerpt(text), digits: significant });
        }
        // Position of the first significant digit, as a power of ten; and of the last.
        let first_power = integer.len() as i128 - 1 - leading as i128 + exponent;
        if !(i128::from(*EXPONENTS.start())..=i128::from(*EXPONENTS.end())).contains(&first_power) {
            return Err(NumberError::OutOfRange(excerpt(text)));
        }
        let last_power = first_power - (significant as i128 - 1);
        let digits: String = integer.chars().chain(fraction.chars()).skip(leading).take(significant as usize).collect();
        let mantissa = BigInt::from_str(&digits).map_err(|_| not_a_number())?;
        let mantissa = if negative { -mantissa } else { mantissa };
        // |last_power| is at most 130 + 37 here, so the scale fits an i64.
        Ok(Number(BigDecimal::new(mantissa, -(last_power as i64))))
    }
}

impl From<i64> for Number {
    fn from(value: i64) -> Self {
        Number(BigDecimal::from(value).normalized())
    }
}

impl fmt::Display for Number {
    /// Plain notation (`100`, not `1E+2`), the form DynamoDB itself returns.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0.to_plain_string())
    }
}

impl Add for &Number {
    type Output = Number;
    fn add(self, rhs: &Number) -> Number {
        Number((&self.0 + &rhs.0).normalized())
    }
}

impl Sub for &Number {
    type Output = Number;
    fn sub(self, rhs: &Number) -> Number {
        Number((&self.0 - &rhs.0).normalized())
    }
}

impl AddAssign<&Number> for Number {
    fn add_assign(&mut self, rhs: &Number) {
        *self = &*self + rhs;
    }
}

impl Neg for &Number {
    type Output = Number;
    fn neg(self) -> Number {
        Number(-self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(text: &str) -> Number {
        text.parse().unwrap()
    }

    #[test]
    fn trailing_zeros_do_not_change_a_number() {
        assert_eq!(n("199.0000"), n("199"));
        assert_eq!(n("199.0000").to_string(), "199");
        assert_eq!(n("1E+2").to_string(), "100");
        assert_eq!(n("-0.50").to_string(), "-0.5");
    }

    #[test]
    fn hostile_numbers_are_refused_in_bounded_time_naming_a_short_excerpt() {
        for (text, out_of_range) in [
            ("1E+9223372036854775807", true),
            ("1E-9223372036854775807", true),
            ("1E+9223372036854775808", true),
            ("10E+9223372036854775808", true),
            ("1E+100000000000", true),
            ("1E+1000000000", true),
            ("1e99999999999999999999999999999999999999999", true),
            ("0E+99999999999999999999999999999999999999999", false),
        ] {
            let parsed = text.parse::<Number>();
            match out_of_range {
                true => assert!(matches!(parsed, Err(NumberError::OutOfRange(_))), "{text}: {parsed:?}"),
                false => assert_eq!(parsed, Ok(Number::zero()), "{text}"),
            }
        }
        let long = "7".repeat(400_000);
        match long.parse::<Number>() {
            Err(NumberError::TooPrecise { value, digits }) => {
                assert_eq!(digits, 400_000);
                assert_eq!(value.chars().count(), SHOWN_CHARS + 1, "the message repeats a short excerpt");
            }
            other => panic!("{other:?}"),
        }
        // Many zeros around few digits are few significant digits.
        assert_eq!(
            format!("{}1{}", "0".repeat(100_000), "0".repeat(20)).parse::<Number>().unwrap().to_string(),
            format!("1{}", "0".repeat(20))
        );
        for bad in ["1e", "e5", "1e+", ".", "-", "+-1", "1.2.3", "1e5e5", "0x10", "١٢"] {
            assert!(matches!(bad.parse::<Number>(), Err(NumberError::NotANumber(_))), "{bad}");
        }
    }

    #[test]
    fn parses_every_notation_dynamodb_writes() {
        for (text, plain) in [
            ("12.50", "12.5"),
            ("-0.001", "-0.001"),
            ("+7", "7"),
            (".5", "0.5"),
            ("5.", "5"),
            ("1.23e-2", "0.0123"),
            ("-4.5E+3", "-4500"),
            ("000120.0100", "120.01"),
            ("1E-130", &format!("0.{}1", "0".repeat(129))),
            ("-0", "0"),
        ] {
            assert_eq!(text.parse::<Number>().unwrap().to_string(), plain, "{text}");
        }
    }

    #[test]
    fn rejects_what_dynamodb_rejects() {
        assert!(matches!("abc".parse::<Number>(), Err(NumberError::NotANumber(_))));
        assert!(matches!("".parse::<Number>(), Err(NumberError::NotANumber(_))));
        assert!(matches!("NaN".parse::<Number>(), Err(NumberError::NotANumber(_))));
        assert!(matches!("1.2.3".parse::<Number>(), Err(NumberError::NotANumber(_))));
        let digits39 = "1".repeat(39);
        assert!(matches!(digits39.parse::<Number>(), Err(NumberError::TooPrecise { digits: 39, .. })));
        assert!("9".repeat(38).parse::<Number>().is_ok());
        // Trailing zeros are not significant.
        assert!(format!("{}000", "9".repeat(38)).parse::<Number>().is_ok());
        assert!(matches!("1E+126".parse::<Number>(), Err(NumberError::OutOfRange(_))));
        assert!(matches!("1E-131".parse::<Number>(), Err(NumberError::OutOfRange(_))));
        assert!("1E-130".parse::<Number>().is_ok());
    }

    #[test]
    fn average_rounds_half_even_to_four_places() {
        assert_eq!(Number::average(&n("10"), &n("3")).unwrap().to_string(), "3.3333");
        assert_eq!(Number::average(&n("20"), &n("3")).unwrap().to_string(), "6.6667");
        // Exact ties go to the even neighbour.
        assert_eq!(Number::average(&n("0.00005"), &n("1")).unwrap().to_string(), "0");
        assert_eq!(Number::average(&n("0.00015"), &n("1")).unwrap().to_string(), "0.0002");
        assert_eq!(Number::average(&n("0.00025"), &n("1")).unwrap().to_string(), "0.0002");
        assert_eq!(Number::average(&n("-0.00015"), &n("1")).unwrap().to_string(), "-0.0002");
        assert_eq!(Number::average(&n("171"), &n("2")).unwrap().to_string(), "85.5");
        assert_eq!(Number::average(&n("1E+3"), &n("1E+1")).unwrap().to_string(), "100");
        assert_eq!(Number::average(&n("5"), &n("0")), None);
    }

    #[test]
    fn summable_values_have_at_most_20_integer_and_8_fraction_digits() {
        assert_eq!((n("12345.678").integer_digits(), n("12345.678").fraction_digits()), (5, 3));
        assert_eq!((n("0.5").integer_digits(), n("0.5").fraction_digits()), (0, 1));
        assert_eq!((n("1E+3").integer_digits(), n("1E+3").fraction_digits()), (4, 0));
        assert_eq!((n("0").integer_digits(), n("0").fraction_digits()), (0, 0));
        assert!(n(&"9".repeat(20)).is_summable());
        assert!(!n(&"9".repeat(21)).is_summable());
        assert!(!n("1E+37").is_summable());
        assert!(n("0.00000001").is_summable());
        assert!(!n("0.000000001").is_summable());
        // Trailing zeros do not count.
        assert!(n("1.500000000000").is_summable());
        assert!(n("-99999999999999999999.99999999").is_summable());
    }

    proptest! {
        #[test]
        fn average_matches_a_wide_division(sum in -10_000_000i64..10_000_000, count in 1i64..5_000) {
            // Reference: sum/count with 30 extra digits, then half-even to 4 places; far from a tie
            // a wide division is exact enough, and ties are exact in integers.
            let exact = BigDecimal::from(sum) / BigDecimal::from(count);
            let reference = exact.with_scale_round(AVERAGE_SCALE, bigdecimal::RoundingMode::HalfEven).normalized();
            let ours = Number::average(&Number::from(sum), &Number::from(count)).unwrap();
            prop_assert_eq!(ours, Number(reference));
        }

        #[test]
        fn addition_is_exact(a in -1_000_000_000i64..1_000_000_000, b in -1_000_000_000i64..1_000_000_000, scale in 0u32..6) {
            let x: Number = BigDecimal::new(a.into(), scale as i64).to_string().parse().unwrap();
            let y: Number = BigDecimal::new(b.into(), scale as i64).to_string().parse().unwrap();
            prop_assert_eq!(&(&x + &y) - &y, x);
        }
    }
}
