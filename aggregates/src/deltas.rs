//! Signed amounts per aggregate item and field: what an image contributes, what a record
//! changes, what a batch adds up to.

use std::borrow::Cow;
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
    /// No amounts: what an absent or invalid image contributes.
    pub const fn new() -> Self {
        Deltas(BTreeMap::new())
    }

    /// Whether it holds no amount: nothing was added, or everything added cancelled out.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds `amount` to one field.
    pub fn add(&mut self, key: AggregateKey, field: FieldId, amount: &Number) {
        self.add_to(key, [(field, amount)]);
    }

    /// Adds amounts to fields of one aggregate item.
    pub fn add_to<'n>(&mut self, key: AggregateKey, amounts: impl IntoIterator<Item = (FieldId, &'n Number)>) {
        self.accumulate(Cow::Owned(key), amounts, Sign::Plus);
    }

    /// Adds every amount of `other`.
    pub fn merge(&mut self, other: &Deltas) {
        for (key, fields) in &other.0 {
            self.accumulate(Cow::Borrowed(key), fields.iter().map(|(field, amount)| (*field, amount)), Sign::Plus);
        }
    }

    /// Adds (or takes away) amounts on one aggregate item. A borrowed key is cloned only for an
    /// item not held yet: merging contributions that touch the same items, as the planner does
    /// per record, allocates no key.
    fn accumulate<'n>(&mut self, key: Cow<'_, AggregateKey>, amounts: impl IntoIterator<Item = (FieldId, &'n Number)>, sign: Sign) {
        let mut amounts = amounts.into_iter().filter(|(_, amount)| !amount.is_zero()).peekable();
        if amounts.peek().is_none() {
            return;
        }
        match key {
            Cow::Owned(key) => match self.0.entry(key) {
                Entry::Occupied(mut entry) => {
                    add_amounts(entry.get_mut(), amounts, sign);
                    if entry.get().is_empty() {
                        entry.remove();
                    }
                }
                Entry::Vacant(entry) => {
                    let mut fields = BTreeMap::new();
                    add_amounts(&mut fields, amounts, sign);
                    if !fields.is_empty() {
                        entry.insert(fields);
                    }
                }
            },
            Cow::Borrowed(key) => {
                if !self.0.contains_key(key) {
                    self.0.insert(key.clone(), BTreeMap::new());
                }
                if let Some(fields) = self.0.get_mut(key) {
                    add_amounts(fields, amounts, sign);
                    if fields.is_empty() {
                        self.0.remove(key);
                    }
                }
            }
        }
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
        for (key, fields) in &old.0 {
            change.accumulate(Cow::Borrowed(key), fields.iter().map(|(field, amount)| (*field, amount)), Sign::Minus);
        }
        change
    }
}

#[derive(Debug, Clone, Copy)]
enum Sign {
    Plus,
    Minus,
}

/// Adds (or takes away) non-zero amounts per field, dropping a field that comes to zero.
fn add_amounts<'n>(fields: &mut BTreeMap<FieldId, Number>, amounts: impl Iterator<Item = (FieldId, &'n Number)>, sign: Sign) {
    for (field, amount) in amounts {
        let total = fields.entry(field).or_insert_with(Number::zero);
        *total = match sign {
            Sign::Plus => &*total + amount,
            Sign::Minus => &*total - amount,
        };
        if total.is_zero() {
            fields.remove(&field);
        }
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
            let (mut ab, mut ba) = (old.clone(), other.clone());
            ab.merge(&other);
            ba.merge(&old);
            prop_assert_eq!(&ab, &ba);
            let mut nothing = old.clone();
            nothing.merge(&Deltas::between(&old, &Deltas::new()));
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
        let mut undone = change.clone();
        undone.merge(&deltas);
        assert!(undone.is_empty(), "between(d, nothing) takes d away");
        let mut back = deltas.clone();
        back.merge(&change);
        assert!(back.is_empty());
        deltas.add(course, count, &Number::zero());
        assert_eq!(deltas.keys().count(), 2);
    }
}
