//! Recomputing every aggregate from the source items themselves: the oracle the stream path
//! must agree with, and what backfill writes.

use std::collections::BTreeMap;

use serde_dynamo::{AttributeValue, Item};

use crate::deltas::Deltas;
use crate::keys::{AggregateKey, KeyOwner};
use crate::number::Number;
use crate::rules::{AggregateId, Average, FieldId, RuleAssessment, Rules};

/// Aggregates recomputed from a set of items, with what was skipped on the way.
///
/// Partial recomputes of disjoint slices of a table combine exactly with [`Recompute::combine`]:
/// every aggregate is a sum, so slice totals add up to the whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recompute<'r> {
    rules: &'r Rules,
    /// The sum of every valid source item's contribution: each aggregate as it should be.
    pub totals: Deltas,
    /// Items added ([`Recompute::add_item`]), whatever they turned out to be.
    pub items: u64,
    /// Items skipped as tally's own by their keys (aggregates, bookkeeping).
    pub own_items: u64,
    /// Items no entity matches.
    pub unknown: u64,
    /// Invalid items, by rejection reason ([`crate::Violation::reason`]).
    pub rejected: BTreeMap<&'r str, u64>,
}

impl<'r> Recompute<'r> {
    /// Nothing recomputed yet, under `rules`.
    pub fn new(rules: &'r Rules) -> Self {
        Recompute { rules, totals: Deltas::new(), items: 0, own_items: 0, unknown: 0, rejected: BTreeMap::new() }
    }

    /// The rules items are assessed with.
    pub fn rules(&self) -> &'r Rules {
        self.rules
    }

    /// Adds one scanned item; returns its assessment if it is an application item (not tally's own).
    pub fn add_item(&mut self, item: &Item) -> Option<RuleAssessment<'r>> {
        self.items += 1;
        let table = self.rules.table();
        let key_of = |name: &str| match item.get(name) {
            Some(AttributeValue::S(value)) => Some(value.as_str()),
            _ => None,
        };
        if let (Some(pk), Some(sk)) = (key_of(table.pk()), key_of(table.sk())) {
            if self.rules.owner(pk, sk) != KeyOwner::Application {
                self.own_items += 1;
                return None;
            }
        }
        let assessment = self.rules.assess(Some(item));
        match &assessment {
            RuleAssessment::Source { contribution, .. } => self.totals.merge(contribution),
            RuleAssessment::Unknown | RuleAssessment::Absent => self.unknown += 1,
            RuleAssessment::Rejected { violation, .. } => *self.rejected.entry(violation.reason()).or_default() += 1,
        }
        Some(assessment)
    }

    /// Adds another recompute's totals and counts: that of a disjoint slice of the same table.
    pub fn combine(&mut self, other: &Recompute<'r>) {
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
            let mut values = AggregateValues::zero(self.rules, key.kind);
            values.apply(key, &self.totals);
            aggregates.insert(key.clone(), values);
        }
        aggregates
    }
}

/// The stored fields of one aggregate item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateValues {
    /// The aggregate it is an item of.
    pub kind: AggregateId,
    /// Each counter and sum of the item, with its value.
    pub fields: BTreeMap<FieldId, Number>,
}

impl AggregateValues {
    /// Every counter and sum of `kind`, at zero.
    pub fn zero(rules: &Rules, kind: AggregateId) -> Self {
        AggregateValues { kind, fields: rules.aggregate(kind).fields().map(|field| (field, Number::zero())).collect() }
    }

    /// The value of `field`: 0 if the item does not have it.
    pub fn get(&self, field: FieldId) -> Number {
        self.fields.get(&field).cloned().unwrap_or_default()
    }

    /// Adds one aggregate's amounts from `deltas`.
    pub fn apply(&mut self, key: &AggregateKey, deltas: &Deltas) {
        for (field, amount) in deltas.fields(key) {
            *self.fields.entry(field).or_insert_with(Number::zero) += amount;
        }
    }

