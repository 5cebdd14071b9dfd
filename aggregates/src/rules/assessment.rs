//! What [`super::Rules::assess`] makes of an image: the entity it is, why it is invalid, or
//! what it adds to which aggregate items.

use super::compiled::Entity;
use crate::deltas::Deltas;

/// DynamoDB's own words for a number with too many digits.
const TOO_PRECISE: &str = "more than 38 significant digits";

/// What the rules make of one image (or of its absence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleAssessment<'r> {
    /// No image: an INSERT's old side or a REMOVE's new side.
    Absent,
    /// No entity matches: no entity-type attribute, or one no entity has, and no key pattern
    /// fits. Skipped and counted.
    Unknown,
    /// Invalid: contributes nothing, counted as rejected with [`Violation::reason`].
    Rejected {
        /// The entity the image claimed to be; `None` when its entity-type attribute is not a
        /// string.
        entity: Option<&'r Entity>,
        /// Why: the first check the image fails.
        violation: Violation<'r>,
    },
    /// A valid source item.
    Source {
        /// The entity it is.
        entity: &'r Entity,
        /// What it adds to which aggregate items while it exists.
        contribution: Deltas,
    },
}

impl<'r> RuleAssessment<'r> {
    /// What the image adds while it exists: nothing unless it is a valid source item.
    pub fn contribution(&self) -> &Deltas {
        static NOTHING: Deltas = Deltas::new();
        match self {
            RuleAssessment::Source { contribution, .. } => contribution,
            _ => &NOTHING,
        }
    }

    /// Why the image is invalid, if it is.
    pub fn violation(&self) -> Option<&Violation<'r>> {
        match self {
            RuleAssessment::Rejected { violation, .. } => Some(violation),
            _ => None,
        }
    }
}

/// Why a number attribute is not a DynamoDB number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberProblem {
    /// The text is not a decimal number (`bad_number`).
    NotANumber,
    /// More than 38 significant digits (`number_too_precise`).
    TooPrecise,
    /// A magnitude outside DynamoDB's range, 1E-130 to under 1E+126 (`bad_number`).
    OutOfRange,
}

impl std::fmt::Display for NumberProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NumberProblem::NotANumber => "not a number",
            NumberProblem::TooPrecise => TOO_PRECISE,
            NumberProblem::OutOfRange => "out of range",
        })
    }
}

