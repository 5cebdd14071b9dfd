//! What [`super::Rules::assess`] makes of an image: the entity it is, why it is invalid, or
//! what it adds to which aggregate items.
//!
//! The contribution is data-driven: an aggregate item is an [`AggregateRef`] (its kind and its
//! rendered keys) and a field a [`FieldId`], where today's [`crate::Deltas`] use the
//! [`crate::AggregateKey`] and [`crate::Field`] enums.

use super::plan::{AggregateId, Entity, FieldId};
use crate::number::Number;
use crate::source::TOO_PRECISE;

/// What the rules make of one image (or of its absence). Today's [`crate::Assessment`].
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
    Source { entity: &'r Entity, contribution: Contribution },
}

impl RuleAssessment<'_> {
    /// What the image adds while it exists: nothing unless it is a valid source item.
    pub fn contribution(&self) -> Option<&Contribution> {
        match self {
            RuleAssessment::Source { contribution, .. } => Some(contribution),
            _ => None,
        }
    }
}

/// One aggregate item: its kind and keys. Plays the part of today's [`crate::AggregateKey`];
/// ordered by kind (the file's order), then keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AggregateRef {
    pub kind: AggregateId,
    pub pk: String,
    pub sk: String,
}

/// Signed amounts per aggregate item and field. Like [`crate::Deltas`], each item appears once,
/// each field once within it, and no amount is zero; the order is the rules' (deterministic).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contribution {
    pub(crate) parts: Vec<Part>,
}

/// The amounts for one aggregate item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub(crate) aggregate: AggregateRef,
    pub(crate) amounts: Vec<(FieldId, Number)>,
}

impl Part {
    pub fn aggregate(&self) -> &AggregateRef {
        &self.aggregate
    }

    /// Non-zero amounts, each field once.
    pub fn amounts(&self) -> &[(FieldId, Number)] {
        &self.amounts
    }

    /// Adds `amount` to `field`, dropping the field if it comes to zero.
    pub(crate) fn add(&mut self, field: FieldId, amount: &Number) {
        match self.amounts.iter().position(|(known, _)| *known == field) {
            Some(index) => {
                self.amounts[index].1 += amount;
                if self.amounts[index].1.is_zero() {
                    self.amounts.remove(index);
                }
            }
            None if amount.is_zero() => {}
            None => self.amounts.push((field, amount.clone())),
        }
    }
}

impl Contribution {
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The aggregate items touched, with their amounts.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Every amount: aggregate item, field, amount.
    pub fn iter(&self) -> impl Iterator<Item = (&AggregateRef, FieldId, &Number)> {
        self.parts.iter().flat_map(|part| part.amounts.iter().map(move |(field, amount)| (&part.aggregate, *field, amount)))
    }

    /// Adds a part, merging it into one for the same aggregate item; a part left with no
    /// amounts is dropped.
    pub(crate) fn push(&mut self, part: Part) {
        match self.parts.iter().position(|known| known.aggregate == part.aggregate) {
            Some(index) => {
                for (field, amount) in &part.amounts {
                    self.parts[index].add(*field, amount);
                }
                if self.parts[index].amounts.is_empty() {
                    self.parts.remove(index);
                }
            }
            None if part.amounts.is_empty() => {}
            None => self.parts.push(part),
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
/// personal data and these messages reach the logs. For the university rules, reason and
/// message are exactly today's [`crate::Rejection`]'s.
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(text: &str) -> Number {
        text.parse().unwrap()
    }

    fn part(kind: usize, amounts: &[(usize, &str)]) -> Part {
        Part {
            aggregate: AggregateRef { kind: AggregateId(kind), pk: "p".into(), sk: "s".into() },
            amounts: amounts.iter().map(|(field, amount)| (FieldId(*field), n(amount))).collect(),
        }
    }

    #[test]
    fn parts_for_one_item_merge_and_zeros_vanish() {
        let mut contribution = Contribution::default();
        contribution.push(part(0, &[(0, "1"), (1, "2.5")]));
        contribution.push(part(1, &[(0, "1")]));
        contribution.push(part(0, &[(1, "-2.5"), (2, "3")]));
        contribution.push(part(2, &[]));
        assert_eq!(contribution.parts(), &[part(0, &[(0, "1"), (2, "3")]), part(1, &[(0, "1")])]);
        contribution.push(part(1, &[(0, "-1")]));
        assert_eq!(contribution.parts(), &[part(0, &[(0, "1"), (2, "3")])]);
        assert_eq!(contribution.iter().count(), 2);
    }

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
