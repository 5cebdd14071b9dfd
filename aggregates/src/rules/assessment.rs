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
        violation: Violation<'r>,
    },
    /// A valid source item.
    Source { entity: &'r Entity, contribution: Deltas },
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
    NotANumber,
    TooPrecise,
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
/// messages are SPEC's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation<'r> {
    #[error("attribute `{0}` is missing")]
    Missing(&'r str),
    #[error("attribute `{0}` is empty")]
    Empty(&'r str),
    #[error("attribute `{attribute}` has type {found}, expected {expected}")]
    WrongType { attribute: &'r str, expected: &'static str, found: &'static str },
    #[error("key `{attribute}` does not have the shape `{shape}`")]
    KeyShape { attribute: &'r str, shape: &'r str },
    #[error("attribute `{attribute}` is not a DynamoDB number: {problem}")]
    BadNumber { attribute: &'r str, problem: NumberProblem },
    #[error("attribute `{attribute}` is negative")]
    Negative { attribute: &'r str, reason: &'r str },
    #[error("attribute `{0}` is not an ISO 8601 date or date-time")]
    BadDate(&'r str),
    /// The image's own key leaves no room for its ledger's key.
    #[error("key `{key}` is {bytes} bytes, over the {limit} tally accepts")]
    KeyTooLong { key: &'r str, bytes: usize, limit: usize },
    /// An aggregate the image contributes to would have a key DynamoDB cannot store.
    #[error("the `{aggregate}` item's `{key}` would be {bytes} bytes, over DynamoDB's {limit}")]
    AggregateKeyTooLong { aggregate: &'r str, key: &'r str, bytes: usize, limit: usize },
    #[error("attribute `{attribute}` has more than {integer} digits before the decimal point or {fraction} after it")]
    OutOfRange { attribute: &'r str, integer: u64, fraction: u64 },
    /// An aggregate key built from the image would read back as other values (a value holds the
    /// literal that follows it in the template), so it could name another item.
    #[error("the `{aggregate}` item's `{key}` would not read back as the values it is built from (a value holds the literal after it)")]
    AmbiguousKey { aggregate: &'r str, key: &'r str },
    /// The image's own partition key starts with a prefix the application promised never to
    /// write (the bookkeeping prefix or a reserved one).
    #[error("key `{key}` starts with `{prefix}`, a prefix only tally writes")]
    ReservedKey { key: &'r str, prefix: &'r str },
}

impl<'r> Violation<'r> {
    /// A stable, low-cardinality label for metrics (SPEC's reasons).
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