    /// The derived fields of its kind, each with its value (`None`: the item goes without it,
    /// its count not being positive).
    pub fn averages<'a, 'r: 'a>(&'a self, rules: &'r Rules) -> impl Iterator<Item = (&'r Average, Option<Number>)> + 'a {
        rules
            .aggregate(self.kind)
            .averages()
            .iter()
            .map(|average| (average, average.value(&self.get(average.sum()), &self.get(average.count()))))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// An image from `name, value` pairs: `N:12.5` is a number, anything else a string.
    fn image(attrs: &[(&str, &str)]) -> Item {
        let value = |text: &str| match text.strip_prefix("N:") {
            Some(number) => AttributeValue::N(number.to_owned()),
            None => AttributeValue::S(text.to_owned()),
        };
        Item::from(attrs.iter().map(|(name, text)| ((*name).to_owned(), value(text))).collect::<HashMap<_, _>>())
    }

    /// University items of every kind of outcome, over few keys so that they add to the same
    /// aggregates: valid, rejected, unknown, and tally's own.
    fn university_items() -> Vec<Item> {
        let submission = |student: &str, grade: &str| {
            image(&[
                ("pk", "course#c1"),
                ("sk", "submission#a1#s1"),
                ("entityType", "submission"),
                ("studentID", student),
                ("assignmentID", "a1"),
                ("submittedAt", "2026-03-01T10:00:00Z"),
                ("grade", grade),
            ])
        };
        vec![
            image(&[
                ("pk", "course#c1"),
                ("sk", "student#s1"),
                ("entityType", "student"),
                ("studentID", "s1"),
                ("enrolledAt", "2026-03-01"),
            ]),
            image(&[("pk", "course#c2"), ("sk", "student#s2"), ("entityType", "student"), ("studentID", "s2")]),
            submission("s1", "N:88.5"),
            submission("s2", "N:-1"),
            image(&[("pk", "user#s1"), ("sk", "2026-03-01#order#o1"), ("entityType", "order"), ("amount", "N:19.99")]),
            image(&[("pk", "user#s1"), ("sk", "2026-03-01#transaction#t1"), ("entityType", "transaction"), ("amount", "N:-5.5")]),
            image(&[("pk", "user#s1"), ("sk", "2026-3-1#order#o2"), ("entityType", "order"), ("amount", "N:1")]),
            image(&[("pk", "course#c1"), ("sk", "metadata"), ("entityType", "course")]),
            image(&[("pk", "course#c1"), ("sk", "note#1"), ("entityType", "note")]),
            image(&[("pk", "course#c1"), ("sk", "stats"), ("entityType", "stats"), ("enrollmentCount", "N:3")]),
            image(&[("pk", "tally#ledger#course#c1"), ("sk", "student#s1")]),
        ]
    }

    proptest! {
        #[test]
        fn partial_recomputes_combine_to_the_whole(
            picks in prop::collection::vec(any::<prop::sample::Index>(), 0..40), split in any::<prop::sample::Index>(),
        ) {
            // What segmented backfill relies on: slices of a table add up to the table.
            let rules = Rules::university();
            let pool = university_items();
            let items: Vec<&Item> = picks.iter().map(|pick| pick.get(&pool)).collect();
            let cut = if items.is_empty() { 0 } else { split.index(items.len() + 1) };
            let mut whole = Recompute::new(rules);
            let (mut left, mut right) = (Recompute::new(rules), Recompute::new(rules));
            for (index, item) in items.iter().enumerate() {
                whole.add_item(item);
                if index < cut { left.add_item(item) } else { right.add_item(item) };
            }
            left.combine(&right);
            prop_assert_eq!(&left, &whole);
            let mut sum = Deltas::new();
            for item in &items {
                sum.merge(rules.assess(Some(item)).contribution());
            }
            prop_assert_eq!(&whole.totals, &sum);
        }
    }
}
