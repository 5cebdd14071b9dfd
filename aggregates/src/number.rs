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

/// Decimal places of `gradeAverage`.
pub const AVERAGE_SCALE: i64 = 4;

/// Most digits a summed value (`grade`, `amount`) may have before and after the decimal point
/// (SPEC, `out_of_range`): then any sum of up to 10^10 such values, and its average to
/// [`AVERAGE_SCALE`] places, fits DynamoDB's 38 digits.
pub const MAX_INTEGER_DIGITS: u64 = 20;
pub const MAX_FRACTION_DIGITS: u64 = 8;

/// Why a string is not a DynamoDB number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("`{0}` is not a number")]
    NotANumber(String),
    #[error("`{value}` has {digits} significant digits, more than DynamoDB's 38")]
    TooPrecise { value: String, digits: u64 },
    #[error("`{0}` is outside DynamoDB's number range (1E-130 to 9.9999999999999999999999999999999999999E+125)")]
    OutOfRange(String),
}

/// An exact decimal, always normalized.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Number(BigDecimal);

impl Number {
    pub fn zero() -> Self {
        Number(BigDecimal::zero())
    }

    pub fn one() -> Self {
        Number(BigDecimal::one())
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

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
            return Err(NumberError::TooPrecise { value: self.to_string(), digits });
        }
        if !self.0.is_zero() {
            // value = mantissa × 10^-scale; its decimal exponent (as in 1.23E+x) is digits - 1 - scale.
            let (_, scale) = self.0.as_bigint_and_exponent();
            let exponent = digits as i64 - 1 - scale;
            if !(-130..=125).contains(&exponent) {
                return Err(NumberError::OutOfRange(self.to_string()));
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
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let looks_numeric = !trimmed.is_empty()
            && trimmed.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E'))
            && trimmed.chars().any(|c| c.is_ascii_digit());
        if !looks_numeric {
            return Err(NumberError::NotANumber(text.to_owned()));
        }
        let value = BigDecimal::from_str(trimmed).map_err(|_| NumberError::NotANumber(text.to_owned()))?;
        let number = Number(value.normalized());
        number.check_fits().map_err(|err| match err {
            NumberError::TooPrecise { digits, .. } => NumberError::TooPrecise { value: text.to_owned(), digits },
            NumberError::OutOfRange(_) => NumberError::OutOfRange(text.to_owned()),
            other => other,
        })?;
        Ok(number)
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
