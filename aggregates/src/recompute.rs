//! Recomputing every aggregate from the source items themselves: the oracle the stream path
//! must agree with, and what backfill writes.

use std::collections::BTreeMap;

use serde_dynamo::Item;

use crate::deltas::{assess, Assessment, Deltas};
use crate::keys::{AggregateKey, AggregateKind, Field, KeyOwner, PK, SK};
use crate::number::Number;

/// Aggregates recomputed from a set of items, with what was skipped on the way.
///
/// Partial recomputes of disjoint slices of a table combine exactly with [`Recompute::combine`]:
/// every aggregate is a sum, so slice totals add up to the whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recompute {
    pub totals: Deltas,
    pub items: u64,
    pub own_items: u64,
    pub unknown: u64,
    pub rejected: BTreeMap<&'static str, u64>,
}

impl Recompute {
    /// Adds one scanned item; returns its assessment if it is an application item (not tally's own).
    pub fn add_item(&mut self, item: &Item) -> Option<Assessment> {
        self.items += 1;
        let key_of = |name| match item.get(name) {
            Some(serde_dynamo::AttributeValue::S(value)) => Some(value.as_str()),
            _ => None,
        };
        if let (Some(pk), Some(sk)) = (key_of(PK), key_of(SK)) {
            if KeyOwner::of(pk, sk) != KeyOwner::Application {
                self.own_items += 1;
                return None;
            }
        }
        let assessment = assess(Some(item));
        match &assessment {
            Assessment::Source { contribution, .. } => self.totals.merge(contribution),
            Assessment::Unknown | Assessment::Absent => self.unknown += 1,
            Assessment::Rejected(rejection) => *self.rejected.entry(rejection.reason()).or_default() += 1,
        }
        Some(assessment)
    }

    pub fn combine(&mut self, other: &Recompute) {
        self.totals.merge(&other.totals);
        self.items += other.items;
        self.own_items += other.own_items;
        self.unknown += other.unknown;
        for (reason, count) in &other.rejected {
            *self.rejected.entry(reason).or_default() += count;
        }
    }

    /// The recomputed aggregate items, every field present.
    pub fn aggregates(&self) -> BTreeMap<AggregateKey, AggregateValues> {
        let mut aggregates = BTreeMap::new();
        for key in self.totals.keys() {
            let mut values = AggregateValues::zero(key.kind());
            for (field, amount) in self.totals.fields(key) {
                values.fields.insert(field, amount.clone());
            }
            aggregates.insert(key.clone(), values);
        }
        aggregates
    }
}

/// The stored fields of one aggregate item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateValues {
    pub kind: AggregateKind,
    pub fields: BTreeMap<Field, Number>,
}

impl AggregateValues {
    pub fn zero(kind: AggregateKind) -> Self {
        AggregateValues { kind, fields: kind.fields().iter().map(|field| (*field, Number::zero())).collect() }
    }

    pub fn get(&self, field: Field) -> Number {
        self.fields.get(&field).cloned().unwrap_or_default()
    }

    /// Adds one aggregate's amounts from `deltas`.
    pub fn apply(&mut self, key: &AggregateKey, deltas: &Deltas) {
        for (field, amount) in deltas.fields(key) {
            *self.fields.entry(field).or_insert_with(Number::zero) += amount;
        }
    }

    /// `gradeSum / gradedCount` per SPEC; `None` for kinds without grades or with none graded.
    pub fn grade_average(&self) -> Option<Number> {
        if !self.kind.has_grade_average() {
            return None;
        }
        Number::average(&self.get(Field::GradeSum), &self.get(Field::GradedCount))
    }
}
