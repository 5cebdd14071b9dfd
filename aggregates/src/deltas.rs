//! Signed amounts per aggregate item and field: what an image contributes, what a record
//! changes, what a batch adds up to.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use crate::keys::AggregateKey;
use crate::number::Number;
use crate::rules::FieldId;

/// Signed amounts per aggregate field. Zero amounts are never stored, so two `Deltas` that have
/// the same effect are equal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deltas(BTreeMap<AggregateKey, BTreeMap<FieldId, Number>>);

impl Deltas {
    pub const fn new() -> Self {
        Deltas(BTreeMap::new())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds `amount` to one field.
    pub fn add(&mut self, key: AggregateKey, field: FieldId, amount: &Number) {
        self.add_to(key, [(field, amount)]);
    }

    /// Adds amounts to fields of one aggregate item, looking the item up once.
    pub fn add_to<'n>(&mut self, key: AggregateKey, amounts: impl IntoIterator<Item = (FieldId, &'n Number)>) {
        let add = |fields: &mut BTreeMap<FieldId, Number>| {
            for (field, amount) in amounts {
                if amount.is_zero() {
                    continue;
                }
                let total = fields.entry(field).or_insert_with(Number::zero);
                *total += amount;
                if total.is_zero() {
                    fields.remove(&field);
                }
            }
        };
        match self.0.entry(key) {
            Entry::Occupied(mut entry) => {
                add(entry.get_mut());
                if entry.get().is_empty() {
                    entry.remove();
                }
            }
            Entry::Vacant(entry) => {
                let mut fields = BTreeMap::new();
                add(&mut fields);
                if !fields.is_empty() {
                    entry.insert(fields);
                }
            }
        }
    }

    /// Adds every amount of `other`.
    pub fn merge(&mut self, other: &Deltas) {
        for (key, fields) in &other.0 {
            self.add_to(key.clone(), fields.iter().map(|(field, amount)| (*field, amount)));
        }
    }

    pub fn negated(&self) -> Deltas {
        let negate = |fields: &BTreeMap<FieldId, Number>| fields.iter().map(|(field, amount)| (*field, -amount)).collect();
        Deltas(self.0.iter().map(|(key, fields)| (key.clone(), negate(fields))).collect())
    }

    /// Every non-zero amount, ordered by aggregate key then field.
    pub fn iter(&self) -> impl Iterator<Item = (&AggregateKey, FieldId, &Number)> {
        self.0.iter().flat_map(|(key, fields)| fields.iter().map(move |(field, amount)| (key, *field, amount)))
    }

    /// The aggregates this touches.
    pub fn keys(&self) -> impl Iterator<Item = &AggregateKey> {
        self.0.keys()
    }

    /// The amounts for one aggregate (empty if untouched).
    pub fn fields(&self, key: &AggregateKey) -> impl Iterator<Item = (FieldId, &Number)> {
        self.0.get(key).into_iter().flat_map(|fields| fields.iter().map(|(field, amount)| (*field, amount)))
    }

    /// `new - old`: the effect of an item changing from `old` to `new`.
    pub fn between(old: &Deltas, new: &Deltas) -> Deltas {
        let mut change = new.clone();
        change.merge(&old.negated());
        change
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::rules::Rules;

    /// Amounts on a few university aggregate items and fields, zeros and opposites included.
    fn deltas() -> impl Strategy<Value = Deltas> {
        let keys = [("course#c1", "stats"), ("course#c2", "stats"), ("stats#university", "day#2026-01-02"), ("user#u1", "order_stats")];
        let fields = ["submissionCount", "gradeSum", "orderTotal", "submissions"];
        let amount = prop_oneof![Just("0".to_owned()), (-3i64..=3).prop_map(|n| n.to_string()), "-?[0-9]{1,3}\\.[0-9]{1,2}"];
        proptest::collection::vec((0..keys.len(), 0..fields.len(), amount), 0..12).prop_map(move |entries| {
            let rules = Rules::university();
            let mut deltas = Deltas::new();
            for (key, field, amount) in entries {
                let (pk, sk) = keys[key];
                let key = rules.parse_key(pk, sk).expect("a university aggregate key");
                deltas.add(key, rules.field(fields[field]).expect("a university field"), &amount.parse().expect("a number"));
            }
            deltas
        })
    }

    proptest! {
        /// The algebra the planner relies on: a record's change takes its old contribution to
        /// its new one exactly, in any order, and nothing is ever stored at zero.
        #[test]
        fn changes_take_one_contribution_to_the_other(old in deltas(), new in deltas(), other in deltas()) {
            let mut moved = old.clone();
            moved.merge(&Deltas::between(&old, &new));
            prop_assert_eq!(&moved, &new);
            prop_assert_eq!(old.negated().negated(), old.clone());
            let (mut ab, mut ba) = (old.clone(), other.clone());
            ab.merge(&other);
            ba.merge(&old);
            prop_assert_eq!(&ab, &ba);
            let mut nothing = old.clone();
            nothing.merge(&old.negated());
            prop_assert!(nothing.is_empty());
            prop_assert!(ab.iter().all(|(_, _, amount)| !amount.is_zero()));
            prop_assert!(ab.keys().all(|key| ab.fields(key).next().is_some()), "no aggregate is kept with no amounts");
        }
    }

    #[test]
    fn amounts_merge_per_field_and_zeros_vanish() {
        let rules = Rules::university();
        let course = rules.parse_key("course#c1", "stats").unwrap();
        let day = rules.parse_key("stats#university", "day#2026-01-02").unwrap();
        let (count, sum) = (rules.field("submissionCount").unwrap(), rules.field("gradeSum").unwrap());
        let mut deltas = Deltas::new();
        deltas.add_to(course.clone(), [(count, &Number::one()), (sum, &"2.5".parse().unwrap())]);
        deltas.add(day.clone(), rules.field("submissions").unwrap(), &Number::one());
        deltas.add(course.clone(), sum, &"-2.5".parse().unwrap());
        assert_eq!(
            deltas.iter().map(|(key, field, _)| (key.clone(), field)).collect::<Vec<_>>(),
            [(course.clone(), count), (day.clone(), rules.field("submissions").unwrap())]
        );
        let change = Deltas::between(&deltas, &Deltas::new());
        assert_eq!(change, deltas.negated());
        let mut back = deltas.clone();
        back.merge(&change);
        assert!(back.is_empty());
        deltas.add(course, count, &Number::zero());
        assert_eq!(deltas.keys().count(), 2);
    }
}
