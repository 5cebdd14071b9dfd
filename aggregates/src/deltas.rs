//! The rules of SPEC: what an image contributes to the aggregates, and what a change does.

use std::collections::BTreeMap;

use serde_dynamo::Item;

use crate::keys::{AggregateKey, Field};
use crate::number::Number;
use crate::source::{decode, Decoded, Rejection, SourceItem};

/// Signed amounts per aggregate field. Zero amounts are never stored, so two `Deltas` that have
/// the same effect are equal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deltas(BTreeMap<AggregateKey, BTreeMap<Field, Number>>);

impl Deltas {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds `amount` to one field.
    pub fn add(&mut self, key: AggregateKey, field: Field, amount: &Number) {
        if amount.is_zero() {
            return;
        }
        let fields = self.0.entry(key.clone()).or_default();
        let total = fields.entry(field).or_insert_with(Number::zero);
        *total += amount;
        if total.is_zero() {
            fields.remove(&field);
            if fields.is_empty() {
                self.0.remove(&key);
            }
        }
    }

    /// Adds every amount of `other`.
    pub fn merge(&mut self, other: &Deltas) {
        for (key, field, amount) in other.iter() {
            self.add(key.clone(), field, amount);
        }
    }

    pub fn negated(&self) -> Deltas {
        let mut negated = Deltas::new();
        for (key, field, amount) in self.iter() {
            negated.add(key.clone(), field, &-amount);
        }
        negated
    }

    /// Every non-zero amount, ordered by aggregate key then field.
    pub fn iter(&self) -> impl Iterator<Item = (&AggregateKey, Field, &Number)> {
        self.0.iter().flat_map(|(key, fields)| fields.iter().map(move |(field, amount)| (key, *field, amount)))
    }

    /// The aggregates this touches.
    pub fn keys(&self) -> impl Iterator<Item = &AggregateKey> {
        self.0.keys()
    }

    /// The amounts for one aggregate (empty if untouched).
    pub fn fields(&self, key: &AggregateKey) -> impl Iterator<Item = (Field, &Number)> {
        self.0.get(key).into_iter().flat_map(|fields| fields.iter().map(|(field, amount)| (*field, amount)))
    }

    /// `new - old`: the effect of an item changing from `old` to `new`.
    pub fn change(old: &Deltas, new: &Deltas) -> Deltas {
        let mut change = new.clone();
        change.merge(&old.negated());
        change
    }
}

/// What one source item adds to the aggregates while it exists.
pub fn contribution(item: &SourceItem) -> Deltas {
    let one = Number::one();
    let mut deltas = Deltas::new();
    match item {
        SourceItem::Course | SourceItem::User | SourceItem::Session => {}
        SourceItem::Enrollment { course_id, student_id, day } => {
            deltas.add(AggregateKey::Course { course_id: course_id.clone() }, Field::EnrollmentCount, &one);
            deltas.add(AggregateKey::Academic { student_id: student_id.clone() }, Field::EnrollmentCount, &one);
            if let Some(day) = day {
                deltas.add(AggregateKey::Daily { day: *day }, Field::Enrollments, &one);
            }
        }
        SourceItem::Instructor { course_id } => {
            deltas.add(AggregateKey::Course { course_id: course_id.clone() }, Field::InstructorCount, &one);
        }
        SourceItem::Assignment { course_id } => {
            deltas.add(AggregateKey::Course { course_id: course_id.clone() }, Field::AssignmentCount, &one);
        }
        SourceItem::Submission { course_id, assignment_id, student_id, day, grade } => {
            let targets = [
                AggregateKey::Course { course_id: course_id.clone() },
                AggregateKey::Assignment { course_id: course_id.clone(), assignment_id: assignment_id.clone() },
                AggregateKey::Academic { student_id: student_id.clone() },
            ];
            for key in targets {
                deltas.add(key.clone(), Field::SubmissionCount, &one);
                if let Some(grade) = grade {
                    deltas.add(key.clone(), Field::GradedCount, &one);
                    deltas.add(key, Field::GradeSum, grade);
                }
            }
            if let Some(day) = day {
                deltas.add(AggregateKey::Daily { day: *day }, Field::Submissions, &one);
            }
        }
        SourceItem::Order { user_id, day, amount } => {
            let orders = AggregateKey::Orders { user_id: user_id.clone() };
            deltas.add(orders.clone(), Field::OrderCount, &one);
            deltas.add(orders, Field::OrderTotal, amount);
            deltas.add(AggregateKey::Daily { day: *day }, Field::Orders, &one);
            deltas.add(AggregateKey::Daily { day: *day }, Field::OrderTotal, amount);
        }
        SourceItem::Transaction { user_id, amount, .. } => {
            let orders = AggregateKey::Orders { user_id: user_id.clone() };
            deltas.add(orders.clone(), Field::TransactionCount, &one);
            deltas.add(orders, Field::TransactionBalance, amount);
        }
    }
    deltas
}

/// What the rules make of one image (or of its absence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assessment {
    /// No image: an INSERT's old side or a REMOVE's new side.
    Absent,
    Source {
        entity_type: &'static str,
        contribution: Deltas,
    },
    Unknown,
    Rejected(Rejection),
}

impl Assessment {
    /// The image's contribution; absent, unknown and rejected images contribute nothing.
    pub fn contribution(&self) -> Deltas {
        match self {
            Assessment::Source { contribution, .. } => contribution.clone(),
            _ => Deltas::new(),
        }
    }
}

/// Decodes, validates and evaluates one image.
pub fn assess(image: Option<&Item>) -> Assessment {
    let Some(image) = image else { return Assessment::Absent };
    match decode(image) {
        Ok(Decoded::Source(item)) => Assessment::Source { entity_type: item.entity_type(), contribution: contribution(&item) },
        Ok(Decoded::Unknown) => Assessment::Unknown,
        Err(rejection) => Assessment::Rejected(rejection),
    }
}

impl SourceItem {
    /// The `entityType` value SPEC gives this item.
    pub fn entity_type(&self) -> &'static str {
        match self {
            SourceItem::Course => "course",
            SourceItem::Enrollment { .. } => "student",
            SourceItem::Instructor { .. } => "instructor",
            SourceItem::Assignment { .. } => "assignment",
            SourceItem::Submission { .. } => "submission",
            SourceItem::User => "user",
            SourceItem::Order { .. } => "order",
            SourceItem::Transaction { .. } => "transaction",
            SourceItem::Session => "session",
        }
    }
}