/// Why an image contributes nothing. Messages name attributes, never their values: images hold
/// personal data and these messages reach the logs. For the university rules, reasons and
/// messages are those of the university contract (docs/university.md).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation<'r> {
    /// A key attribute, or a required attribute, is absent (`missing_attribute`). Holds its
    /// name.
    #[error("attribute `{0}` is missing")]
    Missing(&'r str),
    /// An `id` attribute is `""` (`empty_attribute`). Holds its name.
    #[error("attribute `{0}` is empty")]
    Empty(&'r str),
    /// A key, the entity-type attribute or an attribute has the wrong DynamoDB type
    /// (`wrong_type`): a `grade` of `{"S": "A+"}`.
    #[error("attribute `{attribute}` has type {found}, expected {expected}")]
    WrongType {
        /// The attribute's name.
        attribute: &'r str,
        /// The DynamoDB type it must have (`S`, `N`).
        expected: &'static str,
        /// The DynamoDB type it has (`S`, `N`, `BOOL`, `M`, ...).
        found: &'static str,
    },
    /// A key does not fit its entity's pattern, a typed capture that does not parse included
    /// (`key_shape`).
    #[error("key `{attribute}` does not have the shape `{shape}`")]
    KeyShape {
        /// The key attribute's name.
        attribute: &'r str,
        /// The pattern as messages show it (`course#{courseId}`, `{YYYY-MM-DD}#order#{orderId}`).
        shape: &'r str,
    },
    /// A `number` attribute is not a DynamoDB number: `number_too_precise` past 38 significant
    /// digits, `bad_number` otherwise.
    #[error("attribute `{attribute}` is not a DynamoDB number: {problem}")]
    BadNumber {
        /// The attribute's name.
        attribute: &'r str,
        /// What is wrong with the number.
        problem: NumberProblem,
    },
    /// A `non_negative` number is negative (its `negative_reason`, by default
    /// `negative_number`).
    #[error("attribute `{attribute}` is negative")]
    Negative {
        /// The attribute's name.
        attribute: &'r str,
        /// The rejection reason the rules give it (`negative_grade`).
        reason: &'r str,
    },
    /// A `date` or `datetime` attribute does not parse (`bad_date`). Holds its name.
    #[error("attribute `{0}` is not an ISO 8601 date or date-time")]
    BadDate(&'r str),
    /// The image's own key is over [`crate::rules::Limits`] (`key_too_long`): it would leave no
    /// room for its ledger's key.
    #[error("key `{key}` is {bytes} bytes, over the {limit} tally accepts")]
    KeyTooLong {
        /// The key attribute's name.
        key: &'r str,
        /// The key's length in UTF-8 bytes.
        bytes: usize,
        /// The most bytes the limits allow that key.
        limit: usize,
    },
    /// An aggregate the image contributes to would have a key DynamoDB cannot store
    /// (`key_too_long`).
    #[error("the `{aggregate}` item's `{key}` would be {bytes} bytes, over DynamoDB's {limit}")]
    AggregateKeyTooLong {
        /// The aggregate's name.
        aggregate: &'r str,
        /// The key attribute's name.
        key: &'r str,
        /// The rendered key's length in UTF-8 bytes.
        bytes: usize,
        /// DynamoDB's limit on that key: 2,048 bytes for a partition key, 1,024 for a sort key.
        limit: usize,
    },
    /// A number has more digits before or after the decimal point than its `max_digits` allows
    /// (`out_of_range`).
    #[error("attribute `{attribute}` has more than {integer} digits before the decimal point or {fraction} after it")]
    OutOfRange {
        /// The attribute's name.
        attribute: &'r str,
        /// Most digits allowed before the decimal point.
        integer: u64,
        /// Most digits allowed after it, trailing zeros not counted.
        fraction: u64,
    },
    /// An aggregate key built from the image would read back as other values (a value holds the
    /// literal that follows it in the template), so it could name another item
    /// (`ambiguous_key`).
    #[error("the `{aggregate}` item's `{key}` would not read back as the values it is built from (a value holds the literal after it)")]
    AmbiguousKey {
        /// The aggregate's name.
        aggregate: &'r str,
        /// The key attribute's name: the partition key's, or the sort key's.
        key: &'r str,
    },
    /// The image's own partition key starts with the bookkeeping prefix or a reserved one,
    /// which the application promised never to write (`reserved_key`).
    #[error("key `{key}` starts with `{prefix}`, a prefix only tally writes")]
    ReservedKey {
        /// The partition key attribute's name.
        key: &'r str,
        /// The prefix the key starts with.
        prefix: &'r str,
    },
}

impl<'r> Violation<'r> {
    /// A stable, low-cardinality label for metrics: the reasons of docs/rules.md, the university
    /// contract's among them.
    pub fn reason(&self) -> &'r str {
        match self {
            Violation::Missing(_) => "missing_attribute",
            Violation::Empty(_) => "empty_attribute",
            Violation::WrongType { .. } => "wrong_type",
            Violation::KeyShape { .. } => "key_shape",
            Violation::BadNumber { problem: NumberProblem::TooPrecise, .. } => "number_too_precise",
            Violation::BadNumber { .. } => "bad_number",
            Violation::Negative { reason, .. } => reason,
            Violation::BadDate(_) => "bad_date",
            Violation::KeyTooLong { .. } | Violation::AggregateKeyTooLong { .. } => "key_too_long",
            Violation::OutOfRange { .. } => "out_of_range",
            Violation::AmbiguousKey { .. } => "ambiguous_key",
            Violation::ReservedKey { .. } => "reserved_key",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_spec_s() {
        let cases = [
            (Violation::BadNumber { attribute: "ttl", problem: NumberProblem::TooPrecise }, "number_too_precise"),
            (Violation::BadNumber { attribute: "ttl", problem: NumberProblem::OutOfRange }, "bad_number"),
            (Violation::Negative { attribute: "grade", reason: "negative_grade" }, "negative_grade"),
            (Violation::AggregateKeyTooLong { aggregate: "stats", key: "pk", bytes: 2049, limit: 2048 }, "key_too_long"),
        ];
        for (violation, reason) in cases {
            assert_eq!(violation.reason(), reason, "{violation}");
        }
        assert_eq!(
            Violation::BadNumber { attribute: "grade", problem: NumberProblem::TooPrecise }.to_string(),
            "attribute `grade` is not a DynamoDB number: more than 38 significant digits"
        );
    }
}
